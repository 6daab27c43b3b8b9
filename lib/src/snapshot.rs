//! Consistent point-in-time copies of a live SQLite database.
//!
//! [`Source::open`] checks the file before SQLite sees it (a plain open of a
//! missing path would create an empty database) and opens it read-only: it is
//! never created, written or checkpointed. [`Source::snapshot`] then writes a
//! complete database image to any `Write`:
//!
//! - `vacuum`: `VACUUM INTO` a spool (memory or an unnamed file), check that
//!   the image is complete, optionally `quick_check` it, then stream it out;
//! - `pages`: inside one read transaction, stream the pages in order from
//!   `sqlite_dbpage`. On a WAL source that goes straight to the output (WAL
//!   readers block nobody); on a rollback-journal source the pages are spooled
//!   first, so that a slow consumer never holds the lock that writers wait on.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{ffi, Connection, ErrorCode, OpenFlags};

use crate::error::{io_cause, Stop};
use crate::header::{DbHeader, HeaderError, HEADER_LEN};
use crate::progress::Progress;
use crate::signals::Cancel;
use crate::spool::{self, auto_kind, Memdb, PageSpool, Spool, SpoolKind, IO_CHUNK};
use crate::vfs::SpoolFile;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Vacuum,
    Pages,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolMode {
    Auto,
    Memory,
    Disk,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub method: Method,
    pub spool: SpoolMode,
    /// Directory for a disk spool; `None` means `$TMPDIR` or `/tmp`.
    pub tmpdir: Option<PathBuf>,
    /// Run `PRAGMA quick_check` on the snapshot before emitting it.
    pub check: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { method: Method::Vacuum, spool: SpoolMode::Auto, tmpdir: None, check: false }
    }
}

impl Options {
    /// The spool to use for a snapshot of about `estimate` bytes.
    fn spool_kind(&self, estimate: u64) -> SpoolKind {
        match self.spool {
            SpoolMode::Memory => SpoolKind::Memory,
            SpoolMode::Disk => SpoolKind::Disk,
            SpoolMode::Auto => auto_kind(estimate),
        }
    }

    /// Where a spool of `kind` lives, for messages: "memory" or the directory.
    fn spool_location(&self, kind: SpoolKind) -> PathBuf {
        match kind {
            SpoolKind::Memory => PathBuf::from("memory"),
            SpoolKind::Disk => Source::tmpdir(self),
        }
    }

    /// Fails now, not after a long snapshot, when the disk spool's directory
    /// is unusable: an explicit `--tmpdir` always, the default one when a disk
    /// spool is asked for. Creating (and dropping) an unnamed file there is
    /// the only honest test of "writable".
    pub fn validate(&self) -> Result<(), SnapshotError> {
        if self.tmpdir.is_none() && self.spool != SpoolMode::Disk {
            return Ok(());
        }
        let dir = Source::tmpdir(self);
        crate::vfs::unnamed_file(&dir).map(drop).map_err(|e| SnapshotError::Spool { dir, source: e })
    }
}

/// What a snapshot was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub bytes: u64,
    pub page_size: u32,
    pub pages: u64,
    /// Free-list pages carried along (only `pages` copies them; VACUUM drops them).
    pub free_pages: u32,
    pub method: Method,
    /// `None`: streamed straight from the source.
    pub spool: Option<SpoolKind>,
}

impl Report {
    /// "vacuum, memory spool" / "pages, streamed": how the image was made.
    pub fn how(&self) -> String {
        match self.spool {
            Some(k) => format!("{}, {k} spool", self.method),
            None => format!("{}, streamed", self.method),
        }
    }
}

