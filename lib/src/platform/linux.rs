//! The Linux half: every fast path the kernel offers.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, OFlag};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::stat::Mode;
use nix::unistd;

use super::private_mode;

/// An unnamed file (`O_TMPFILE`) in the directory `dir`, relative to `at`,
/// mode 0600 (less the umask: the caller sets the mode again), opened with
/// `access` (`O_WRONLY` or `O_RDWR`). `None` when this file system or
/// kernel cannot make one: the caller then makes a named file.
pub fn open_unnamed(at: BorrowedFd<'_>, dir: &Path, access: OFlag) -> io::Result<Option<OwnedFd>> {
    match fcntl::openat(at, dir, OFlag::O_TMPFILE | access | OFlag::O_CLOEXEC, private_mode()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::EOPNOTSUPP | Errno::EISDIR | Errno::EINVAL) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Gives an unnamed file the name `name` in `dir`: `linkat` through
/// `/proc/self/fd`, or with `AT_EMPTY_PATH` where /proc is missing (that
/// needs CAP_DAC_READ_SEARCH, but try).
pub fn link_unnamed(file: &File, dir: &File, name: &OsStr) -> nix::Result<()> {
    let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
    unistd::linkat(fcntl::AT_FDCWD, proc_path.as_str(), dir, name, AtFlags::AT_SYMLINK_FOLLOW).or_else(|e| match e {
        Errno::ENOENT => unistd::linkat(file, "", dir, name, AtFlags::AT_EMPTY_PATH),
        other => Err(other),
    })
}

/// Renames `from` to `to` inside `dir` unless `to` exists (then EEXIST):
/// `renameat2(RENAME_NOREPLACE)`, a raw system call so that musl builds have
/// it too; where the kernel or the file system lacks it (ENOSYS, EINVAL,
/// EOPNOTSUPP: older kernels, some network file systems), a hard link.
pub fn rename_noreplace(dir: &File, from: &OsStr, to: &OsStr) -> Result<(), Errno> {
    use std::os::unix::ffi::OsStrExt;
    let c = |s: &OsStr| std::ffi::CString::new(s.as_bytes()).map_err(|_| Errno::EINVAL);
    let (f, t) = (c(from)?, c(to)?);
    // SAFETY: two NUL-terminated names, both relative to our own directory descriptor.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_renameat2,
            dir.as_raw_fd(),
            f.as_ptr(),
            dir.as_raw_fd(),
            t.as_ptr(),
            nix::libc::RENAME_NOREPLACE,
        )
    };
    match Errno::result(r) {
        Ok(_) => Ok(()),
        Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => super::link_then_unlink(dir, from, to),
        Err(e) => Err(e),
    }
}

/// The unnamed `file` opened again, read-only (it was opened write-only).
pub fn reopen_read(file: &File) -> io::Result<File> {
    let path = format!("/proc/self/fd/{}", file.as_raw_fd());
    Ok(File::from(fcntl::open(path.as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())?))
}

/// Drops the file's clean cached pages, so that the next reads come from
/// the device. Advice only: a file system without it still reads correctly.
pub fn drop_cache(file: &File) {
    let _ = fcntl::posix_fadvise(file, 0, 0, fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED);
}

