//! Putting a backup back in place of a database, losing nothing.
//!
//! A database is a set of files: `NAME` and, beside it, `NAME-wal`,
//! `NAME-shm` and `NAME-journal`. SQLite opens an existing `-wal` or hot
//! `-journal` whatever the database file says, so a restored file beside the
//! old set's journals is silently wrong (or corrupt). The order of work:
//!
//! 1. Inspect the set: the target must be a regular file or absent, never a
//!    symlink, in an existing directory; so must its journals.
//! 2. Lock it, and refuse when anyone uses it: SQLite's EXCLUSIVE lock on the
//!    database, the WAL index's DMS byte (held by every open WAL connection,
//!    idle ones included), and on Linux any process with a file of the set
//!    open. The locks are held to the end: a server starting meanwhile waits
//!    (its busy timeout) or fails; it never reads a half-changed set.
//! 3. Decrypt the backup straight into an unnamed file in the target's
//!    directory, and verify it there as wm-verify does (no spool: see
//!    [`decrypt_verified`]); fsync it. A backup that does not verify
//!    changes nothing.
//! 4. When the old set's content is not all in `NAME` (a `-wal` or `-journal`
//!    with something in it, e.g. after the server was killed), write that
//!    content as one self-contained file, `OLD` (see [`old_image`]).
//! 5. Keep the old set: hard-link each file to `NAME.pre-restore-STAMP` with
//!    its suffix, journals first and the database last, refusing a name that
//!    is taken; fsync the directory.
//! 6. `OLD` replaces `NAME` (fsynced, renamed, directory fsynced). Beside the
//!    old journals it means the same: replaying a WAL onto the pages it came
//!    from, or rolling a journal back onto the pages it restores, changes
//!    nothing.
//! 7. Take the journals' names away (their files live on in the kept set);
//!    fsync the directory. `NAME` alone holds the old content.
//! 8. The new database replaces `NAME`: fsynced before, 0600, renamed, the
//!    directory fsynced.
//!
//! A SIGKILL between any two steps leaves the old content in place (with its
//! journals or without, whole either way, and the kept set), or the restored
//! database alone; a rerun completes the restore. A failure in 5-8 undoes
//! what was done, in reverse.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{File, Metadata};
use std::io::{self, BufRead, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, OFlag};
use nix::sys::stat::{self, Mode};
use nix::unistd::{self, UnlinkatFlags};
use rusqlite::{Connection, OpenFlags};

use crate::age::open::Key;
use crate::clock::Utc;
use crate::output::{AtomicFile, Destination, OutputError, FILE_MODE};
use crate::platform;
use crate::report::{Kept, Restoration, Verification, Written};
use crate::run::Run;
use crate::spool::plain::Opened;
use crate::spool::vfs::SpoolFile;
use crate::spool::{Place, SpoolKind, SpoolMode};
use crate::sqlite::header::DbHeader;
use crate::sqlite::lock::{self, Held, LockError};
use crate::stop::{io_cause, Failure, Hint, Stop};
use crate::verify::{self, VerifyError};

/// The journals SQLite keeps beside a database, in the order they are kept.
const JOURNALS: [&str; 3] = ["-journal", "-wal", "-shm"];

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub verify: verify::Options,
    /// Say what would be kept, removed and written; change nothing.
    pub dry_run: bool,
    /// The time in the kept copy's name.
    pub now: Option<Utc>,
    /// How long to wait for a database that is in use to be let go.
    pub busy_timeout: std::time::Duration,
}

/// What is wrong with the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetProblem {
    IsDirectory,
    NotRegular,
    Symlink,
    NoDirectory,
}

#[derive(Debug)]
pub enum RestoreError {
    Target {
        path: PathBuf,
        problem: TargetProblem,
    },
    Inspect {
        path: PathBuf,
        source: io::Error,
    },
    /// Another process uses the database.
    InUse {
        path: PathBuf,
        how: String,
    },
    Lock {
        path: PathBuf,
        source: io::Error,
    },
    /// The kept copy's name is taken (two restores in one second).
    KeptTaken {
        path: PathBuf,
    },
    Verify(VerifyError),
    Output(OutputError),
    /// The old database's content could not be read into one file.
    Old {
        path: PathBuf,
        cause: String,
    },
    /// A step of the swap failed (and was undone, unless `undo` says otherwise).
    Step {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
        undo: Option<String>,
    },
    /// A name of the set no longer refers to the file the run holds.
    Replaced {
        path: PathBuf,
    },
    /// The restored database could not be given the old owner or mode.
    Owner {
        path: PathBuf,
        own: Ownership,
        source: io::Error,
    },
    Stop(Stop),
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use RestoreError::*;
        match self {
            Target { path, problem } => {
                let what = match problem {
                    TargetProblem::IsDirectory => "is a directory, not a database",
                    TargetProblem::NotRegular => "not a regular file",
                    TargetProblem::Symlink => "is a symlink; restore to the file it points to",
                    TargetProblem::NoDirectory => "its directory does not exist",
                };
                write!(f, "restore: {}: {what}", path.display())
            }
            Inspect { path, source } => write!(f, "restore: {}: {}", path.display(), io_cause(source)),
            InUse { path, how } => write!(f, "restore: {}: in use ({how}); nothing was changed", path.display()),
            Lock { path, source } => write!(f, "restore: {}: cannot lock it: {}", path.display(), io_cause(source)),
            KeptTaken { path } => write!(f, "restore: {}: already exists; nothing was changed", path.display()),
            Verify(e) => e.fmt(f),
            Output(e) => e.fmt(f),
            Old { path, cause } => {
                write!(f, "restore: {}: cannot read the database being replaced: {cause}", path.display())
            }
            Step { what, path, source, undo: None } => {
                write!(f, "restore: {what}: {}: {}; nothing was changed", path.display(), io_cause(source))
            }
            Step { what, path, source, undo: Some(left) } => {
                write!(f, "restore: {what}: {}: {}; and undoing failed: {left}", path.display(), io_cause(source))
            }
            Replaced { path } => write!(
                f,
                "restore: {}: the database was replaced during the restore; nothing was changed",
                path.display()
            ),
            Owner { path, own, source } => write!(
                f,
                "restore: {}: cannot give the restored database owner {}, group {}, mode {:04o}: {}; nothing was changed",
                path.display(),
                platform::user_name(own.uid),
                platform::group_name(own.gid),
                own.mode,
                io_cause(source)
            ),
            Stop(s) => s.fmt(f),
        }
    }
}

