//! A tiny SQLite VFS ("wmspool") whose files have no name on disk.
//!
//! `VACUUM INTO` needs a file name to write to; a name in a directory is a
//! plaintext copy of the database that SIGKILL would leave behind. Instead,
//! the spool is an unnamed file (an `O_TMPFILE` never linked anywhere, or,
//! where there is none, a file unlinked the moment it is created, still
//! empty) registered here under a made-up name such as `/wm-spool-4242-1`;
//! `VACUUM INTO 'file:/wm-spool-4242-1?vfs=wmspool'` then writes into it
//! through this VFS. Journals SQLite creates beside it are unnamed
//! temporaries too. When the process dies, for any reason, the kernel frees
//! every byte.
//!
//! Locking is not needed: a spool is only ever used by this process, one
//! connection at a time. `xSync` does nothing: the spool never has to survive
//! a crash, only to be read back.
//!
//! The same VFS serves a read-only image in this process's memory
//! ([`MemoryImage`]), so that several connections, on several threads, can
//! check one decrypted backup without a copy each: reads are copies out of
//! the buffer, or with `PRAGMA mmap_size` no copy at all (`xFetch`).

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use nix::errno::Errno;
use nix::fcntl::{self, OFlag};
use rusqlite::ffi;

use crate::platform;

pub const VFS_NAME: &CStr = c"wmspool";

/// Files known to the VFS, by the name SQLite will ask for.
struct Registry {
    files: HashMap<Vec<u8>, Arc<File>>,
    /// Read-only images in memory: address and length.
    images: HashMap<Vec<u8>, (usize, usize)>,
    /// Where unnamed journals go: the directory of the most recent spool.
    dir: PathBuf,
}

fn registry() -> &'static Mutex<Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(Registry { files: HashMap::new(), images: HashMap::new(), dir: std::env::temp_dir() }))
}

fn lock() -> std::sync::MutexGuard<'static, Registry> {
    registry().lock().unwrap_or_else(|p| p.into_inner())
}

