//! A live database opened for reading only.
//!
//! [`Source::open`] checks the file before SQLite sees it (a plain open of a
//! missing path would create an empty database) and opens it read-only: it is
//! never created, written or checkpointed. [`Source::read`] runs work inside
//! one read transaction, so that what it reads is one state of the database
//! whatever writers do meanwhile.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{ffi, Connection, ErrorCode, OpenFlags};

use crate::report::SourceInfo;
use crate::signals::Cancel;
use crate::sqlite::header::{DbHeader, HeaderError, HEADER_LEN};
use crate::stop::{hint, io_cause, Failure, Hint, Knob, Stop};

#[derive(Debug)]
pub enum SourceError {
    Missing {
        path: PathBuf,
        /// What named the path, for the remedy: the database setting, or
        /// the live database a backup is compared with.
        named_by: Knob,
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
    Stop(Stop),
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SourceError::*;
        match self {
            Missing { path, .. } => write!(f, "open source: {}: no such file", path.display()),
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
                "open source: {}: WAL database without its -shm file (is the server stopped?), in a directory \
                 this user cannot write (attempt to write a readonly database)",
                path.display()
            ),
            NeedsRecovery { path } => write!(
                f,
                "open source: {}: needs recovery after an interrupted write, which a read-only reader cannot do",
                path.display()
            ),
            Sqlite { what, path, source } => write!(f, "{what}: {}: {}", path.display(), sqlite_cause(source)),
            Stop(s) => s.fmt(f),
        }
    }
}

impl std::error::Error for SourceError {}

impl Failure for SourceError {
    fn hint(&self) -> Option<Hint> {
        use SourceError::*;
        match self {
            Missing { named_by: Knob::Database, .. } => {
                Some(hint!["pass ", Knob::Database, " PATH or set MEMORY_DB_PATH to the workmem database"])
            }
            Missing { named_by, .. } => Some(hint!["check the ", *named_by, " path"]),
            IsDirectory { path } => Some(hint![
                "pass the database file, e.g. ",
                Knob::Database,
                format!(" {}", path.join("memory.db").display())
            ]),
            Empty { .. } | NotSqlite { .. } => {
                Some(hint!["check ", Knob::Database, " / MEMORY_DB_PATH: this is not the workmem database"])
            }
            Unreadable { source, .. }
                if matches!(source.raw_os_error(), Some(nix::libc::EACCES | nix::libc::EPERM)) =>
            {
                Some("run as the database's owner, or fix its permissions".into())
            }
            Locked { .. } => Some(hint!["raise ", Knob::BusyTimeout, ", or retry when the writer is idle"]),
            WalReadOnly { .. } => Some(
                "SQLite must create the -shm file beside a WAL database that no server holds open: run the backup \
                 as the database's owner (User= in a systemd unit), or while the server runs, or let this user \
                 write the directory"
                    .into(),
            ),
            NeedsRecovery { .. } => {
                Some("open the database once with the workmem server or sqlite3 to recover it, then retry".into())
            }
            _ => None,
        }
    }

    fn stop(&self) -> Option<Stop> {
        match self {
            SourceError::Stop(s) => Some(*s),
            _ => None,
        }
    }
}

/// A database opened for reading.
pub struct Source {
    path: PathBuf,
    conn: Connection,
    busy_timeout: Duration,
}

