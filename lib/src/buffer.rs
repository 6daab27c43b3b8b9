//! Buffers that fail with "out of memory" instead of aborting the process:
//! a run under a tight `RLIMIT_AS` must end with a message, not a crash.

use std::io;

/// A zeroed buffer of `len` bytes, or `ErrorKind::OutOfMemory`.
pub fn try_buffer(len: usize) -> io::Result<Vec<u8>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
    v.resize(len, 0);
    Ok(v)
}
