//! Where data goes: standard output or a durable, atomic file ([`Sink`]),
//! and the rule that a destination is never the source database.
//!
//! [`AtomicFile`] writes into a temporary in the destination's own directory,
//! mode 0600 from the start whatever the umask: an unnamed `O_TMPFILE` where
//! the system has one (Linux: even SIGKILL leaves nothing behind), else a
//! hidden `.NAME.<hex>.tmp`, removed on any failure or interruption but not
//! on SIGKILL. [`AtomicFile::commit`] fsyncs it (`F_FULLFSYNC` on Apple
//! systems, see [`platform::full_sync`]), gives an unnamed file that hidden
//! name, renames it over the destination and fsyncs the directory. Until the
//! rename, an existing destination keeps its old content.
//!
//! The writer holds an `flock` on its temporary from creation until after the
//! rename, so a hidden temporary that nobody holds was left by a killed run:
//! the next run into the same directory removes it ([`AtomicFile::create`]).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, OFlag};
use nix::sys::stat::{self, Mode};
use nix::unistd;

use crate::platform;
use crate::signals::{Cancel, CancelWrite};
use crate::stop::{hint, io_cause, Failure, Hint, Knob, Stop};

/// The only mode our files ever have: the backup is for its owner alone.
pub const FILE_MODE: u32 = 0o600;
const MAX_SYMLINKS: usize = 40;

#[derive(Debug)]
pub enum OutputError {
    Empty,
    IsDirectory(PathBuf),
    NotRegular(PathBuf),
    Resolve {
        path: PathBuf,
        source: io::Error,
    },
    Directory {
        path: PathBuf,
        source: io::Error,
    },
    Create {
        dir: PathBuf,
        source: io::Error,
    },
    Write {
        path: PathBuf,
        source: io::Error,
    },
    Sync {
        path: PathBuf,
        source: io::Error,
    },
    Rename {
        path: PathBuf,
        source: io::Error,
    },
    SyncDir {
        dir: PathBuf,
        source: io::Error,
    },
    IsSource {
        dest: PathBuf,
        source_file: PathBuf,
        how: &'static str,
    },
    /// A file of that name exists, and this output never replaces one.
    Exists(PathBuf),
    /// A symlink at the name that the running user does not own.
    ForeignSymlink {
        path: PathBuf,
        owner: u32,
    },
    /// The name changed while it was being resolved.
    Changed(PathBuf),
    /// Binary data would go to a terminal.
    Terminal,
    /// Standard output could not be taken over.
    Stdout(io::Error),
}

impl fmt::Display for OutputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use OutputError::*;
        match self {
            Empty => f.write_str("destination: empty path"),
            IsDirectory(p) => write!(f, "destination: {}: is a directory", p.display()),
            NotRegular(p) => write!(f, "destination: {}: not a regular file", p.display()),
            Resolve { path, source } => write!(f, "destination: {}: {}", path.display(), io_cause(source)),
            Directory { path, source } => {
                write!(f, "destination directory: {}: {}", path.display(), io_cause(source))
            }
            Create { dir, source } => write!(f, "create temporary file in: {}: {}", dir.display(), io_cause(source)),
            Write { path, source } => write!(f, "write: {}: {}", path.display(), io_cause(source)),
            Sync { path, source } => write!(f, "fsync: {}: {}", path.display(), io_cause(source)),
            Rename { path, source } => write!(f, "rename into place: {}: {}", path.display(), io_cause(source)),
            SyncDir { dir, source } => write!(f, "fsync directory: {}: {}", dir.display(), io_cause(source)),
            IsSource { dest, source_file, how } => write!(
                f,
                "destination: {}: is the source database {} ({how}); refusing to overwrite it",
                dest.display(),
                source_file.display()
            ),
            Exists(p) => write!(f, "destination: {}: already exists; never replaced", p.display()),
            ForeignSymlink { path, owner } => write!(
                f,
                "destination: {}: is a symlink owned by {}, not by the user running this; not followed",
                path.display(),
                platform::user_name(*owner)
            ),
            Changed(p) => {
                write!(f, "destination: {}: changed while it was being resolved; nothing was written", p.display())
            }
            Terminal => f.write_str("refusing to write binary data to a terminal"),
            Stdout(e) => write!(f, "standard output: {}", io_cause(e)),
        }
    }
}

impl std::error::Error for OutputError {}

impl Failure for OutputError {
    fn hint(&self) -> Option<Hint> {
        use OutputError::*;
        match self {
            Empty => Some("give a file name, or - for standard output".into()),
            IsDirectory(p) => Some(format!("name a file inside it, e.g. {}", p.join("memory.db.age").display()).into()),
            NotRegular(_) => Some(hint!["use ", Knob::Destination, " - to write to standard output"]),
            IsSource { .. } => Some(hint!["choose another ", Knob::Destination, " path"]),
            Create { source, .. } | Directory { source, .. } if source.raw_os_error() == Some(Errno::EACCES as i32) => {
                Some(hint!["check the directory's permissions, or choose another ", Knob::Destination])
            }
            Write { source, .. } if source.raw_os_error() == Some(Errno::ENOSPC as i32) => {
                Some("free some space; the previous backup, if any, is untouched".into())
            }
            Exists(_) => {
                Some("all ten names from this second on are taken: look at what else writes into the directory".into())
            }
            ForeignSymlink { .. } => Some(hint![
                "name the file it points to with ",
                Knob::Destination,
                ", or remove the link (only your own and root's links are followed)"
            ]),
            Directory { source, .. } if source.raw_os_error() == Some(Errno::ENOENT as i32) => {
                Some("create the directory first, or check the path".into())
            }
            Changed(_) => Some("something else is changing the directory: look at it, then retry".into()),
            Terminal => Some(hint![
                "pipe the output into a command, redirect it to a file, or use ",
                Knob::Destination,
                " FILE"
            ]),
            _ => None,
        }
    }

