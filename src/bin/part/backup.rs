//! The age file that wm-verify and wm-restore read: a named file, or
//! standard input; and their JSON report on standard output.

use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use wmbackup::age::open::OpenError;
use wmbackup::signals::{open_read, Cancel, CancelRead};
use wmbackup::verify::VerifyError;
use wmbackup::Error;

use super::input;

/// The backup as the user named it: `BACKUP`, or standard input for `-`
/// or nothing. An identity cannot come from standard input too.
pub struct Backup {
    pub name: String,
    path: Option<PathBuf>,
}

impl Backup {
    pub fn named(backup: Option<&Path>, identities: &[PathBuf]) -> Result<Backup, Error> {
        let path = backup.filter(|p| *p != Path::new("-")).map(Path::to_path_buf);
        if path.is_none() && identities.iter().any(|p| p == Path::new("-")) {
            return Err(Error::usage(
                "-i - and the backup cannot both come from standard input",
                Some("pass the backup as a file argument, or the identity as a file"),
            ));
        }
        let name = path.as_ref().map_or_else(|| "standard input".to_string(), |p| p.display().to_string());
        Ok(Backup { name, path })
    }

    /// A buffered reader that a signal interrupts, and the size when the
    /// backup is a regular file. `pipe_hint` says how to pipe one in.
    pub fn open(&self, cancel: &Cancel, pipe_hint: &str) -> Result<(Box<dyn BufRead>, Option<u64>), Error> {
        let unreadable = |e: io::Error| Error::about(&self.name, VerifyError::Open(OpenError::Read(e)));
        let (file, size) = match &self.path {
            Some(p) => {
                let f = open_read(p, cancel).map_err(unreadable)?;
                // A directory opens; its first read fails with "is a directory".
                let meta = f.metadata().map_err(unreadable)?;
                (f, meta.is_file().then_some(meta.len()))
            }
            None => (input::stdin_data(pipe_hint)?, None),
        };
        Ok((Box::new(BufReader::with_capacity(1 << 20, CancelRead::new(file, cancel))), size))
    }
}

/// The report as one compact JSON object on standard output.
pub fn print_json(report: &impl serde::Serialize) -> Result<(), Error> {
    let stdout = Path::new("standard output");
    let text = serde_json::to_string(report).map_err(|e| Error::writing(stdout, e.into()))?;
    let mut out = io::stdout().lock();
    writeln!(out, "{text}").and_then(|()| out.flush()).map_err(|e| Error::writing(stdout, e))
}