/// Creates an unnamed temporary file in `dir`: `O_TMPFILE` where the system
/// and file system have it, else a named file unlinked at once (it is empty
/// until then: a SIGKILL in between leaves an empty `.wm-spool-PID-N`).
pub fn unnamed_file(dir: &Path) -> io::Result<File> {
    let mode = platform::private_mode();
    if let Some(fd) = platform::open_unnamed(fcntl::AT_FDCWD, dir, OFlag::O_RDWR)? {
        return Ok(File::from(fd));
    }
    static N: AtomicU64 = AtomicU64::new(0);
    loop {
        let name = dir.join(format!(".wm-spool-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        match fcntl::open(
            &name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            mode,
        ) {
            Ok(fd) => {
                let f = File::from(fd);
                std::fs::remove_file(&name)?;
                return Ok(f);
            }
            Err(Errno::EEXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// An unnamed spool file, visible to SQLite under [`SpoolFile::uri`] until dropped.
pub struct SpoolFile {
    name: Vec<u8>,
    file: Arc<File>,
}

impl SpoolFile {
    pub fn create(dir: &Path) -> io::Result<SpoolFile> {
        let spool = SpoolFile::register(unnamed_file(dir)?);
        lock().dir = dir.to_path_buf();
        Ok(spool)
    }

    /// A file this process opened, registered as it is so that SQLite can
    /// open it (wm-restore's new database, checked in place).
    pub fn register(file: File) -> SpoolFile {
        ensure_registered();
        static N: AtomicU64 = AtomicU64::new(0);
        let file = Arc::new(file);
        let name = format!("/wm-spool-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)).into_bytes();
        lock().files.insert(name.clone(), file.clone());
        SpoolFile { name, file }
    }

    /// The URI to give SQLite, e.g. as the target of `VACUUM INTO`.
    pub fn uri(&self) -> String {
        format!("file:{}?vfs={}", String::from_utf8_lossy(&self.name), VFS_NAME.to_string_lossy())
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// An unnamed copy of `src` (read through that very descriptor, from its
    /// first byte), registered so that SQLite can open it.
    pub fn copy_of(src: &File, dir: &Path) -> io::Result<SpoolFile> {
        let spool = SpoolFile::create(dir)?;
        copy_all(src, spool.file())?;
        Ok(spool)
    }

    /// An unnamed copy of `src` registered as this spool's `suffix` file
    /// (`-wal`, `-journal`), where SQLite looks for it. It lives as long as
    /// this spool is registered, or until SQLite deletes it.
    pub fn add_companion(&self, suffix: &str, src: &File) -> io::Result<()> {
        let file = unnamed_file(&lock().dir)?;
        copy_all(src, &file)?;
        let mut name = self.name.clone();
        name.extend_from_slice(suffix.as_bytes());
        lock().files.insert(name, Arc::new(file));
        Ok(())
    }
}

/// A read-only database image in memory, visible to SQLite under
/// [`MemoryImage::uri`] until dropped; any number of connections may open it.
pub struct MemoryImage {
    name: Vec<u8>,
}

impl MemoryImage {
    /// Registers the `len` bytes at `ptr`.
    ///
    /// # Safety
    /// The bytes must stay valid and unchanged until this is dropped, and
    /// every connection opened on it must be closed before that.
    pub unsafe fn register(ptr: *const u8, len: usize) -> MemoryImage {
        ensure_registered();
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!("/wm-image-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)).into_bytes();
        lock().images.insert(name.clone(), (ptr as usize, len));
        MemoryImage { name }
    }

    pub fn uri(&self) -> String {
        format!("file:{}?vfs={}", String::from_utf8_lossy(&self.name), VFS_NAME.to_string_lossy())
    }
}

impl Drop for MemoryImage {
    fn drop(&mut self) {
        lock().images.remove(&self.name);
    }
}

/// Copies all of `src` into `dst` by position, leaving both offsets alone.
fn copy_all(src: &File, dst: &File) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    loop {
        let n = match src.read_at(&mut buf, off) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        dst.write_all_at(&buf[..n], off)?;
        off += n as u64;
    }
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        let mut r = lock();
        r.files.remove(&self.name);
        // Journals SQLite left registered under this spool's name.
        let prefix = self.name.clone();
        r.files.retain(|k, _| !k.starts_with(&prefix));
    }
}

#[repr(C)]
struct VfsFile {
    base: ffi::sqlite3_file,
    file: *const File,
    /// A memory image's address and length (MEMORY_METHODS only).
    mem: *const u8,
    mem_len: usize,
}

fn ensure_registered() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find(NULL) returns the default VFS, which lives for the process.
        let default = unsafe { ffi::sqlite3_vfs_find(ptr::null()) };
        let vfs = Box::new(ffi::sqlite3_vfs {
            iVersion: 2,
            szOsFile: std::mem::size_of::<VfsFile>() as c_int,
            mxPathname: 512,
            pNext: ptr::null_mut(),
            zName: VFS_NAME.as_ptr(),
            pAppData: default.cast(),
            xOpen: Some(x_open),
            xDelete: Some(x_delete),
            xAccess: Some(x_access),
            xFullPathname: Some(x_full_pathname),
            xDlOpen: Some(x_dl_open),
            xDlError: Some(x_dl_error),
            xDlSym: Some(x_dl_sym),
            xDlClose: Some(x_dl_close),
            xRandomness: Some(x_randomness),
            xSleep: Some(x_sleep),
            xCurrentTime: Some(x_current_time),
            xGetLastError: Some(x_get_last_error),
            xCurrentTimeInt64: Some(x_current_time_int64),
            xSetSystemCall: None,
            xGetSystemCall: None,
            xNextSystemCall: None,
        });
        // SAFETY: the VFS struct is leaked, so it outlives every connection.
        unsafe {
            ffi::sqlite3_vfs_register(Box::into_raw(vfs), 0);
        }
    });
}

static IO_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(io_close),
    xRead: Some(io_read),
    xWrite: Some(io_write),
    xTruncate: Some(io_truncate),
    xSync: Some(io_sync),
    xFileSize: Some(io_file_size),
    xLock: Some(io_lock),
    xUnlock: Some(io_lock),
    xCheckReservedLock: Some(io_check_reserved_lock),
    xFileControl: Some(io_file_control),
    xSectorSize: Some(io_sector_size),
    xDeviceCharacteristics: Some(io_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// A memory image: read-only (every write fails), no locks, pages handed
/// out in place when the connection maps (`xFetch`).
/// No shared-memory methods: SQLite then refuses WAL mode rather than
/// calling them.
static MEMORY_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(mem_close),
    xRead: Some(mem_read),
    xWrite: Some(mem_write),
    xTruncate: Some(mem_truncate),
    xSync: Some(io_sync),
    xFileSize: Some(mem_file_size),
    xLock: Some(io_lock),
    xUnlock: Some(io_lock),
    xCheckReservedLock: Some(io_check_reserved_lock),
    xFileControl: Some(io_file_control),
    xSectorSize: Some(io_sector_size),
    xDeviceCharacteristics: Some(mem_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: Some(mem_fetch),
    xUnfetch: Some(mem_unfetch),
};

unsafe fn image_of<'a>(f: *mut ffi::sqlite3_file) -> &'a [u8] {
    let vf = f.cast::<VfsFile>();
    std::slice::from_raw_parts((*vf).mem, (*vf).mem_len)
}

unsafe extern "C" fn mem_close(f: *mut ffi::sqlite3_file) -> c_int {
    let vf = f.cast::<VfsFile>();
    (*vf).mem = ptr::null();
    (*vf).mem_len = 0;
    ffi::SQLITE_OK
}

unsafe extern "C" fn mem_read(
    f: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amt: c_int,
    off: ffi::sqlite3_int64,
) -> c_int {
    let out = std::slice::from_raw_parts_mut(buf.cast::<u8>(), amt as usize);
    let image = image_of(f);
    let start = (off.max(0) as usize).min(image.len());
    let n = out.len().min(image.len() - start);
    out[..n].copy_from_slice(&image[start..start + n]);
    if n < out.len() {
        // SQLite requires the unread tail to be zeroed on a short read.
        out[n..].fill(0);
        return ffi::SQLITE_IOERR_SHORT_READ;
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn mem_write(
    _f: *mut ffi::sqlite3_file,
    _buf: *const c_void,
    _amt: c_int,
    _off: ffi::sqlite3_int64,
) -> c_int {
    ffi::SQLITE_READONLY
}

unsafe extern "C" fn mem_truncate(_f: *mut ffi::sqlite3_file, _size: ffi::sqlite3_int64) -> c_int {
    ffi::SQLITE_READONLY
}

unsafe extern "C" fn mem_file_size(f: *mut ffi::sqlite3_file, size: *mut ffi::sqlite3_int64) -> c_int {
    *size = (*f.cast::<VfsFile>()).mem_len as ffi::sqlite3_int64;
    ffi::SQLITE_OK
}

/// Not SQLITE_IOCAP_IMMUTABLE: SQLite would then treat the file as opened
/// read-only, and leave the schema's CHECK constraints out of
/// `integrity_check`.
unsafe extern "C" fn mem_device_characteristics(_f: *mut ffi::sqlite3_file) -> c_int {
    ffi::SQLITE_IOCAP_POWERSAFE_OVERWRITE
}

unsafe extern "C" fn mem_fetch(
    f: *mut ffi::sqlite3_file,
    off: ffi::sqlite3_int64,
    amt: c_int,
    pp: *mut *mut c_void,
) -> c_int {
    let vf = f.cast::<VfsFile>();
    let (off, amt) = (off.max(0) as usize, amt.max(0) as usize);
    *pp = if off.saturating_add(amt) <= (*vf).mem_len {
        // SQLite only reads through a fetched page of a read-only file.
        (*vf).mem.add(off).cast_mut().cast::<c_void>()
    } else {
        ptr::null_mut()
    };
    ffi::SQLITE_OK
}

unsafe extern "C" fn mem_unfetch(_f: *mut ffi::sqlite3_file, _off: ffi::sqlite3_int64, _p: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe fn name_bytes<'a>(z: *const c_char) -> Option<&'a [u8]> {
    if z.is_null() {
        None
    } else {
        Some(CStr::from_ptr(z).to_bytes())
    }
}

unsafe fn default_vfs(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    (*vfs).pAppData.cast()
}

unsafe extern "C" fn x_open(
    _vfs: *mut ffi::sqlite3_vfs,
    z_name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let out = file.cast::<VfsFile>();
    (*out).base.pMethods = ptr::null();
    (*out).file = ptr::null();
    (*out).mem = ptr::null();
    (*out).mem_len = 0;
    let name = name_bytes(z_name).map(<[u8]>::to_vec);
    let mut r = lock();
    if let Some(&(addr, len)) = name.as_ref().and_then(|n| r.images.get(n)) {
        // Opened read-write or not, every write fails (SQLITE_READONLY).
        (*out).mem = addr as *const u8;
        (*out).mem_len = len;
        (*out).base.pMethods = &MEMORY_METHODS;
        if !out_flags.is_null() {
            *out_flags = flags;
        }
        return ffi::SQLITE_OK;
    }
    let shared = match name.as_ref().and_then(|n| r.files.get(n)) {
        Some(f) => f.clone(),
        None if flags & ffi::SQLITE_OPEN_CREATE != 0 || name.is_none() => {
            // A journal or statement temporary: unnamed, registered so that
            // SQLite can find it again by name until it deletes it.
            let f = match unnamed_file(&r.dir) {
                Ok(f) => Arc::new(f),
                Err(_) => return ffi::SQLITE_CANTOPEN,
            };
            if let Some(n) = name {
                if flags & ffi::SQLITE_OPEN_DELETEONCLOSE == 0 {
                    r.files.insert(n, f.clone());
                }
            }
            f
        }
        None => return ffi::SQLITE_CANTOPEN,
    };
    drop(r);
    // Each open handle owns its own descriptor onto the shared file.
    let dup = match shared.try_clone() {
        Ok(f) => f,
        Err(_) => return ffi::SQLITE_CANTOPEN,
    };
    (*out).file = Box::into_raw(Box::new(dup));
    (*out).base.pMethods = &IO_METHODS;
    if !out_flags.is_null() {
        *out_flags = flags;
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_delete(_vfs: *mut ffi::sqlite3_vfs, z_name: *const c_char, _sync_dir: c_int) -> c_int {
    if let Some(n) = name_bytes(z_name) {
        lock().files.remove(n);
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_access(
    _vfs: *mut ffi::sqlite3_vfs,
    z_name: *const c_char,
    flags: c_int,
    res: *mut c_int,
) -> c_int {
    let found = match name_bytes(z_name) {
        Some(n) => {
            let r = lock();
            match r.images.get(n) {
                Some(&(_, len)) => Some(len as u64),
                None => r.files.get(n).map(|f| f.metadata().map(|m| m.len()).unwrap_or(0)),
            }
        }
        None => None,
    };
    *res = match (found, flags) {
        // As the unix VFS does: an empty file "does not exist" (no hot journal).
        (Some(len), ffi::SQLITE_ACCESS_EXISTS) => c_int::from(len > 0),
        (Some(_), _) => 1,
        (None, _) => 0,
    };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_full_pathname(
    _vfs: *mut ffi::sqlite3_vfs,
    z_name: *const c_char,
    n_out: c_int,
    z_out: *mut c_char,
) -> c_int {
    let bytes = CStr::from_ptr(z_name).to_bytes_with_nul();
    if bytes.len() > n_out as usize {
        return ffi::SQLITE_CANTOPEN;
    }
    ptr::copy_nonoverlapping(bytes.as_ptr().cast::<c_char>(), z_out, bytes.len());
    ffi::SQLITE_OK
}

// The rest is delegated to the default VFS.
unsafe extern "C" fn x_dl_open(vfs: *mut ffi::sqlite3_vfs, z: *const c_char) -> *mut c_void {
    let d = default_vfs(vfs);
    match (*d).xDlOpen {
        Some(f) => f(d, z),
        None => ptr::null_mut(),
    }
}
unsafe extern "C" fn x_dl_error(vfs: *mut ffi::sqlite3_vfs, n: c_int, z: *mut c_char) {
    let d = default_vfs(vfs);
    if let Some(f) = (*d).xDlError {
        f(d, n, z)
    }
}
type DlSym = Option<unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char)>;
unsafe extern "C" fn x_dl_sym(vfs: *mut ffi::sqlite3_vfs, h: *mut c_void, z: *const c_char) -> DlSym {
    let d = default_vfs(vfs);
    match (*d).xDlSym {
        Some(f) => f(d, h, z),
        None => None,
    }
}
unsafe extern "C" fn x_dl_close(vfs: *mut ffi::sqlite3_vfs, h: *mut c_void) {
    let d = default_vfs(vfs);
    if let Some(f) = (*d).xDlClose {
        f(d, h)
    }
}
unsafe extern "C" fn x_randomness(vfs: *mut ffi::sqlite3_vfs, n: c_int, z: *mut c_char) -> c_int {
    let d = default_vfs(vfs);
    match (*d).xRandomness {
        Some(f) => f(d, n, z),
        None => 0,
    }
}
unsafe extern "C" fn x_sleep(vfs: *mut ffi::sqlite3_vfs, us: c_int) -> c_int {
    let d = default_vfs(vfs);
    match (*d).xSleep {
        Some(f) => f(d, us),
        None => 0,
    }
}
unsafe extern "C" fn x_current_time(vfs: *mut ffi::sqlite3_vfs, t: *mut f64) -> c_int {
    let d = default_vfs(vfs);
    match (*d).xCurrentTime {
        Some(f) => f(d, t),
        None => ffi::SQLITE_ERROR,
    }
}
unsafe extern "C" fn x_get_last_error(vfs: *mut ffi::sqlite3_vfs, n: c_int, z: *mut c_char) -> c_int {
    let d = default_vfs(vfs);
    match (*d).xGetLastError {
        Some(f) => f(d, n, z),
        None => 0,
    }
}
unsafe extern "C" fn x_current_time_int64(vfs: *mut ffi::sqlite3_vfs, t: *mut ffi::sqlite3_int64) -> c_int {
    let d = default_vfs(vfs);
    match (*d).xCurrentTimeInt64 {
        Some(f) => f(d, t),
        None => ffi::SQLITE_ERROR,
    }
}

unsafe fn file_of<'a>(f: *mut ffi::sqlite3_file) -> &'a File {
    &*(*f.cast::<VfsFile>()).file
}

unsafe extern "C" fn io_close(f: *mut ffi::sqlite3_file) -> c_int {
    let vf = f.cast::<VfsFile>();
    drop(Box::from_raw((*vf).file as *mut File));
    (*vf).file = ptr::null();
    ffi::SQLITE_OK
}

unsafe extern "C" fn io_read(
    f: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amt: c_int,
    off: ffi::sqlite3_int64,
) -> c_int {
    let out = std::slice::from_raw_parts_mut(buf.cast::<u8>(), amt as usize);
    let file = file_of(f);
    let mut done = 0;
    while done < out.len() {
        match file.read_at(&mut out[done..], off as u64 + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return ffi::SQLITE_IOERR_READ,
        }
    }
    if done < out.len() {
        // SQLite requires the unread tail to be zeroed on a short read.
        out[done..].fill(0);
        return ffi::SQLITE_IOERR_SHORT_READ;
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn io_write(
    f: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amt: c_int,
    off: ffi::sqlite3_int64,
) -> c_int {
    let data = std::slice::from_raw_parts(buf.cast::<u8>(), amt as usize);
    match file_of(f).write_all_at(data, off as u64) {
        Ok(()) => ffi::SQLITE_OK,
        Err(e) if e.raw_os_error() == Some(Errno::ENOSPC as i32) => ffi::SQLITE_FULL,
        Err(_) => ffi::SQLITE_IOERR_WRITE,
    }
}

unsafe extern "C" fn io_truncate(f: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    match file_of(f).set_len(size as u64) {
        Ok(()) => ffi::SQLITE_OK,
        Err(_) => ffi::SQLITE_IOERR_TRUNCATE,
    }
}

unsafe extern "C" fn io_sync(_f: *mut ffi::sqlite3_file, _flags: c_int) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn io_file_size(f: *mut ffi::sqlite3_file, size: *mut ffi::sqlite3_int64) -> c_int {
    match file_of(f).metadata() {
        Ok(m) => {
            *size = m.len() as ffi::sqlite3_int64;
            ffi::SQLITE_OK
        }
        Err(_) => ffi::SQLITE_IOERR_FSTAT,
    }
}

unsafe extern "C" fn io_lock(_f: *mut ffi::sqlite3_file, _level: c_int) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn io_check_reserved_lock(_f: *mut ffi::sqlite3_file, res: *mut c_int) -> c_int {
    *res = 0;
    ffi::SQLITE_OK
}

unsafe extern "C" fn io_file_control(_f: *mut ffi::sqlite3_file, _op: c_int, _arg: *mut c_void) -> c_int {
    ffi::SQLITE_NOTFOUND
}

unsafe extern "C" fn io_sector_size(_f: *mut ffi::sqlite3_file) -> c_int {
    4096
}

unsafe extern "C" fn io_device_characteristics(_f: *mut ffi::sqlite3_file) -> c_int {
    ffi::SQLITE_IOCAP_POWERSAFE_OVERWRITE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vacuum_into_an_unnamed_spool_leaves_no_file() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src.db");
        let conn = rusqlite::Connection::open(&src).unwrap();
        conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1),(2),(3);").unwrap();
        let spool_dir = tempfile::tempdir().unwrap();
        let spool = SpoolFile::create(spool_dir.path()).unwrap();
        conn.execute("VACUUM INTO ?1", [spool.uri()]).unwrap();
        assert!(spool.size().unwrap() > 0);
        assert_eq!(std::fs::read_dir(spool_dir.path()).unwrap().count(), 0, "nothing named in the spool dir");
        let check = rusqlite::Connection::open_with_flags(
            spool.uri(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
        )
        .unwrap();
        let n: i64 = check.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 3);
        let ok: String = check.query_row("PRAGMA quick_check", [], |r| r.get(0)).unwrap();
        assert_eq!(ok, "ok");
    }
}
