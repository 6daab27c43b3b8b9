//! The one error type the binaries see, and the pieces every module shares:
//! how an I/O cause is worded, and the two ways a run stops that are not
//! failures of its own (a signal, a reader that went away).
//!
//! Each module keeps its own error enum whose messages name the path
//! concerned; [`Error`] only gathers them so that all binaries report alike:
//! `prog: <what failed>: <path>: <cause>; <remedy>`.

use std::fmt;
use std::io;

use crate::identity::IdentityError;
use crate::output::OutputError;
use crate::recipients::RecipientsError;
use crate::seal::SealError;
use crate::snapshot::SnapshotError;
use crate::source::SourceError;
use crate::verify::VerifyError;

/// Why a run stopped although nothing failed on its own account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGINT, SIGTERM or SIGHUP arrived; the number is the signal's.
    Interrupted(i32),
    /// The reader of our standard output went away (EPIPE).
    BrokenPipe,
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Interrupted(sig) => write!(f, "interrupted by {}", signal_name(*sig)),
            Stop::BrokenPipe => f.write_str("output closed by its reader"),
        }
    }
}

impl std::error::Error for Stop {}

impl Stop {
    /// Recognises a stop carried inside an `io::Error` (see [`Stop::into_io`]) or
    /// a broken pipe reported by the kernel.
    pub fn from_io(e: &io::Error) -> Option<Stop> {
        if e.kind() == io::ErrorKind::BrokenPipe {
            return Some(Stop::BrokenPipe);
        }
        e.get_ref().and_then(|inner| inner.downcast_ref::<Stop>()).copied()
    }

    /// Wraps a stop so that it can travel through `Read`/`Write` interfaces.
    /// `ErrorKind::Other`, not `Interrupted`: `write_all` would retry that.
    pub fn into_io(self) -> io::Error {
        io::Error::other(self)
    }
}

pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        nix::libc::SIGINT => "SIGINT",
        nix::libc::SIGTERM => "SIGTERM",
        nix::libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// An I/O error worded as the C library does, without Rust's "(os error N)".
pub fn io_cause(e: &io::Error) -> String {
    if let Some(stop) = Stop::from_io(e) {
        return stop.to_string();
    }
    match e.raw_os_error() {
        Some(code) => {
            let text = nix::errno::Errno::from_raw(code).desc();
            lower_first(text)
        }
        None => e.to_string(),
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        // Keep acronyms ("I/O error") as they are.
        Some(f) if c.clone().next().is_some_and(|n| n.is_lowercase()) => f.to_lowercase().chain(c).collect(),
        _ => s.to_string(),
    }
}

/// Everything a binary can be told.
#[derive(Debug)]
pub enum Error {
    Source(SourceError),
    Snapshot(SnapshotError),
    Recipients(RecipientsError),
    Seal(SealError),
    Output(OutputError),
    Identity(IdentityError),
    /// A backup (named as the user named it) did not verify.
    Verify {
        name: String,
        error: Box<VerifyError>,
    },
    /// The invocation itself is wrong (exit 2), e.g. binary data to a terminal.
    Usage {
        message: String,
        hint: Option<String>,
    },
    /// The process could not set itself up (threads, descriptors): exit 1.
    Setup {
        what: &'static str,
        source: io::Error,
    },
    Stopped(Stop),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Source(e) => e.fmt(f),
            Error::Snapshot(e) => e.fmt(f),
            Error::Recipients(e) => e.fmt(f),
            Error::Seal(e) => e.fmt(f),
            Error::Output(e) => e.fmt(f),
            Error::Identity(e) => e.fmt(f),
            Error::Verify { name, error } => match **error {
                // The live database's errors name their own path.
                VerifyError::Live(_) => error.fmt(f),
                _ => write!(f, "{name}: {error}"),
            },
            Error::Usage { message, .. } => f.write_str(message),
            Error::Setup { what, source } => write!(f, "{what}: {}", io_cause(source)),
            Error::Stopped(s) => s.fmt(f),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    pub fn usage(message: impl Into<String>, hint: Option<&str>) -> Error {
        Error::Usage { message: message.into(), hint: hint.map(str::to_string) }
    }

