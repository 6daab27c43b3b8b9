//! Progress as shared counters: the library bumps them, a binary that wants a
//! progress bar reads them from another thread and draws. A disabled
//! [`Progress`] costs one branch per update.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Clone, Default)]
pub struct Progress {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    phase: Mutex<Phase>,
    done: AtomicU64,
}

/// One step of a run: "snapshot", "encrypt", "sync".
#[derive(Debug, Clone)]
pub struct Phase {
    pub name: &'static str,
    /// Bytes expected, when known (estimates may be exceeded a little).
    pub total: Option<u64>,
    pub started: Instant,
}

impl Progress {
    pub fn disabled() -> Progress {
        Progress { inner: None }
    }

    pub fn enabled() -> Progress {
        Progress {
            inner: Some(Arc::new(Inner {
                phase: Mutex::new(Phase { name: "start", total: None, started: Instant::now() }),
                done: AtomicU64::new(0),
            })),
        }
    }

    /// Starts a new phase; the byte counter goes back to zero.
    pub fn phase(&self, name: &'static str, total: Option<u64>) {
        if let Some(i) = &self.inner {
            *i.phase.lock().unwrap_or_else(|p| p.into_inner()) = Phase { name, total, started: Instant::now() };
            i.done.store(0, Ordering::Relaxed);
        }
    }

    pub fn add(&self, bytes: u64) {
        if let Some(i) = &self.inner {
            i.done.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    pub fn set(&self, bytes: u64) {
        if let Some(i) = &self.inner {
            i.done.store(bytes, Ordering::Relaxed);
        }
    }

    /// The current phase and the bytes done in it.
    pub fn read(&self) -> Option<(Phase, u64)> {
        let i = self.inner.as_ref()?;
        let phase = i.phase.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Some((phase, i.done.load(Ordering::Relaxed)))
    }
}
