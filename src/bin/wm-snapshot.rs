//! wm-snapshot: a consistent snapshot of a live SQLite database, to a file or stdout.

mod common;

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use common::{human, note, seconds, stderr_is_terminal, Sink, SnapshotArgs};
use wmbackup::progress::Progress;
use wmbackup::snapshot::{self, Method, Source};
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
}

fn main() -> ExitCode {
    let cli: Cli = common::parse_args(PROG, std::env::args_os().collect());
    common::main_with(PROG, || run(&cli))
}

fn run(cli: &Cli) -> Result<(), Error> {
    let cancel = common::install_signals()?;
    let started = Instant::now();
    let db = cli.snap.resolve_db(PROG, cli.quiet)?;
    let opts = cli.snap.options();
    opts.validate()?;
    // The destination is checked against the source before the source is read.
    let sink = Sink::open(cli.to.as_deref(), &cancel, false, &snapshot::protected_paths(&db))?;
    let mut source = Source::open(&db, cli.snap.busy_timeout())?;
    let mut out = BufWriter::with_capacity(wmbackup::spool::IO_CHUNK, sink);
    let report = source.snapshot(&opts, &cancel, &Progress::disabled(), &mut out)?;
    let sink = out.into_inner().map_err(|e| Error::from(snapshot::SnapshotError::Output(e.into_error())))?;
    let target = sink.describe();
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
                "{} ({} pages) from {} to {target} via {}, in {}",
                human(report.bytes),
                report.pages,
                source.path().display(),
                report.how(),
                seconds(started.elapsed())
            ),
        );
    }
    let _ = std::io::stderr().flush();
    Ok(())
}