#[derive(Debug)]
pub enum SnapshotError {
    Missing {
        path: PathBuf,
    },
    IsDirectory {
        path: PathBuf,
    },
    NotRegular {
        path: PathBuf,
    },
    Empty {
        path: PathBuf,
    },
    NotSqlite {
        path: PathBuf,
        why: HeaderError,
    },
    Unreadable {
        path: PathBuf,
        source: io::Error,
    },
    /// A writer held the database longer than the busy timeout.
    Locked {
        path: PathBuf,
        waited: Duration,
    },
    /// WAL database without its `-shm` in a directory we may not write.
    WalReadOnly {
        path: PathBuf,
    },
    /// A hot journal or a WAL that needs recovery, which a read-only open cannot do.
    NeedsRecovery {
        path: PathBuf,
    },
    Sqlite {
        what: &'static str,
        path: PathBuf,
        source: rusqlite::Error,
    },
    Spool {
        dir: PathBuf,
        source: io::Error,
    },
    SpoolFull {
        kind: SpoolKind,
        dir: PathBuf,
    },
    Incomplete {
        path: PathBuf,
        expected: u64,
        got: u64,
    },
    CheckFailed {
        path: PathBuf,
        detail: String,
    },
    /// Writing the snapshot out failed; the error says where.
    Output(io::Error),
    Stop(Stop),
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SnapshotError::*;
        match self {
            Missing { path } => write!(f, "open source: {}: no such file", path.display()),
            IsDirectory { path } => write!(f, "open source: {}: is a directory, not a database", path.display()),
            NotRegular { path } => write!(f, "open source: {}: not a regular file", path.display()),
            Empty { path } => write!(f, "open source: {}: empty file (0 bytes), not a SQLite database", path.display()),
            NotSqlite { path, why } => write!(f, "open source: {}: {why}", path.display()),
            Unreadable { path, source } => write!(f, "open source: {}: {}", path.display(), io_cause(source)),
            Locked { path, waited } => {
                write!(f, "snapshot: {}: database is locked (waited {} ms)", path.display(), waited.as_millis())
            }
            WalReadOnly { path } => write!(
                f,
                "open source: {}: WAL database without its -shm file, in a directory this user cannot write",
                path.display()
            ),
            NeedsRecovery { path } => write!(
                f,
                "open source: {}: needs recovery after an interrupted write, which a read-only reader cannot do",
                path.display()
            ),
            Sqlite { what, path, source } => write!(f, "{what}: {}: {}", path.display(), sqlite_cause(source)),
            Spool { dir, source } => write!(f, "spool: {}: {}", dir.display(), io_cause(source)),
            SpoolFull { kind: SpoolKind::Memory, .. } => {
                f.write_str("spool: memory: snapshot larger than the memory spool allows")
            }
            SpoolFull { kind: SpoolKind::Disk, dir } => write!(f, "spool: {}: no space left on device", dir.display()),
            Incomplete { path, expected, got } => write!(
                f,
                "snapshot: {}: incomplete image: {got} of {expected} bytes (page size x page count)",
                path.display()
            ),
            CheckFailed { path, detail } => {
                write!(f, "check snapshot: {}: quick_check failed: {detail}", path.display())
            }
            Output(e) => write!(f, "write snapshot: {}", io_cause(e)),
            Stop(s) => s.fmt(f),
        }
    }
}

impl std::error::Error for SnapshotError {}

impl SnapshotError {
    pub fn hint(&self) -> Option<String> {
        use SnapshotError::*;
        match self {
            Missing { .. } => Some("pass --db PATH or set MEMORY_DB_PATH to the workmem database".into()),
            IsDirectory { path } => {
                Some(format!("pass the database file, e.g. --db {}", path.join("memory.db").display()))
            }
            Empty { .. } | NotSqlite { .. } => {
                Some("check --db / MEMORY_DB_PATH: this is not the workmem database".into())
            }
            Unreadable { source, .. }
                if matches!(source.raw_os_error(), Some(nix::libc::EACCES | nix::libc::EPERM)) =>
            {
                Some("run as the database's owner, or fix its permissions".into())
            }
            Locked { .. } => Some("raise --busy-timeout, or retry when the writer is idle".into()),
            WalReadOnly { .. } => {
                Some("run as a user who can write the database's directory, or while the server is running".into())
            }
            NeedsRecovery { .. } => {
                Some("open the database once with the workmem server or sqlite3 to recover it, then retry".into())
            }
            SpoolFull { kind: SpoolKind::Memory, .. } => Some("use --spool disk".into()),
            SpoolFull { kind: SpoolKind::Disk, .. } => {
                Some("point --tmpdir at a file system with more room, or use --spool memory".into())
            }
            Spool { .. } => Some("check --tmpdir / TMPDIR".into()),
            CheckFailed { .. } => {
                Some("the source itself may be damaged: run sqlite3 on it with PRAGMA integrity_check".into())
            }
            _ => None,
        }
    }