/// Asks the kernel to start writing `len` bytes at `offset` to the device,
/// without waiting: the final fsync then has little left to do.
pub fn start_writeback(file: &File, offset: u64, len: u64) {
    // SAFETY: a plain syscall on our own descriptor; failure is harmless.
    unsafe {
        nix::libc::sync_file_range(file.as_raw_fd(), offset as i64, len as i64, nix::libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// [`write_uncached`] writes around the page cache here.
pub const UNCACHED_WRITES: bool = true;

/// Writes `data` into the empty `file` from its first byte, around the page
/// cache where the file system allows it (`O_DIRECT`): the device takes the
/// bytes by DMA from a small aligned staging buffer, and no page of the file
/// is cached, so that a gigabyte written needs no gigabyte of fresh memory
/// and leaves the cache to the programs that use it. The end that is not a
/// whole number of blocks, and everything on a file system that refuses
/// `O_DIRECT` (or its alignment), goes through the cache. `go` is asked
/// before each piece. Durable only after an fsync, as ever.
pub fn write_uncached(file: &File, data: &[u8], go: impl Fn() -> io::Result<()>) -> io::Result<()> {
    let mut done = 0;
    if set_direct(file, true).is_ok() {
        let direct = write_direct(file, data, &mut done, &go);
        set_direct(file, false)?;
        direct?;
    }
    super::write_cached(file, &data[done..], done as u64, &go)
}

/// Direct I/O wants the buffer, the offset and the length aligned to the
/// device's logical block: 4096 covers 512-byte and 4K devices alike.
const DIRECT_BLOCK: usize = 4096;
/// The staging buffer: big enough that the device streams, small enough to stay cached.
const DIRECT_STAGE: usize = 4 << 20;

/// The whole blocks of `data` from `*done` on, through an aligned staging
/// buffer, with `O_DIRECT` set; `*done` says how far it got. A refusal of
/// the alignment (EINVAL) or a short write that leaves it ends the direct
/// part early, not in an error: the rest goes through the cache.
fn write_direct(file: &File, data: &[u8], done: &mut usize, go: &dyn Fn() -> io::Result<()>) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut stage = Aligned::new(DIRECT_STAGE, DIRECT_BLOCK)?;
    while data.len() - *done >= DIRECT_BLOCK {
        go()?;
        let n = (data.len() - *done).min(DIRECT_STAGE) / DIRECT_BLOCK * DIRECT_BLOCK;
        let buf = &mut stage.as_mut_slice()[..n];
        buf.copy_from_slice(&data[*done..*done + n]);
        let mut put = 0;
        while put < n {
            match file.write_at(&buf[put..], (*done + put) as u64) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) if k % DIRECT_BLOCK == 0 => put += k,
                Ok(k) => {
                    *done += put + k;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {
                    *done += put;
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        *done += n;
    }
    Ok(())
}

/// Sets or clears `O_DIRECT` on an open file.
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl::fcntl(file, fcntl::FcntlArg::F_GETFL)?);
    let flags = if on { flags | OFlag::O_DIRECT } else { flags - OFlag::O_DIRECT };
    fcntl::fcntl(file, fcntl::FcntlArg::F_SETFL(flags))?;
    Ok(())
}

/// A zeroed heap buffer whose start is aligned, left out of core dumps
/// (it holds plaintext, see harden).
struct Aligned {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl Aligned {
    fn new(len: usize, align: usize) -> io::Result<Aligned> {
        let layout = std::alloc::Layout::from_size_align(len, align).map_err(io::Error::other)?;
        // SAFETY: a non-zero size; NULL is checked.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        crate::harden::dont_dump(ptr, len);
        Ok(Aligned { ptr, layout })
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `layout.size()` initialised bytes, owned by self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

/// Grows a pipe's buffer to 1 MiB (the unprivileged maximum by default).
/// Not a pipe, or refused: nothing.
pub fn widen_pipe(fd: BorrowedFd<'_>) {
    let is_fifo = nix::sys::stat::fstat(fd).is_ok_and(|st| st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFIFO);
    if is_fifo {
        let _ = fcntl::fcntl(fd, fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
    }
}

/// A pipe whose ends are close-on-exec and non-blocking from the start.
pub fn wake_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?)
}

/// The next of `set`'s signals (blocked in every thread), or `None` after
/// `timeout`: `sigtimedwait`.
pub fn wait_signal(set: &SigSet, timeout: Duration) -> Option<Signal> {
    let ts = nix::libc::timespec { tv_sec: timeout.as_secs() as _, tv_nsec: timeout.subsec_nanos() as _ };
    // SAFETY: valid set and timespec; a NULL siginfo is allowed.
    let rc = unsafe { nix::libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
    Signal::try_from(rc).ok()
}

/// The record-lock command: open-file-description locks, which belong to
/// the descriptor (they conflict with SQLite's own locks in this process,
/// and closing another descriptor of the file does not release them).
pub const SETLK: nix::libc::c_int = nix::libc::F_OFD_SETLK;

/// Another process that has a file of `ids` (device, inode) open, as far as
/// `/proc` shows (the processes of other users are not visible to an
/// unprivileged user, nor those of another PID namespace).
pub fn file_holder(ids: &[(u64, u64)]) -> Option<(u32, String)> {
    use std::os::unix::fs::MetadataExt;
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            if let Ok(m) = std::fs::metadata(fd.path()) {
                if ids.contains(&(m.dev(), m.ino())) {
                    let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                    return Some((pid, comm.trim().to_string()));
                }
            }
        }
    }
    None
}

/// Memory the kernel says it can give without swapping (`MemAvailable`).
pub fn mem_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
