//! The plaintext of a backup being verified: SQLite-owned memory (a buffer
//! from `sqlite3_malloc64` that `sqlite3_deserialize` takes over without a
//! copy) or an unnamed file through the `wmspool` VFS. Either way it never
//! has a name in any directory.

use std::fmt;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rusqlite::{ffi, Connection, OpenFlags};

use super::vfs::SpoolFile;
use super::SpoolKind;
use crate::sqlite::guard::{self, HeapCap};

#[derive(Debug)]
pub enum PlainError {
    /// Memory for `bytes` could not be had.
    Memory { bytes: u64 },
    /// The disk spool in `dir` failed.
    Spool { dir: PathBuf, source: io::Error },
    /// SQLite would not open the plaintext as a database.
    Open(rusqlite::Error),
}

impl fmt::Display for PlainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlainError::Memory { bytes } => write!(f, "no memory for {bytes} bytes"),
            PlainError::Spool { dir, source } => write!(f, "spool: {}: {source}", dir.display()),
            PlainError::Open(e) => write!(f, "open: {e}"),
        }
    }
}

impl std::error::Error for PlainError {}

/// Copying the plaintext out failed: reading the spool, or writing out.
#[derive(Debug)]
pub enum WriteError {
    Read(PlainError),
    Write(io::Error),
}

/// Where the plaintext waits.
pub enum Plain {
    Memory(SqliteBuf),
    Disk { file: SpoolFile, len: u64, dir: PathBuf },
}

impl Plain {
    /// A spool of `kind` for about `estimate` bytes (a memory buffer grows if need be).
    pub fn new(kind: SpoolKind, estimate: u64, min: usize, tmpdir: &Path) -> Result<Plain, PlainError> {
        match kind {
            SpoolKind::Memory => {
                let cap = estimate.max(min as u64) + min as u64;
                Ok(Plain::Memory(SqliteBuf::with_capacity(cap)?))
            }
            SpoolKind::Disk => {
                let file = SpoolFile::create(tmpdir)
                    .map_err(|source| PlainError::Spool { dir: tmpdir.to_path_buf(), source })?;
                Ok(Plain::Disk { file, len: 0, dir: tmpdir.to_path_buf() })
            }
        }
    }