    fn stop(&self) -> Option<Stop> {
        match self {
            OutputError::Write { source, .. } => Stop::from_io(source),
            _ => None,
        }
    }

    /// An empty path or a terminal: the invocation itself is wrong.
    fn exit_code(&self) -> u8 {
        match self {
            OutputError::Empty | OutputError::Terminal | OutputError::Stdout(_) => 2,
            other => other.stop().map_or(1, |s| s.exit_code()),
        }
    }
}

/// Where the output goes. The directory is opened once, when the
/// destination is resolved, and every later step (the temporary, the
/// rename, the directory's fsync) is relative to that descriptor: a name
/// in the path swapped for a symlink afterwards changes nothing.
///
/// The symlink rule: a symlink at the name is followed only when the
/// running user owns it (root follows only root's own links), and writing
/// "through" it replaces the file it points to, leaving the link in place;
/// a link of anyone else is refused ([`OutputError::ForeignSymlink`]). A
/// directory, FIFO, socket or device at the final name is refused.
#[derive(Debug, Clone)]
pub struct Destination {
    /// What the user asked for.
    pub requested: PathBuf,
    /// The file that will be replaced: canonical directory + final name.
    pub path: PathBuf,
    pub dir: PathBuf,
    pub name: OsString,
    /// The directory, opened once.
    dir_fd: Arc<File>,
    /// For a new file ([`Destination::resolve_new`]): the names still to
    /// try, in order, when `name` is taken by the time of the rename.
    spare: Vec<OsString>,
}

impl Destination {
    pub fn resolve(requested: &Path) -> Result<Destination, OutputError> {
        if requested.as_os_str().is_empty() {
            return Err(OutputError::Empty);
        }
        let (parent, name) = split(requested)?;
        let (dir, dir_path) = open_dir(None, &parent)?;
        let (dir, dir_path, name, st) = follow_own_links(dir, dir_path, name, requested)?;
        let shown = dir_path.join(&name);
        match st.map(|st| st.st_mode & nix::libc::S_IFMT) {
            None | Some(nix::libc::S_IFREG) => Ok(Destination::at(requested, dir, dir_path, name, Vec::new())),
            Some(nix::libc::S_IFDIR) => Err(OutputError::IsDirectory(shown)),
            Some(_) => Err(OutputError::NotRegular(shown)),
        }
    }

    /// A new file in the directory `dir` under the first of `names` that is
    /// free, the others kept to try in order if it is taken by the time of
    /// the rename. Nothing at those names is ever followed or replaced.
    pub fn resolve_new(dir: &Path, names: Vec<OsString>) -> Result<Destination, OutputError> {
        let (fd, dir_path) = open_dir_own_links(dir)?;
        let mut names = names.into_iter();
        let first = names.next().ok_or(OutputError::Empty)?;
        let mut dest = Destination::at(&dir.join(&first), fd, dir_path, first, names.collect());
        while dest.taken() {
            if !dest.next_name() {
                return Err(OutputError::Exists(dest.path));
            }
        }
        Ok(dest)
    }

    /// The name `name` in a directory already open as `dir` (at `dir_path`),
    /// taken as it is: the caller has checked what is there.
    pub fn in_dir(dir: Arc<File>, dir_path: &Path, name: &OsStr) -> Destination {
        Destination {
            requested: dir_path.join(name),
            path: dir_path.join(name),
            dir: dir_path.to_path_buf(),
            name: name.to_os_string(),
            dir_fd: dir,
            spare: Vec::new(),
        }
    }

    fn at(requested: &Path, dir: File, dir_path: PathBuf, name: OsString, spare: Vec<OsString>) -> Destination {
        Destination {
            requested: requested.to_path_buf(),
            path: dir_path.join(&name),
            dir: dir_path,
            name,
            dir_fd: Arc::new(dir),
            spare,
        }
    }

    /// Something (anything: a file, a link, a FIFO) has the name.
    fn taken(&self) -> bool {
        !matches!(stat::fstatat(&*self.dir_fd, self.name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW), Err(Errno::ENOENT))
    }

    /// Moves on to the next spare name; false when there is none.
    fn next_name(&mut self) -> bool {
        if self.spare.is_empty() {
            return false;
        }
        self.name = self.spare.remove(0);
        self.path = self.dir.join(&self.name);
        true
    }

    /// The directory, as opened once.
    pub fn dir_file(&self) -> &File {
        &self.dir_fd
    }

    /// The file now at the name, for reading: only a regular file, never
    /// through a symlink (of anyone), never blocking on a FIFO.
    pub fn open_existing(&self) -> Option<File> {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
        let fd = fcntl::openat(&*self.dir_fd, self.name.as_os_str(), flags, Mode::empty()).ok()?;
        let regular = stat::fstat(&fd).is_ok_and(|st| st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFREG);
        regular.then(|| File::from(fd))
    }

