//! Consistent point-in-time copies of a live SQLite database, written as a
//! complete database image to any `Write`:
//!
//! - [`vacuum`]: `VACUUM INTO` a spool (memory or an unnamed file), check that
//!   the image is complete, optionally `quick_check` it, then stream it out;
//! - [`pages`]: inside one read transaction, stream the pages in order from
//!   `sqlite_dbpage`. On a WAL source that goes straight to the output (WAL
//!   readers block nobody); on a rollback-journal source the pages are spooled
//!   first, so that a slow consumer never holds the lock that writers wait on.

mod pages;
pub mod scrub;
mod vacuum;

pub use scrub::Stats as ForgetStats;

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

use crate::run::Run;
use crate::spool::image::Spool;
use crate::spool::{Place, SpoolKind, IO_CHUNK};
use crate::sqlite::header::{DbHeader, HEADER_LEN};
use crate::sqlite::source::{map_sqlite, Source, SourceError};
use crate::stop::{hint, io_cause, Failure, Hint, Knob, Stop};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    #[default]
    Vacuum,
    Pages,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Vacuum => "vacuum",
            Method::Pages => "pages",
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub method: Method,
    pub spool: Place,
    /// Run `PRAGMA quick_check` on the snapshot before emitting it.
    pub check: bool,
}

