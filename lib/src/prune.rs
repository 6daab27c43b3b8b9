//! Backup history: the names timestamped backups carry, and the retention
//! policy that decides which of them to keep.
//!
//! A backup is known by its name only, `STEM-YYYYMMDDTHHMMSSZ.EXT` with a UTC
//! [`Utc::stamp`]: never by its mtime, which copies and syncs change.
//! wm-restore's copies, `NAME.pre-restore-STAMP`, are backups of the series
//! (NAME, `pre-restore`), each with its journals as companions. Uploads
//! never committed (`NAME.partial`) are reported, never counted; hidden
//! names, temporaries and every other name are never counted and never
//! touched ([`judge`]).
//!
//! The policy is restic's `forget` ([`plan`], in `policy.rs`), applied to
//! each series (STEM and EXT, as restic groups snapshots by host and paths),
//! so that the backups of one database never push those of another out.
//!
//! [`BackupDir`] applies a plan to a local directory: entries are listed
//! without following symlinks and removed with `unlinkat` relative to the
//! directory, one atomic unlink each, then the directory is fsynced.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{self, AccessFlags, UnlinkatFlags};

use crate::clock::Utc;
use crate::run::Run;
use crate::stop::{hint, io_cause, Failure, Hint, Knob, Stop};

/// `memory-20261202T063000Z.db.age`: the name of the backup of series
/// `stem`/`ext` taken at `time`.
pub fn name(stem: &str, time: &Utc, ext: &str) -> String {
    format!("{stem}-{}.{ext}", time.stamp())
}

/// The STEM of a timestamped backup's name, from the database's file name:
/// `memory` for `memory.db`. Leading dots go (the name would be hidden and
/// never counted), control characters become `_`; `backup` if nothing is left.
pub fn stem_of_database(db: &Path) -> String {
    let name = db.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match name.strip_suffix(".db") {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => name,
    };
    let clean: String = name.trim_start_matches('.').chars().map(|c| if c.is_control() { '_' } else { c }).collect();
    if clean.is_empty() {
        "backup".to_string()
    } else {
        clean
    }
}

/// A name that is a backup's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BackupName {
    pub name: String,
    pub stem: String,
    pub ext: String,
    pub time: Utc,
}

/// What a name is, to the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judged {
    Backup(BackupName),
    /// Shaped like a backup's name, but its date or time cannot exist
    /// (30 February, 24:00): not a backup.
    ImpossibleDate,
    /// `NAME.pre-restore-STAMP-wal` (`-journal`, `-shm`): a file of the
    /// restore copy `of`, never counted on its own, deleted with it.
    Companion {
        of: String,
    },
    /// `NAME.partial`: an upload never committed (the recipes upload under
    /// this name and rename on success), never counted. `time` is the time
    /// in NAME when NAME is a backup's name.
    Partial {
        time: Option<Utc>,
    },
    /// Starts with a dot: our own temporaries, and whatever else hides.
    Hidden,
    /// Ends like a temporary or a partial transfer: `.tmp`, `.part`, `~`.
    Temporary,
    Other,
}

/// What an upload is called until it is committed.
pub const PARTIAL_SUFFIX: &str = ".partial";
/// The series of wm-restore's copies of the database it replaced:
/// `NAME.pre-restore-STAMP`, EXT `pre-restore`.
pub const RESTORE_COPY: &str = "pre-restore";
/// The files SQLite keeps beside a database, kept beside a restore copy.
const COMPANIONS: [&str; 3] = ["-journal", "-wal", "-shm"];
const TEMPORARY_SUFFIXES: [&str; 3] = [".tmp", ".part", "~"];
/// `-` + `YYYYMMDDTHHMMSSZ` + `.`
const STAMP_LEN: usize = 16;

/// Judges one file name (not a path: a name with a `/` is never a backup's).
pub fn judge(name: &str) -> Judged {
    if name.starts_with('.') {
        return Judged::Hidden;
    }
    if let Some(upload) = name.strip_suffix(PARTIAL_SUFFIX) {
        let time = match judge(upload) {
            Judged::Backup(b) => Some(b.time),
            _ => None,
        };
        return Judged::Partial { time };
    }
    if TEMPORARY_SUFFIXES.iter().any(|s| name.ends_with(s)) {
        return Judged::Temporary;
    }
    if name.is_empty() || name.chars().any(|c| c == '/' || c.is_control()) {
        return Judged::Other;
    }
    if let Some(judged) = restore_copy(name) {
        return judged;
    }
    let b = name.as_bytes();
    // The rightmost `-STAMP.` with a stem before it and a valid EXT after.
    let mut at = b.len().saturating_sub(STAMP_LEN + 2);
    loop {
        if at >= 1 && b[at] == b'-' && b.get(at + 1 + STAMP_LEN) == Some(&b'.') && stamp_shaped(&b[at + 1..]) {
            let ext = &name[at + STAMP_LEN + 2..];
            if valid_ext(ext) {
                return match Utc::parse_stamp(&name[at + 1..at + 1 + STAMP_LEN]) {
                    Some(time) => Judged::Backup(BackupName {
                        name: name.to_string(),
                        stem: name[..at].to_string(),
                        ext: ext.to_string(),
                        time,
                    }),
                    None => Judged::ImpossibleDate,
                };
            }
        }
        if at == 0 {
            return Judged::Other;
        }
        at -= 1;
    }
}