impl std::error::Error for RestoreError {}

impl Failure for RestoreError {
    fn hint(&self) -> Option<Hint> {
        use RestoreError::*;
        match self {
            InUse { .. } => {
                Some("stop the workmem server (and anything else using the database) first, then retry".into())
            }
            Target { problem: TargetProblem::NoDirectory, .. } => Some("create the directory first".into()),
            Lock { source, .. } | Inspect { source, .. }
                if matches!(source.raw_os_error(), Some(nix::libc::EACCES | nix::libc::EPERM)) =>
            {
                Some("run as the database's owner".into())
            }
            KeptTaken { .. } => Some("wait a second and retry: the kept copy is named by the time".into()),
            Replaced { .. } => {
                Some("something else is changing the database's directory: find out what, then retry".into())
            }
            Owner { .. } => Some("run as root, or as the database's owner".into()),
            Verify(e) => e.hint(),
            Output(e) => e.hint(),
            Step { undo: Some(_), .. } => {
                Some("the database and the kept copy are both in the directory: look before you retry".into())
            }
            Step { source, .. } if source.raw_os_error() == Some(nix::libc::ENOSPC) => {
                Some("free some space in the database's directory, then retry".into())
            }
            _ => None,
        }
    }

    fn stop(&self) -> Option<Stop> {
        match self {
            RestoreError::Stop(s) => Some(*s),
            RestoreError::Verify(e) => e.stop(),
            RestoreError::Output(e) => e.stop(),
            _ => None,
        }
    }
}

impl From<OutputError> for RestoreError {
    fn from(e: OutputError) -> Self {
        RestoreError::Output(e)
    }
}

/// One file of a database's set, as it was found: opened through the
/// directory's descriptor without following anything, and held open, so that
/// every later step can check that its name still refers to this very file.
struct Member {
    suffix: &'static str,
    /// Its name in the directory, and its path for messages.
    name: OsString,
    path: PathBuf,
    meta: Metadata,
    file: File,
}

/// The target and the files of its set that exist, found relative to the
/// directory opened once.
struct Set {
    target: PathBuf,
    dir: PathBuf,
    dir_fd: Arc<File>,
    name: OsString,
    main: Option<Member>,
    journals: Vec<Member>,
}

