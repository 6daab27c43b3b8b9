//! The one error the binaries report: the top floor, imported by no library
//! module. Every module's error implements [`Failure`]; this only gathers
//! them so that all binaries report alike, in the caller's words for each
//! [`Knob`]: `prog: <what failed>: <path>: <cause>; <remedy>`.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::path::Path;

use crate::age::seal::SealError;
use crate::output::OutputError;
use crate::sqlite::snapshot::SnapshotError;
use crate::stop::{io_cause, Failure, Hint, Knob, Stop};

/// Everything a binary can be told.
#[derive(Debug)]
pub enum Error {
    /// A stage failed. `about` names what its message does not (e.g. the
    /// backup, as the user named it).
    Failed {
        about: Option<String>,
        failure: Box<dyn Failure + Send + Sync>,
    },
    /// The invocation itself is wrong (exit 2), e.g. an empty `--to`.
    Usage {
        message: String,
        hint: Option<String>,
    },
    /// The process could not set itself up (threads, descriptors, memory): exit 1.
    Setup {
        what: &'static str,
        source: io::Error,
    },
    Stopped(Stop),
}

impl<E: Failure + Send + Sync + 'static> From<E> for Error {
    fn from(e: E) -> Error {
        match e.stop() {
            Some(stop) => Error::Stopped(stop),
            None => Error::Failed { about: None, failure: Box::new(e) },
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Failed { about: Some(a), failure } => write!(f, "{a}: {failure}"),
            Error::Failed { about: None, failure } => failure.fmt(f),
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

    /// `e`, about `what` (prefixed to its message); a stop stays a stop.
    pub fn about(what: &str, e: impl Failure + Send + Sync + 'static) -> Error {
        match Error::from(e) {
            Error::Failed { failure, .. } => Error::Failed { about: Some(what.to_string()), failure },
            other => other,
        }
    }

    /// A write to the output named `target` failed.
    pub fn writing(target: &Path, e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::OutOfMemory {
            return Error::Setup { what: "allocate buffers", source: e };
        }
        OutputError::Write { path: target.to_path_buf(), source: e }.into()
    }

    /// A snapshot's failure, its output being `target`.
    pub fn snapshot(e: SnapshotError, target: &Path) -> Error {
        match e {
            SnapshotError::Output(io) => Error::writing(target, io),
            other => other.into(),
        }
    }

    /// Encryption's failure, its output being `target`.
    pub fn seal(e: SealError, target: &Path) -> Error {
        match e {
            SealError::Output(io) => Error::writing(target, io),
            other => other.into(),
        }
    }

    /// 0 is success; 1 a runtime failure (also a closed output pipe);
    /// 2 a usage error; 128+N death by signal N.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Failed { failure, .. } => failure.exit_code(),
            Error::Usage { .. } => 2,
            Error::Setup { .. } => 1,
            Error::Stopped(s) => s.exit_code(),
        }
    }

    /// The remedy, in the caller's words for each knob.
    pub fn hint(&self, spell: &dyn Fn(Knob) -> Cow<'static, str>) -> Option<String> {
        match self {
            Error::Failed { failure, .. } => failure.hint().map(|h: Hint| h.render(spell)),
            Error::Usage { hint, .. } => hint.clone(),
            Error::Setup { .. } | Error::Stopped(_) => None,
        }
    }

    /// The full one-line report for `prog`, or `None` when it stays quiet: a
    /// reader that went away is not worth a message, the pipeline's other
    /// end already tells its own story.
    pub fn report(&self, prog: &str, spell: &dyn Fn(Knob) -> Cow<'static, str>) -> Option<String> {
        if matches!(self, Error::Stopped(Stop::BrokenPipe)) {
            return None;
        }
        Some(match self.hint(spell) {
            Some(h) => format!("{prog}: {self}; {h}"),
            None => format!("{prog}: {self}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(k: Knob) -> Cow<'static, str> {
        format!("{k:?}").into()
    }

    #[test]
    fn exit_codes() {
        assert_eq!(Error::Stopped(Stop::Interrupted(2)).exit_code(), 130);
        assert_eq!(Error::Stopped(Stop::Interrupted(15)).exit_code(), 143);
        assert_eq!(Error::usage("x", None).exit_code(), 2);
        assert_eq!(Error::Stopped(Stop::BrokenPipe).exit_code(), 1);
        assert!(Error::Stopped(Stop::BrokenPipe).report("p", &plain).is_none());
        assert_eq!(Error::from(OutputError::Empty).exit_code(), 2);
    }

    #[test]
    fn a_broken_pipe_while_writing_is_a_quiet_stop() {
        let e = Error::writing(Path::new("standard output"), io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(matches!(e, Error::Stopped(Stop::BrokenPipe)));
        let e = Error::writing(Path::new("/x.age"), io::Error::from_raw_os_error(nix::libc::ENOSPC));
        assert_eq!(e.to_string(), "write: /x.age: no space left on device");
    }
}
