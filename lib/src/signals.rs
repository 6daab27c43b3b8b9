//! Interruption: SIGINT, SIGTERM and SIGHUP become a value the work can see.
//!
//! [`Cancel::on_signals`] blocks those signals in the calling thread (and so
//! in every thread spawned after it) and hands them to a watcher thread that
//! `sigwait`s. On the first signal the watcher records it, interrupts every
//! registered SQLite statement (`sqlite3_interrupt`) and makes a wake-up pipe
//! readable, so that a read of stdin or a write to stdout blocked in `poll`
//! returns at once. The work then unwinds normally: temporaries are removed by
//! their owners' `Drop`, and the binary exits 128+N. A second signal kills the
//! process the ordinary way, for a run that does not unwind.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::time::Duration;

use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};

use crate::platform;
use crate::stop::Stop;

const SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];
/// How often a fired token pokes the working thread, and so how late a
/// second signal may be seen where there is no `sigtimedwait`.
const POKE_PERIOD: Duration = Duration::from_millis(50);

/// A cancellation token shared by every stage of a run.
#[derive(Clone)]
pub struct Cancel {
    inner: Arc<Inner>,
}

struct Inner {
    signal: AtomicI32,
    wake_r: OwnedFd,
    wake_w: OwnedFd,
    next_id: AtomicU64,
    sqlite: Mutex<Vec<(u64, rusqlite::InterruptHandle)>>,
}

impl Cancel {
    /// A token that only fires when [`Cancel::trigger`] is called.
    pub fn manual() -> io::Result<Cancel> {
        let (wake_r, wake_w) = platform::wake_pipe()?;
        Ok(Cancel {
            inner: Arc::new(Inner {
                signal: AtomicI32::new(0),
                wake_r,
                wake_w,
                next_id: AtomicU64::new(0),
                sqlite: Mutex::new(Vec::new()),
            }),
        })
    }

