//! The memory spool of `VACUUM INTO`: a memdb database held open so that a
//! `VACUUM INTO` from another connection lands in it and stays there, read
//! back in place through its file handle (`sqlite3_serialize` would copy it:
//! twice the memory).

use std::ffi::{c_int, c_void};
use std::io;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{ffi, Connection, OpenFlags};

/// A memdb database held open so that a `VACUUM INTO` from another
/// connection lands in it and stays there.
pub struct Memdb {
    holder: Connection,
    uri: String,
}

impl Memdb {
    /// `limit` raises memdb's 1 GiB default ceiling (SQLITE_FCNTL_SIZE_LIMIT),
    /// never beyond [`super::MAX_ONE_ALLOCATION`].
    pub fn create(limit: u64) -> rusqlite::Result<Memdb> {
        static N: AtomicU64 = AtomicU64::new(0);
        let uri = format!("file:/wm-mem-{}-{}?vfs=memdb", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let holder = Connection::open_with_flags(
            &uri,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_URI,
        )?;
        // memdb grows by doubling up to the limit, in one allocation each
        // time: a limit above SQLite's largest allocation would make the
        // growth past 1 GiB fail, where it could still have reached 2 GiB.
        let mut lim: i64 = limit.min(super::MAX_ONE_ALLOCATION) as i64;
        // SAFETY: a valid connection; the argument is the i64 this opcode expects.
        let rc = unsafe {
            ffi::sqlite3_file_control(
                holder.handle(),
                c"main".as_ptr(),
                ffi::SQLITE_FCNTL_SIZE_LIMIT,
                (&mut lim as *mut i64).cast(),
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(rusqlite::Error::SqliteFailure(ffi::Error::new(rc), Some("memdb size limit".into())));
        }
        Ok(Memdb { holder, uri })
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    pub fn connection(&self) -> &Connection {
        &self.holder
    }

    /// The memdb file handle; valid while the holder is open.
    pub(crate) fn file(&self) -> io::Result<MemdbFile> {
        let mut p: *mut ffi::sqlite3_file = ptr::null_mut();
        // SAFETY: FILE_POINTER writes a sqlite3_file* into the pointer we pass.
        let rc = unsafe {
            ffi::sqlite3_file_control(
                self.holder.handle(),
                c"main".as_ptr(),
                ffi::SQLITE_FCNTL_FILE_POINTER,
                (&mut p as *mut *mut ffi::sqlite3_file).cast(),
            )
        };
        // SAFETY: p is checked for NULL before its methods are looked at.
        if rc != ffi::SQLITE_OK || p.is_null() || unsafe { (*p).pMethods.is_null() } {
            return Err(io::Error::other("memdb spool has no open file"));
        }
        Ok(MemdbFile(p))
    }

    /// A size probe usable from SQLite's progress callback.
    pub fn probe(&self) -> io::Result<impl Fn() -> u64 + Send + 'static> {
        let f = self.file()?;
        Ok(move || f.size().unwrap_or(0))
    }
}

/// A raw memdb file pointer. Only dereferenced on the thread that owns the
/// holder connection (a progress callback runs on that thread too); memdb
/// serialises access to a named store with its own mutex besides.
#[derive(Clone, Copy)]
pub(crate) struct MemdbFile(*mut ffi::sqlite3_file);
// SAFETY: see the type's comment; the pointer is never used concurrently.
unsafe impl Send for MemdbFile {}

impl MemdbFile {
    pub(crate) fn size(&self) -> io::Result<u64> {
        let mut sz: ffi::sqlite3_int64 = 0;
        // SAFETY: the file is open (holder alive) and xFileSize is set for memdb.
        let rc = unsafe {
            match (*(*self.0).pMethods).xFileSize {
                Some(f) => f(self.0, &mut sz),
                None => ffi::SQLITE_ERROR,
            }
        };
        if rc == ffi::SQLITE_OK {
            Ok(sz as u64)
        } else {
            Err(io::Error::other(format!("memdb spool: size: SQLite error {rc}")))
        }
    }

    pub(crate) fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        // SAFETY: reads into a buffer of exactly buf.len() bytes.
        let rc = unsafe {
            match (*(*self.0).pMethods).xRead {
                Some(f) => f(self.0, buf.as_mut_ptr().cast::<c_void>(), buf.len() as c_int, off as ffi::sqlite3_int64),
                None => ffi::SQLITE_ERROR,
            }
        };
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(io::Error::other(format!("memdb spool: read: SQLite error {rc}")))
        }
    }
}