    pub fn len(&self) -> u64 {
        match self {
            Plain::Memory(b) => b.len as u64,
            Plain::Disk { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn append(&mut self, data: &[u8]) -> Result<(), PlainError> {
        match self {
            Plain::Memory(b) => {
                b.spare(data.len())?[..data.len()].copy_from_slice(data);
                b.len += data.len();
            }
            Plain::Disk { file, len, dir } => {
                file.file()
                    .write_all_at(data, *len)
                    .map_err(|source| PlainError::Spool { dir: dir.clone(), source })?;
                *len += data.len() as u64;
            }
        }
        Ok(())
    }

    /// Lets `fill` write up to `scratch.len()` bytes at the end: straight
    /// into the memory buffer (no copy), or into `scratch` and then the file.
    /// `fill` returns how many bytes it wrote, `None` when it had nothing.
    pub fn append_with<E: From<PlainError>>(
        &mut self,
        scratch: &mut [u8],
        fill: impl FnOnce(&mut [u8]) -> Result<Option<usize>, E>,
    ) -> Result<Option<usize>, E> {
        match self {
            Plain::Memory(b) => {
                let got = fill(b.spare(scratch.len())?)?;
                b.len += got.unwrap_or(0);
                Ok(got)
            }
            Plain::Disk { .. } => {
                let got = fill(scratch)?;
                self.append(&scratch[..got.unwrap_or(0)])?;
                Ok(got)
            }
        }
    }

    pub fn read_at(&self, buf: &mut [u8], off: u64) -> Result<(), PlainError> {
        match self {
            Plain::Memory(b) => {
                buf.copy_from_slice(&b.as_slice()[off as usize..off as usize + buf.len()]);
                Ok(())
            }
            Plain::Disk { file, dir, .. } => {
                file.file().read_exact_at(buf, off).map_err(|source| PlainError::Spool { dir: dir.clone(), source })
            }
        }
    }

    /// A read-only connection onto the plaintext, as `sqlite3` would open a
    /// restored file. A WAL-mode image is marked rollback in this private
    /// copy: memdb has no WAL, and without a `-wal` file the content is the same.
    pub fn into_connection(mut self) -> Result<Opened, PlainError> {
        let mut mode = [0u8; 2];
        self.read_at(&mut mode, 18)?;
        let wal = mode == [2, 2];
        let len = self.len();
        if wal {
            match &mut self {
                Plain::Memory(b) => b.as_mut_slice()[18..20].copy_from_slice(&[1, 1]),
                Plain::Disk { file, dir, .. } => file
                    .file()
                    .write_all_at(&[1, 1], 18)
                    .map_err(|source| PlainError::Spool { dir: dir.clone(), source })?,
            }
        }
        let opened = match self {
            Plain::Memory(b) => Opened {
                conn: b.into_connection().map_err(PlainError::Open)?,
                spool: None,
                len,
                wal,
                _cap: HeapCap::above_now(guard::HEAP_ABOVE_IMAGE),
            },
            Plain::Disk { file, dir, .. } => {
                let conn = Connection::open_with_flags(
                    file.uri(),
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(PlainError::Open)?;
                Opened { conn, spool: Some((file, dir)), len, wal, _cap: HeapCap::above_now(guard::HEAP_ABOVE_IMAGE) }
            }
        };
        // The database is hostile until checked: no view, trigger or
        // extension, no trusted schema, bounded values; nothing of the check
        // lands in a temporary file.
        guard::harden(&opened.conn).map_err(PlainError::Open)?;
        Ok(opened)
    }
}

/// A connection onto the plaintext; a disk spool outlives it (fields drop in
/// order), and SQLite's heap is capped at the image plus
/// [`guard::HEAP_ABOVE_IMAGE`] while it is open.
pub struct Opened {
    pub conn: Connection,
    spool: Option<(SpoolFile, PathBuf)>,
    len: u64,
    /// The image was WAL-mode and is marked rollback for the connection.
    wal: bool,
    _cap: HeapCap,
}

impl Opened {
    /// The database's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes under the connection, which only reads them, for copying
    /// out while SQLite checks them on another thread.
    pub fn image(&self) -> Result<Image<'_>, PlainError> {
        let bytes = match &self.spool {
            Some((file, dir)) => Bytes::Disk { file: file.file(), dir },
            None => {
                let mut size: ffi::sqlite3_int64 = 0;
                // SAFETY: with NOCOPY SQLite returns its own buffer of the
                // deserialized database (NULL if there is none); it stays
                // valid, unchanged, while the read-only connection is open,
                // which the returned borrow of `self` ensures.
                let ptr = unsafe {
                    ffi::sqlite3_serialize(
                        self.conn.handle(),
                        c"main".as_ptr(),
                        &mut size,
                        ffi::SQLITE_SERIALIZE_NOCOPY,
                    )
                };
                if ptr.is_null() || size as u64 != self.len {
                    let e = ffi::Error::new(ffi::SQLITE_ERROR);
                    return Err(PlainError::Open(rusqlite::Error::SqliteFailure(e, Some("serialize".into()))));
                }
                // SAFETY: see above; `size` bytes at `ptr` are the database.
                Bytes::Memory(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), size as usize) })
            }
        };
        Ok(Image { bytes, len: self.len, wal: self.wal })
    }
}

/// A checked-while-copied plaintext: shareable across threads, unlike the
/// connection it belongs to.
pub struct Image<'a> {
    bytes: Bytes<'a>,
    len: u64,
    wal: bool,
}

enum Bytes<'a> {
    Memory(&'a [u8]),
    Disk { file: &'a std::fs::File, dir: &'a Path },
}

