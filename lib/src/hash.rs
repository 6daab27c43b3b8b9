//! SHA-256 of the bytes as they go out: a `Write` that passes every write
//! through unchanged and hashes what was accepted, so that a report can say
//! what `sha256sum` of the file says without reading it again.
//!
//! SHA-256 costs about 0.55 s of one core per GiB here (ring, with the CPU's
//! SHA extensions). Done inline, it lands on the thread that also reads the
//! snapshot and writes the file, the one every other stage waits for; so
//! the bytes are copied (a tenth of that) to a thread of their own, through
//! a queue of 4 buffers that are then reused. Callers switch it on only when
//! a report will carry the digest.

use std::io::{self, Write};
use std::sync::mpsc;
use std::thread::JoinHandle;

use ring::digest::{Context, SHA256};

pub struct Hashing<W> {
    inner: W,
    hasher: Option<Hasher>,
}

enum Hasher {
    /// The usual case: a thread hashes copies of what was written.
    Thread {
        to: mpsc::SyncSender<Vec<u8>>,
        /// Buffers the thread is done with, for the next copies.
        back: mpsc::Receiver<Vec<u8>>,
        thread: JoinHandle<String>,
    },
    /// No thread to be had (a tight RLIMIT_NPROC): hash where we are.
    Inline(Context),
}

fn hex(d: ring::digest::Digest) -> String {
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl Hasher {
    fn start() -> Hasher {
        let (to, rx) = mpsc::sync_channel::<Vec<u8>>(4);
        let (back_tx, back) = mpsc::channel();
        let spawned = std::thread::Builder::new().name("sha256".into()).spawn(move || {
            let mut ctx = Context::new(&SHA256);
            for buf in rx {
                ctx.update(&buf);
                let _ = back_tx.send(buf);
            }
            hex(ctx.finish())
        });
        match spawned {
            Ok(thread) => Hasher::Thread { to, back, thread },
            Err(_) => Hasher::Inline(Context::new(&SHA256)),
        }
    }

    fn feed(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Hasher::Inline(c) => c.update(data),
            Hasher::Thread { to, back, .. } => {
                let mut buf = back.try_recv().unwrap_or_default();
                buf.clear();
                buf.try_reserve(data.len()).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
                buf.extend_from_slice(data);
                to.send(buf).map_err(|_| io::Error::other("the hashing thread stopped"))?;
            }
        }
        Ok(())
    }

    fn finish(self) -> Option<String> {
        match self {
            Hasher::Inline(c) => Some(hex(c.finish())),
            Hasher::Thread { to, thread, .. } => {
                drop(to);
                thread.join().ok()
            }
        }
    }
}

impl<W: Write> Hashing<W> {
    /// Hashes what passes through when `enabled`, else only passes it on.
    pub fn new(inner: W, enabled: bool) -> Hashing<W> {
        Hashing { inner, hasher: enabled.then(Hasher::start) }
    }

    /// The writer, and the hex digest of everything written (`None` when
    /// not enabled).
    pub fn finish(self) -> (W, Option<String>) {
        (self.inner, self.hasher.and_then(Hasher::finish))
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(h) = &mut self.hasher {
            h.feed(&buf[..n])?;
        }
        Ok(n)
    }

    /// Forwarded as one call: the inner writer's own `write_all` may do more
    /// than loop (the atomic file starts writeback every 8 MiB).
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf)?;
        if let Some(h) = &mut self.hasher {
            h.feed(buf)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts at most 3 bytes per write.
    struct Short(Vec<u8>);
    impl Write for Short {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(3);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_digest_is_of_the_bytes_accepted_even_by_short_writes() {
        let mut h = Hashing::new(Short(Vec::new()), true);
        h.write_all(b"hello ").unwrap();
        let n = h.write(b"world").unwrap();
        assert_eq!(n, 3);
        let (inner, hex) = h.finish();
        assert_eq!(inner.0, b"hello wor");
        let want: String =
            ring::digest::digest(&SHA256, b"hello wor").as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex.as_deref(), Some(want.as_str()));
        let (_, none) = Hashing::new(Vec::new(), false).finish();
        assert_eq!(none, None);
    }

    #[test]
    fn many_writes_through_the_thread_and_inline_give_the_digest_of_the_whole() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let want = hex(ring::digest::digest(&SHA256, &data));
        let mut threaded = Hashing::new(Vec::new(), true);
        let mut inline = Hashing { inner: Vec::new(), hasher: Some(Hasher::Inline(Context::new(&SHA256))) };
        for piece in data.chunks(65_537) {
            threaded.write_all(piece).unwrap();
            inline.write_all(piece).unwrap();
        }
        let (out, got) = threaded.finish();
        assert_eq!(out, data);
        assert_eq!(got.as_deref(), Some(want.as_str()));
        assert_eq!(inline.finish().1.as_deref(), Some(want.as_str()));
    }
}
