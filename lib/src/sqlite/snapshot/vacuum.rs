//! `VACUUM INTO` a spool, check the image, then stream it out.

use std::io::{self, Write};
use std::path::Path;

use rusqlite::{ffi, ErrorCode};

use super::{check_complete, emit, quick_check, spool_for, Method, Options, Report, SnapshotError};
use crate::run::Run;
use crate::spool::image::{file_probe, Spool};
use crate::spool::memdb::Memdb;
use crate::spool::vfs::SpoolFile;
use crate::spool::SpoolKind;
use crate::sqlite::source::{sqlite_cause, Source};

pub(super) fn snapshot(
    source: &mut Source,
    opts: &Options,
    run: &Run,
    out: &mut dyn Write,
) -> Result<Report, SnapshotError> {
    let estimate = source.size_estimate()?;
    let (kind, location) = spool_for(opts, estimate);
    run.progress.phase("snapshot", Some(estimate));
    let spool = match kind {
        SpoolKind::Memory => {
            // Twice the estimate: a VACUUM never grows a database that much,
            // and memdb's default 1 GiB ceiling must not be what stops us.
            let limit = estimate.saturating_mul(2).max(1 << 30).saturating_add(64 << 20);
            let m = Memdb::create(limit).map_err(|e| source.error("spool: memory", e))?;
            let probe = m.probe().map_err(|e| SnapshotError::Spool { dir: location.clone(), source: e })?;
            run_vacuum(source, m.uri().to_string(), probe, kind, &location, run)?;
            Spool::Memdb(m)
        }
        SpoolKind::Disk => {
            let spool_err = |e| SnapshotError::Spool { dir: location.clone(), source: e };
            let f = SpoolFile::create(&location).map_err(spool_err)?;
            let probe = file_probe(&f).map_err(spool_err)?;
            run_vacuum(source, f.uri(), probe, kind, &location, run)?;
            Spool::Vfs(f)
        }
    };
    let header = check_complete(source, &spool, &location)?;
    if opts.check {
        let conn = spool.open_connection().map_err(|e| source.error("check snapshot", e))?;
        if let Some(c) = conn {
            quick_check(&c, source.path())?;
        }
    }
    let bytes = emit(&spool, &location, source_is_wal(source)?, run, out)?;
    Ok(Report {
        bytes,
        page_size: header.page_size,
        pages: bytes / header.page_size as u64,
        free_pages: header.freelist_pages,
        method: Method::Vacuum,
        spool: Some(kind),
        forget: None,
    })
}

fn run_vacuum(
    source: &mut Source,
    target: String,
    probe: impl Fn() -> u64 + Send + 'static,
    kind: SpoolKind,
    location: &Path,
    run: &Run,
) -> Result<(), SnapshotError> {
    let (c, p) = (run.cancel.clone(), run.progress.clone());
    // Every few thousand VM steps: report the spool's size, and stop on a signal.
    source
        .connection_mut()
        .progress_handler(
            20_000,
            Some(move || {
                p.set(probe());
                c.fired().is_some()
            }),
        )
        .map_err(|e| source.error("snapshot", e))?;
    let result = source.connection().execute("VACUUM INTO ?1", [target]);
    let _ = source.connection_mut().progress_handler(0, None::<fn() -> bool>);
    run.check()?;
    match result {
        Ok(_) => Ok(()),
        Err(e) if error_code(&e) == Some(ErrorCode::DiskFull) => {
            Err(SnapshotError::SpoolFull { kind, dir: location.to_path_buf() })
        }
        // The source is read-only: whatever fails to be written is the spool.
        Err(e) if is_write_error(&e) => {
            // SAFETY: a valid connection handle; the call only reads its last errno.
            let errno = unsafe { ffi::sqlite3_system_errno(source.connection().handle()) };
            let cause =
                if errno != 0 { io::Error::from_raw_os_error(errno) } else { io::Error::other(sqlite_cause(&e)) };
            Err(SnapshotError::Spool { dir: location.to_path_buf(), source: cause })
        }
        Err(e) => Err(source.error("snapshot", e).into()),
    }
}

/// Whether the source is in WAL mode (its header's bytes 18/19 are 2/2).
fn source_is_wal(source: &Source) -> Result<bool, SnapshotError> {
    let mode: String = source
        .connection()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(|e| source.error("read source", e))?;
    Ok(mode.eq_ignore_ascii_case("wal"))
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