    /// Refuses a destination that is, or would become, the database `db` or
    /// its `-wal`, `-shm` or `-journal` file: by path, through symlinks
    /// (already followed), or as a hard link. Needs nothing but the path, so
    /// that it can run before the source is read.
    pub fn refuse_source(&self, db: &Path) -> Result<(), OutputError> {
        let dest_meta = stat::fstatat(&*self.dir_fd, self.name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW).ok();
        for p in &protected_paths(db) {
            if same_path(&self.path, p) {
                let via_link = std::fs::symlink_metadata(&self.requested).is_ok_and(|m| m.file_type().is_symlink());
                return Err(self.is_source(p, if via_link { "through a symlink" } else { "same path" }));
            }
            if let (Some(d), Ok(m)) = (&dest_meta, std::fs::metadata(p)) {
                if platform::file_id(d) == (m.dev(), m.ino()) {
                    return Err(self.is_source(p, "same file: a hard link"));
                }
            }
        }
        Ok(())
    }

    fn is_source(&self, p: &Path, how: &'static str) -> OutputError {
        OutputError::IsSource { dest: self.requested.clone(), source_file: p.to_path_buf(), how }
    }
}

/// A path's directory (`.` when it has none) and final name.
/// Resolves `name` in `dir` the way every name a run writes is resolved:
/// a symlink is followed only when the running user or root owns it (root
/// follows only root's own links, wherever they are), each link's text read
/// relative to the directory that holds it, the owner checked on the link
/// whose text is read. Returns the directory and name at the end of the
/// links and what is there (`None`: nothing).
fn follow_own_links(
    mut dir: File,
    mut dir_path: PathBuf,
    mut name: OsString,
    requested: &Path,
) -> Result<(File, PathBuf, OsString, Option<stat::FileStat>), OutputError> {
    let me = platform::euid();
    for _ in 0..MAX_SYMLINKS {
        let shown = dir_path.join(&name);
        let st = match stat::fstatat(&dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok((dir, dir_path, name, None)),
            Err(e) => return Err(OutputError::Resolve { path: shown, source: e.into() }),
        };
        if st.st_mode & nix::libc::S_IFMT != nix::libc::S_IFLNK {
            return Ok((dir, dir_path, name, Some(st)));
        }
        if !trusted_link_owner(st.st_uid, me) {
            return Err(OutputError::ForeignSymlink { path: shown, owner: st.st_uid });
        }
        let target = fcntl::readlinkat(&dir, name.as_os_str())
            .map_err(|e| OutputError::Resolve { path: shown.clone(), source: e.into() })?;
        // The text read must be that of the link whose owner was checked.
        let again = stat::fstatat(&dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| OutputError::Resolve { path: shown.clone(), source: e.into() })?;
        if (again.st_dev, again.st_ino, again.st_uid) != (st.st_dev, st.st_ino, st.st_uid) {
            return Err(OutputError::Changed(shown));
        }
        let target = PathBuf::from(target);
        let (tparent, tname) = split(&target)?;
        (dir, dir_path) = match target.is_absolute() {
            true => open_dir(None, &tparent)?,
            false => open_dir(Some((&dir, &dir_path)), &tparent)?,
        };
        name = tname;
    }
    Err(OutputError::Resolve {
        path: requested.to_path_buf(),
        source: io::Error::from_raw_os_error(Errno::ELOOP as i32),
    })
}

/// The symlink rule: a link is followed when the running user (`me`) or
/// root owns it. Root's links are trusted by everyone: no one else can
/// plant them.
fn trusted_link_owner(owner: u32, me: u32) -> bool {
    owner == me || owner == 0
}

/// Whether an existing `path` is a directory to write new files into: a
/// directory, or a symlink to one that the symlink rule lets the run follow
/// (another user's link to a directory is not; written through, the output
/// then refuses it by name).
pub fn is_followable_directory(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            trusted_link_owner(m.uid(), platform::euid()) && std::fs::metadata(path).is_ok_and(|m| m.is_dir())
        }
        Ok(m) => m.is_dir(),
        Err(_) => false,
    }
}

/// Opens the directory `--to DIR/` names under the symlink rule of
/// [`follow_own_links`] for its last component (another user's link there,
/// even to a directory, is refused), then never follows anything: the
/// directory is opened `O_NOFOLLOW` relative to the one that holds it.
fn open_dir_own_links(path: &Path) -> Result<(File, PathBuf), OutputError> {
    let bytes = path.as_os_str().as_bytes();
    let trimmed =
        Path::new(OsStr::from_bytes(&bytes[..bytes.len() - bytes.iter().rev().take_while(|b| **b == b'/').count()]));
    let name = match trimmed.file_name() {
        Some(n) if !trimmed.as_os_str().is_empty() && !trimmed.ends_with("..") => n.to_os_string(),
        // "/", ".", "..": no name another user can plant.
        _ => return open_dir(None, path),
    };
    let parent = match trimmed.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (dir, dir_path) = open_dir(None, &parent)?;
    let (dir, dir_path, name, st) = follow_own_links(dir, dir_path, name, path)?;
    let shown = dir_path.join(&name);
    match st.map(|st| st.st_mode & nix::libc::S_IFMT) {
        Some(nix::libc::S_IFDIR) => {}
        None => {
            return Err(OutputError::Directory {
                path: shown,
                source: io::Error::from_raw_os_error(Errno::ENOENT as i32),
            })
        }
        Some(_) => {
            return Err(OutputError::Directory {
                path: shown,
                source: io::Error::from_raw_os_error(Errno::ENOTDIR as i32),
            })
        }
    }
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = fcntl::openat(&dir, name.as_os_str(), flags, Mode::empty())
        .map_err(|e| OutputError::Directory { path: shown.clone(), source: e.into() })?;
    let canonical = std::fs::canonicalize(&shown).unwrap_or(shown);
    Ok((File::from(fd), canonical))
}

