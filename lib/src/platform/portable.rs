//! The portable half: what macOS and FreeBSD run (and Linux, with the
//! `portable` feature). POSIX calls only; where Linux has a mere
//! optimisation, nothing.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{self, FcntlArg, FdFlag, OFlag};
use nix::sys::signal::{SigSet, Signal};
use nix::unistd;

/// There are no unnamed files here: always `None`, and the caller makes a
/// named file (a hidden temporary, or a spool unlinked at once).
pub fn open_unnamed(_at: BorrowedFd<'_>, _dir: &Path, _access: OFlag) -> io::Result<Option<OwnedFd>> {
    Ok(None)
}

/// Never called: [`open_unnamed`] never makes an unnamed file.
pub fn link_unnamed(_file: &File, _dir: &File, _name: &OsStr) -> nix::Result<()> {
    Err(Errno::EOPNOTSUPP)
}

/// Renames `from` to `to` inside `dir` unless `to` exists (then EEXIST): a
/// hard link, which never replaces a name, then the old name removed.
pub fn rename_noreplace(dir: &File, from: &OsStr, to: &OsStr) -> Result<(), Errno> {
    super::link_then_unlink(dir, from, to)
}

/// Never called: [`open_unnamed`] never makes an unnamed file, and a named
/// one is opened again by its name.
pub fn reopen_read(_file: &File) -> io::Result<File> {
    Err(io::ErrorKind::Unsupported.into())
}

/// No page cache advice: the reads may come from memory (see the README).
pub fn drop_cache(_file: &File) {}

/// No writeback hint: the final fsync writes everything.
pub fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// Pipes keep the system's size.
pub fn widen_pipe(_fd: BorrowedFd<'_>) {}

/// `pipe`, then close-on-exec and non-blocking on both ends. Between the two
/// calls a child forked by another thread could inherit the ends; the
/// binaries make this pipe before they start any thread.
pub fn wake_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = unistd::pipe()?;
    for fd in [r.as_fd(), w.as_fd()] {
        fcntl::fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
        fcntl::fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    }
    Ok((r, w))
}

/// The next of `set`'s signals (blocked in every thread), or `None` after
/// `timeout`. There is no `sigtimedwait` on macOS: sleep for `timeout`,
/// then take a signal of the set if one is pending (`sigpending`, then
/// `sigwait`, which returns at once). A signal is seen at most `timeout`
/// late; the caller's `timeout` is its 50 ms poke period.
pub fn wait_signal(set: &SigSet, timeout: Duration) -> Option<Signal> {
    std::thread::sleep(timeout);
    let pending = pending()?;
    if set.iter().any(|s| pending.contains(s)) {
        set.wait().ok()
    } else {
        None
    }
}

/// The signals pending for this thread or the process.
fn pending() -> Option<SigSet> {
    let mut raw = *SigSet::empty().as_ref();
    // SAFETY: `raw` is an initialised sigset_t for sigpending to fill.
    if unsafe { nix::libc::sigpending(&mut raw) } != 0 {
        return None;
    }
    // SAFETY: initialised by sigemptyset, then filled by sigpending.
    Some(unsafe { SigSet::from_sigset_t_unchecked(raw) })
}

/// The record-lock command: classic POSIX locks (open-file-description
/// locks are Linux's). They belong to the process, and closing any of its
/// descriptors of the file releases them.
pub const SETLK: nix::libc::c_int = nix::libc::F_SETLK;

/// No portable way to see which processes have a file open: nobody, as far
/// as this can tell (the record locks still see connections that hold them).
pub fn file_holder(_ids: &[(u64, u64)]) -> Option<(u32, String)> {
    None
}

/// [`write_uncached`] goes through the page cache here: macOS has no
/// `O_DIRECT` (its `F_NOCACHE` is another contract), and FreeBSD's has
/// not been measured.
pub const UNCACHED_WRITES: bool = false;

/// Writes `data` into the empty `file` from its first byte, through the
/// page cache, asking `go` before each piece.
pub fn write_uncached(file: &File, data: &[u8], go: impl Fn() -> io::Result<()>) -> io::Result<()> {
    super::write_cached(file, data, 0, &go)
}

/// No kernel figure for available memory is read here: half of the
/// physical memory stands in for it (the caller's rule then takes a memory
/// spool for a database of up to a quarter of it).
pub fn mem_available() -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let (pages, size) =
        unsafe { (nix::libc::sysconf(nix::libc::_SC_PHYS_PAGES), nix::libc::sysconf(nix::libc::_SC_PAGESIZE)) };
    if pages <= 0 || size <= 0 {
        return None;
    }
    Some((pages as u64).saturating_mul(size as u64) / 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::{pthread_sigmask, SigmaskHow};

    #[test]
    fn the_wake_pipe_is_close_on_exec_and_non_blocking() {
        let (r, w) = wake_pipe().unwrap();
        for fd in [r.as_fd(), w.as_fd()] {
            let fd_flags = FdFlag::from_bits_truncate(fcntl::fcntl(fd, FcntlArg::F_GETFD).unwrap());
            assert!(fd_flags.contains(FdFlag::FD_CLOEXEC));
            let fl = OFlag::from_bits_truncate(fcntl::fcntl(fd, FcntlArg::F_GETFL).unwrap());
            assert!(fl.contains(OFlag::O_NONBLOCK));
        }
        let mut buf = [0u8; 1];
        assert_eq!(unistd::read(r.as_fd(), &mut buf), Err(Errno::EAGAIN), "an empty pipe does not block");
    }

    #[test]
    fn the_signal_wait_times_out_then_takes_a_pending_signal() {
        // SIGUSR2 on this thread only: blocked, so it stays pending until taken.
        let mut set = SigSet::empty();
        set.add(Signal::SIGUSR2);
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None).unwrap();
        let started = std::time::Instant::now();
        assert_eq!(wait_signal(&set, Duration::from_millis(30)), None);
        assert!(started.elapsed() >= Duration::from_millis(30), "waits the whole timeout");
        // SAFETY: pthread_self and pthread_kill on this very thread.
        unsafe { nix::libc::pthread_kill(nix::libc::pthread_self(), nix::libc::SIGUSR2) };
        assert_eq!(wait_signal(&set, Duration::from_millis(1)), Some(Signal::SIGUSR2));
        assert_eq!(wait_signal(&set, Duration::from_millis(1)), None, "taken, not pending any more");
    }

    #[test]
    fn available_memory_is_half_the_physical_memory() {
        let m = mem_available().expect("sysconf knows the physical memory");
        assert!(m >= 64 << 20, "{m}");
    }
}