impl Set {
    fn inspect(target: &Path) -> Result<Set, RestoreError> {
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = target
            .file_name()
            .ok_or(RestoreError::Target { path: target.into(), problem: TargetProblem::IsDirectory })?
            .to_os_string();
        let no_dir = || RestoreError::Target { path: target.into(), problem: TargetProblem::NoDirectory };
        let dir_fd = fcntl::open(&parent, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map(File::from)
            .map_err(|e| match e {
                Errno::ENOENT | Errno::ENOTDIR => no_dir(),
                e => RestoreError::Inspect { path: parent.clone(), source: e.into() },
            })?;
        let dir = std::fs::canonicalize(&parent).map_err(|_| no_dir())?;
        let member = |suffix: &'static str| -> Result<Option<Member>, RestoreError> {
            let mut n = name.clone();
            n.push(suffix);
            let path = dir.join(&n);
            let shown = if suffix.is_empty() { target.to_path_buf() } else { path.clone() };
            let problem = |problem| RestoreError::Target { path: shown.clone(), problem };
            let st = match stat::fstatat(&dir_fd, n.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::ENOENT) => return Ok(None),
                Err(e) => return Err(RestoreError::Inspect { path: shown, source: e.into() }),
            };
            match st.st_mode & nix::libc::S_IFMT {
                nix::libc::S_IFLNK => return Err(problem(TargetProblem::Symlink)),
                nix::libc::S_IFDIR => return Err(problem(TargetProblem::IsDirectory)),
                nix::libc::S_IFREG => {}
                _ => return Err(problem(TargetProblem::NotRegular)),
            }
            // The database and the WAL index are locked (read-write); the
            // journals only read. Never through a symlink, never blocking.
            let access = if matches!(suffix, "" | "-shm") { OFlag::O_RDWR } else { OFlag::O_RDONLY };
            let flags = access | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
            let file = match fcntl::openat(&dir_fd, n.as_os_str(), flags, Mode::empty()) {
                Ok(fd) => File::from(fd),
                Err(Errno::ELOOP) => return Err(problem(TargetProblem::Symlink)),
                Err(Errno::ENOENT) => return Err(RestoreError::Replaced { path: target.into() }),
                Err(e) => return Err(RestoreError::Lock { path: shown, source: e.into() }),
            };
            let meta = file.metadata().map_err(|e| RestoreError::Inspect { path: shown.clone(), source: e })?;
            if (meta.dev(), meta.ino()) != platform::file_id(&st) || !meta.is_file() {
                return Err(RestoreError::Replaced { path: target.into() });
            }
            Ok(Some(Member { suffix, name: n, path, meta, file }))
        };
        let main = member("")?;
        let mut journals = Vec::new();
        for s in JOURNALS {
            journals.extend(member(s)?);
        }
        Ok(Set { target: dir.join(&name), dir, dir_fd: Arc::new(dir_fd), name, main, journals })
    }

    fn journal(&self, suffix: &str) -> Option<&Member> {
        self.journals.iter().find(|m| m.suffix == suffix)
    }

    /// Whether `NAME` alone does not hold the old content: a WAL with frames
    /// in it, or a rollback journal with anything in it.
    fn content_outside_main(&self) -> bool {
        self.main.is_some()
            && (self.journal("-wal").is_some_and(|m| m.meta.len() > 0)
                || self.journal("-journal").is_some_and(|m| m.meta.len() > 0))
    }

    fn members(&self) -> impl Iterator<Item = &Member> {
        self.journals.iter().chain(self.main.iter())
    }

    fn with_suffix(base: &OsString, suffix: &str) -> OsString {
        let mut n = base.clone();
        n.push(suffix);
        n
    }

    /// A new file that will get the target's name, in the directory opened once.
    fn new_file(&self) -> Result<AtomicFile, RestoreError> {
        Ok(AtomicFile::create_readable(Destination::in_dir(Arc::clone(&self.dir_fd), &self.dir, &self.name))?)
    }

    /// `name` in the directory is the file open as `file`, not removed nor replaced.
    fn still(&self, name: &OsStr, file: &File) -> bool {
        match (stat::fstatat(&*self.dir_fd, name, AtFlags::AT_SYMLINK_NOFOLLOW), file.metadata()) {
            (Ok(by_name), Ok(held)) => platform::file_id(&by_name) == (held.dev(), held.ino()),
            _ => false,
        }
    }

    /// Nothing at all has `name` in the directory.
    fn absent(&self, name: &OsStr) -> bool {
        matches!(stat::fstatat(&*self.dir_fd, name, AtFlags::AT_SYMLINK_NOFOLLOW), Err(Errno::ENOENT))
    }
}

/// What a restored database is given so that its server can open it as
/// before: the old file's owner, group and permission bits (rwx, never a
/// set-id or sticky bit); with no old
/// file, run as root, the directory's owner and group with 0600; otherwise
/// the running user's, 0600.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership {
    uid: u32,
    gid: u32,
    mode: u32,
}

impl Ownership {
    fn for_set(set: &Set) -> Result<Ownership, RestoreError> {
        if let Some(m) = &set.main {
            // The permission bits only: a database needs no set-id or sticky
            // bit, and a file planted by a user of the directory may have them.
            return Ok(Ownership { uid: m.meta.uid(), gid: m.meta.gid(), mode: m.meta.mode() & 0o777 });
        }
        let dir = set.dir_fd.metadata().map_err(|e| RestoreError::Inspect { path: set.dir.clone(), source: e })?;
        Ok(match platform::euid() {
            0 => Ownership { uid: dir.uid(), gid: dir.gid(), mode: FILE_MODE },
            // SAFETY: getegid has no preconditions and cannot fail.
            me => Ownership { uid: me, gid: unsafe { nix::libc::getegid() }, mode: FILE_MODE },
        })
    }

    /// Gives `file` this owner, group and mode: `fchown` (only when they
    /// differ, so that an unprivileged run that keeps its own ids needs no
    /// privilege), then `fchmod`, which also puts back any bit `fchown`
    /// cleared.
    fn apply(&self, file: &File, target: &Path) -> Result<(), RestoreError> {
        let err = |source: io::Error| RestoreError::Owner { path: target.into(), own: *self, source };
        let now = file.metadata().map_err(err)?;
        if (now.uid(), now.gid()) != (self.uid, self.gid) {
            // SAFETY: fchown on a descriptor we own.
            if unsafe { nix::libc::fchown(file.as_raw_fd(), self.uid, self.gid) } != 0 {
                return Err(err(io::Error::last_os_error()));
            }
        }
        file.set_permissions(std::fs::Permissions::from_mode(self.mode)).map_err(err)
    }
}

/// The locks that keep everyone else out until the restore is done.
struct Locks {
    main: Option<Held>,
    _shm: Option<Held>,
}

fn dup(m: &Member) -> Result<File, RestoreError> {
    m.file.try_clone().map_err(|e| RestoreError::Lock { path: m.path.clone(), source: e })
}

