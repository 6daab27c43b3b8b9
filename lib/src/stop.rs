//! The ground floor every module may stand on: the two ways a run stops that
//! are not failures of its own ([`Stop`]), how an I/O cause is worded
//! ([`io_cause`]), and the one trait every module's error implements
//! ([`Failure`]: a remedy, an exit code, whether it is really a stop).
//!
//! Remedies name what the user can change as [`Knob`]s, not as flags: the
//! library knows that "the spool" can be put on disk, the caller knows that
//! its command line spells that `--spool disk` ([`Hint::render`]).

use std::borrow::Cow;
use std::fmt;
use std::io;

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
    /// A reader that went away, as the kernel reports it.
    pub fn from_io(e: &io::Error) -> Option<Stop> {
        (e.kind() == io::ErrorKind::BrokenPipe).then_some(Stop::BrokenPipe)
    }

    /// 128+N after signal N; 1 for a closed output pipe.
    pub fn exit_code(&self) -> u8 {
        match self {
            Stop::Interrupted(sig) => 128u8.saturating_add(*sig as u8),
            Stop::BrokenPipe => 1,
        }
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
        Some(code) => lower_first(nix::errno::Errno::from_raw(code).desc()),
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

/// What every module's error can say beyond its message.
pub trait Failure: std::error::Error {
    /// How to fix it, where there is a way.
    fn hint(&self) -> Option<Hint> {
        None
    }

    /// The stop this failure really is (a signal came, the reader left).
    fn stop(&self) -> Option<Stop> {
        None
    }

    /// 1 for a failure; 2 when the invocation itself is wrong; 128+N after signal N.
    fn exit_code(&self) -> u8 {
        self.stop().map_or(1, |s| s.exit_code())
    }
}

/// Something the user can change, which a remedy may point at. The library
/// names it; the caller spells it (`--spool disk`, a setting in a GUI, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Knob {
    /// Which database to read.
    Database,
    /// Where the output goes.
    Destination,
    /// Put the spool on disk / in memory.
    SpoolDisk,
    SpoolMemory,
    /// The directory of a disk spool.
    Tmpdir,
    /// How long to wait for a writer's lock.
    BusyTimeout,
    /// Seal empty input.
    AllowEmpty,
    /// Seal bytes without the SQLite completeness check.
    Raw,
    /// The live database to compare a backup with.
    Against,
    /// An identity file that opens backups.
    Identity,
    /// The retention rules (keep the last N, daily N, …).
    Retention,
    /// Backup names read from standard input instead of a directory.
    NamesOnStdin,
    /// The node_exporter textfile of a backup run.
    MetricsFile,
    /// How long the check of a decrypted database may take.
    TimeBudget,
}

/// A remedy: words with [`Knob`]s among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint(Vec<Part>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(Cow<'static, str>),
    Knob(Knob),
}

impl From<&'static str> for Part {
    fn from(s: &'static str) -> Part {
        Part::Text(Cow::Borrowed(s))
    }
}

impl From<String> for Part {
    fn from(s: String) -> Part {
        Part::Text(Cow::Owned(s))
    }
}

impl From<Knob> for Part {
    fn from(k: Knob) -> Part {
        Part::Knob(k)
    }
}

/// `hint!["use ", Knob::SpoolDisk]`: a [`Hint`] from words and knobs.
macro_rules! hint {
    ($($part:expr),+ $(,)?) => {
        $crate::stop::Hint::new(vec![$($crate::stop::Part::from($part)),+])
    };
}
pub(crate) use hint;

impl Hint {
    pub fn new(parts: Vec<Part>) -> Hint {
        Hint(parts)
    }

    /// The remedy in the caller's words for each knob.
    pub fn render(&self, spell: &dyn Fn(Knob) -> Cow<'static, str>) -> String {
        self.0
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.clone(),
                Part::Knob(k) => spell(*k),
            })
            .collect()
    }
}

impl From<&'static str> for Hint {
    fn from(s: &'static str) -> Hint {
        Hint(vec![Part::from(s)])
    }
}

impl From<String> for Hint {
    fn from(s: String) -> Hint {
        Hint(vec![Part::from(s)])
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
    fn a_broken_pipe_is_a_stop_and_nothing_else_is() {
        assert_eq!(Stop::from_io(&io::Error::from(io::ErrorKind::BrokenPipe)), Some(Stop::BrokenPipe));
        assert_eq!(Stop::from_io(&io::Error::other("x")), None);
        assert_eq!(Stop::Interrupted(2).exit_code(), 130);
        assert_eq!(Stop::Interrupted(15).exit_code(), 143);
        assert_eq!(Stop::BrokenPipe.exit_code(), 1);
    }

    #[test]
    fn hints_spell_knobs_in_the_callers_words() {
        let h = hint!["point ", Knob::Tmpdir, " elsewhere, or use ", Knob::SpoolMemory];
        let spell = |k: Knob| -> Cow<'static, str> {
            match k {
                Knob::Tmpdir => "--tmpdir".into(),
                Knob::SpoolMemory => "--spool memory".into(),
                other => format!("{other:?}").into(),
            }
        };
        assert_eq!(h.render(&spell), "point --tmpdir elsewhere, or use --spool memory");
    }
}
