//! The source and snapshot flags of wm-snapshot and workmem-backup.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use wmbackup::sqlite::resolve;
use wmbackup::sqlite::snapshot::{self, Method};
use wmbackup::Error;

use super::spool::{place, SpoolArg};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MethodArg {
    /// VACUUM INTO a spool: compact, the design's method.
    Vacuum,
    /// Stream pages from sqlite_dbpage in one read transaction: fastest.
    Pages,
}

#[derive(Debug, Args)]
pub struct DbArgs {
    /// Source database [default: $MEMORY_DB_PATH, else memory.db beside this program, else ./memory.db]
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,

    /// Load variables (MEMORY_DB_PATH) from a .env file first; the process environment wins
    #[arg(long, value_name = "PATH")]
    pub env_file: Option<PathBuf>,
}

impl DbArgs {
    /// The database path. `--db ''` is a usage error (typically an unset
    /// shell variable); a `.env` file that exists but cannot be read is a
    /// warning, as in the server.
    pub fn resolve(&self, prog: &str, quiet: bool) -> Result<PathBuf, Error> {
        super::db::resolve(self.db.as_deref(), self.env_file.as_deref(), prog, quiet, resolve::resolve_db_path)
    }
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// How to take the snapshot
    #[arg(long, value_enum, default_value = "vacuum")]
    pub method: MethodArg,

    /// Where a snapshot waits before it is written out
    #[arg(long, value_enum, default_value = "auto")]
    pub spool: SpoolArg,

    /// Directory for a disk spool [default: $TMPDIR, else /tmp]
    #[arg(long, value_name = "DIR")]
    pub tmpdir: Option<PathBuf>,

    /// How long to wait for a writer that holds the database locked
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub busy_timeout: u64,

    /// Also run PRAGMA quick_check on the snapshot before writing it out
    #[arg(long)]
    pub check: bool,
}

impl SnapshotArgs {
    pub fn options(&self) -> snapshot::Options {
        snapshot::Options {
            method: match self.method {
                MethodArg::Vacuum => Method::Vacuum,
                MethodArg::Pages => Method::Pages,
            },
            spool: place(self.spool, self.tmpdir.as_ref()),
            check: self.check,
        }
    }

    pub fn busy_timeout(&self) -> Duration {
        Duration::from_millis(self.busy_timeout)
    }
}
