//! Where a snapshot waits between being taken and being written out.
//!
//! - memory, for `VACUUM INTO`: SQLite's `memdb` VFS, kept alive by a
//!   "holder" connection and read back in place through its file handle
//!   (`sqlite3_serialize` would copy it: twice the memory);
//! - disk, for `VACUUM INTO`: an unnamed file through the `wmspool` VFS;
//! - memory or disk, for a page stream that must not hold its read lock while
//!   a slow consumer drains it: plain buffers, or an unnamed file.
//!
//! No spool ever has a name in a directory, so none can outlive the process.

use std::ffi::{c_int, c_void};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rusqlite::{ffi, Connection, OpenFlags};

use crate::vfs::{self, SpoolFile};

/// Reads of the spool and writes to the output go in pieces this big.
pub const IO_CHUNK: usize = 1 << 20;
/// Head-room on top of the database size before we call memory "comfortable".
const MEMORY_MARGIN: u64 = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolKind {
    Memory,
    Disk,
}

impl std::fmt::Display for SpoolKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SpoolKind::Memory => "memory",
            SpoolKind::Disk => "disk",
        })
    }
}

/// A zeroed buffer of `len` bytes, or "out of memory" as an error rather
/// than the abort an infallible allocation would be.
pub fn try_buffer(len: usize) -> io::Result<Vec<u8>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
    v.resize(len, 0);
    Ok(v)
}

/// `auto`: memory when the snapshot fits comfortably (its size plus 64 MiB
/// within half of `MemAvailable`), else disk. Unknown memory means disk.
pub fn auto_kind(estimate: u64) -> SpoolKind {
    match mem_available() {
        Some(avail) if estimate.saturating_add(MEMORY_MARGIN) <= avail / 2 => SpoolKind::Memory,
        _ => SpoolKind::Disk,
    }
}

fn mem_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A memdb database held open so that a `VACUUM INTO` from another
/// connection lands in it and stays there.
pub struct Memdb {
    holder: Connection,
    uri: String,
}