fn split(p: &Path) -> Result<(PathBuf, OsString), OutputError> {
    let name = match p.file_name() {
        Some(n) if !p.as_os_str().as_bytes().ends_with(b"/") => n.to_os_string(),
        // "dir/", "dir/.." or "/": a directory by construction.
        _ => return Err(OutputError::IsDirectory(p.to_path_buf())),
    };
    let parent = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name))
}

/// Opens the directory `path` (relative to `from`, a directory opened
/// before and its canonical path, or to the working directory), and its
/// canonical path for messages.
fn open_dir(from: Option<(&File, &Path)>, path: &Path) -> Result<(File, PathBuf), OutputError> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let (fd, shown) = match from {
        Some((dir, dir_path)) => (fcntl::openat(dir, path, flags, Mode::empty()), dir_path.join(path)),
        None => (fcntl::open(path, flags, Mode::empty()), path.to_path_buf()),
    };
    let fd = fd.map_err(|e| OutputError::Directory { path: shown.clone(), source: e.into() })?;
    let canonical = std::fs::canonicalize(&shown).unwrap_or(shown);
    Ok((File::from(fd), canonical))
}

/// The files a destination must never be: the database, its `-wal`, `-shm`
/// and `-journal`, under the given (made absolute) and the canonical path.
fn protected_paths(path: &Path) -> Vec<PathBuf> {
    let mut bases = vec![std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())];
    if let Ok(c) = std::fs::canonicalize(path) {
        if c != bases[0] {
            bases.push(c);
        }
    }
    let mut out = Vec::new();
    for b in bases {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut s = b.clone().into_os_string();
            s.push(suffix);
            out.push(PathBuf::from(s));
        }
    }
    out
}

/// Equal after making both absolute with canonical directories.
fn same_path(a: &Path, b: &Path) -> bool {
    fn norm(p: &Path) -> Option<PathBuf> {
        let name = p.file_name()?;
        let parent = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        Some(std::fs::canonicalize(parent).ok()?.join(name))
    }
    a == b || matches!((norm(a), norm(b)), (Some(x), Some(y)) if x == y)
}

/// A file that appears at its destination complete and durable, or not at all.
pub struct AtomicFile {
    file: File,
    dir: Arc<File>,
    dest: Destination,
    /// `Some` for the named fallback temporary, which must be removed on failure.
    temp: Option<OsString>,
    committed: bool,
    /// Commit never replaces a name ([`AtomicFile::create_new`]): it takes
    /// the destination's next spare name, or fails.
    no_replace: bool,
    /// Bytes written so far, and up to where writeback has been started.
    written: u64,
    flushed_to: u64,
}

/// Writeback is started every this many bytes (see [`AtomicFile::write_all`]).
const WRITEBACK_WINDOW: u64 = 8 << 20;

impl AtomicFile {
    /// Creates the temporary in the destination's directory, locked, after
    /// removing the hidden temporaries killed runs left there. This is also
    /// the honest test that the directory is writable: call it before
    /// expensive work.
    pub fn create(dest: Destination) -> Result<AtomicFile, OutputError> {
        AtomicFile::create_as(dest, OFlag::O_WRONLY)
    }

    /// [`AtomicFile::create`], open for reading too: wm-restore checks
    /// the database it wrote through the very descriptor it wrote with.
    pub fn create_readable(dest: Destination) -> Result<AtomicFile, OutputError> {
        AtomicFile::create_as(dest, OFlag::O_RDWR)
    }

    fn create_as(dest: Destination, access: OFlag) -> Result<AtomicFile, OutputError> {
        let dir = Arc::clone(&dest.dir_fd);
        sweep_leftovers(&dir);
        let unnamed = platform::open_unnamed(dir.as_fd(), Path::new("."), access)
            .map_err(|e| OutputError::Create { dir: dest.dir.clone(), source: e })?;
        let (fd, temp) = match unnamed {
            Some(fd) => {
                // Locked before it has a name, so that it is never seen unlocked.
                try_lock(&fd);
                (fd, None)
            }
            // No unnamed files on this system or file system: a hidden named temporary.
            None => {
                let (fd, name) = create_named_temp(&dir, &dest, access)?;
                (fd, Some(name))
            }
        };
        let file = File::from(fd);
        let out = AtomicFile { file, dir, dest, temp, committed: false, no_replace: false, written: 0, flushed_to: 0 };
        // The umask may have taken bits away from 0600 (e.g. 0277); put them back.
        out.file
            .set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
            .map_err(|e| OutputError::Create { dir: out.dest.dir.clone(), source: e })?;
        Ok(out)
    }

    /// Like [`AtomicFile::create`], for a file that must not exist: it is
    /// refused now if its name is taken (by anything, a symlink included),
    /// and [`AtomicFile::commit`] never replaces a name that was taken
    /// since: it takes the destination's next spare name
    /// ([`Destination::resolve_new`]), or fails with [`OutputError::Exists`].
    pub fn create_new(dest: Destination) -> Result<AtomicFile, OutputError> {
        if dest.taken() {
            return Err(OutputError::Exists(dest.path));
        }
        let mut out = AtomicFile::create(dest)?;
        out.no_replace = true;
        Ok(out)
    }

