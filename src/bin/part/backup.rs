//! The age file that wm-verify and wm-restore read: a named file, or
//! standard input, and the flags that say how.

use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use wmbackup::age::identity::{self, Identity};
use wmbackup::age::open::OpenError;
use wmbackup::signals::{open_read, Cancel, CancelRead};
use wmbackup::verify::{self, VerifyError};
use wmbackup::Error;

use super::budget;
use super::input;
use super::spool::{self, SpoolArg};

/// Who decrypts the backup, and where unnamed temporary files go.
#[derive(Args, Debug)]
pub struct ReadArgs {
    /// Decrypt with the identities in FILE: age-keygen output or an SSH private key (repeatable; - is standard input)
    #[arg(short = 'i', long = "identity", value_name = "FILE", required = true)]
    pub identity: Vec<PathBuf>,

    /// Directory for unnamed temporary files: wm-verify's disk spool, wm-restore's copy of old content [default: $TMPDIR, else /tmp]
    #[arg(long, value_name = "DIR")]
    pub tmpdir: Option<PathBuf>,

    /// Longest the database check may run [default: 120, plus 120 per GiB of database]
    #[arg(long, value_name = "SECONDS", value_parser = budget::parse)]
    pub time_budget: Option<Duration>,
}

/// A backup ready to be read: its name, the identities, the reader, and
/// the verification's options (the size known when it is a file).
pub struct Reading {
    pub name: String,
    pub identities: Vec<Identity>,
    pub input: Box<dyn BufRead>,
    pub opts: verify::Options,
}

impl ReadArgs {
    /// Checks the flags, reads the identities and opens `backup` (standard
    /// input for `-` or nothing; `pipe_hint` says how to pipe one in).
    /// `spool` is `--spool`: wm-verify's, or wm-restore's, whose disk is the
    /// new file itself (its --tmpdir, checked now too, only ever holds
    /// copies of old content).
    pub fn open(
        &self,
        spool: SpoolArg,
        backup: Option<&Path>,
        cancel: &Cancel,
        pipe_hint: &str,
    ) -> Result<Reading, Error> {
        let backup = Backup::named(backup, &self.identity)?;
        let identities = identity::collect(&self.identity, cancel)?;
        let opts = verify::Options {
            spool: spool::place(spool, self.tmpdir.as_ref()),
            size_hint: None,
            time_budget: self.time_budget,
        };
        opts.validate().map_err(|e| Error::about(&backup.name, e))?;
        let (input, size_hint) = backup.open(cancel, pipe_hint)?;
        Ok(Reading { name: backup.name, identities, input, opts: verify::Options { size_hint, ..opts } })
    }
}

/// The backup as the user named it: `BACKUP`, or standard input for `-`
/// or nothing. An identity cannot come from standard input too.
struct Backup {
    pub name: String,
    path: Option<PathBuf>,
}

impl Backup {
    fn named(backup: Option<&Path>, identities: &[PathBuf]) -> Result<Backup, Error> {
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
    fn open(&self, cancel: &Cancel, pipe_hint: &str) -> Result<(Box<dyn BufRead>, Option<u64>), Error> {
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