    pub fn stop(&self) -> Option<Stop> {
        match self {
            SnapshotError::Stop(s) => Some(*s),
            SnapshotError::Output(e) => Stop::from_io(e),
            _ => None,
        }
    }
}

impl From<Stop> for SnapshotError {
    fn from(s: Stop) -> Self {
        SnapshotError::Stop(s)
    }
}

fn sqlite_cause(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqliteFailure(err, Some(msg)) if !msg.is_empty() => {
            if msg.contains(&err.to_string()) {
                msg.clone()
            } else {
                format!("{msg} ({err})")
            }
        }
        rusqlite::Error::SqliteFailure(err, _) => err.to_string(),
        other => other.to_string(),
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Vacuum => "vacuum",
            Method::Pages => "pages",
        })
    }
}

/// The files a destination must never be: the database, its `-wal`, `-shm`
/// and `-journal`, under the given (made absolute) and the canonical path.
/// Needs nothing but the path, so that it can run before the source is read.
pub fn protected_paths(path: &Path) -> Vec<PathBuf> {
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

/// A database opened for snapshots.
pub struct Source {
    path: PathBuf,
    conn: Connection,
    busy_timeout: Duration,
}

impl Source {
    /// Checks `path` and opens it read-only. Nothing is created anywhere
    /// when this fails.
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<Source, SnapshotError> {
        let path =
            std::path::absolute(path).map_err(|e| SnapshotError::Unreadable { path: path.to_path_buf(), source: e })?;
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(SnapshotError::Missing { path }),
            Err(e) => return Err(SnapshotError::Unreadable { path, source: e }),
        };
        if meta.is_dir() {
            return Err(SnapshotError::IsDirectory { path });
        }
        // A FIFO or device would block or never end: refuse before opening it.
        if !meta.is_file() {
            return Err(SnapshotError::NotRegular { path });
        }
        if meta.len() == 0 {
            return Err(SnapshotError::Empty { path });
        }
        let mut head = Vec::with_capacity(HEADER_LEN);
        File::open(&path)
            .and_then(|f| f.take(HEADER_LEN as u64).read_to_end(&mut head))
            .map_err(|e| SnapshotError::Unreadable { path: path.clone(), source: e })?;
        DbHeader::parse(&head).map_err(|why| SnapshotError::NotSqlite { path: path.clone(), why })?;

        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_error(&path, e, busy_timeout))?;
        conn.busy_timeout(busy_timeout).map_err(|e| open_error(&path, e, busy_timeout))?;
        // Reading the schema proves the file is a usable database now, not
        // after a full snapshot: a corrupt header, a lock, a WAL we cannot read.
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get::<_, i64>(0))
            .map_err(|e| open_error(&path, e, busy_timeout))?;
        Ok(Source { path, conn, busy_timeout })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one read transaction: what it reads is one state of the
    /// database, whatever writers do meanwhile.
    pub fn read<T>(
        &self,
        what: &'static str,
        cancel: &Cancel,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, SnapshotError> {
        let _watch = cancel.watch_sqlite(&self.conn);
        let txn = self.conn.unchecked_transaction().map_err(|e| self.sqlite_error(what, e))?;
        let out = f(&txn).map_err(|e| self.sqlite_error(what, e))?;
        txn.commit().map_err(|e| self.sqlite_error(what, e))?;
        Ok(out)
    }

    /// Page size × page count of the live database: what a snapshot weighs at most.
    pub fn size_estimate(&self) -> Result<u64, SnapshotError> {
        let (size, count): (i64, i64) = self
            .conn
            .query_row("SELECT page_size, page_count FROM pragma_page_size, pragma_page_count", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(|e| self.sqlite_error("read source", e))?;
        Ok(size.max(0) as u64 * count.max(0) as u64)
    }

    /// Takes a snapshot and writes the complete image to `out`.
    pub fn snapshot(
        &mut self,
        opts: &Options,
        cancel: &Cancel,
        progress: &Progress,
        out: &mut dyn Write,
    ) -> Result<Report, SnapshotError> {
        cancel.check()?;
        let _watch = cancel.watch_sqlite(&self.conn);
        let result = match opts.method {
            Method::Vacuum => self.vacuum(opts, cancel, progress, out),
            Method::Pages => self.pages(opts, cancel, progress, out),
        };
        // Whatever failed after a signal failed because of it (an interrupted
        // statement, a poked write): report the signal that came.
        match (result, cancel.fired()) {
            (Err(_), Some(sig)) => Err(SnapshotError::Stop(Stop::Interrupted(sig))),
            (r, _) => r,
        }
    }

    fn tmpdir(opts: &Options) -> PathBuf {
        opts.tmpdir.clone().unwrap_or_else(std::env::temp_dir)
    }

    fn vacuum(
        &mut self,
        opts: &Options,
        cancel: &Cancel,
        progress: &Progress,
        out: &mut dyn Write,
    ) -> Result<Report, SnapshotError> {
        let estimate = self.size_estimate()?;
        let tmpdir = Self::tmpdir(opts);
        let kind = opts.spool_kind(estimate);
        let location = opts.spool_location(kind);
        progress.phase("snapshot", Some(estimate));
        let spool = match kind {
            SpoolKind::Memory => {
                // Twice the estimate: a VACUUM never grows a database that much,
                // and memdb's default 1 GiB ceiling must not be what stops us.
                let limit = estimate.saturating_mul(2).max(1 << 30).saturating_add(64 << 20);
                let m = Memdb::create(limit).map_err(|e| self.sqlite_error("spool: memory", e))?;
                let probe = m.probe().map_err(|e| SnapshotError::Spool { dir: location.clone(), source: e })?;
                self.run_vacuum(m.uri().to_string(), probe, kind, &location, cancel, progress)?;
                Spool::Memdb(m)
            }
            SpoolKind::Disk => {
                let f =
                    SpoolFile::create(&tmpdir).map_err(|e| SnapshotError::Spool { dir: tmpdir.clone(), source: e })?;
                let probe =
                    spool::file_probe(&f).map_err(|e| SnapshotError::Spool { dir: tmpdir.clone(), source: e })?;
                self.run_vacuum(f.uri(), probe, kind, &location, cancel, progress)?;
                Spool::Vfs(f)
            }
        };
        let header = self.check_complete(&spool, &location)?;
        if opts.check {
            let conn = spool.open_connection().map_err(|e| self.sqlite_error("check snapshot", e))?;
            if let Some(c) = conn {
                quick_check(&c, &self.path)?;
            }
        }
        let bytes = emit(&spool, &location, cancel, progress, out)?;
        Ok(Report {
            bytes,
            page_size: header.page_size,
            pages: bytes / header.page_size as u64,
            free_pages: header.freelist_pages,
            method: Method::Vacuum,
            spool: Some(kind),
        })
    }

    fn run_vacuum(
        &mut self,
        target: String,
        probe: impl Fn() -> u64 + Send + 'static,
        kind: SpoolKind,
        location: &Path,
        cancel: &Cancel,
        progress: &Progress,
    ) -> Result<(), SnapshotError> {
        let (c, p) = (cancel.clone(), progress.clone());
        // Every few thousand VM steps: report the spool's size, and stop on a signal.
        self.conn
            .progress_handler(
                20_000,
                Some(move || {
                    p.set(probe());
                    c.fired().is_some()
                }),
            )
            .map_err(|e| self.sqlite_error("snapshot", e))?;
        let result = self.conn.execute("VACUUM INTO ?1", [target]);
        let _ = self.conn.progress_handler(0, None::<fn() -> bool>);
        cancel.check()?;
        match result {
            Ok(_) => Ok(()),
            Err(e) if error_code(&e) == Some(ErrorCode::DiskFull) => {
                Err(SnapshotError::SpoolFull { kind, dir: location.to_path_buf() })
            }
            // The source is read-only: whatever fails to be written is the spool.
            Err(e) if is_write_error(&e) => {
                // SAFETY: a valid connection handle; the call only reads its last errno.
                let errno = unsafe { ffi::sqlite3_system_errno(self.conn.handle()) };
                let source =
                    if errno != 0 { io::Error::from_raw_os_error(errno) } else { io::Error::other(sqlite_cause(&e)) };
                Err(SnapshotError::Spool { dir: location.to_path_buf(), source })
            }
            Err(e) => Err(self.sqlite_error("snapshot", e)),
        }
    }

    /// page size × page count of the spooled image must equal its length.
    fn check_complete(&self, spool: &Spool, location: &Path) -> Result<DbHeader, SnapshotError> {
        let spool_err = |e| SnapshotError::Spool { dir: location.to_path_buf(), source: e };
        let len = spool.size().map_err(spool_err)?;
        let mut head = [0u8; HEADER_LEN];
        if len < HEADER_LEN as u64 {
            return Err(SnapshotError::Incomplete { path: self.path.clone(), expected: HEADER_LEN as u64, got: len });
        }
        spool.read_exact_at(&mut head, 0).map_err(spool_err)?;
        let h = DbHeader::parse(&head).map_err(|_| SnapshotError::Incomplete {
            path: self.path.clone(),
            expected: HEADER_LEN as u64,
            got: 0,
        })?;
        match h.expected_len() {
            Some(expected) if expected == len => Ok(h),
            Some(expected) => Err(SnapshotError::Incomplete { path: self.path.clone(), expected, got: len }),
            None => Err(SnapshotError::Incomplete { path: self.path.clone(), expected: 0, got: len }),
        }
    }

    fn pages(
        &mut self,
        opts: &Options,
        cancel: &Cancel,
        progress: &Progress,
        out: &mut dyn Write,
    ) -> Result<Report, SnapshotError> {
        let txn = ReadTxn::begin(&self.conn).map_err(|e| self.sqlite_error("snapshot", e))?;
        // Inside the transaction: these describe exactly the image we stream.
        let (page_size, page_count, journal): (i64, i64, String) = self
            .conn
            .query_row(
                "SELECT page_size, page_count, journal_mode FROM pragma_page_size, pragma_page_count, pragma_journal_mode",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(|e| self.sqlite_error("snapshot", e))?;
        let (page_size, page_count) = (page_size as u32, page_count as u64);
        // A header that does not record the size (legacy writers) cannot tell a
        // truncated file from a whole one, and streamed pages are never walked
        // as VACUUM walks them: prove the structure first in that case.
        if opts.check || !self.header_vouches_for_size()? {
            quick_check(&self.conn, &self.path)?;
        }
        let total = page_size as u64 * page_count;
        let stream_direct = journal.eq_ignore_ascii_case("wal");
        let (free_pages, spool) = if stream_direct {
            progress.phase("output", Some(total));
            let free = self.stream_pages(page_size, page_count, cancel, progress, out, &SnapshotError::Output)?;
            drop(txn);
            (free, None)
        } else {
            let kind = opts.spool_kind(total);
            let location = opts.spool_location(kind);
            let spool_err = |source: io::Error| match source.raw_os_error() {
                Some(nix::libc::ENOSPC) => SnapshotError::SpoolFull { kind, dir: location.clone() },
                _ => SnapshotError::Spool { dir: location.clone(), source },
            };
            let mut pages = PageSpool::new(kind, &Self::tmpdir(opts)).map_err(spool_err)?;
            progress.phase("snapshot", Some(total));
            let free = self.stream_pages(page_size, page_count, cancel, progress, &mut pages, &spool_err)?;
            // Release the shared lock before anything slow happens downstream.
            drop(txn);
            let spool = Spool::Pages(pages);
            self.check_complete(&spool, &location)?;
            emit(&spool, &location, cancel, progress, out)?;
            (free, Some(kind))
        };
        Ok(Report { bytes: total, page_size, pages: page_count, free_pages, method: Method::Pages, spool })
    }

    /// Writes every page in order; returns the free-list length. Page 1 is
    /// fixed up if its header does not vouch for the database size (legacy
    /// writers), so that the image describes itself. `write_err` says what a
    /// failed write to `out` means (the output, or the spool).
    fn stream_pages(
        &self,
        page_size: u32,
        page_count: u64,
        cancel: &Cancel,
        progress: &Progress,
        out: &mut dyn Write,
        write_err: &dyn Fn(io::Error) -> SnapshotError,
    ) -> Result<u32, SnapshotError> {
        let mut stmt = self
            .conn
            .prepare("SELECT pgno, data FROM sqlite_dbpage('main') ORDER BY pgno")
            .map_err(|e| self.sqlite_error("snapshot", e))?;
        let mut rows = stmt.query([]).map_err(|e| self.sqlite_error("snapshot", e))?;
        let mut expect: u64 = 1;
        let mut free_pages = 0;
        let mut pending = 0u64;
        while let Some(row) = rows.next().map_err(|e| self.sqlite_error("snapshot", e))? {
            let pgno: i64 = row.get(0).map_err(|e| self.sqlite_error("snapshot", e))?;
            let data = row.get_ref(1).and_then(|v| Ok(v.as_blob()?)).map_err(|e| self.sqlite_error("snapshot", e))?;
            if pgno as u64 != expect || data.len() != page_size as usize {
                return Err(SnapshotError::Incomplete {
                    path: self.path.clone(),
                    expected: page_count * page_size as u64,
                    got: (expect - 1) * page_size as u64,
                });
            }
            if pgno == 1 {
                let mut first = data.to_vec();
                let h =
                    DbHeader::parse(&first).map_err(|why| SnapshotError::NotSqlite { path: self.path.clone(), why })?;
                free_pages = h.freelist_pages;
                if h.page_count != Some(page_count as u32) {
                    vouch_for_size(&mut first, page_count as u32);
                }
                out.write_all(&first).map_err(write_err)?;
            } else {
                out.write_all(data).map_err(write_err)?;
            }
            expect += 1;
            pending += page_size as u64;
            if pending >= IO_CHUNK as u64 {
                progress.add(pending);
                pending = 0;
                cancel.check()?;
            }
        }
        progress.add(pending);
        cancel.check()?;
        if expect - 1 != page_count {
            return Err(SnapshotError::Incomplete {
                path: self.path.clone(),
                expected: page_count * page_size as u64,
                got: (expect - 1) * page_size as u64,
            });
        }
        Ok(free_pages)
    }

    /// Whether page 1, as this read transaction sees it, records the database size.
    fn header_vouches_for_size(&self) -> Result<bool, SnapshotError> {
        let page1: Vec<u8> = self
            .conn
            .query_row("SELECT data FROM sqlite_dbpage('main') WHERE pgno = 1", [], |r| r.get(0))
            .map_err(|e| self.sqlite_error("snapshot", e))?;
        let h = DbHeader::parse(&page1).map_err(|why| SnapshotError::NotSqlite { path: self.path.clone(), why })?;
        Ok(h.page_count.is_some())
    }

    fn sqlite_error(&self, what: &'static str, e: rusqlite::Error) -> SnapshotError {
        map_sqlite(&self.path, what, e, self.busy_timeout)
    }
}

/// Sets the in-header database size (offset 28) and marks it valid by
/// copying the change counter (24) into version-valid-for (92).
fn vouch_for_size(page1: &mut [u8], pages: u32) {
    page1[28..32].copy_from_slice(&pages.to_be_bytes());
    let counter = [page1[24], page1[25], page1[26], page1[27]];
    page1[92..96].copy_from_slice(&counter);
}

fn emit(
    spool: &Spool,
    location: &Path,
    cancel: &Cancel,
    progress: &Progress,
    out: &mut dyn Write,
) -> Result<u64, SnapshotError> {
    let spool_err = |e| SnapshotError::Spool { dir: location.to_path_buf(), source: e };
    let len = spool.size().map_err(spool_err)?;
    progress.phase("output", Some(len));
    let mut buf = spool::try_buffer(IO_CHUNK).map_err(spool_err)?;
    let mut off = 0u64;
    while off < len {
        cancel.check()?;
        let n = (len - off).min(IO_CHUNK as u64) as usize;
        spool.read_exact_at(&mut buf[..n], off).map_err(spool_err)?;
        out.write_all(&buf[..n]).map_err(SnapshotError::Output)?;
        off += n as u64;
        progress.add(n as u64);
    }
    Ok(len)
}

fn quick_check(conn: &Connection, path: &Path) -> Result<(), SnapshotError> {
    let mut stmt =
        conn.prepare("PRAGMA quick_check(5)").map_err(|e| map_sqlite(path, "check snapshot", e, Duration::ZERO))?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| map_sqlite(path, "check snapshot", e, Duration::ZERO))?;
    if lines.len() == 1 && lines[0] == "ok" {
        Ok(())
    } else {
        // quick_check's lines carry newlines of their own; a report is one line.
        let detail = lines.join("; ").split_whitespace().collect::<Vec<_>>().join(" ");
        Err(SnapshotError::CheckFailed { path: path.to_path_buf(), detail })
    }
}

/// A deferred read transaction, ended on drop.
struct ReadTxn<'a>(&'a Connection);