    /// A token fired by SIGINT, SIGTERM or SIGHUP. Call it before any other
    /// thread is started: the signal mask is inherited, not shared.
    ///
    /// A thread blocked in `write(2)` on a full pipe does not return when a
    /// signal is merely recorded, and `poll` only helps before the write
    /// starts. So once fired, the watcher also pokes the calling thread with
    /// SIGURG (a no-op handler installed without SA_RESTART) every 50 ms:
    /// the blocked call returns EINTR, and the work sees the token. Between
    /// pokes it waits for a second signal ([`platform::wait_signal`]).
    pub fn on_signals() -> io::Result<Cancel> {
        let cancel = Cancel::manual()?;
        let mut set = SigSet::empty();
        for s in SIGNALS {
            set.add(s);
        }
        signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
        let poke = SigAction::new(SigHandler::Handler(ignore_poke), SaFlags::empty(), SigSet::empty());
        // SAFETY: the handler does nothing at all, so it is async-signal-safe.
        unsafe { signal::sigaction(Signal::SIGURG, &poke)? };
        // SAFETY: pthread_self has no preconditions.
        let worker = Worker(unsafe { nix::libc::pthread_self() });
        let watcher = cancel.clone();
        std::thread::Builder::new().name("signals".into()).spawn(move || {
            let sig = match set.wait() {
                Ok(sig) => sig,
                Err(_) => return,
            };
            watcher.trigger(sig as i32);
            loop {
                worker.poke();
                match platform::wait_signal(&set, POKE_PERIOD) {
                    None => continue,
                    Some(second) => {
                        // Second signal: die by it, as an impatient user expects.
                        // SAFETY: restoring the default disposition is always sound.
                        unsafe {
                            let _ = signal::signal(second, SigHandler::SigDfl);
                        }
                        let mut one = SigSet::empty();
                        one.add(second);
                        let _ = signal::pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&one), None);
                        let _ = signal::raise(second);
                    }
                }
            }
        })?;
        Ok(cancel)
    }

    /// Fires the token as if `sig` had arrived. Only the first call counts.
    pub fn trigger(&self, sig: i32) {
        if self.inner.signal.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            let _ = nix::unistd::write(&self.inner.wake_w, b"x");
            let handles = self.inner.sqlite.lock().unwrap_or_else(|p| p.into_inner());
            for (_, h) in handles.iter() {
                h.interrupt();
            }
        }
    }

    /// The signal that fired, if any.
    pub fn fired(&self) -> Option<i32> {
        match self.inner.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    pub fn check(&self) -> Result<(), Stop> {
        match self.fired() {
            Some(sig) => Err(Stop::Interrupted(sig)),
            None => Ok(()),
        }
    }

    /// The same as [`Cancel::check`] for `Read`/`Write` code. The error
    /// carries no type: whoever sees it asks [`Cancel::fired`] (see
    /// `Run::stopped`), as for every other failure that follows a signal.
    pub fn check_io(&self) -> io::Result<()> {
        match self.fired() {
            // `Other`, not `Interrupted`: `write_all` would retry that.
            Some(_) => Err(io::Error::other("interrupted by a signal")),
            None => Ok(()),
        }
    }

    /// Makes a signal interrupt whatever `conn` is running until the guard drops.
    pub fn watch_sqlite(&self, conn: &rusqlite::Connection) -> SqliteWatch {
        let id = self.inner.next_id.fetch_add(1, Ordering::SeqCst);
        let handle = conn.get_interrupt_handle();
        let mut list = self.inner.sqlite.lock().unwrap_or_else(|p| p.into_inner());
        // A signal that came before the registration must still stop the work.
        if self.fired().is_some() {
            handle.interrupt();
        }
        list.push((id, handle));
        SqliteWatch { cancel: self.clone(), id }
    }

    /// Waits until `fd` is ready for `events` or the token fires.
    fn wait(&self, fd: BorrowedFd<'_>, events: PollFlags) -> io::Result<()> {
        loop {
            self.check_io()?;
            let mut fds = [PollFd::new(fd, events), PollFd::new(self.inner.wake_r.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {
                    self.check_io()?;
                    if fds[0].revents().is_some_and(|r| !r.is_empty()) {
                        return Ok(());
                    }
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

extern "C" fn ignore_poke(_: nix::libc::c_int) {}

/// The thread that does the work and may sit in a blocking system call.
struct Worker(nix::libc::pthread_t);

// SAFETY: a pthread_t only names a thread, and pthread_kill may be called
// with it from any thread. (It is an integer on glibc and macOS, but a
// pointer on musl, which the compiler cannot know to be shareable.)
unsafe impl Send for Worker {}

impl Worker {
    fn poke(&self) {
        // SAFETY: the thread is the process's main thread, alive until exit.
        unsafe {
            nix::libc::pthread_kill(self.0, nix::libc::SIGURG);
        }
    }
}

/// Registration of a SQLite connection with a [`Cancel`]; removed on drop.
pub struct SqliteWatch {
    cancel: Cancel,
    id: u64,
}

impl Drop for SqliteWatch {
    fn drop(&mut self) {
        let mut list = self.cancel.inner.sqlite.lock().unwrap_or_else(|p| p.into_inner());
        list.retain(|(id, _)| *id != self.id);
    }
}

/// Opens `path` for reading. `File::open` retries EINTR forever, so an open
/// that blocks (a FIFO nobody writes to yet) would outlive every signal;
/// here it gives way to the token.
pub fn open_read(path: &std::path::Path, cancel: &Cancel) -> io::Result<std::fs::File> {
    use nix::fcntl::{open, OFlag};
    loop {
        match open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty()) {
            Ok(fd) => return Ok(std::fs::File::from(fd)),
            Err(nix::errno::Errno::EINTR) => cancel.check_io()?,
            Err(e) => return Err(e.into()),
        }
    }
}

/// A reader (stdin) whose blocking reads end when the token fires.
pub struct CancelRead<R> {
    inner: R,
    cancel: Cancel,
}

impl<R: Read + AsFd> CancelRead<R> {
    pub fn new(inner: R, cancel: &Cancel) -> Self {
        CancelRead { inner, cancel: cancel.clone() }
    }
}

impl<R: Read + AsFd> Read for CancelRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            self.cancel.wait(self.inner.as_fd(), PollFlags::POLLIN)?;
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted || e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    fn read_vectored(&mut self, bufs: &mut [io::IoSliceMut<'_>]) -> io::Result<usize> {
        loop {
            self.cancel.wait(self.inner.as_fd(), PollFlags::POLLIN)?;
            match self.inner.read_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted || e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }
}

/// A writer (stdout) whose blocking writes end when the token fires.
pub struct CancelWrite<W> {
    inner: W,
    cancel: Cancel,
}

impl<W: Write + AsFd> CancelWrite<W> {
    pub fn new(inner: W, cancel: &Cancel) -> Self {
        CancelWrite { inner, cancel: cancel.clone() }
    }
}

impl<W: Write + AsFd> Write for CancelWrite<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            self.cancel.wait(self.inner.as_fd(), PollFlags::POLLOUT)?;
            match self.inner.write(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted || e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_wakes_a_blocked_read() {
        let cancel = Cancel::manual().unwrap();
        let (r, _w) = nix::unistd::pipe().unwrap();
        let c2 = cancel.clone();
        let t = std::thread::spawn(move || {
            let mut reader = CancelRead::new(std::fs::File::from(r), &c2);
            let mut buf = [0u8; 8];
            reader.read(&mut buf)
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        cancel.trigger(15);
        assert!(t.join().unwrap().is_err(), "the read gives way");
        assert_eq!(cancel.fired(), Some(15));
        cancel.trigger(2);
        assert_eq!(cancel.fired(), Some(15), "the first signal is the one reported");
    }
}