    /// Sets the file's mode (the default is [`FILE_MODE`]), e.g. 0644 for a
    /// file that another user's process reads.
    pub fn set_mode(&self, mode: u32) -> Result<(), OutputError> {
        self.file
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| OutputError::Create { dir: self.dest.dir.clone(), source: e })
    }

    /// Whether the file has no name yet (`O_TMPFILE`), so that nobody
    /// else can open it; the named fallback temporary has one.
    pub fn is_unnamed(&self) -> bool {
        self.temp.is_none()
    }

    pub fn destination(&self) -> &Destination {
        &self.dest
    }

    /// The file being written (e.g. to lock it before it has its name).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// fsync the data: durable, not yet in place. [`AtomicFile::commit`]
    /// does this itself; call it first to [`AtomicFile::read_back`] what is on disk.
    pub fn sync(&mut self) -> Result<(), OutputError> {
        let path = self.dest.path.clone();
        platform::full_sync(&self.file).map_err(|e| OutputError::Sync { path, source: e })
    }

    /// A reader over everything written, from the first byte. After
    /// [`AtomicFile::sync`] the cached pages are dropped first where the
    /// system can (Linux: they are clean), so that the reads come from the
    /// device, not from memory.
    pub fn read_back(&self) -> Result<ReadBack, OutputError> {
        // The writer may be write-only: open the same inode again, for reading.
        let file = match &self.temp {
            Some(name) => fcntl::openat(
                &self.dir,
                name.as_os_str(),
                OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
                Mode::empty(),
            )
            .map(File::from)
            .map_err(io::Error::from),
            None => platform::reopen_read(&self.file),
        };
        let file = file.map_err(|e| OutputError::Sync { path: self.dest.path.clone(), source: e })?;
        platform::drop_cache(&file);
        Ok(ReadBack { file, pos: 0 })
    }

    /// fsync the data, put the file in place, fsync the directory. The lock
    /// taken at creation is held until after the rename (until drop).
    /// Returns the path the file now has.
    pub fn commit(mut self) -> Result<PathBuf, OutputError> {
        platform::full_sync(&self.file).map_err(|e| OutputError::Sync { path: self.dest.path.clone(), source: e })?;
        let temp = match self.temp.take() {
            Some(name) => name,
            None => self.link_unnamed()?,
        };
        // From here the temporary has a name: remove it if the rename fails.
        self.temp = Some(temp.clone());
        loop {
            let renamed = match self.no_replace {
                false => fcntl::renameat(&*self.dir, temp.as_os_str(), &*self.dir, self.dest.name.as_os_str()),
                true => platform::rename_noreplace(&self.dir, &temp, &self.dest.name),
            };
            match renamed {
                Ok(()) => break,
                Err(Errno::EEXIST) if self.no_replace && self.dest.next_name() => continue,
                Err(Errno::EEXIST) if self.no_replace => return Err(OutputError::Exists(self.dest.path.clone())),
                Err(e) => return Err(OutputError::Rename { path: self.dest.path.clone(), source: e.into() }),
            }
        }
        self.temp = None;
        self.committed = true;
        platform::full_sync(&self.dir).map_err(|e| OutputError::SyncDir { dir: self.dest.dir.clone(), source: e })?;
        Ok(self.dest.path.clone())
    }

    /// Gives the unnamed file a hidden name next to the destination.
    fn link_unnamed(&self) -> Result<OsString, OutputError> {
        for _ in 0..16 {
            let name = temp_name(&self.dest.name);
            match platform::link_unnamed(&self.file, &self.dir, name.as_os_str()) {
                Ok(()) => return Ok(name),
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(OutputError::Rename { path: self.dest.path.clone(), source: e.into() }),
            }
        }
        Err(OutputError::Rename {
            path: self.dest.path.clone(),
            source: io::Error::from_raw_os_error(Errno::EEXIST as i32),
        })
    }
}

/// A hidden temporary, created `O_EXCL`, locked, and still under its name.
fn create_named_temp(dir: &File, dest: &Destination, access: OFlag) -> Result<(OwnedFd, OsString), OutputError> {
    for _ in 0..16 {
        let name = temp_name(&dest.name);
        let fd = match fcntl::openat(
            dir,
            name.as_os_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | access | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            platform::private_mode(),
        ) {
            Ok(fd) => fd,
            Err(Errno::EEXIST) => continue,
            Err(e) => return Err(OutputError::Create { dir: dest.dir.clone(), source: e.into() }),
        };
        // Until it is locked, another run's sweep may take the new file for a
        // leftover and remove it: lock it, then check that the name is still
        // this file's. Lost to a sweep (removed, or being removed): another name.
        match try_lock(&fd) {
            Lock::Held | Lock::Unsupported if still_named(dir, &name, &fd) => return Ok((fd, name)),
            _ => continue,
        }
    }
    Err(OutputError::Create { dir: dest.dir.clone(), source: io::Error::from_raw_os_error(Errno::EEXIST as i32) })
}

/// Random hex digits in a temporary's name.
const TEMP_HEX: usize = 12;

/// `.NAME.<random>.tmp`: hidden, beside the destination, never a name a user picks.
fn temp_name(dest_name: &OsStr) -> OsString {
    let mut rnd = [0u8; TEMP_HEX / 2];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut rnd);
    let suffix: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
    let mut n = OsString::from(".");
    n.push(dest_name);
    n.push(format!(".{suffix}.tmp"));
    n
}

