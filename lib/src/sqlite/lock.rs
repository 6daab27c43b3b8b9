//! SQLite's file locks, seen and taken from outside SQLite: is anyone using
//! this database, and keep everyone out while we replace it.
//!
//! SQLite's unix VFS locks byte ranges with `fcntl`: on the database file,
//! the PENDING byte at 1 GiB, the RESERVED byte after it and the 510-byte
//! SHARED range after that; on a WAL database's `-shm`, the eight WAL lock
//! bytes at 120 and the "dead man switch" byte at 128, which every open
//! connection holds shared for as long as it is open, idle or not.
//!
//! Holding SQLite's EXCLUSIVE lock on a database file keeps every new
//! connection out before it touches the `-wal`, `-shm` or `-journal` (it
//! needs a SHARED lock first); holding the DMS byte exclusively says no one
//! has the WAL index open. We take them as open-file-description locks where
//! the system has them (Linux), so that they conflict with SQLite's own
//! locks in this process as well as in others, and are not dropped when some
//! other descriptor onto the same file is closed; elsewhere as classic
//! `fcntl` locks, which is why every read of a locked file goes through the
//! descriptor that holds the lock.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// SQLite's lock bytes on a database file (unix VFS, `os_unix.c`).
const PENDING_BYTE: i64 = 0x4000_0000;
/// PENDING, RESERVED and the SHARED range: all of SQLite's EXCLUSIVE lock.
const DB_LOCK_LEN: i64 = 2 + 510;
/// The WAL index's lock bytes (`UNIX_SHM_BASE`) and the DMS byte after them.
const SHM_LOCK_START: i64 = 120;
const SHM_LOCK_LEN: i64 = 9;

/// An exclusive lock held on one file until dropped (or the process ends).
pub struct Held {
    file: File,
    start: i64,
    len: i64,
}

impl Held {
    /// The locked file, for reading: on systems without OFD locks, closing
    /// another descriptor onto it would drop the lock.
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = set(&self.file, nix::libc::F_UNLCK as _, self.start, self.len);
    }
}

/// Why a lock could not be taken.
#[derive(Debug)]
pub enum LockError {
    /// Someone else holds a conflicting lock: the database is in use.
    Busy,
    Io(io::Error),
}

/// Takes SQLite's EXCLUSIVE lock on the database file `file` (opened for
/// reading and writing), without waiting.
pub fn database(file: File) -> Result<Held, LockError> {
    take(file, PENDING_BYTE, DB_LOCK_LEN)
}

/// Takes the WAL index's lock bytes and DMS byte on a `-shm` file (opened
/// for reading and writing), without waiting: `Busy` when any connection
/// has the WAL index open.
pub fn wal_index(file: File) -> Result<Held, LockError> {
    take(file, SHM_LOCK_START, SHM_LOCK_LEN)
}

fn take(file: File, start: i64, len: i64) -> Result<Held, LockError> {
    match set(&file, nix::libc::F_WRLCK as _, start, len) {
        Ok(()) => Ok(Held { file, start, len }),
        Err(e) if matches!(e.raw_os_error(), Some(nix::libc::EAGAIN | nix::libc::EACCES)) => Err(LockError::Busy),
        Err(e) => Err(LockError::Io(e)),
    }
}

fn set(file: &File, kind: i16, start: i64, len: i64) -> io::Result<()> {
    // SAFETY: an all-zero flock is a valid value to fill in.
    let mut fl: nix::libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as _;
    fl.l_whence = nix::libc::SEEK_SET as _;
    fl.l_start = start as _;
    fl.l_len = len as _;
    fl.l_pid = 0;
    // SAFETY: a plain fcntl on our own descriptor with a valid flock.
    let rc = unsafe { nix::libc::fcntl(file.as_raw_fd(), crate::platform::SETLK, &fl) };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Within one process only open-file-description locks conflict with
/// SQLite's own. The classic locks of the portable paths see other
/// processes only, which the wm-restore integration tests show.
#[cfg(all(test, target_os = "linux", not(feature = "portable")))]
mod tests {
    use super::*;
    use rusqlite::Connection;

    fn rw(p: &std::path::Path) -> File {
        std::fs::OpenOptions::new().read(true).write(true).open(p).unwrap()
    }

    #[test]
    fn an_idle_wal_connection_is_seen_and_a_held_lock_keeps_new_ones_out() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("m.db");
        let c = Connection::open(&db).unwrap();
        c.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(())).unwrap();
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);").unwrap();
        let shm = d.path().join("m.db-shm");
        assert!(matches!(wal_index(rw(&shm)), Err(LockError::Busy)), "an idle connection holds the DMS byte");
        drop(c);
        // After a clean close the -shm is gone; make a crashed-writer-like state again.
        let c = Connection::open(&db).unwrap();
        c.execute_batch("SELECT * FROM t").unwrap();
        drop(c);
        let held = database(rw(&db)).unwrap();
        let other = Connection::open(&db).unwrap();
        other.busy_timeout(std::time::Duration::ZERO).unwrap();
        let e = other.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)).unwrap_err();
        assert!(e.to_string().contains("locked"), "a new connection is kept out: {e}");
        drop(held);
        assert_eq!(other.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)).unwrap(), 1);
    }
}
