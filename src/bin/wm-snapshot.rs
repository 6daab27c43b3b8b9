//! wm-snapshot: a consistent snapshot of a live SQLite database, to a file or stdout.

mod common;
#[path = "part/db.rs"]
mod db;
#[path = "part/sink.rs"]
mod sink;
#[path = "part/snapshot.rs"]
mod snapshot_args;
#[path = "part/spool.rs"]
mod spool;

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use common::{human, note, seconds, stderr_is_terminal, Common};
use snapshot_args::SnapshotArgs;
use wmbackup::progress::Progress;
use wmbackup::run::Run;
use wmbackup::signals::Cancel;
use wmbackup::spool::IO_CHUNK;
use wmbackup::sqlite::snapshot::{self, Method};
use wmbackup::sqlite::source::Source;
use wmbackup::stop::Knob;
use wmbackup::Error;

const PROG: &str = "wm-snapshot";

/// Write a consistent snapshot of a live SQLite database (the workmem memory
/// store) to standard output or, atomically and durably, to a file.
#[derive(Parser, Debug)]
#[command(name = PROG, version, after_help = "Examples:\n  wm-snapshot --db memory.db --to snap.db\n  wm-snapshot | wm-seal -r keys.txt --to memory.db.age\n\nSee wm-snapshot(1).")]
struct Cli {
    #[command(flatten)]
    snap: SnapshotArgs,

    /// Write to PATH (atomically: temporary, fsync, rename) instead of standard output; - is standard output
    #[arg(long, value_name = "PATH")]
    to: Option<PathBuf>,

    /// No notices or summary on stderr, only errors
    #[arg(short, long)]
    quiet: bool,

    #[command(flatten)]
    common: Common,
}

fn main() -> ExitCode {
    let cli: Cli = common::parse_args(PROG, std::env::args_os().collect());
    common::main_with(PROG, |cancel| run(&cli, cancel))
}

fn run(cli: &Cli, cancel: &Cancel) -> Result<(), Error> {
    let started = Instant::now();
    let db = cli.snap.db.resolve(PROG, cli.quiet)?;
    let opts = cli.snap.options();
    opts.validate()?;
    // The destination is checked against the source before the source is read.
    let sink = sink::open(cli.to.as_deref(), cancel, false, Some(&db))?;
    let target = sink.target();
    let mut source = Source::open(&db, cli.snap.busy_timeout(), Knob::Database)?;
    let run = Run::new(cancel.clone(), Progress::disabled());
    let mut out = BufWriter::with_capacity(IO_CHUNK, sink);
    let report = snapshot::snapshot(&mut source, &opts, &run, &mut out).map_err(|e| Error::snapshot(e, &target))?;
    let sink = out.into_inner().map_err(|e| Error::writing(&target, e.into_error()))?;
    sink.commit()?;
    if report.method == Method::Pages && report.free_pages > 0 {
        note(
            PROG,
            cli.quiet,
            &format!(
                "note: {} free pages ({}) copied along; --method vacuum leaves them out",
                report.free_pages,
                human(report.free_pages as u64 * report.page_size as u64)
            ),
        );
    }
    if stderr_is_terminal() {
        note(
            PROG,
            cli.quiet,
            &format!(
                "{} ({} pages) from {} to {} via {}, in {}",
                human(report.bytes),
                report.pages,
                source.path().display(),
                target.display(),
                report.how(),
                seconds(started.elapsed())
            ),
        );
    }
    let _ = std::io::stderr().flush();
    Ok(())
}