/// Exactly the names [`temp_name`] makes, for any destination name.
fn is_temp_name(name: &OsStr) -> bool {
    let Some(rest) = name.as_bytes().strip_prefix(b".").and_then(|r| r.strip_suffix(b".tmp")) else {
        return false;
    };
    let Some(split) = rest.len().checked_sub(TEMP_HEX + 1).filter(|&at| at > 0) else {
        return false;
    };
    let (hex, dot) = (&rest[split + 1..], rest[split]);
    dot == b'.' && hex.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// What an `flock` attempt found.
enum Lock {
    Held,
    /// Another open file description holds it: a live writer, or a sweep.
    Busy,
    /// The file system does not lock (some network file systems): then no
    /// sweep can lock either, and none removes anything.
    Unsupported,
}

/// An exclusive `flock`, without waiting. It belongs to the open file
/// description: held until the descriptor is closed, also on SIGKILL.
fn try_lock(fd: &impl AsRawFd) -> Lock {
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { nix::libc::flock(fd.as_raw_fd(), nix::libc::LOCK_EX | nix::libc::LOCK_NB) } == 0 {
            return Lock::Held;
        }
        match Errno::last() {
            Errno::EINTR => continue,
            Errno::EWOULDBLOCK => return Lock::Busy,
            _ => return Lock::Unsupported,
        }
    }
}

/// `name` in `dir` is still the file open as `fd` (not removed, not replaced).
fn still_named(dir: &File, name: &OsStr, fd: &impl AsFd) -> bool {
    match (stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW), stat::fstat(fd)) {
        (Ok(by_name), Ok(open)) => by_name.st_dev == open.st_dev && by_name.st_ino == open.st_ino,
        _ => false,
    }
}

/// Removes the hidden temporaries that killed runs left in `dir`: files named exactly as [`temp_name`] names them (for any
/// destination), regular, owned by us, and that nobody holds locked. A
/// writer holds its lock from creation until after its rename, so a live
/// temporary is never touched; the name is checked again once the lock is
/// ours, so that only the locked file is removed. Best effort: whatever
/// cannot be read, opened or locked is left alone.
fn sweep_leftovers(dir: &File) {
    let Ok(mut listing) =
        nix::dir::Dir::openat(dir, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
    else {
        return;
    };
    let me = platform::euid();
    let names: Vec<OsString> =
        listing.iter().flatten().map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string()).collect();
    for name in names {
        if !is_temp_name(&name) {
            continue;
        }
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let Ok(fd) = fcntl::openat(dir, name.as_os_str(), flags, Mode::empty()) else { continue };
        let ours =
            stat::fstat(&fd).is_ok_and(|st| st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFREG && st.st_uid == me);
        if ours && matches!(try_lock(&fd), Lock::Held) && still_named(dir, &name, &fd) {
            let _ = unistd::unlinkat(dir, name.as_os_str(), unistd::UnlinkatFlags::NoRemoveDir);
        }
    }
}

/// Reads an [`AtomicFile`] by position, leaving the writer's offset alone.
pub struct ReadBack {
    file: File,
    pos: u64,
}

impl io::Read for ReadBack {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    /// Also starts the disk writing early where the system can (Linux): left
    /// alone, the kernel keeps a backup of a gigabyte dirty in memory until
    /// the final fsync, which then waits for all of it; asking for writeback
    /// (`sync_file_range`, no wait) every 8 MiB overlaps the disk with the
    /// encryption instead. The fsync in [`AtomicFile::commit`] is what makes
    /// the file durable, as before.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)?;
        self.written += buf.len() as u64;
        if self.written - self.flushed_to >= WRITEBACK_WINDOW {
            platform::start_writeback(&self.file, self.flushed_to, self.written - self.flushed_to);
            self.flushed_to = self.written;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            if let Some(name) = self.temp.take() {
                let _ = unistd::unlinkat(&self.dir, name.as_os_str(), unistd::UnlinkatFlags::NoRemoveDir);
            }
        }
    }
}

/// Best effort: grows a pipe's buffer to 1 MiB where the system can (Linux;
/// the unprivileged maximum by default), so that the two halves of a
/// pipeline wake each other up 16 times less often than with the 64 KiB
/// default. Not a pipe, refused, or another system: nothing.
pub fn widen_pipe(fd: impl std::os::fd::AsFd) {
    platform::widen_pipe(fd.as_fd());
}

/// Where data goes: standard output, or a file that appears only when complete.
pub enum Sink {
    Stdout(CancelWrite<File>),
    File(AtomicFile),
}

impl Sink {
    /// `None` or `-`: standard output, refused when it is a terminal unless
    /// `terminal_ok` (ASCII armor). Otherwise an atomic file, never the
    /// database `source` nor one of its journals; creating it proves the
    /// directory writable before any real work starts.
    pub fn open(
        to: Option<&Path>,
        cancel: &Cancel,
        terminal_ok: bool,
        source: Option<&Path>,
    ) -> Result<Sink, OutputError> {
        match to {
            None => Sink::stdout(cancel, terminal_ok),
            Some(p) if p == Path::new("-") => Sink::stdout(cancel, terminal_ok),
            Some(p) => {
                let dest = Destination::resolve(p)?;
                if let Some(db) = source {
                    dest.refuse_source(db)?;
                }
                Ok(Sink::File(AtomicFile::create(dest)?))
            }
        }
    }

    /// A new atomic file in the directory `dir`, under the first of `names`
    /// that is free when it is put in place ([`Destination::resolve_new`]):
    /// nothing is ever replaced, nothing at those names followed. Never the
    /// database `source`.
    pub fn open_new(dir: &Path, names: Vec<OsString>, source: Option<&Path>) -> Result<Sink, OutputError> {
        let dest = Destination::resolve_new(dir, names)?;
        if let Some(db) = source {
            dest.refuse_source(db)?;
        }
        Ok(Sink::File(AtomicFile::create_new(dest)?))
    }