    /// The remedy, where one exists.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Source(e) => e.hint(),
            Error::Snapshot(e) => e.hint(),
            Error::Recipients(e) => e.hint(),
            Error::Seal(e) => e.hint(),
            Error::Output(e) => e.hint(),
            Error::Identity(e) => e.hint(),
            Error::Verify { error, .. } => error.hint(),
            Error::Usage { hint, .. } => hint.clone(),
            Error::Setup { .. } => None,
            Error::Stopped(_) => None,
        }
    }

    /// 0 is success; 1 a runtime failure (also a closed output pipe);
    /// 2 a usage error; 128+N death by signal N.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage { .. } => 2,
            // `--db ''` / `--to ''`: the invocation is wrong, typically an unset variable.
            Error::Source(SourceError::EmptyPath)
            | Error::Output(OutputError::Empty)
            | Error::Recipients(RecipientsError::Empty { .. }) => 2,
            Error::Stopped(Stop::Interrupted(sig)) => 128u8.saturating_add(*sig as u8),
            _ => 1,
        }
    }

    /// Whether the error is worth a message: a reader that went away is not,
    /// the pipeline's other end already tells its own story.
    pub fn is_quiet(&self) -> bool {
        matches!(self, Error::Stopped(Stop::BrokenPipe))
    }

    /// The full one-line report for `prog`, or `None` when it stays quiet.
    pub fn report(&self, prog: &str) -> Option<String> {
        if self.is_quiet() {
            return None;
        }
        Some(match self.hint() {
            Some(h) => format!("{prog}: {self}; {h}"),
            None => format!("{prog}: {self}"),
        })
    }
}

impl From<SnapshotError> for Error {
    fn from(e: SnapshotError) -> Error {
        if let Some(stop) = e.stop() {
            return Error::Stopped(stop);
        }
        match e {
            SnapshotError::Output(io) => output_io(io),
            other => Error::Snapshot(other),
        }
    }
}

impl From<SealError> for Error {
    fn from(e: SealError) -> Error {
        if let Some(stop) = e.stop() {
            return Error::Stopped(stop);
        }
        match e {
            SealError::Output(io) => output_io(io),
            other => Error::Seal(other),
        }
    }
}

impl From<OutputError> for Error {
    fn from(e: OutputError) -> Error {
        match e.stop() {
            Some(stop) => Error::Stopped(stop),
            None => Error::Output(e),
        }
    }
}

/// A write to the output failed: a file's own error names its path; anything
/// else was standard output.
fn output_io(e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::OutOfMemory {
        return Error::Setup { what: "allocate buffers", source: e };
    }
    match crate::output::output_error_from_io(e) {
        Ok(out) => out.into(),
        Err(e) => Error::Output(OutputError::Write { path: "standard output".into(), source: e }),
    }
}

impl From<IdentityError> for Error {
    fn from(e: IdentityError) -> Error {
        match e.stop() {
            Some(stop) => Error::Stopped(stop),
            None => Error::Identity(e),
        }
    }
}

impl Error {
    /// A verification failure of the backup called `name`; a signal stays a signal.
    pub fn verify(name: &str, error: VerifyError) -> Error {
        match error.stop() {
            Some(stop) => Error::Stopped(stop),
            None => Error::Verify { name: name.to_string(), error: Box::new(error) },
        }
    }
}

impl From<SourceError> for Error {
    fn from(e: SourceError) -> Error {
        Error::Source(e)
    }
}

impl From<RecipientsError> for Error {
    fn from(e: RecipientsError) -> Error {
        match e.stop() {
            Some(stop) => Error::Stopped(stop),
            None => Error::Recipients(e),
        }
    }
}

impl From<Stop> for Error {
    fn from(s: Stop) -> Error {
        Error::Stopped(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_cause_drops_os_error_suffix() {
        let e = io::Error::from_raw_os_error(nix::libc::ENOENT);
        assert_eq!(io_cause(&e), "no such file or directory");
        let e = io::Error::from_raw_os_error(nix::libc::EIO);
        assert_eq!(io_cause(&e), "I/O error");
    }

    #[test]
    fn stop_travels_through_io_error() {
        let e = Stop::Interrupted(15).into_io();
        assert_eq!(Stop::from_io(&e), Some(Stop::Interrupted(15)));
        assert_eq!(Stop::from_io(&io::Error::from(io::ErrorKind::BrokenPipe)), Some(Stop::BrokenPipe));
        assert_eq!(Stop::from_io(&io::Error::other("x")), None);
    }

    #[test]
    fn exit_codes() {
        assert_eq!(Error::Stopped(Stop::Interrupted(2)).exit_code(), 130);
        assert_eq!(Error::Stopped(Stop::Interrupted(15)).exit_code(), 143);
        assert_eq!(Error::usage("x", None).exit_code(), 2);
        assert_eq!(Error::Stopped(Stop::BrokenPipe).exit_code(), 1);
        assert!(Error::Stopped(Stop::BrokenPipe).report("p").is_none());
    }
}