impl Options {
    /// Fails now, not after a long snapshot, when the disk spool's directory is unusable.
    pub fn validate(&self) -> Result<(), SnapshotError> {
        self.spool.validate().map_err(|u| SnapshotError::Spool { dir: u.dir, source: u.source })
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
    /// What the page stream zeroed (`None` for VACUUM, which copies live rows only).
    pub forget: Option<ForgetStats>,
}

impl Report {
    /// A warning when the page stream could not forget everything dead: it
    /// copied free space as it is (reserved bytes, a damaged free list), or
    /// dead overflow tails went out before their owner was read.
    pub fn forget_warning(&self) -> Option<String> {
        let f = self.forget?;
        if let Some(why) = f.off {
            return Some(format!(
                "free space copied as it is ({why}): deleted rows may be in this snapshot; --method vacuum leaves them out"
            ));
        }
        (f.tails_copied > 0).then(|| {
            format!(
                "{} overflow page tails copied as they are (their owners came later): deleted bytes may be in this snapshot; --method vacuum leaves them out",
                f.tails_copied
            )
        })
    }

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
    /// Reading the source failed (a lock, a damaged database, …).
    Source(SourceError),
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
    /// Writing the snapshot out failed; the caller knows what the output is.
    Output(io::Error),
    Stop(Stop),
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SnapshotError::*;
        match self {
            Source(e) => e.fmt(f),
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

impl Failure for SnapshotError {
    fn hint(&self) -> Option<Hint> {
        use SnapshotError::*;
        match self {
            Source(e) => e.hint(),
            SpoolFull { kind: SpoolKind::Memory, .. } => Some(hint!["use ", Knob::SpoolDisk]),
            SpoolFull { kind: SpoolKind::Disk, .. } => {
                Some(hint!["point ", Knob::Tmpdir, " at a file system with more room, or use ", Knob::SpoolMemory])
            }
            Spool { .. } => Some(hint!["check ", Knob::Tmpdir, " / TMPDIR"]),
            CheckFailed { .. } => {
                Some("the source itself may be damaged: run sqlite3 on it with PRAGMA integrity_check".into())
            }
            _ => None,
        }
    }

    fn stop(&self) -> Option<Stop> {
        match self {
            SnapshotError::Stop(s) => Some(*s),
            SnapshotError::Source(e) => e.stop(),
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

impl From<SourceError> for SnapshotError {
    fn from(e: SourceError) -> Self {
        SnapshotError::Source(e)
    }
}

/// Takes a snapshot of `source` and writes the complete image to `out`.
pub fn snapshot(source: &mut Source, opts: &Options, run: &Run, out: &mut dyn Write) -> Result<Report, SnapshotError> {
    run.check()?;
    let _watch = run.cancel.watch_sqlite(source.connection());
    let result = match opts.method {
        Method::Vacuum => vacuum::snapshot(source, opts, run, out),
        Method::Pages => pages::snapshot(source, opts, run, out),
    };
    // Whatever failed after a signal failed because of it (an interrupted
    // statement, a poked write): report the signal that came.
    match (result, run.stopped()) {
        (Err(_), Some(stop)) => Err(SnapshotError::Stop(stop)),
        (r, _) => r,
    }
}

/// page size × page count of the spooled image must equal its length.
fn check_complete(source: &Source, spool: &Spool, location: &Path) -> Result<DbHeader, SnapshotError> {
    let spool_err = |e| SnapshotError::Spool { dir: location.to_path_buf(), source: e };
    let path = source.path().to_path_buf();
    let len = spool.size().map_err(spool_err)?;
    let mut head = [0u8; HEADER_LEN];
    if len < HEADER_LEN as u64 {
        return Err(SnapshotError::Incomplete { path, expected: HEADER_LEN as u64, got: len });
    }
    spool.read_exact_at(&mut head, 0).map_err(spool_err)?;
    let h = DbHeader::parse(&head).map_err(|_| SnapshotError::Incomplete {
        path: path.clone(),
        expected: HEADER_LEN as u64,
        got: 0,
    })?;
    match h.expected_len() {
        Some(expected) if expected == len => Ok(h),
        Some(expected) => Err(SnapshotError::Incomplete { path, expected, got: len }),
        None => Err(SnapshotError::Incomplete { path, expected: 0, got: len }),
    }
}

/// Writes a finished spool to `out`. `wal`: the source is in WAL mode, and
/// the image says so in header bytes 18/19 (2/2), whatever wrote the spool
/// (`VACUUM INTO` writes 1/1), so that a plain decrypt comes back in WAL.
fn emit(spool: &Spool, location: &Path, wal: bool, run: &Run, out: &mut dyn Write) -> Result<u64, SnapshotError> {
    let spool_err = |e| SnapshotError::Spool { dir: location.to_path_buf(), source: e };
    let len = spool.size().map_err(spool_err)?;
    run.progress.phase("output", Some(len));
    let mut buf = crate::buffer::try_buffer(IO_CHUNK).map_err(spool_err)?;
    let mut off = 0u64;
    while off < len {
        run.check()?;
        let n = (len - off).min(IO_CHUNK as u64) as usize;
        spool.read_exact_at(&mut buf[..n], off).map_err(spool_err)?;
        if off == 0 && wal && n >= HEADER_LEN {
            buf[18..20].copy_from_slice(&[2, 2]);
        }
        out.write_all(&buf[..n]).map_err(SnapshotError::Output)?;
        off += n as u64;
        run.progress.add(n as u64);
    }
    Ok(len)
}

fn quick_check(conn: &Connection, path: &Path) -> Result<(), SnapshotError> {
    let err = |e| SnapshotError::Source(map_sqlite(path, "check snapshot", e, Duration::ZERO));
    let mut stmt = conn.prepare("PRAGMA quick_check(5)").map_err(err)?;
    let lines: Vec<String> =
        stmt.query_map([], |r| r.get::<_, String>(0)).and_then(|rows| rows.collect()).map_err(err)?;
    if lines.len() == 1 && lines[0] == "ok" {
        Ok(())
    } else {
        // quick_check's lines carry newlines of their own; a report is one line.
        let detail = lines.join("; ").split_whitespace().collect::<Vec<_>>().join(" ");
        Err(SnapshotError::CheckFailed { path: path.to_path_buf(), detail })
    }
}

/// The spool, and where it lives for messages, that a snapshot of about `estimate` bytes uses.
fn spool_for(opts: &Options, estimate: u64) -> (SpoolKind, PathBuf) {
    let kind = opts.spool.choose(Some(estimate));
    (kind, opts.spool.location(kind))
}

/// A spool write failed: out of room, or another I/O error.
fn spool_failure(kind: SpoolKind, location: &Path, source: io::Error) -> SnapshotError {
    match source.raw_os_error() {
        Some(nix::libc::ENOSPC) => SnapshotError::SpoolFull { kind, dir: location.to_path_buf() },
        _ => SnapshotError::Spool { dir: location.to_path_buf(), source },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::SpoolMode;
    use crate::stop::Knob;

    pub(super) fn make_db(dir: &Path, wal: bool) -> PathBuf {
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
        let mut src = Source::open(path, Duration::from_secs(1), Knob::Database).unwrap();
        let mut out = Vec::new();
        let r = snapshot(&mut src, &opts, &Run::manual().unwrap(), &mut out).unwrap();
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
                for mode in [SpoolMode::Memory, SpoolMode::Disk, SpoolMode::Auto] {
                    let spool_dir = tempfile::tempdir().unwrap();
                    let spool = Place { mode, tmpdir: Some(spool_dir.path().into()) };
                    let opts = Options { method, spool, check: true };
                    let (image, report) = snap(&p, opts);
                    assert_eq!(image.len() as u64, report.bytes);
                    assert_eq!(rows_in(&image), 334, "wal={wal} {method:?} {mode:?}");
                    assert_eq!(std::fs::read_dir(spool_dir.path()).unwrap().count(), 0);
                    if method == Method::Pages && wal {
                        assert_eq!(report.spool, None, "WAL pages stream without a spool");
                    }
                }
            }
        }
    }
}