impl Memdb {
    /// `limit` raises memdb's 1 GiB default ceiling (SQLITE_FCNTL_SIZE_LIMIT).
    pub fn create(limit: u64) -> rusqlite::Result<Memdb> {
        static N: AtomicU64 = AtomicU64::new(0);
        let uri = format!("file:/wm-mem-{}-{}?vfs=memdb", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let holder = Connection::open_with_flags(
            &uri,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_URI,
        )?;
        let mut lim: i64 = limit.min(i64::MAX as u64) as i64;
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
    fn file(&self) -> io::Result<MemdbFile> {
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
struct MemdbFile(*mut ffi::sqlite3_file);
// SAFETY: see the type's comment; the pointer is never used concurrently.
unsafe impl Send for MemdbFile {}

impl MemdbFile {
    fn size(&self) -> io::Result<u64> {
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

    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
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

/// A page image collected in memory (1 MiB buffers) or in an unnamed file.
pub enum PageSpool {
    Memory { chunks: Vec<Vec<u8>>, len: u64 },
    Disk { file: File, len: u64 },
}

impl PageSpool {
    pub fn new(kind: SpoolKind, tmpdir: &Path) -> io::Result<PageSpool> {
        Ok(match kind {
            SpoolKind::Memory => PageSpool::Memory { chunks: Vec::new(), len: 0 },
            SpoolKind::Disk => PageSpool::Disk { file: vfs::unnamed_file(tmpdir)?, len: 0 },
        })
    }
}

impl Write for PageSpool {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            PageSpool::Memory { chunks, len } => {
                let mut rest = buf;
                while !rest.is_empty() {
                    if chunks.last().is_none_or(|c| c.len() == c.capacity()) {
                        let mut chunk = Vec::new();
                        chunk.try_reserve_exact(IO_CHUNK).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
                        chunks.push(chunk);
                    }
                    let last = chunks.last_mut().expect("pushed above");
                    let n = rest.len().min(last.capacity() - last.len());
                    last.extend_from_slice(&rest[..n]);
                    rest = &rest[n..];
                }
                *len += buf.len() as u64;
                Ok(buf.len())
            }
            PageSpool::Disk { file, len } => {
                file.write_all_at(buf, *len)?;
                *len += buf.len() as u64;
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Any finished spool, ready to be read back.
pub enum Spool {
    Memdb(Memdb),
    Vfs(SpoolFile),
    Pages(PageSpool),
}

impl Spool {
    pub fn size(&self) -> io::Result<u64> {
        match self {
            Spool::Memdb(m) => m.file()?.size(),
            Spool::Vfs(f) => f.size(),
            Spool::Pages(PageSpool::Memory { len, .. } | PageSpool::Disk { len, .. }) => Ok(*len),
        }
    }

    /// Fills `buf` from `off`; the caller stays within [`Spool::size`].
    pub fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        match self {
            Spool::Memdb(m) => m.file()?.read_at(buf, off),
            Spool::Vfs(f) => f.file().read_exact_at(buf, off),
            Spool::Pages(PageSpool::Disk { file, .. }) => file.read_exact_at(buf, off),
            Spool::Pages(PageSpool::Memory { chunks, .. }) => {
                let mut done = 0;
                while done < buf.len() {
                    let pos = off as usize + done;
                    let chunk =
                        chunks.get(pos / IO_CHUNK).ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
                    let within = pos % IO_CHUNK;
                    let n = (buf.len() - done).min(chunk.len().saturating_sub(within));
                    if n == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    buf[done..done + n].copy_from_slice(&chunk[within..within + n]);
                    done += n;
                }
                Ok(())
            }
        }
    }

    /// A read-only connection onto a `VACUUM INTO` spool, for `quick_check`.
    pub fn open_connection(&self) -> rusqlite::Result<Option<SpoolConnection<'_>>> {
        match self {
            Spool::Memdb(m) => Ok(Some(SpoolConnection::Borrowed(m.connection()))),
            Spool::Vfs(f) => {
                let c = Connection::open_with_flags(
                    f.uri(),
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                Ok(Some(SpoolConnection::Owned(c)))
            }
            Spool::Pages(_) => Ok(None),
        }
    }
}

pub enum SpoolConnection<'a> {
    Borrowed(&'a Connection),
    Owned(Connection),
}

impl std::ops::Deref for SpoolConnection<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        match self {
            SpoolConnection::Borrowed(c) => c,
            SpoolConnection::Owned(c) => c,
        }
    }
}

/// A size probe onto a vfs spool for the progress callback.
pub fn file_probe(f: &SpoolFile) -> io::Result<impl Fn() -> u64 + Send + 'static> {
    let file: Arc<File> = Arc::new(f.file().try_clone()?);
    Ok(move || file.metadata().map(|m| m.len()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_page_spool_reads_back_across_chunks() {
        let mut s = PageSpool::new(SpoolKind::Memory, Path::new("/tmp")).unwrap();
        let data: Vec<u8> = (0..(IO_CHUNK * 2 + 1234)).map(|i| (i % 251) as u8).collect();
        for piece in data.chunks(4096) {
            s.write_all(piece).unwrap();
        }
        let s = Spool::Pages(s);
        assert_eq!(s.size().unwrap(), data.len() as u64);
        let mut back = vec![0u8; 5000];
        s.read_exact_at(&mut back, IO_CHUNK as u64 - 100).unwrap();
        assert_eq!(&back[..], &data[IO_CHUNK - 100..IO_CHUNK + 4900]);
    }

    #[test]
    fn memdb_holds_a_vacuum_and_reads_in_place() {
        let src = Connection::open_in_memory().unwrap();
        src.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (randomblob(10000));").unwrap();
        let m = Memdb::create(2 << 30).unwrap();
        src.execute("VACUUM INTO ?1", [m.uri()]).unwrap();
        let spool = Spool::Memdb(m);
        let len = spool.size().unwrap();
        assert!(len >= 10000);
        let mut head = [0u8; 16];
        spool.read_exact_at(&mut head, 0).unwrap();
        assert_eq!(&head, crate::header::MAGIC);
    }
}
