//! `--to PATH|-`: the output of the tools that write data.

use std::path::Path;

use wmbackup::output::Sink;
use wmbackup::signals::Cancel;
use wmbackup::Error;

/// Opens `--to` (absent or `-`: standard output), never the database
/// `source`. `--to ''` is a usage error, typically an unset shell variable.
pub fn open(to: Option<&Path>, cancel: &Cancel, terminal_ok: bool, source: Option<&Path>) -> Result<Sink, Error> {
    if to.is_some_and(|p| p.as_os_str().is_empty()) {
        return Err(Error::usage("destination: --to: empty path", Some("give a file name, or - for standard output")));
    }
    Ok(Sink::open(to, cancel, terminal_ok, source)?)
}