    fn stdout(cancel: &Cancel, terminal_ok: bool) -> Result<Sink, OutputError> {
        let out = io::stdout();
        if out.is_terminal() && !terminal_ok {
            return Err(OutputError::Terminal);
        }
        let fd = out.as_fd().try_clone_to_owned().map_err(OutputError::Stdout)?;
        widen_pipe(&fd);
        Ok(Sink::Stdout(CancelWrite::new(File::from(fd), cancel)))
    }

    /// Where the data goes, for messages: "standard output" or the file's path.
    pub fn target(&self) -> PathBuf {
        match self {
            Sink::Stdout(_) => PathBuf::from("standard output"),
            Sink::File(f) => f.destination().path.clone(),
        }
    }

    /// The atomic file, when the output is one.
    pub fn file_mut(&mut self) -> Option<&mut AtomicFile> {
        match self {
            Sink::File(f) => Some(f),
            Sink::Stdout(_) => None,
        }
    }

    /// Makes the output final: flush stdout, or fsync + rename + fsync dir.
    /// Returns where the data went, as [`Sink::target`] says it (a new file
    /// in a directory may have had to take a later name).
    pub fn commit(self) -> Result<PathBuf, OutputError> {
        match self {
            Sink::Stdout(mut w) => {
                w.flush().map_err(|source| OutputError::Write { path: PathBuf::from("standard output"), source })?;
                Ok(PathBuf::from("standard output"))
            }
            Sink::File(f) => f.commit(),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Stdout(w) => w.write(buf),
            Sink::File(f) => f.write(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout(w) => w.write_all(buf),
            Sink::File(f) => f.write_all(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout(w) => w.flush(),
            Sink::File(f) => f.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn commit_replaces_and_drop_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("out.age");
        std::fs::write(&dest, b"old").unwrap();
        let mut f = AtomicFile::create(Destination::resolve(&dest).unwrap()).unwrap();
        f.write_all(b"new").unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"old", "old content until commit");
        f.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"new");
        assert_eq!(std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777, 0o600);

        let mut f = AtomicFile::create(Destination::resolve(&dest).unwrap()).unwrap();
        f.write_all(b"abandoned").unwrap();
        drop(f);
        assert_eq!(std::fs::read(&dest).unwrap(), b"new");
        assert_eq!(listing(d.path()), vec!["out.age"]);
    }

    #[test]
    fn a_new_file_never_replaces_one_that_appeared_meanwhile() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("memory-20261202T063000Z.db.age");
        let mut f = AtomicFile::create_new(Destination::resolve(&dest).unwrap()).unwrap();
        f.write_all(b"second").unwrap();
        std::fs::write(&dest, b"first").unwrap();
        assert!(matches!(f.commit(), Err(OutputError::Exists(_))));
        assert_eq!(std::fs::read(&dest).unwrap(), b"first");
        assert_eq!(listing(d.path()), vec!["memory-20261202T063000Z.db.age"], "no temporary left");
        match AtomicFile::create_new(Destination::resolve(&dest).unwrap()) {
            Err(e @ OutputError::Exists(_)) => {
                assert!(e.to_string().ends_with("already exists; never replaced"), "{e}")
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        let fresh = d.path().join("memory-20261202T063001Z.db.age");
        let mut f = AtomicFile::create_new(Destination::resolve(&fresh).unwrap()).unwrap();
        f.write_all(b"third").unwrap();
        f.commit().unwrap();
        assert_eq!(std::fs::read(&fresh).unwrap(), b"third");
        assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn only_our_exact_temporary_names_are_candidates() {
        for yes in [".out.age.0123456789ab.tmp", ".x.ffffffffffff.tmp", ".a.b.c.000000000000.tmp"] {
            assert!(is_temp_name(OsStr::new(yes)), "{yes}");
        }
        assert!(is_temp_name(&temp_name(OsStr::new("memory.db.age"))), "what temp_name makes");
        for no in [
            "out.age.0123456789ab.tmp",
            "..0123456789ab.tmp",
            ".out.age.0123456789AB.tmp",
            ".out.age.0123456789a.tmp",
            ".out.age.0123456789abc.tmp",
            ".out.age-0123456789ab.tmp",
            ".out.age.0123456789ab.tmp.bak",
            ".out.age.0123456789ab.TMP",
            ".0123456789ab.tmp",
            "memory.db.age",
        ] {
            assert!(!is_temp_name(OsStr::new(no)), "{no}");
        }
    }

    #[test]
    fn a_sweep_removes_unheld_leftovers_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let dir = File::open(d.path()).unwrap();
        let leftovers = [".out.age.0123456789ab.tmp", ".other.db.age.00000000000f.tmp"];
        for name in leftovers {
            std::fs::write(d.path().join(name), b"ciphertext").unwrap();
        }
        let keep = ["out.age", ".out.age.0123456789ab.tmp.bak", ".out.age.XYZ.tmp", "notes.txt"];
        for name in keep {
            std::fs::write(d.path().join(name), b"user data").unwrap();
        }
        std::fs::create_dir(d.path().join(".dir.0123456789ab.tmp")).unwrap();
        symlink("notes.txt", d.path().join(".link.0123456789ab.tmp")).unwrap();
        sweep_leftovers(&dir);
        let mut want: Vec<String> = keep.iter().map(|s| s.to_string()).collect();
        want.extend([".dir.0123456789ab.tmp".to_string(), ".link.0123456789ab.tmp".to_string()]);
        want.sort();
        assert_eq!(listing(d.path()), want, "leftovers gone; directories, symlinks and other names untouched");
        assert_eq!(std::fs::read(d.path().join("notes.txt")).unwrap(), b"user data", "not through the symlink");
    }

    #[test]
    fn a_held_named_temporary_survives_a_sweep_until_its_writer_is_gone() {
        let d = tempfile::tempdir().unwrap();
        let dest = Destination::resolve(&d.path().join("out.age")).unwrap();
        let dir = File::open(d.path()).unwrap();
        let (fd, name) = create_named_temp(&dir, &dest, OFlag::O_WRONLY).unwrap();
        assert!(is_temp_name(&name));
        sweep_leftovers(&dir);
        assert!(d.path().join(&name).exists(), "its writer holds it: another run never removes it");
        // The writer is killed: the kernel closes its descriptors, the lock goes.
        drop(fd);
        sweep_leftovers(&dir);
        assert!(!d.path().join(&name).exists(), "left by a dead writer: the next run removes it");
    }

    #[test]
    fn a_temporary_that_gets_its_name_before_the_rename_is_held_all_along() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("out.age");
        let mut f = AtomicFile::create(Destination::resolve(&dest).unwrap()).unwrap();
        f.write_all(b"new").unwrap();
        // The window a SIGKILL can hit: named (linked, on Linux), not yet renamed.
        let name = match f.temp.clone() {
            Some(name) => name,
            None => f.link_unnamed().unwrap(),
        };
        let other = AtomicFile::create(Destination::resolve(&d.path().join("other.age")).unwrap()).unwrap();
        assert!(d.path().join(&name).exists(), "another run's sweep leaves a live temporary alone");
        drop(other);
        f.temp = Some(name.clone());
        f.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"new");
        assert_eq!(listing(d.path()), vec!["out.age"]);
    }

