//! Data on standard input, never from a terminal.

use std::fs::File;
use std::io::{self, IsTerminal};
use std::os::fd::AsFd;

use wmbackup::output::widen_pipe;
use wmbackup::Error;

/// Standard input as a file, refused when it is a terminal (`hint` says how
/// to pipe the data in).
pub fn stdin_data(hint: &str) -> Result<File, Error> {
    let input = io::stdin();
    if input.is_terminal() {
        return Err(Error::usage("refusing to read data from a terminal", Some(hint)));
    }
    let fd = input.as_fd().try_clone_to_owned().map_err(|e| Error::usage(format!("standard input: {e}"), None))?;
    widen_pipe(&fd);
    Ok(File::from(fd))
}