fn take(set: &Set) -> Result<Locks, RestoreError> {
    let busy = |path: &Path, how: &str| RestoreError::InUse { path: path.into(), how: how.into() };
    let main = match &set.main {
        Some(m) => Some(match lock::database(dup(m)?) {
            Ok(h) => h,
            Err(LockError::Busy) => return Err(busy(&set.target, "a connection holds SQLite's lock on it")),
            Err(LockError::Io(e)) => return Err(RestoreError::Lock { path: m.path.clone(), source: e }),
        }),
        None => None,
    };
    let shm = match set.journal("-shm") {
        Some(m) => Some(match lock::wal_index(dup(m)?) {
            Ok(h) => h,
            Err(LockError::Busy) => return Err(busy(&set.target, "a connection has its WAL index open")),
            Err(LockError::Io(e)) => return Err(RestoreError::Lock { path: m.path.clone(), source: e }),
        }),
        None => None,
    };
    if let Some((pid, comm)) = holder(set) {
        return Err(busy(&set.target, &format!("process {pid} ({comm}) has it open")));
    }
    Ok(Locks { main, _shm: shm })
}

/// The set, inspected and locked; retried every 50 ms while the database is
/// in use, up to `wait` (the set may change meanwhile: a journal goes away).
fn take_within(target: &Path, wait: std::time::Duration, run: &Run) -> Result<(Set, Locks), RestoreError> {
    let started = std::time::Instant::now();
    loop {
        let set = Set::inspect(target)?;
        match take(&set) {
            Ok(locks) => return Ok((set, locks)),
            Err(RestoreError::InUse { .. }) if started.elapsed() < wait => {
                run.check().map_err(RestoreError::Stop)?;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Another process with a file of the set open, as far as the system shows.
fn holder(set: &Set) -> Option<(u32, String)> {
    let ids: Vec<(u64, u64)> = set.members().map(|m| (m.meta.dev(), m.meta.ino())).collect();
    match ids.is_empty() {
        true => None,
        false => platform::file_holder(&ids),
    }
}

/// Restores the backup read from `input` over `target`. The report says what
/// was kept, removed and written, also when the result is an error.
pub fn restore(
    input: Box<dyn BufRead + '_>,
    key: Key<'_>,
    target: &Path,
    opts: &Options,
    run: &Run,
) -> (Restoration, Result<(), RestoreError>) {
    let mut report = Restoration { target: target.display().to_string(), dry_run: opts.dry_run, ..Default::default() };
    let result = steps(input, key, target, opts, run, &mut report);
    let result = match (result, run.stopped()) {
        (Err(_), Some(stop)) => Err(RestoreError::Stop(stop)),
        (r, _) => r,
    };
    report.restored = result.is_ok() && !opts.dry_run;
    (report, result)
}

fn steps(
    input: Box<dyn BufRead + '_>,
    key: Key<'_>,
    target: &Path,
    opts: &Options,
    run: &Run,
    report: &mut Restoration,
) -> Result<(), RestoreError> {
    let (set, locks) = take_within(target, opts.busy_timeout, run)?;
    // What the server needs to open it as before: owner, group, mode, and WAL.
    let own = Ownership::for_set(&set)?;
    let keep_wal = match &set.main {
        Some(m) => old_is_wal(&m.file).map_err(|e| RestoreError::Inspect { path: set.target.clone(), source: e })?,
        None => false,
    };
    // The new database, unnamed until the end; its creation proves the
    // directory writable, and giving it its owner now proves that allowed.
    let mut new = set.new_file()?;
    if !opts.dry_run {
        own.apply(new.file(), &set.target)?;
    }
    let _new_locked = hold(new.file(), &set.target)?;
    let mut written = decrypt_verified(input, key, opts, run, &mut new, keep_wal, &mut report.verification)?;
    written.owner = platform::user_name(own.uid);
    written.group = platform::group_name(own.gid);
    written.mode = format!("{:04o}", own.mode);
    report.written = Some(written);
    run.check().map_err(RestoreError::Stop)?;

    let stamp = opts.now.unwrap_or_else(Utc::now).stamp();
    let mut kept_name = set.name.clone();
    kept_name.push(format!(".pre-restore-{stamp}"));
    report.cleaned = clean_interrupted(&set, opts.dry_run)?;
    let plan = Plan::new(&set, &kept_name)?;
    report.kept = plan.kept.clone();
    report.removed = set.journals.iter().map(|m| m.path.display().to_string()).collect();
    if opts.dry_run {
        return Ok(());
    }
    let old = match (set.content_outside_main(), &locks.main) {
        (true, Some(main)) => Some(old_image(&set, main, &own, &opts.verify, run)?),
        _ => None,
    };
    run.check().map_err(RestoreError::Stop)?;
    // From here on the swap runs to its end, or is undone: a signal waits.
    swap(&set, &plan, old, new)
}

/// Whether the database in `file` is in WAL mode: SQLite marks it so,
/// persistently, with header bytes 18 and 19 (file format write and read
/// versions) both 2. A file too short to have a header is not.
fn old_is_wal(file: &File) -> io::Result<bool> {
    let mut head = [0u8; 20];
    let mut got = 0;
    while got < head.len() {
        match file.read_at(&mut head[got..], got as u64) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(head[18] == 2 && head[19] == 2)
}

/// Holds SQLite's EXCLUSIVE lock on a file that will get the target's name,
/// so that no connection opens it before the restore is done.
fn hold(file: &File, target: &Path) -> Result<Held, RestoreError> {
    let dup = file.try_clone().map_err(|e| RestoreError::Lock { path: target.into(), source: e })?;
    lock::database(dup).map_err(|e| match e {
        LockError::Busy => RestoreError::InUse { path: target.into(), how: "its new file is locked by another".into() },
        LockError::Io(e) => RestoreError::Lock { path: target.into(), source: e },
    })
}

/// Decrypts the backup, checks it as wm-verify does, and writes it into
/// `new`, which is fsynced: in memory where the image fits
/// ([`checked_in_memory`]), else in the new file itself
/// ([`checked_in_file`]). A backup that does not decrypt or verify leaves
/// `new` unnamed, to be dropped. Every fsync and rename stays on this
/// thread, in the order the design gives.
fn decrypt_verified(
    input: Box<dyn BufRead + '_>,
    key: Key<'_>,
    opts: &Options,
    run: &Run,
    new: &mut AtomicFile,
    keep_wal: bool,
    report: &mut Verification,
) -> Result<Written, RestoreError> {
    let path = new.destination().path.clone();
    // Asked for, or `auto` where the file can be written around the page
    // cache (else the file's pages and the image would take memory twice).
    let spool = &opts.verify.spool;
    let in_memory = spool.choose(opts.verify.size_hint) == SpoolKind::Memory
        && (platform::UNCACHED_WRITES || spool.mode == SpoolMode::Memory);
    let (h, len) = match in_memory {
        true => checked_in_memory(input, key, opts, run, new, report)?,
        false => checked_in_file(input, key, opts, run, new, report)?,
    };
    // A WAL database stays WAL, also from a backup that VACUUM INTO left
    // in rollback mode (1/1): the same two bytes SQLite itself writes.
    let wal = h.wal || keep_wal;
    if wal {
        new.file().write_all_at(&[2, 2], 18).map_err(step("keep the database in WAL mode", &path))?;
    }
    run.progress.phase("sync", None);
    new.sync().map_err(|e| match e {
        OutputError::Sync { path, source } => step("fsync the restored database", &path)(source),
        other => RestoreError::Output(other),
    })?;
    Ok(Written {
        path: path.display().to_string(),
        bytes: len,
        page_size: h.page_size as u64,
        page_count: len / h.page_size as u64,
        journal_mode: if wal { "wal" } else { "delete" }.into(),
        journal_mode_backup: if h.wal { "wal" } else { "delete" }.into(),
        ..Written::default()
    })
}

/// The backup decrypted into memory, as wm-verify does, then checked there
/// on two cores while a third thread writes the image into `new` around
/// the page cache ([`platform::write_uncached`]): the device takes it by
/// DMA while the check runs, and the file costs no page cache, so a
/// restore needs the memory of one image, as wm-verify does. Taken where
/// asked (`--spool memory`), and by `auto` where the backup's size is known
/// and the image fits ([`Place::choose`], which also heeds the process's
/// memory limits) and the system can write around the cache. The file is
/// in rollback mode (1/1) when this returns.
fn checked_in_memory(
    input: Box<dyn BufRead + '_>,
    key: Key<'_>,
    opts: &Options,
    run: &Run,
    new: &AtomicFile,
    report: &mut Verification,
) -> Result<(DbHeader, u64), RestoreError> {
    let path = &new.destination().path;
    let in_memory = verify::Options {
        spool: Place { mode: SpoolMode::Memory, ..opts.verify.spool.clone() },
        ..opts.verify.clone()
    };
    let decrypted = verify::decrypt_whole(input, key, &in_memory, run, report);
    let (plain, h) = verify::blame(decrypted, run).map_err(RestoreError::Verify)?;
    let opened = plain.into_connection().map_err(|e| RestoreError::Verify(e.into()))?;
    let len = opened.len();
    let Some(image) = opened.image() else {
        return Err(step("hold the restored database in memory", path)(io::Error::other("not a memory image")));
    };
    let failed = AtomicBool::new(false);
    let go = || match failed.load(Ordering::Relaxed) {
        true => Err(io::Error::other("the check failed")),
        false => run.cancel.check_io(),
    };
    let (checked, written) = std::thread::scope(|s| {
        let writer = s.spawn(|| platform::write_uncached(new.file(), image, go));
        let checked = verify::check_opened(&opened, &opts.verify, run, report);
        failed.store(checked.is_err(), Ordering::Relaxed);
        (checked, writer.join())
    });
    verify::blame(checked, run).map_err(RestoreError::Verify)?;
    match written {
        Ok(written) => written.map_err(step("write the restored database", path))?,
        Err(panic) => std::panic::resume_unwind(panic),
    }
    Ok((h, len))
}

/// Decrypts the backup straight into `new`, and checks it there: what a
/// restore does when asked (`--spool disk`), and by `auto` where the image
/// does not fit in memory or the system cannot write around the page cache. The plaintext goes into the file on
/// a thread of its own as it is decrypted (decryption takes one core, the
/// copy into the page cache the other); then SQLite checks the file,
/// mapped, on both cores while the disk writes what the copy left dirty.
/// No spool: the new file is the only copy, so the restore needs no memory
/// the size of the database. The file is in rollback mode (1/1) when this
/// returns.
fn checked_in_file(
    input: Box<dyn BufRead + '_>,
    key: Key<'_>,
    opts: &Options,
    run: &Run,
    new: &mut AtomicFile,
    report: &mut Verification,
) -> Result<(DbHeader, u64), RestoreError> {
    let path = new.destination().path.clone();
    // The disk it is checked on is the new file itself.
    report.spool = Some(SpoolKind::Disk.to_string());
    let batches = Batches::new().map_err(step("set aside memory to copy the restored database", &path))?;
    let (decrypted, copied) = std::thread::scope(|s| {
        let (full, filled) = mpsc::channel::<Vec<u8>>();
        let (spent, free) = mpsc::channel::<Vec<u8>>();
        for b in batches.0 {
            let _ = spent.send(b);
        }
        let copy = s.spawn(|| copy_out(filled, spent, new, || run.cancel.check_io()));
        let mut batch: Option<Vec<u8>> = None;
        let mut first = true;
        let mut sink = |mut piece: &[u8]| {
            while !piece.is_empty() {
                if batch.is_none() {
                    batch = free.recv().ok();
                }
                // No free batch and none to come: the copy stopped, and says why below.
                let Some(b) = batch.as_mut() else { return };
                let n = piece.len().min(b.capacity() - b.len());
                b.extend_from_slice(&piece[..n]);
                piece = &piece[n..];
                // Checked in rollback mode (see Opened::of_file); the mode
                // the restored database keeps is written after the check.
                if first && b.len() >= 20 && b[18..20] == [2, 2] {
                    b[18..20].copy_from_slice(&[1, 1]);
                }
                first = false;
                if b.len() == b.capacity() {
                    let _ = full.send(batch.take().expect("filled above"));
                }
            }
        };
        let decrypted = verify::decrypt_into(input, key, &opts.verify, run, report, &mut sink);
        // The last, partial batch, only of a plaintext that decrypted whole.
        if let (Ok(_), Some(b)) = (&decrypted, batch.take()) {
            let _ = full.send(b);
        }
        drop(full);
        (decrypted, copy.join())
    });
    let (h, len) = verify::blame(decrypted, run).map_err(RestoreError::Verify)?;
    let copied = match copied {
        Ok(copied) => copied.map_err(step("write the restored database", &path))?,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    if copied != len {
        let short = io::Error::other(format!("{copied} of {len} bytes copied"));
        return Err(step("write the restored database", &path)(short));
    }
    let opened = Opened::of_file(new.file(), len, new.is_unnamed(), &new.destination().dir)
        .map_err(|e| RestoreError::Verify(e.into()))?;
    let checked = verify::check_opened(&opened, &opts.verify, run, report);
    drop(opened);
    verify::blame(checked, run).map_err(RestoreError::Verify)?;
    Ok((h, len))
}

/// The buffers the plaintext travels in from the decryption to the copy:
/// a few megabytes, taken before the work starts, reused until it ends.
struct Batches(Vec<Vec<u8>>);

impl Batches {
    const SIZE: usize = 1 << 20;
    const COUNT: usize = 4;

    fn new() -> io::Result<Batches> {
        let mut all = Vec::with_capacity(Self::COUNT);
        for _ in 0..Self::COUNT {
            let mut b = Vec::new();
            b.try_reserve_exact(Self::SIZE).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
            // The plaintext: left out of any core dump (see harden).
            crate::harden::dont_dump(b.as_ptr(), b.capacity());
            all.push(b);
        }
        Ok(Batches(all))
    }
}

/// The copy `decrypt_verified` runs beside the decryption: each batch into
/// the new file, in order, then back to be filled again. Ends when the
/// batches stop coming, or early when `go` says no; the bytes copied.
fn copy_out(
    filled: Receiver<Vec<u8>>,
    spent: Sender<Vec<u8>>,
    new: &mut AtomicFile,
    go: impl Fn() -> io::Result<()>,
) -> io::Result<u64> {
    let mut copied = 0;
    for mut batch in filled {
        go()?;
        new.write_all(&batch)?;
        copied += batch.len() as u64;
        batch.clear();
        let _ = spent.send(batch);
    }
    Ok(copied)
}

/// Names a restore that was killed while keeping the old set left behind:
/// `NAME.pre-restore-*` files that are other names of the very files still
/// in place under the target's names (the kill came before the old content
/// moved). Removing such a name removes nothing. A kept set whose database
/// is a file of its own is a real copy and is never touched. Listed, looked
/// at and removed through the directory's descriptor, following nothing.
fn clean_interrupted(set: &Set, dry_run: bool) -> Result<Vec<String>, RestoreError> {
    let mut prefix = set.name.clone();
    prefix.push(".pre-restore-");
    let prefix = prefix.as_bytes().to_vec();
    let ids = |name: &OsStr| {
        stat::fstatat(&*set.dir_fd, name, AtFlags::AT_SYMLINK_NOFOLLOW).ok().map(|st| platform::file_id(&st))
    };
    let same = |name: &OsStr, m: &Member| ids(name) == Some((m.meta.dev(), m.meta.ino()));
    let inspect = |e: Errno| RestoreError::Inspect { path: set.dir.clone(), source: e.into() };
    let mut listing = nix::dir::Dir::openat(
        &*set.dir_fd,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(inspect)?;
    let mut names = Vec::new();
    for entry in listing.iter() {
        let entry = entry.map_err(inspect)?;
        names.push(OsStr::from_bytes(entry.file_name().to_bytes()).to_os_string());
    }
    let mut aliases = Vec::new();
    for file_name in names {
        let bytes = file_name.as_bytes();
        if !bytes.starts_with(&prefix) {
            continue;
        }
        let suffix = JOURNALS.iter().find(|s| bytes.ends_with(s.as_bytes())).copied().unwrap_or("");
        let main = OsStr::from_bytes(&bytes[..bytes.len() - suffix.len()]);
        // The kept set this name belongs to is an alias when its database is
        // absent or is the target's own file, and this name is one of the
        // target's files too.
        let set_is_alias = match (ids(main), &set.main) {
            (None, _) => true,
            (Some(_), Some(m)) => same(main, m),
            (Some(_), None) => false,
        };
        let member = if suffix.is_empty() { set.main.as_ref() } else { set.journal(suffix) };
        if set_is_alias && member.is_some_and(|m| same(&file_name, m)) {
            aliases.push(file_name);
        }
    }
    // Journals before the database, so that a kill here leaves no journal
    // name without its database under a name that is not an alias.
    aliases.sort_by_key(|n| !JOURNALS.iter().any(|s| n.as_bytes().ends_with(s.as_bytes())));
    let mut cleaned = Vec::new();
    for name in aliases {
        let path = set.dir.join(&name);
        if !dry_run {
            unistd::unlinkat(&*set.dir_fd, name.as_os_str(), UnlinkatFlags::NoRemoveDir)
                .map_err(|e| RestoreError::Inspect { path: path.clone(), source: e.into() })?;
        }
        cleaned.push(path.display().to_string());
    }
    Ok(cleaned)
}

/// The kept set's names, checked free.
struct Plan {
    kept: Option<Kept>,
    /// (name of a file of the set, its kept name), journals first, the
    /// database last, each with the file held open.
    links: Vec<(OsString, OsString)>,
}

impl Plan {
    fn new(set: &Set, kept_name: &OsString) -> Result<Plan, RestoreError> {
        let links: Vec<(OsString, OsString)> =
            set.members().map(|m| (m.name.clone(), Set::with_suffix(kept_name, m.suffix))).collect();
        for suffix in std::iter::once("").chain(JOURNALS) {
            let name = Set::with_suffix(kept_name, suffix);
            if !set.absent(&name) {
                return Err(RestoreError::KeptTaken { path: set.dir.join(name) });
            }
        }
        let kept = (!links.is_empty()).then(|| Kept {
            name: set.dir.join(kept_name).display().to_string(),
            files: links.iter().map(|(_, k)| set.dir.join(k).display().to_string()).collect(),
            bytes: set.members().map(|m| m.meta.len()).sum(),
        });
        Ok(Plan { kept, links })
    }
}

/// The old set's content as one self-contained database file, page for
/// page what SQLite sees: the database with its WAL's frames applied, or its
/// hot journal rolled back. Read from unnamed copies (through the held
/// descriptors), so that neither the set nor its kept copy is touched, and
/// no copy of it has a name. It gets the old file's owner and mode: a kill
/// may leave it in place as the database.
fn old_image(
    set: &Set,
    main: &Held,
    own: &Ownership,
    opts: &verify::Options,
    run: &Run,
) -> Result<AtomicFile, RestoreError> {
    let path = set.target.clone();
    let old = |cause: String| RestoreError::Old { path: path.clone(), cause };
    let spool_dir = opts.spool.dir();
    let copy = SpoolFile::copy_of(main.file(), &spool_dir).map_err(|e| old(io_cause(&e)))?;
    for suffix in ["-wal", "-journal"] {
        if let Some(m) = set.journal(suffix) {
            copy.add_companion(suffix, &m.file).map_err(|e| old(format!("{}: {}", m.path.display(), io_cause(&e))))?;
        }
    }
    run.progress.phase("old copy", None);
    let conn = Connection::open_with_flags(
        copy.uri(),
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| old(e.to_string()))?;
    let _watch = run.cancel.watch_sqlite(&conn);
    // No shared memory in this VFS: WAL only in exclusive mode, which is ours anyway.
    conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE; PRAGMA temp_store = MEMORY; BEGIN")
        .map_err(|e| old(e.to_string()))?;
    let mut out = set.new_file()?;
    own.apply(out.file(), &set.target)?;
    let mut stmt =
        conn.prepare("SELECT pgno, data FROM sqlite_dbpage('main') ORDER BY pgno").map_err(|e| old(e.to_string()))?;
    let mut rows = stmt.query([]).map_err(|e| old(e.to_string()))?;
    let mut expect = 1i64;
    while let Some(row) = rows.next().map_err(|e| old(e.to_string()))? {
        let pgno: i64 = row.get(0).map_err(|e| old(e.to_string()))?;
        let data = row.get_ref(1).and_then(|v| Ok(v.as_blob()?)).map_err(|e| old(e.to_string()))?;
        if pgno != expect {
            return Err(old(format!("page {expect} is missing")));
        }
        out.write_all(data).map_err(|source| OutputError::Write { path: set.target.clone(), source })?;
        expect += 1;
    }
    drop(rows);
    drop(stmt);
    drop(conn);
    out.sync()?;
    Ok(out)
}

/// What the swap has done so far, to be undone in reverse on failure.
enum Done {
    Linked(OsString),
    OldInPlace { kept_main: OsString },
    Unlinked { name: OsString, kept: OsString },
}

/// Steps 5 to 8: keep the old set, put the old content in place as one file,
/// take the journals' names away, put the new database in place. Every step
/// is relative to the directory opened once, and each is taken only after
/// checking that the name still refers to the file held.
fn swap(set: &Set, plan: &Plan, old: Option<AtomicFile>, new: AtomicFile) -> Result<(), RestoreError> {
    let mut done = Vec::new();
    let result = swap_steps(set, plan, old, new, &mut done);
    match result {
        Ok(()) => Ok(()),
        // The restored database is in place; only its directory's fsync failed.
        Err(e @ RestoreError::Output(OutputError::SyncDir { .. })) => Err(e),
        Err(RestoreError::Step { what, path, source, .. }) => {
            let undo = undo(set, done).err();
            Err(RestoreError::Step { what, path, source, undo })
        }
        Err(other) => {
            let _ = undo(set, done);
            Err(other)
        }
    }
}

fn step<'p>(what: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> RestoreError + 'p {
    move |source| RestoreError::Step { what, path: path.to_path_buf(), source, undo: None }
}

fn swap_steps(
    set: &Set,
    plan: &Plan,
    old: Option<AtomicFile>,
    new: AtomicFile,
    done: &mut Vec<Done>,
) -> Result<(), RestoreError> {
    let dir = &*set.dir_fd;
    let replaced = || RestoreError::Replaced { path: set.target.clone() };
    for (m, (name, kept)) in set.members().zip(&plan.links) {
        if !set.still(name, &m.file) {
            return Err(replaced());
        }
        let kept_path = set.dir.join(kept);
        unistd::linkat(dir, name.as_os_str(), dir, kept.as_os_str(), AtFlags::empty()).map_err(|e| match e {
            Errno::EEXIST => RestoreError::KeptTaken { path: kept_path.clone() },
            e => step("keep the old database", &kept_path)(e.into()),
        })?;
        done.push(Done::Linked(kept.clone()));
        // The kept name must be the file held, not whatever had the name then.
        if !set.still(kept, &m.file) {
            return Err(replaced());
        }
    }
    platform::full_sync(dir).map_err(step("fsync directory", &set.dir))?;
    // What has the target's name once the old content is settled.
    let mut in_place = set.main.as_ref().map(|m| &m.file);
    let old_held;
    if let Some(old) = old {
        // Locked before it has the target's name, until the end of the swap.
        let _old_locked = hold(old.file(), &set.target)?;
        old_held = old.file().try_clone().map_err(step("put the old content in place", &set.target))?;
        let kept_main = plan.links.last().map(|(_, k)| k.clone()).unwrap_or_default();
        if !set.main.as_ref().is_some_and(|m| set.still(&set.name, &m.file)) {
            return Err(replaced());
        }
        old.commit().map_err(|e| match e {
            OutputError::Rename { path, source } | OutputError::Sync { path, source } => {
                step("put the old content in place", &path)(source)
            }
            other => RestoreError::Output(other),
        })?;
        done.push(Done::OldInPlace { kept_main });
        in_place = Some(&old_held);
    }
    for (m, (_, kept)) in set.journals.iter().zip(&plan.links) {
        if !set.still(&m.name, &m.file) {
            return Err(replaced());
        }
        unistd::unlinkat(dir, m.name.as_os_str(), UnlinkatFlags::NoRemoveDir)
            .map_err(|e| step("take the old journal away", &m.path)(e.into()))?;
        done.push(Done::Unlinked { name: m.name.clone(), kept: kept.clone() });
    }
    platform::full_sync(dir).map_err(step("fsync directory", &set.dir))?;
    let unchanged = match in_place {
        Some(f) => set.still(&set.name, f),
        None => set.absent(&set.name),
    };
    if !unchanged || set.journals.iter().any(|m| !set.absent(&m.name)) {
        return Err(replaced());
    }
    new.commit().map(drop).map_err(|e| match e {
        OutputError::Rename { path, source } | OutputError::Sync { path, source } => {
            step("put the restored database in place", &path)(source)
        }
        other => RestoreError::Output(other),
    })
}

/// Puts back what the swap did, newest first: journals relinked, the old
/// database renamed back, the kept names removed; all in the directory
/// opened once.
fn undo(set: &Set, done: Vec<Done>) -> Result<(), String> {
    let dir = &*set.dir_fd;
    let mut left = Vec::new();
    for d in done.into_iter().rev() {
        let (r, shown) = match &d {
            Done::Unlinked { name, kept } => {
                (unistd::linkat(dir, kept.as_os_str(), dir, name.as_os_str(), AtFlags::empty()), name)
            }
            Done::OldInPlace { kept_main } => {
                (fcntl::renameat(dir, kept_main.as_os_str(), dir, set.name.as_os_str()), kept_main)
            }
            Done::Linked(kept) => match unistd::unlinkat(dir, kept.as_os_str(), UnlinkatFlags::NoRemoveDir) {
                Err(Errno::ENOENT) => (Ok(()), kept),
                other => (other, kept),
            },
        };
        if let Err(e) = r {
            left.push(format!("{}: {}", set.dir.join(shown).display(), io_cause(&e.into())));
        }
    }
    let _ = platform::full_sync(dir);
    if left.is_empty() {
        Ok(())
    } else {
        Err(left.join(", "))
    }
}
