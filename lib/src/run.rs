//! One run's context, handed to every stage instead of two parameters: the
//! cancellation token that signals fire, and the progress counters a binary
//! may draw.

use std::io;

use crate::progress::Progress;
use crate::signals::Cancel;
use crate::stop::Stop;

#[derive(Clone)]
pub struct Run {
    pub cancel: Cancel,
    pub progress: Progress,
}

impl Run {
    pub fn new(cancel: Cancel, progress: Progress) -> Run {
        Run { cancel, progress }
    }

    /// A run that only stops when told to, with no progress: for tests and
    /// for library users without signals.
    pub fn manual() -> io::Result<Run> {
        Ok(Run { cancel: Cancel::manual()?, progress: Progress::disabled() })
    }

    /// `Err` once a signal has come.
    pub fn check(&self) -> Result<(), Stop> {
        self.cancel.check()
    }

    /// The signal that came, as a stop. Whatever failed after a signal failed
    /// because of it (an interrupted statement, a poked read): callers report
    /// this instead of the failure it caused.
    pub fn stopped(&self) -> Option<Stop> {
        self.cancel.fired().map(Stop::Interrupted)
    }
}