impl<'a> ReadTxn<'a> {
    fn begin(conn: &'a Connection) -> rusqlite::Result<Self> {
        conn.execute_batch("BEGIN DEFERRED")?;
        Ok(ReadTxn(conn))
    }
}

impl Drop for ReadTxn<'_> {
    fn drop(&mut self) {
        let _ = self.0.execute_batch("ROLLBACK");
    }
}

fn is_write_error(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(err, _) if matches!(
        err.extended_code,
        ffi::SQLITE_IOERR_WRITE | ffi::SQLITE_IOERR_TRUNCATE | ffi::SQLITE_IOERR_FSYNC | ffi::SQLITE_IOERR_DIR_FSYNC
    ))
}

fn error_code(e: &rusqlite::Error) -> Option<ErrorCode> {
    match e {
        rusqlite::Error::SqliteFailure(err, _) => Some(err.code),
        _ => None,
    }
}

fn open_error(path: &Path, e: rusqlite::Error, busy_timeout: Duration) -> SnapshotError {
    map_sqlite(path, "open source", e, busy_timeout)
}

fn map_sqlite(path: &Path, what: &'static str, e: rusqlite::Error, busy_timeout: Duration) -> SnapshotError {
    let path = path.to_path_buf();
    if let rusqlite::Error::SqliteFailure(err, _) = &e {
        match (err.code, err.extended_code) {
            (_, ffi::SQLITE_READONLY_CANTINIT) => return SnapshotError::WalReadOnly { path },
            (_, ffi::SQLITE_READONLY_ROLLBACK | ffi::SQLITE_READONLY_RECOVERY) => {
                return SnapshotError::NeedsRecovery { path }
            }
            (ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked, _) => {
                return SnapshotError::Locked { path, waited: busy_timeout }
            }
            (ErrorCode::OperationInterrupted, _) => {
                // Only a signal interrupts us; `Source::snapshot` swaps in the
                // signal that actually came.
                return SnapshotError::Stop(Stop::Interrupted(nix::libc::SIGINT));
            }
            (ErrorCode::NotADatabase, _) => {
                return SnapshotError::NotSqlite { path, why: HeaderError::NotSqlite };
            }
            (ErrorCode::CannotOpen | ErrorCode::PermissionDenied, _) => {
                let source = io::Error::last_os_error();
                if source.raw_os_error().is_some_and(|c| c != 0) {
                    return SnapshotError::Unreadable { path, source };
                }
            }
            _ => {}
        }
    }
    SnapshotError::Sqlite { what, path, source: e }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make_db(dir: &Path, wal: bool) -> PathBuf {
        let p = dir.join("src.db");
        let c = Connection::open(&p).unwrap();
        if wal {
            c.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(())).unwrap();
        }
        c.execute_batch(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<500)
             INSERT INTO t(b) SELECT randomblob(300) FROM n;
             DELETE FROM t WHERE id % 3 = 0;",
        )
        .unwrap();
        p
    }

    fn snap(path: &Path, opts: Options) -> (Vec<u8>, Report) {
        let mut src = Source::open(path, Duration::from_secs(1)).unwrap();
        let mut out = Vec::new();
        let r = src.snapshot(&opts, &Cancel::manual().unwrap(), &Progress::disabled(), &mut out).unwrap();
        (out, r)
    }

    fn rows_in(image: &[u8]) -> i64 {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.db");
        std::fs::write(&p, image).unwrap();
        let c = Connection::open(&p).unwrap();
        let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(ok, "ok");
        c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn every_method_and_spool_gives_a_complete_database() {
        for wal in [true, false] {
            let d = tempfile::tempdir().unwrap();
            let p = make_db(d.path(), wal);
            for method in [Method::Vacuum, Method::Pages] {
                for spool in [SpoolMode::Memory, SpoolMode::Disk, SpoolMode::Auto] {
                    let spool_dir = tempfile::tempdir().unwrap();
                    let opts = Options { method, spool, tmpdir: Some(spool_dir.path().into()), check: true };
                    let (image, report) = snap(&p, opts);
                    assert_eq!(image.len() as u64, report.bytes);
                    assert_eq!(rows_in(&image), 334, "wal={wal} {method:?} {spool:?}");
                    assert_eq!(std::fs::read_dir(spool_dir.path()).unwrap().count(), 0);
                    if method == Method::Pages && wal {
                        assert_eq!(report.spool, None, "WAL pages stream without a spool");
                    }
                }
            }
        }
    }

    #[test]
    fn refuses_bad_sources_without_creating_anything() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("missing.db");
        assert!(matches!(Source::open(&missing, Duration::ZERO), Err(SnapshotError::Missing { .. })));
        assert!(!missing.exists());
        assert!(matches!(Source::open(d.path(), Duration::ZERO), Err(SnapshotError::IsDirectory { .. })));
        let empty = d.path().join("empty.db");
        std::fs::write(&empty, b"").unwrap();
        assert!(matches!(Source::open(&empty, Duration::ZERO), Err(SnapshotError::Empty { .. })));
        let text = d.path().join("text.db");
        std::fs::write(&text, b"hello world, not sqlite").unwrap();
        assert!(matches!(Source::open(&text, Duration::ZERO), Err(SnapshotError::NotSqlite { .. })));
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "only the two files the test made: {names:?}");
    }

    #[test]
    fn page_one_gets_a_valid_size_when_the_header_lacks_one() {
        let mut page = vec![0u8; 512];
        page[..16].copy_from_slice(crate::header::MAGIC);
        page[16..18].copy_from_slice(&512u16.to_be_bytes());
        page[24..28].copy_from_slice(&9u32.to_be_bytes());
        vouch_for_size(&mut page, 42);
        assert_eq!(DbHeader::parse(&page).unwrap().page_count, Some(42));
    }
}