impl Image<'_> {
    /// Writes the image to `out` as the backup holds it (a WAL-mode image
    /// with its mode bytes as they were), a megabyte at a time; `go` is
    /// asked before each, and the copy ends with an error when it says no.
    pub fn write_to(&self, out: &mut dyn io::Write, go: impl Fn() -> io::Result<()>) -> Result<(), WriteError> {
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0;
        while off < self.len {
            go().map_err(WriteError::Write)?;
            let n = (self.len - off).min(buf.len() as u64) as usize;
            let chunk = &mut buf[..n];
            match &self.bytes {
                Bytes::Memory(b) => chunk.copy_from_slice(&b[off as usize..off as usize + n]),
                Bytes::Disk { file, dir } => file
                    .read_exact_at(chunk, off)
                    .map_err(|source| WriteError::Read(PlainError::Spool { dir: dir.to_path_buf(), source }))?,
            }
            if off == 0 && self.wal && n >= 20 {
                chunk[18..20].copy_from_slice(&[2, 2]);
            }
            out.write_all(chunk).map_err(WriteError::Write)?;
            off += n as u64;
        }
        Ok(())
    }
}

/// A buffer from `sqlite3_malloc64`, so that `sqlite3_deserialize` can take
/// it over without a copy.
pub struct SqliteBuf {
    ptr: *mut u8,
    len: usize,
    cap: usize,
}

impl SqliteBuf {
    fn with_capacity(cap: u64) -> Result<SqliteBuf, PlainError> {
        // SAFETY: plain allocation; NULL is checked.
        let ptr = unsafe { ffi::sqlite3_malloc64(cap) }.cast::<u8>();
        if ptr.is_null() {
            return Err(PlainError::Memory { bytes: cap });
        }
        Ok(SqliteBuf { ptr, len: 0, cap: cap as usize })
    }

    /// `n` zeroed bytes after the data, growing the buffer if need be.
    fn spare(&mut self, n: usize) -> Result<&mut [u8], PlainError> {
        if self.len + n > self.cap {
            let want = (self.cap * 2).max(self.len + n);
            // SAFETY: ptr came from sqlite3_malloc64/realloc64; on failure it stays valid.
            let p = unsafe { ffi::sqlite3_realloc64(self.ptr.cast(), want as u64) }.cast::<u8>();
            if p.is_null() {
                return Err(PlainError::Memory { bytes: want as u64 });
            }
            self.ptr = p;
            self.cap = want;
        }
        // SAFETY: len + n <= cap; the bytes are initialised before the slice is made.
        unsafe {
            std::ptr::write_bytes(self.ptr.add(self.len), 0, n);
            Ok(std::slice::from_raw_parts_mut(self.ptr.add(self.len), n))
        }
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: the first len bytes are initialised.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the first len bytes are initialised.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    /// Hands the buffer to a new in-memory connection, read-only.
    fn into_connection(self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_in_memory()?;
        let (ptr, len, cap) = (self.ptr, self.len, self.cap);
        std::mem::forget(self);
        // SAFETY: the buffer is SQLite's to free from here on (FREEONCLOSE
        // applies on failure too); len <= cap.
        let rc = unsafe {
            ffi::sqlite3_deserialize(
                conn.handle(),
                c"main".as_ptr(),
                ptr,
                len as i64,
                cap as i64,
                ffi::SQLITE_DESERIALIZE_FREEONCLOSE | ffi::SQLITE_DESERIALIZE_READONLY,
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(rusqlite::Error::SqliteFailure(ffi::Error::new(rc), Some("deserialize".into())));
        }
        Ok(conn)
    }
}

impl Drop for SqliteBuf {
    fn drop(&mut self) {
        // SAFETY: allocated by sqlite3_malloc64 and not handed over.
        unsafe { ffi::sqlite3_free(self.ptr.cast()) }
    }
}