    #[test]
    fn symlinks_are_followed_even_dangling() {
        let d = tempfile::tempdir().unwrap();
        symlink("real.age", d.path().join("link.age")).unwrap();
        let dest = Destination::resolve(&d.path().join("link.age")).unwrap();
        assert_eq!(dest.name, "real.age");
        symlink("loop2", d.path().join("loop1")).unwrap();
        symlink("loop1", d.path().join("loop2")).unwrap();
        assert!(matches!(Destination::resolve(&d.path().join("loop1")), Err(OutputError::Resolve { .. })));
        assert!(matches!(Destination::resolve(d.path()), Err(OutputError::IsDirectory(_))));
        assert!(matches!(Destination::resolve(Path::new("")), Err(OutputError::Empty)));
        assert!(matches!(Destination::resolve(&d.path().join("nodir/x.age")), Err(OutputError::Directory { .. })));
    }

    #[test]
    fn a_new_file_takes_the_next_free_name_and_never_follows_a_planted_link() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let names: Vec<OsString> = ["a.age", "b.age", "c.age"].iter().map(OsString::from).collect();
        // Taken before the run: a dangling link to a file outside.
        symlink(outside.path().join("planted"), d.path().join("a.age")).unwrap();
        let mut f = AtomicFile::create_new(Destination::resolve_new(d.path(), names.clone()).unwrap()).unwrap();
        assert_eq!(f.destination().name, "b.age");
        f.write_all(b"one").unwrap();
        // Taken while it is written: a FIFO.
        nix::unistd::mkfifo(&d.path().join("b.age"), Mode::S_IRUSR | Mode::S_IWUSR).unwrap();
        assert_eq!(f.commit().unwrap(), d.path().canonicalize().unwrap().join("c.age"));
        assert_eq!(std::fs::read(d.path().join("c.age")).unwrap(), b"one");
        assert!(!outside.path().join("planted").exists(), "nothing created outside");
        match Destination::resolve_new(d.path(), names) {
            Err(OutputError::Exists(p)) => assert!(p.ends_with("c.age"), "{p:?}"),
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn only_the_running_users_own_symlinks_are_followed() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let link = d.path().join("out.age");
        symlink(outside.path().join("target.age"), &link).unwrap();
        assert_eq!(Destination::resolve(&link).unwrap().name, "target.age", "our own link is followed");
        if platform::euid() != 0 {
            return;
        }
        // A link of another user (as a user who can write the directory would plant it).
        let c = std::ffi::CString::new(link.as_os_str().as_bytes()).unwrap();
        // SAFETY: lchown on a path we made.
        assert_eq!(unsafe { nix::libc::lchown(c.as_ptr(), 65534, 65534) }, 0);
        match Destination::resolve(&link) {
            Err(e @ OutputError::ForeignSymlink { owner: 65534, .. }) => {
                assert!(e.to_string().contains("is a symlink owned by"), "{e}");
                assert!(e.to_string().contains("uid 65534"), "{e}");
            }
            other => panic!("{:?}", other.map(|d| d.path)),
        }
        let fifo = d.path().join("fifo.age");
        nix::unistd::mkfifo(&fifo, Mode::S_IRUSR | Mode::S_IWUSR).unwrap();
        assert!(matches!(Destination::resolve(&fifo), Err(OutputError::NotRegular(_))));
        assert!(!outside.path().join("target.age").exists());
    }

    #[test]
    fn protected_paths_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("memory.db");
        std::fs::write(&src, b"db").unwrap();
        std::fs::hard_link(&src, d.path().join("hard.age")).unwrap();
        symlink("memory.db-wal", d.path().join("dangling.age")).unwrap();
        for name in ["memory.db", "hard.age", "dangling.age", "./memory.db"] {
            let dest = Destination::resolve(&d.path().join(name)).unwrap();
            assert!(matches!(dest.refuse_source(&src), Err(OutputError::IsSource { .. })), "{name} must be refused");
        }
        let ok = Destination::resolve(&d.path().join("fine.age")).unwrap();
        ok.refuse_source(&src).unwrap();
    }
}
