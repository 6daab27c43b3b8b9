//! The plaintext of a backup being verified: a buffer from
//! `sqlite3_malloc64` (so that SQLite's heap limit counts it) or an unnamed
//! file, both served to SQLite by the `wmspool` VFS, to as many
//! connections as the check wants. Either way it never has a name in any
//! directory.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rusqlite::{ffi, Connection, OpenFlags};

use super::vfs::{MemoryImage, SpoolFile};
use super::SpoolKind;
use crate::spool::guard::{self, HeapCap};

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

    /// A connection onto the plaintext that can change nothing, as `sqlite3` would open a
    /// restored file, hardened ([`guard::harden`]). A WAL-mode image is
    /// marked rollback in this private copy: the spool has no WAL, and
    /// without a `-wal` file the content is the same. More connections onto
    /// the same bytes come from [`Opened::connect`].
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
        let backing = match self {
            Plain::Memory(buf) => {
                // SAFETY: the buffer is owned by the same Backing, declared
                // after the registration so that it outlives it, and is not
                // changed from here on; every connection is a field of
                // Opened declared before the backing, so closed first.
                let image = unsafe { MemoryImage::register(buf.ptr, buf.len) };
                Backing::Memory { image, buf }
            }
            Plain::Disk { file, .. } => Backing::Disk { file },
        };
        let conn = connect(&backing)?;
        Ok(Opened { conn, backing, len, _cap: HeapCap::above_now(guard::HEAP_ABOVE_IMAGE) })
    }
}

/// What a connection reads: a memory image, an unnamed file, or a mapped
/// one, all served by the `wmspool` VFS.
enum Backing {
    Memory { image: MemoryImage, buf: SqliteBuf },
    Disk { file: SpoolFile },
    Mapped { image: MemoryImage, map: Mapping },
}

/// A file's first `len` bytes mapped read-only, unmapped on drop.
struct Mapping {
    ptr: *mut std::ffi::c_void,
    len: usize,
}

impl Mapping {
    fn new(file: &File, len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh read-only shared mapping of our own descriptor;
        // the result is checked before use.
        let ptr = unsafe {
            nix::libc::mmap(std::ptr::null_mut(), len, nix::libc::PROT_READ, nix::libc::MAP_SHARED, file.as_raw_fd(), 0)
        };
        if ptr == nix::libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // The plaintext: left out of any core dump (see harden).
        crate::harden::dont_dump(ptr.cast(), len);
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { nix::libc::munmap(self.ptr, self.len) };
    }
}

/// A new hardened connection onto `backing`, which it cannot change. A memory image is
/// mapped (`mmap_size`), so that pages are read in place, not copied.
fn connect(backing: &Backing) -> Result<Connection, PlainError> {
    let uri = match backing {
        Backing::Memory { image, .. } | Backing::Mapped { image, .. } => image.uri(),
        Backing::Disk { file, .. } => file.uri(),
    };
    // Read-write to SQLite, read-only in fact (the memory image refuses
    // every write; `query_only` and DEFENSIVE refuse them before that): on a
    // connection it opened read-only SQLite leaves CHECK constraints out of
    // the schema, and `integrity_check` then never checks them.
    let conn = Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(PlainError::Open)?;
    // The database is hostile until checked: no view, trigger or
    // extension, no trusted schema, bounded values; nothing of the check
    // lands in a temporary file.
    guard::harden(&conn).map_err(PlainError::Open)?;
    let in_memory = match backing {
        Backing::Memory { buf, .. } => Some(buf.len),
        Backing::Mapped { map, .. } => Some(map.len),
        Backing::Disk { .. } => None,
    };
    if let Some(len) = in_memory {
        conn.execute_batch(&format!("PRAGMA mmap_size = {len}")).map_err(PlainError::Open)?;
    }
    Ok(conn)
}

/// A connection onto the plaintext; the spool outlives it (fields drop in
/// order), and SQLite's heap is capped at the image plus
/// [`guard::HEAP_ABOVE_IMAGE`] while it is open.
pub struct Opened {
    pub conn: Connection,
    backing: Backing,
    len: u64,
    _cap: HeapCap,
}

impl Opened {
    /// A hardened connection, as [`Plain::into_connection`] gives, onto the
    /// first `len` bytes of a database file this process wrote and changes
    /// no more while it is open (wm-restore's new file, checked in place;
    /// in rollback mode: a WAL-mode image would send SQLite looking for its
    /// `-wal`). Mapped when `private` (the file has no name: nobody could
    /// truncate it under the mapping), else read through a registered
    /// duplicate of its descriptor. `dir` is named in errors.
    pub fn of_file(file: &File, len: u64, private: bool, dir: &Path) -> Result<Opened, PlainError> {
        let spool = |source| PlainError::Spool { dir: dir.to_path_buf(), source };
        let backing = if private && len > 0 {
            let map = Mapping::new(file, len as usize).map_err(spool)?;
            // SAFETY: the mapping is owned by the same Backing, declared
            // after the registration so that it outlives it; the file is not
            // changed while it is open (the caller's promise); every
            // connection is a field of Opened declared before the backing.
            let image = unsafe { MemoryImage::register(map.ptr.cast(), map.len) };
            Backing::Mapped { image, map }
        } else {
            Backing::Disk { file: SpoolFile::register(file.try_clone().map_err(spool)?) }
        };
        let conn = connect(&backing)?;
        Ok(Opened { conn, backing, len, _cap: HeapCap::above_now(guard::HEAP_ABOVE_IMAGE) })
    }

    /// The bytes SQLite reads, when they are in this process's memory (a
    /// memory spool; not a mapped file): read-only while `self` lives, so
    /// other threads may read them beside the connections (wm-restore
    /// writes them into the new file while they are checked).
    pub fn image(&self) -> Option<&[u8]> {
        match &self.backing {
            Backing::Memory { buf, .. } => Some(buf.as_slice()),
            Backing::Mapped { .. } | Backing::Disk { .. } => None,
        }
    }

    /// The database's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Another hardened connection onto the same bytes, for a
    /// check on another thread; it must be closed before `self` drops (the
    /// borrow checker sees to that only if the caller keeps it in scope).
    pub fn connect(&self) -> Result<Connection, PlainError> {
        connect(&self.backing)
    }
}

/// A buffer from `sqlite3_malloc64`, so that SQLite's heap limit counts it.
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
        // The plaintext: left out of any core dump (see harden).
        crate::harden::dont_dump(ptr, cap as usize);
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
            crate::harden::dont_dump(p, want);
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
}

impl Drop for SqliteBuf {
    fn drop(&mut self) {
        // SAFETY: allocated by sqlite3_malloc64 and not handed over.
        unsafe { ffi::sqlite3_free(self.ptr.cast()) }
    }
}