impl Source {
    /// Checks `path` (named by `named_by`, for the remedy of a missing file)
    /// and opens it read-only. Nothing is created anywhere when this fails.
    pub fn open(path: &Path, busy_timeout: Duration, named_by: Knob) -> Result<Source, SourceError> {
        let path =
            std::path::absolute(path).map_err(|e| SourceError::Unreadable { path: path.to_path_buf(), source: e })?;
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(SourceError::Missing { path, named_by }),
            Err(e) => return Err(SourceError::Unreadable { path, source: e }),
        };
        if meta.is_dir() {
            return Err(SourceError::IsDirectory { path });
        }
        // A FIFO or device would block or never end: refuse before opening it.
        if !meta.is_file() {
            return Err(SourceError::NotRegular { path });
        }
        if meta.len() == 0 {
            return Err(SourceError::Empty { path });
        }
        let mut head = Vec::with_capacity(HEADER_LEN);
        File::open(&path)
            .and_then(|f| f.take(HEADER_LEN as u64).read_to_end(&mut head))
            .map_err(|e| SourceError::Unreadable { path: path.clone(), source: e })?;
        DbHeader::parse(&head).map_err(|why| SourceError::NotSqlite { path: path.clone(), why })?;

        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| map_sqlite(&path, "open source", e, busy_timeout))?;
        conn.busy_timeout(busy_timeout).map_err(|e| map_sqlite(&path, "open source", e, busy_timeout))?;
        // Reading the schema proves the file is a usable database now, not
        // after a full snapshot: a corrupt header, a lock, a WAL we cannot read.
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get::<_, i64>(0))
            .map_err(|e| map_sqlite(&path, "open source", e, busy_timeout))?;
        Ok(Source { path, conn, busy_timeout })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Runs `f` in one read transaction: what it reads is one state of the
    /// database, whatever writers do meanwhile.
    pub fn read<T>(
        &self,
        what: &'static str,
        cancel: &Cancel,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, SourceError> {
        let _watch = cancel.watch_sqlite(&self.conn);
        let txn = self.conn.unchecked_transaction().map_err(|e| self.error(what, e))?;
        let out = f(&txn).map_err(|e| self.error(what, e))?;
        txn.commit().map_err(|e| self.error(what, e))?;
        Ok(out)
    }

    /// Page size × page count of the live database: what a snapshot weighs at most.
    pub fn size_estimate(&self) -> Result<u64, SourceError> {
        let (size, count): (i64, i64) = self
            .conn
            .query_row("SELECT page_size, page_count FROM pragma_page_size, pragma_page_count", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(|e| self.error("read source", e))?;
        Ok(size.max(0) as u64 * count.max(0) as u64)
    }

    /// The path, page size, page count and journal mode, as they are now:
    /// for reports. The mode is "wal" or "rollback": which rollback journal
    /// writers use (delete, truncate, persist) is theirs to choose per
    /// connection.
    pub fn info(&self) -> Result<SourceInfo, SourceError> {
        let (size, count, mode): (i64, i64, String) = self
            .conn
            .query_row(
                "SELECT page_size, page_count, journal_mode FROM pragma_page_size, pragma_page_count, pragma_journal_mode",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(|e| self.error("read source", e))?;
        Ok(SourceInfo {
            path: self.path().display().to_string(),
            page_size: size.max(0) as u64,
            page_count: count.max(0) as u64,
            journal_mode: if mode.eq_ignore_ascii_case("wal") { "wal" } else { "rollback" }.into(),
        })
    }

    pub(crate) fn connection_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// This database's first page is not a SQLite header after all.
    pub fn not_sqlite(&self, why: HeaderError) -> SourceError {
        SourceError::NotSqlite { path: self.path.clone(), why }
    }

    /// A SQLite failure while doing `what` with this database, worded.
    pub fn error(&self, what: &'static str, e: rusqlite::Error) -> SourceError {
        map_sqlite(&self.path, what, e, self.busy_timeout)
    }
}

/// A deferred read transaction, ended on drop.
pub struct ReadTxn<'a>(&'a Connection);

impl<'a> ReadTxn<'a> {
    pub fn begin(conn: &'a Connection) -> rusqlite::Result<Self> {
        conn.execute_batch("BEGIN DEFERRED")?;
        Ok(ReadTxn(conn))
    }
}

impl Drop for ReadTxn<'_> {
    fn drop(&mut self) {
        let _ = self.0.execute_batch("ROLLBACK");
    }
}

/// SQLite's own words for a failure, without repeating its code.
pub fn sqlite_cause(e: &rusqlite::Error) -> String {
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

/// A SQLite failure on the database at `path`, worded by what it means here.
pub fn map_sqlite(path: &Path, what: &'static str, e: rusqlite::Error, busy_timeout: Duration) -> SourceError {
    let path = path.to_path_buf();
    if let rusqlite::Error::SqliteFailure(err, _) = &e {
        match (err.code, err.extended_code) {
            (_, ffi::SQLITE_READONLY_CANTINIT | ffi::SQLITE_READONLY_DIRECTORY) => {
                return SourceError::WalReadOnly { path }
            }
            (_, ffi::SQLITE_READONLY_ROLLBACK | ffi::SQLITE_READONLY_RECOVERY) => {
                return SourceError::NeedsRecovery { path }
            }
            (ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked, _) => {
                return SourceError::Locked { path, waited: busy_timeout }
            }
            (ErrorCode::OperationInterrupted, _) => {
                // Only a signal interrupts us; the caller swaps in the signal
                // that actually came.
                return SourceError::Stop(Stop::Interrupted(nix::libc::SIGINT));
            }
            (ErrorCode::NotADatabase, _) => {
                return SourceError::NotSqlite { path, why: HeaderError::NotSqlite };
            }
            (ErrorCode::CannotOpen | ErrorCode::PermissionDenied, _) => {
                let source = io::Error::last_os_error();
                if source.raw_os_error().is_some_and(|c| c != 0) {
                    return SourceError::Unreadable { path, source };
                }
            }
            _ => {}
        }
    }
    SourceError::Sqlite { what, path, source: e }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_sources_without_creating_anything() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("missing.db");
        let open = |p: &Path| Source::open(p, Duration::ZERO, Knob::Database);
        assert!(matches!(open(&missing), Err(SourceError::Missing { .. })));
        assert!(!missing.exists());
        assert!(matches!(open(d.path()), Err(SourceError::IsDirectory { .. })));
        let empty = d.path().join("empty.db");
        std::fs::write(&empty, b"").unwrap();
        assert!(matches!(open(&empty), Err(SourceError::Empty { .. })));
        let text = d.path().join("text.db");
        std::fs::write(&text, b"hello world, not sqlite").unwrap();
        assert!(matches!(open(&text), Err(SourceError::NotSqlite { .. })));
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "only the two files the test made: {names:?}");
    }
}