/// `NAME.pre-restore-STAMP`, with `-wal`, `-shm` or `-journal` after it
/// for its companions; `None` for any other name.
fn restore_copy(name: &str) -> Option<Judged> {
    let marker = format!(".{RESTORE_COPY}-");
    let at = name.rfind(&marker)?;
    let (stem, rest) = (&name[..at], &name[at + marker.len()..]);
    if stem.is_empty() || !stamp_shaped(rest.as_bytes()) {
        return None;
    }
    let (stamp, suffix) = rest.split_at(STAMP_LEN);
    if !suffix.is_empty() && !COMPANIONS.contains(&suffix) {
        return None;
    }
    let Some(time) = Utc::parse_stamp(stamp) else { return Some(Judged::ImpossibleDate) };
    Some(if suffix.is_empty() {
        Judged::Backup(BackupName { name: name.to_string(), stem: stem.to_string(), ext: RESTORE_COPY.into(), time })
    } else {
        Judged::Companion { of: name[..name.len() - suffix.len()].to_string() }
    })
}

/// `DDDDDDDDTDDDDDDZ` at the start of `b`, digits unchecked for range.
fn stamp_shaped(b: &[u8]) -> bool {
    b.len() >= STAMP_LEN
        && b[..STAMP_LEN].iter().enumerate().all(|(i, c)| match i {
            8 => *c == b'T',
            15 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// `age`, `db.age`: dot-separated runs of ASCII letters and digits.
fn valid_ext(ext: &str) -> bool {
    !ext.is_empty() && ext.split('.').all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_alphanumeric()))
}

pub use policy::{plan, Count, Kept, Period, Plan, Policy, Rule, Span};

mod policy;

/// Names of one directory or one listing, as the policy sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub backups: Vec<BackupName>,
    /// Backups whose entry is a symbolic link: counted by its own name,
    /// never followed; deleting it removes the link, not what it points to.
    pub symlinks: Vec<String>,
    /// Names shaped like a backup's that are not counted, and why.
    pub skipped: Vec<(String, &'static str)>,
    /// A restore copy's `-journal`, `-wal`, `-shm`, by the copy's name.
    pub companions: BTreeMap<String, Vec<String>>,
    /// Uploads never committed, with the time in their names if any.
    pub partials: Vec<(String, Option<Utc>)>,
}

impl Listing {
    /// Takes one judged name; `false` if it is none of the policy's business.
    fn take(&mut self, name: &str, judged: Judged) -> bool {
        match judged {
            Judged::Backup(b) => self.backups.push(b),
            Judged::Companion { of } => self.companions.entry(of).or_default().push(name.to_string()),
            Judged::Partial { time } => self.partials.push((name.to_string(), time)),
            _ => return false,
        }
        true
    }

    /// Sorts, and sets aside the companions whose copy is missing: wm-restore
    /// links them before the copy itself, so such a name may be a restore
    /// under way (or a deletion cut short): never counted, never deleted.
    fn finish(&mut self) {
        let copies: std::collections::BTreeSet<&str> = self.backups.iter().map(|b| b.name.as_str()).collect();
        let orphans: Vec<String> = self.companions.keys().filter(|k| !copies.contains(k.as_str())).cloned().collect();
        for of in orphans {
            for name in self.companions.remove(&of).unwrap_or_default() {
                self.skipped.push((name, "a restore copy's journal without its database; never deleted here"));
            }
        }
        for list in self.companions.values_mut() {
            list.sort();
        }
        self.backups.sort();
        self.symlinks.sort();
        self.skipped.sort();
        self.partials.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    }

    /// The files of the backup `name`: itself, then its companions (the
    /// order to delete them in: a copy is never left without its journal).
    pub fn files_of(&self, name: &str) -> Vec<String> {
        std::iter::once(name.to_string()).chain(self.companions.get(name).into_iter().flatten().cloned()).collect()
    }

    /// Partial uploads older than `before` (by the time in their names;
    /// one without a time is never stale), oldest first.
    pub fn stale_partials(&self, before: &Utc) -> Vec<String> {
        self.partials.iter().filter(|(_, t)| t.is_some_and(|t| t < *before)).map(|(n, _)| n.clone()).collect()
    }

    /// What `--delete` removes: the dropped backups with their companions,
    /// oldest first, then the stale partial uploads.
    pub fn to_remove(&self, plan: &Plan, stale_before: &Utc) -> Vec<String> {
        let mut out: Vec<String> = plan.dropped.iter().flat_map(|b| self.files_of(&b.name)).collect();
        out.extend(self.stale_partials(stale_before));
        out
    }
}

/// Names one per line, as `rclone lsf` prints them (`source` names the
/// input in messages). Lines that are not backup names are ignored; a line
/// shaped like one whose date cannot exist is an error: the listing is not
/// what it seems.
pub fn parse_lines(text: &[u8], source: &str) -> Result<Listing, PruneError> {
    let mut out = Listing::default();
    for (i, line) in text.split(|&c| c == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Ok(name) = std::str::from_utf8(line) else { continue };
        match judge(name) {
            Judged::ImpossibleDate => {
                return Err(PruneError::ImpossibleDate { source: source.to_string(), line: i + 1, name: name.into() })
            }
            judged => {
                out.take(name, judged);
            }
        }
    }
    out.finish();
    Ok(out)
}

/// A local directory of backups, held open: every name is looked up and
/// removed relative to it, never through a path.
pub struct BackupDir {
    path: PathBuf,
    dir: File,
}

impl BackupDir {
    /// Opens `path`, which must be a directory (a symlink to one is followed:
    /// the user named it).
    pub fn open(path: &Path) -> Result<BackupDir, PruneError> {
        let fd =
            fcntl::open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| {
                match e {
                    Errno::ENOTDIR => PruneError::NotDirectory { path: path.to_path_buf() },
                    e => PruneError::Open { path: path.to_path_buf(), source: e.into() },
                }
            })?;
        Ok(BackupDir { path: path.to_path_buf(), dir: File::from(fd) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory's backups. Only regular files and symbolic links count;
    /// the file type comes from the entry itself, never through a link.
    pub fn list(&self) -> Result<Listing, PruneError> {
        let list_err = |e: Errno| PruneError::List { path: self.path.clone(), source: e.into() };
        let mut dir = nix::dir::Dir::openat(
            &self.dir,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(list_err)?;
        let mut out = Listing::default();
        for entry in dir.iter() {
            let entry = entry.map_err(list_err)?;
            let Ok(name) = std::str::from_utf8(entry.file_name().to_bytes()) else { continue };
            let judged = match judge(name) {
                Judged::ImpossibleDate => {
                    out.skipped.push((name.to_string(), "named like a backup, but its date or time cannot exist"));
                    continue;
                }
                j @ (Judged::Backup(_) | Judged::Companion { .. } | Judged::Partial { .. }) => j,
                _ => continue,
            };
            use nix::dir::Type;
            let kind = match entry.file_type() {
                Some(t) => Some(t),
                // Some file systems do not fill in d_type: ask the entry itself.
                None => nix::sys::stat::fstatat(&self.dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).ok().map(|st| {
                    match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
                        SFlag::S_IFREG => Type::File,
                        SFlag::S_IFLNK => Type::Symlink,
                        _ => Type::Fifo,
                    }
                }),
            };
            match kind {
                Some(Type::File) => {
                    out.take(name, judged);
                }
                Some(Type::Symlink) => {
                    if matches!(judged, Judged::Backup(_)) {
                        out.symlinks.push(name.to_string());
                    }
                    out.take(name, judged);
                }
                _ => out.skipped.push((name.to_string(), "named like a backup, but not a file")),
            }
        }
        out.finish();
        Ok(out)
    }

    /// What the entry `name` weighs (a link as a link; 0 if it is gone).
    pub fn size(&self, name: &str) -> u64 {
        nix::sys::stat::fstatat(&self.dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_or(0, |st| st.st_size.max(0) as u64)
    }

    /// Fails, changing nothing, when this process may not remove entries.
    pub fn check_writable(&self) -> Result<(), PruneError> {
        unistd::faccessat(&self.dir, ".", AccessFlags::W_OK | AccessFlags::X_OK, AtFlags::AT_EACCESS)
            .map_err(|e| PruneError::NotWritable { path: self.path.clone(), source: e.into() })
    }

    /// Removes each of `names` (entries of this directory, never followed:
    /// a symbolic link is removed itself), one atomic unlink each, in the
    /// order given; stops at the first failure or signal; then fsyncs the
    /// directory. Returns the names removed (one already gone is not), and
    /// the failure if there was one.
    pub fn delete(&self, names: &[&str], run: &Run) -> (Vec<String>, Result<(), PruneError>) {
        let mut deleted = Vec::new();
        let mut result = Ok(());
        for name in names {
            if let Err(stop) = run.check() {
                result = Err(PruneError::Stop(stop));
                break;
            }
            if name.is_empty() || name.contains('/') || OsStr::new(name).as_bytes().contains(&0) {
                result = Err(PruneError::Delete {
                    path: self.path.join(name),
                    source: io::Error::from_raw_os_error(Errno::EINVAL as i32),
                    deleted: deleted.len(),
                });
                break;
            }
            match unistd::unlinkat(&self.dir, *name, UnlinkatFlags::NoRemoveDir) {
                Ok(()) => deleted.push(name.to_string()),
                Err(Errno::ENOENT) => {}
                Err(e) => {
                    result = Err(PruneError::Delete {
                        path: self.path.join(name),
                        source: e.into(),
                        deleted: deleted.len(),
                    });
                    break;
                }
            }
        }
        if !deleted.is_empty() {
            if let Err(e) = crate::platform::full_sync(&self.dir) {
                result = result.and(Err(PruneError::SyncDir { path: self.path.clone(), source: e }));
            }
        }
        (deleted, result)
    }
}

#[derive(Debug)]
pub enum PruneError {
    /// No rule given: nothing to decide.
    NoRule,
    /// A count of 0, which keeps nothing.
    ZeroCount,
    Open {
        path: PathBuf,
        source: io::Error,
    },
    NotDirectory {
        path: PathBuf,
    },
    List {
        path: PathBuf,
        source: io::Error,
    },
    NotWritable {
        path: PathBuf,
        source: io::Error,
    },
    Delete {
        path: PathBuf,
        source: io::Error,
        /// Removed before this one failed.
        deleted: usize,
    },
    SyncDir {
        path: PathBuf,
        source: io::Error,
    },
    /// A line shaped like a backup's name whose date cannot exist.
    ImpossibleDate {
        source: String,
        line: usize,
        name: String,
    },
    Read {
        source_name: String,
        source: io::Error,
    },
    Stop(Stop),
}

impl fmt::Display for PruneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use PruneError::*;
        match self {
            NoRule => f.write_str("no retention rule given: nothing says what to keep"),
            ZeroCount => f.write_str("a count of 0 keeps nothing"),
            Open { path, source } => write!(f, "open directory: {}: {}", path.display(), io_cause(source)),
            NotDirectory { path } => write!(f, "open directory: {}: not a directory", path.display()),
            List { path, source } => write!(f, "list directory: {}: {}", path.display(), io_cause(source)),
            NotWritable { path, source } => {
                write!(f, "delete in: {}: {}; nothing was deleted", path.display(), io_cause(source))
            }
            Delete { path, source, deleted: 0 } => {
                write!(f, "delete: {}: {}; nothing was deleted", path.display(), io_cause(source))
            }
            Delete { path, source, deleted } => write!(
                f,
                "delete: {}: {}; {deleted} older backup(s) were deleted before it",
                path.display(),
                io_cause(source)
            ),
            SyncDir { path, source } => write!(f, "fsync directory: {}: {}", path.display(), io_cause(source)),
            ImpossibleDate { source, line, name } => {
                write!(f, "{source}: line {line}: {name:?} is named like a backup, but its date or time cannot exist")
            }
            Read { source_name, source } => write!(f, "read names: {source_name}: {}", io_cause(source)),
            Stop(s) => s.fmt(f),
        }
    }
}

impl std::error::Error for PruneError {}

impl Failure for PruneError {
    fn hint(&self) -> Option<Hint> {
        use PruneError::*;
        match self {
            NoRule => Some(hint!["give at least one rule: ", Knob::Retention]),
            ZeroCount => Some(hint!["leave the rule out, or keep at least 1: ", Knob::Retention]),
            Open { .. } | NotDirectory { .. } => {
                Some(hint!["name the directory that holds the backups, or ", Knob::NamesOnStdin])
            }
            NotWritable { .. } | Delete { .. }
                if self.errno() == Some(Errno::EACCES) || self.errno() == Some(Errno::EPERM) =>
            {
                Some("check the directory's owner and permissions".into())
            }
            SyncDir { .. } => Some("the deletions may not survive a crash; check the file system".into()),
            ImpossibleDate { .. } => Some("fix or drop that line; such a name is never counted or deleted".into()),
            _ => None,
        }
    }

    fn stop(&self) -> Option<Stop> {
        match self {
            PruneError::Stop(s) => Some(*s),
            PruneError::Read { source, .. } => Stop::from_io(source),
            _ => None,
        }
    }

    fn exit_code(&self) -> u8 {
        match self {
            PruneError::NoRule | PruneError::ZeroCount => 2,
            other => other.stop().map_or(1, |s| s.exit_code()),
        }
    }
}

impl PruneError {
    fn errno(&self) -> Option<Errno> {
        match self {
            PruneError::NotWritable { source, .. } | PruneError::Delete { source, .. } => {
                source.raw_os_error().map(Errno::from_raw)
            }
            _ => None,
        }
    }
}

/// The restore copies of the database file `db_name` in `dir`, each with
/// its companions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreCopies {
    /// Newest first.
    pub names: Vec<String>,
    /// All their files, companions included.
    pub bytes: u64,
}

/// wm-restore's copies of the database `db_name` kept in `dir`
/// (`db_name.pre-restore-STAMP`, the series wm-prune prunes as sets).
pub fn restore_copies(dir: &Path, db_name: &str) -> Result<RestoreCopies, PruneError> {
    let dir = BackupDir::open(dir)?;
    let listing = dir.list()?;
    let mut copies: Vec<&BackupName> =
        listing.backups.iter().filter(|b| b.ext == RESTORE_COPY && b.stem == db_name).collect();
    copies.sort_by_key(|b| std::cmp::Reverse(b.time));
    let bytes = copies.iter().flat_map(|b| listing.files_of(&b.name)).map(|n| dir.size(&n)).sum();
    Ok(RestoreCopies { names: copies.iter().map(|b| b.name.clone()).collect(), bytes })
}

/// What a backup tool runs after its new backup `new` is in place in `dir`:
/// `policy` over the backups of the series `stem`/`ext` only (other series
/// in the directory follow their own rules), with `new` always kept, and
/// the dropped ones deleted. Returns what was deleted, also on failure.
pub fn prune_series(
    dir: &Path,
    stem: &str,
    ext: &str,
    new: &str,
    policy: &Policy,
    run: &Run,
) -> (Vec<String>, Result<(), PruneError>) {
    let listed = BackupDir::open(dir).and_then(|d| d.list().map(|l| (d, l)));
    let (dir, listing) = match listed {
        Ok(both) => both,
        Err(e) => return (Vec::new(), Err(e)),
    };
    let ours = listing.backups.into_iter().filter(|b| b.stem == stem && b.ext == ext).collect();
    let plan = plan(ours, policy, &[new], &Utc::now());
    let dropped: Vec<&str> = plan.dropped.iter().map(|b| b.name.as_str()).collect();
    dir.delete(&dropped, run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn a_database_gives_its_name_without_db_and_never_a_hidden_or_empty_stem() {
        for (db, stem) in [
            ("/srv/memory.db", "memory"),
            ("project.sqlite", "project.sqlite"),
            (".db", "db"),
            ("/x/.hidden.db", "hidden"),
            ("...", "backup"),
            ("a\tb.db", "a_b"),
        ] {
            assert_eq!(stem_of_database(Path::new(db)), stem, "{db}");
        }
    }

    /// A "now" after every test's backups: none is in the future.
    fn far() -> Utc {
        t("99991231T235959Z")
    }

    fn t(s: &str) -> Utc {
        Utc::parse_stamp(s).unwrap_or_else(|| panic!("{s}"))
    }

    fn backup(stamp: &str) -> BackupName {
        match judge(&format!("memory-{stamp}.db.age")) {
            Judged::Backup(b) => b,
            other => panic!("{stamp}: {other:?}"),
        }
    }

    fn kept_stamps(stamps: &[&str], policy: &Policy) -> Vec<String> {
        let p = plan(stamps.iter().map(|s| backup(s)).collect(), policy, &[], &far());
        p.kept.iter().map(|k| k.backup.time.stamp()).collect()
    }

    /// xorshift64*: deterministic test data without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    /// The policy as restic's manual words it, computed another way: for
    /// each count rule, the distinct periods newest first, the first N of
    /// them (all for -1), the newest backup of each, and the oldest backup
    /// if fewer than N periods exist (restic's "oldest" rule); `last` the N
    /// newest; `within` everything newer than the newest minus the span;
    /// the union. Every backup is in the past here.
    fn reference(times: &[Utc], policy: &Policy) -> BTreeSet<Utc> {
        let mut sorted: Vec<Utc> = times.to_vec();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        sorted.dedup();
        let mut kept = BTreeSet::new();
        let take = |n: Count| match n {
            Count::Upto(n) => n as usize,
            Count::All => usize::MAX,
        };
        type Key = fn(&Utc) -> (i64, u32, u32, u32, u32, u32);
        let periods: [(Option<Count>, Key); 6] = [
            (policy.last, |t| (t.year, t.month, t.day, t.hour, t.minute, t.second)),
            (policy.hourly, |t| (t.year, t.month, t.day, t.hour, 0, 0)),
            (policy.daily, |t| (t.year, t.month, t.day, 0, 0, 0)),
            (policy.weekly, |t| {
                let (y, w) = t.iso_week();
                (y, w, 0, 0, 0, 0)
            }),
            (policy.monthly, |t| (t.year, t.month, 0, 0, 0, 0)),
            (policy.yearly, |t| (t.year, 0, 0, 0, 0, 0)),
        ];
        for (n, key) in periods {
            let Some(n) = n else { continue };
            let mut newest_of: BTreeMap<(i64, u32, u32, u32, u32, u32), Utc> = BTreeMap::new();
            for t in &sorted {
                let e = newest_of.entry(key(t)).or_insert(*t);
                *e = (*e).max(*t);
            }
            kept.extend(newest_of.values().rev().take(take(n)).copied());
            if newest_of.len() < take(n) {
                kept.extend(sorted.last().copied());
            }
        }
        if let (Some(span), Some(newest)) = (policy.within, sorted.first()) {
            let cutoff = span.before(newest).unix();
            kept.extend(sorted.iter().filter(|t| t.unix() > cutoff).copied());
        }
        kept
    }

    #[test]
    fn names_are_backups_only_with_the_exact_pattern() {
        match judge("memory-20261202T063000Z.db.age") {
            Judged::Backup(b) => {
                assert_eq!((b.stem.as_str(), b.ext.as_str()), ("memory", "db.age"));
                assert_eq!(b.time, t("20261202T063000Z"));
            }
            other => panic!("{other:?}"),
        }
        match judge("memory.db.pre-restore-20261202T063000Z") {
            Judged::Backup(b) => {
                assert_eq!((b.stem.as_str(), b.ext.as_str()), ("memory.db", RESTORE_COPY));
                assert_eq!(b.time, t("20261202T063000Z"));
            }
            other => panic!("{other:?}"),
        }
        // The rightmost stamp is the time; the stem may hold dashes and digits.
        match judge("my-db-20250101T000000Z-20261202T063000Z.age") {
            Judged::Backup(b) => {
                assert_eq!((b.stem.as_str(), b.time), ("my-db-20250101T000000Z", t("20261202T063000Z")))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(name("memory", &t("20261202T063000Z"), "db.age"), "memory-20261202T063000Z.db.age");
        for (n, want) in [
            (".memory-20261202T063000Z.db.age", Judged::Hidden),
            (".memory-20261202T063000Z.db.age.3f2a1b.tmp", Judged::Hidden),
            ("memory-20261202T063000Z.db.age.tmp", Judged::Temporary),
            ("memory-20261202T063000Z.db.age.partial", Judged::Partial { time: Some(t("20261202T063000Z")) }),
            ("memory.db.age.partial", Judged::Partial { time: None }),
            ("memory-20261202T063000Z.db.age.part", Judged::Temporary),
            (
                "memory.db.pre-restore-20261202T063000Z-wal",
                Judged::Companion { of: "memory.db.pre-restore-20261202T063000Z".into() },
            ),
            (
                "memory.db.pre-restore-20261202T063000Z-journal",
                Judged::Companion { of: "memory.db.pre-restore-20261202T063000Z".into() },
            ),
            ("memory.db.pre-restore-20261202T063000Z-wal2", Judged::Other),
            ("memory.db.pre-restore-20261202T063000", Judged::Other),
            (".pre-restore-20261202T063000Z", Judged::Hidden),
            ("memory.db.pre-restore-20260230T063000Z", Judged::ImpossibleDate),
            ("memory-20261202T063000Z.db.age~", Judged::Temporary),
            ("memory-20260230T063000Z.db.age", Judged::ImpossibleDate),
            ("memory-20261202T246000Z.db.age", Judged::ImpossibleDate),
            ("memory-20261202T063000Z", Judged::Other),
            ("memory-20261202T063000Z.", Judged::Other),
            ("memory-20261202T063000Z.db..age", Judged::Other),
            ("memory-20261202T063000Z.db-age", Judged::Other),
            ("-20261202T063000Z.db.age", Judged::Other),
            ("memory-20261202T0630Z.db.age", Judged::Other),
            ("memory-20261202t063000z.db.age", Judged::Other),
            ("memory_20261202T063000Z.db.age", Judged::Other),
            ("memory-2026-12-02T06:30:00Z.db.age", Judged::Other),
            ("dir/memory-20261202T063000Z.db.age", Judged::Other),
            ("memory-20261202T063000Z.db.age\n", Judged::Other),
            ("memory.db.age", Judged::Other),
            ("", Judged::Other),
        ] {
            assert_eq!(judge(n), want, "{n:?}");
        }
    }

    #[test]
    fn spans_parse_strictly_and_count_calendar_months() {
        let s = Span::parse("1y6m").unwrap();
        assert_eq!((s.years, s.months), (1, 6));
        assert_eq!(Span::parse("2w3d12h").unwrap().to_string(), "2w3d12h");
        for bad in ["", "30", "d", "30x", "-1d", "+1d", "1d1y", "1d1d", "0d", "0y0h", "1.5d", "30 d", "99999999999d"] {
            assert!(Span::parse(bad).is_err(), "{bad:?} must be refused");
        }
        let before = |span: &str, at: &str| Span::parse(span).unwrap().before(&t(at)).stamp();
        assert_eq!(before("1m", "20260331T120000Z"), "20260228T120000Z", "clamped to the month's last day");
        assert_eq!(before("1m", "20240331T120000Z"), "20240229T120000Z");
        assert_eq!(before("1y", "20240229T000000Z"), "20230228T000000Z");
        assert_eq!(before("1y6m", "20260115T000000Z"), "20240715T000000Z");
        assert_eq!(before("2w1d1h", "20260115T000000Z"), "20251230T230000Z");
    }

    #[test]
    fn a_policy_without_rules_or_with_a_zero_count_is_refused() {
        assert!(matches!(Policy::default().validate(), Err(PruneError::NoRule)));
        assert!(matches!(
            Policy { daily: Some(Count::Upto(0)), ..Policy::default() }.validate(),
            Err(PruneError::ZeroCount)
        ));
        assert_eq!(PruneError::NoRule.exit_code(), 2);
        Policy { within: Span::parse("1d").ok(), ..Policy::default() }.validate().unwrap();
    }

    #[test]
    fn yearly_and_weekly_rules_across_year_boundaries_and_iso_week_53() {
        let daily: Vec<String> = (25..=31)
            .map(|d| format!("202412{d}T120000Z"))
            .chain((1..=5).map(|d| format!("2025010{d}T120000Z")))
            .collect();
        let refs: Vec<&str> = daily.iter().map(String::as_str).collect();
        let yearly = Policy { yearly: Some(Count::Upto(2)), ..Policy::default() };
        assert_eq!(kept_stamps(&refs, &yearly), ["20250105T120000Z", "20241231T120000Z"]);
        // ISO weeks: 2024-12-30 (a Monday) starts week 1 of 2025.
        let weekly = Policy { weekly: Some(Count::Upto(2)), ..Policy::default() };
        assert_eq!(kept_stamps(&refs, &weekly), ["20250105T120000Z", "20241229T120000Z"]);
        // 2020-12-28 to 2021-01-03 is week 53 of 2020.
        let w53 = ["20201227T230000Z", "20201228T000000Z", "20201231T120000Z", "20210103T235959Z", "20210104T000000Z"];
        let weekly3 = Policy { weekly: Some(Count::Upto(3)), ..Policy::default() };
        assert_eq!(kept_stamps(&w53, &weekly3), ["20210104T000000Z", "20210103T235959Z", "20201227T230000Z"]);
        let monthly = Policy { monthly: Some(Count::Upto(2)), ..Policy::default() };
        assert_eq!(kept_stamps(&w53, &monthly), ["20210104T000000Z", "20201231T120000Z"]);
    }

    #[test]
    fn hourly_keeps_the_newest_of_several_backups_in_an_hour() {
        let stamps =
            ["20261202T060001Z", "20261202T063000Z", "20261202T065959Z", "20261202T070000Z", "20261202T070100Z"];
        let hourly = Policy { hourly: Some(Count::Upto(2)), ..Policy::default() };
        assert_eq!(kept_stamps(&stamps, &hourly), ["20261202T070100Z", "20261202T065959Z"]);
        let last = Policy { last: Some(Count::Upto(3)), ..Policy::default() };
        assert_eq!(kept_stamps(&stamps, &last), ["20261202T070100Z", "20261202T070000Z", "20261202T065959Z"]);
    }

    #[test]
    fn within_keeps_what_is_newer_than_the_newest_minus_the_span() {
        let stamps = ["20261202T000000Z", "20261201T000000Z", "20261201T000001Z", "20261125T000000Z"];
        let within = Policy { within: Span::parse("1d").ok(), ..Policy::default() };
        // Exactly one day older is not within (restic's rule: strictly newer).
        assert_eq!(kept_stamps(&stamps, &within), ["20261202T000000Z", "20261201T000001Z"]);
    }

    #[test]
    fn every_rule_says_why_and_series_never_crowd_each_other_out() {
        const LAST: Rule = Rule::Count { period: Period::Last, oldest: false };
        const DAILY: Rule = Rule::Count { period: Period::Daily, oldest: false };
        let names = [
            "memory-20261202T000000Z.db.age",
            "memory-20261201T000000Z.db.age",
            "memory-20261130T000000Z.db.age",
            "memory-20261130T000000Z.db.age",
            "project-20261101T000000Z.db.age",
            "memory-20261202T000000Z.db",
        ];
        let backups: Vec<BackupName> = names
            .iter()
            .map(|n| match judge(n) {
                Judged::Backup(b) => b,
                other => panic!("{other:?}"),
            })
            .collect();
        let p = plan(
            backups,
            &Policy { last: Some(Count::Upto(1)), daily: Some(Count::Upto(2)), ..Policy::default() },
            &["memory-20261130T000000Z.db.age"],
            &far(),
        );
        let kept: Vec<(&str, Vec<Rule>)> = p.kept.iter().map(|k| (k.backup.name.as_str(), k.rules.clone())).collect();
        assert_eq!(
            kept,
            [
                ("memory-20261202T000000Z.db", vec![LAST, DAILY]),
                ("memory-20261202T000000Z.db.age", vec![LAST, DAILY]),
                ("memory-20261201T000000Z.db.age", vec![DAILY]),
                ("memory-20261130T000000Z.db.age", vec![Rule::New]),
                ("project-20261101T000000Z.db.age", vec![LAST, DAILY]),
            ]
        );
        assert!(p.dropped.is_empty(), "a name given twice counts once, and the protected one stays");
    }

    #[test]
    fn the_policy_matches_a_brute_force_reference_on_random_histories() {
        let mut rng = Rng(0x5eed_1234_abcd);
        let anchors =
            ["20201231T120000Z", "20241230T000000Z", "20261202T063000Z", "20270101T000000Z", "20240229T120000Z"];
        for case in 0..3000 {
            let anchor = t(anchors[rng.below(anchors.len() as u64) as usize]).unix();
            // Spreads from minutes (several per hour) to years.
            let spread = [3_600, 86_400, 14 * 86_400, 90 * 86_400, 800 * 86_400][rng.below(5) as usize];
            let n = 1 + rng.below(40) as usize;
            let times: Vec<Utc> = if rng.below(4) == 0 {
                // Sparse: about a year apart, so that neighbours share a week,
                // day or hour number in different years.
                let step = [364, 365][rng.below(2) as usize] * 86_400;
                (0..n as i64).map(|i| Utc::from_unix(anchor - i * step - rng.below(3) as i64 * 3_600)).collect()
            } else {
                (0..n).map(|_| Utc::from_unix(anchor - spread / 2 + rng.below(spread as u64) as i64)).collect()
            };
            let count = |rng: &mut Rng| match rng.below(12) {
                0..=4 => Some(Count::Upto(1 + rng.below(6) as u32)),
                5 => Some(Count::All),
                _ => None,
            };
            let mut policy = Policy {
                last: count(&mut rng),
                hourly: count(&mut rng),
                daily: count(&mut rng),
                weekly: count(&mut rng),
                monthly: count(&mut rng),
                yearly: count(&mut rng),
                ..Policy::default()
            };
            if rng.below(3) == 0 {
                let span = ["2h", "1d", "3d", "1w", "1m", "1y", "1y1m1w1d1h"][rng.below(7) as usize];
                policy.within = Span::parse(span).ok();
            }
            if policy.validate().is_err() {
                policy.daily = Some(Count::Upto(1 + rng.below(4) as u32));
            }
            let backups: Vec<BackupName> = times.iter().map(|t| backup(&t.stamp())).collect();
            let p = plan(backups, &policy, &[], &far());
            let got: BTreeSet<Utc> = p.kept.iter().map(|k| k.backup.time).collect();
            let want = reference(&times, &policy);
            assert_eq!(got, want, "case {case}: {policy:?} on {:?}", times.iter().map(Utc::stamp).collect::<Vec<_>>());
            let newest = times.iter().max().unwrap();
            assert!(got.contains(newest), "case {case}: the newest is never dropped");
            let distinct: BTreeSet<Utc> = times.iter().copied().collect();
            assert_eq!(p.kept.len() + p.dropped.len(), distinct.len(), "case {case}: every backup decided once");
            assert!(p.dropped.windows(2).all(|w| w[0].time < w[1].time), "case {case}: dropped oldest first");
        }
    }

    #[test]
    fn lines_of_a_listing_count_only_backup_names_and_an_impossible_date_is_an_error() {
        let text = b"memory-20261202T063000Z.db.age\r\nsubdir/\nnotes.txt\n.memory-20261202T063000Z.db.age\n\n\xff\xfe\nmemory-20261201T063000Z.db.age";
        let l = parse_lines(text, "standard input").unwrap();
        let names: Vec<&str> = l.backups.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["memory-20261201T063000Z.db.age", "memory-20261202T063000Z.db.age"]);
        match parse_lines(b"a-20261202T063000Z.age\nmemory-20260231T000000Z.db.age\n", "standard input") {
            Err(e @ PruneError::ImpossibleDate { line: 2, .. }) => {
                assert!(e.to_string().starts_with("standard input: line 2: \"memory-20260231T000000Z.db.age\""), "{e}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_directory_counts_files_and_links_by_name_and_deletes_links_not_their_targets() {
        use std::os::unix::fs::symlink;
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("memory-20261101T000000Z.db.age");
        std::fs::write(&target, b"elsewhere").unwrap();
        let dir = d.path();
        std::fs::write(dir.join("memory-20261202T000000Z.db.age"), b"new").unwrap();
        std::fs::write(dir.join("memory-20260230T000000Z.db.age"), b"odd").unwrap();
        std::fs::create_dir(dir.join("memory-20261130T000000Z.db.age")).unwrap();
        symlink(&target, dir.join("memory-20261101T000000Z.db.age")).unwrap();
        std::fs::write(dir.join(".memory-20261001T000000Z.db.age.1a2b3c.tmp"), b"tmp").unwrap();
        let bd = BackupDir::open(dir).unwrap();
        let l = bd.list().unwrap();
        let names: Vec<&str> = l.backups.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["memory-20261101T000000Z.db.age", "memory-20261202T000000Z.db.age"]);
        assert_eq!(l.symlinks, ["memory-20261101T000000Z.db.age"]);
        assert_eq!(l.skipped.len(), 2, "{:?}", l.skipped);
        let p = plan(l.backups, &Policy { last: Some(Count::Upto(1)), ..Policy::default() }, &[], &far());
        let drop: Vec<&str> = p.dropped.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(drop, ["memory-20261101T000000Z.db.age"]);
        let run = Run::manual().unwrap();
        let (deleted, result) = bd.delete(&drop, &run);
        result.unwrap();
        assert_eq!(deleted, drop);
        assert!(std::fs::symlink_metadata(dir.join(drop[0])).is_err(), "the link is gone");
        assert_eq!(std::fs::read(&target).unwrap(), b"elsewhere", "its target is untouched");
        assert!(dir.join("memory-20261130T000000Z.db.age").is_dir(), "a directory is never touched");
        // Already gone: not an error, not reported as deleted.
        let (again, result) = bd.delete(&drop, &run);
        assert!(again.is_empty() && result.is_ok());
        // Never a path.
        let (none, result) = bd.delete(&["../x"], &run);
        assert!(none.is_empty() && matches!(result, Err(PruneError::Delete { .. })));
    }

    #[test]
    fn a_missing_directory_or_a_file_is_refused_by_name() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("file");
        std::fs::write(&f, b"x").unwrap();
        assert!(matches!(BackupDir::open(&d.path().join("nope")), Err(PruneError::Open { .. })));
        match BackupDir::open(&f) {
            Err(e @ PruneError::NotDirectory { .. }) => assert!(e.to_string().contains("not a directory"), "{e}"),
            other => panic!("{:?}", other.map(|_| ())),
        }
    }
}
