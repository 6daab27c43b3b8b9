//! wm-snapshot: a consistent snapshot of a live SQLite database, to a file or stdout.

mod common;
#[path = "part/db.rs"]
mod db;
#[path = "part/json.rs"]
mod json;
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
use wmbackup::clock::Utc;
use wmbackup::hash::Hashing;
use wmbackup::progress::Progress;
use wmbackup::prune;
use wmbackup::report::{self, Backup};
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

    /// Write to PATH (atomically: temporary, fsync, rename) instead of standard output; a directory (DIR/) gets a new STEM-YYYYMMDDTHHMMSSZ.db; - is standard output
    #[arg(long, value_name = "PATH")]
    to: Option<PathBuf>,

    /// Print one JSON object on standard error instead of the summary (also on failure)
    #[arg(long)]
    json: bool,

    /// No notices or summary on stderr, only errors
    #[arg(short, long)]
    quiet: bool,

    #[command(flatten)]
    common: Common,
}

fn main() -> ExitCode {
    common::harden(PROG);
    let cli: Cli = json::parse_args(PROG, std::env::args_os().collect());
    json::main_with(PROG, cli.json, |cancel, report| run(&cli, cancel, report))
}

fn run(cli: &Cli, cancel: &Cancel, report: &mut Option<Backup>) -> Result<(), Error> {
    let started = Instant::now();
    let started_at = Utc::now();
    let quiet = cli.quiet || cli.json;
    let db = cli.snap.db.resolve(PROG, quiet)?;
    let opts = cli.snap.options();
    opts.validate()?;
    // The destination is checked against the source before the source is read.
    let series = sink::Series { stem: prune::stem_of_database(&db), ext: "db" };
    let sink = sink::open(cli.to.as_deref(), cancel, false, Some(&db), &series)?;
    let target = sink.target();
    let mut source = Source::open(&db, cli.snap.busy_timeout(), Knob::Database)?;
    let source_info = match cli.json {
        true => Some(source.info()?),
        false => None,
    };
    let run = Run::new(cancel.clone(), Progress::disabled());
    let mut out = BufWriter::with_capacity(IO_CHUNK, Hashing::new(sink, cli.json));
    let snap = snapshot::snapshot(&mut source, &opts, &run, &mut out).map_err(|e| Error::snapshot(e, &target))?;
    let (sink, sha256) = out.into_inner().map_err(|e| Error::writing(&target, e.into_error()))?.finish();
    // A new file in a directory may have taken a later name than planned.
    let target = sink.commit()?;
    let mut warnings = Vec::new();
    if snap.method == Method::Pages && snap.free_pages > 0 {
        let text = format!(
            "note: {} free pages ({}) copied along; --method vacuum leaves them out",
            snap.free_pages,
            human(snap.free_pages as u64 * snap.page_size as u64)
        );
        note(PROG, quiet, &text);
        warnings.push(text);
    }
    *report = Some(Backup {
        tool: PROG.into(),
        version: json::version(),
        started: started_at.rfc3339(),
        finished: Utc::now().rfc3339(),
        seconds: report::seconds_since(started),
        source: source_info,
        method: Some(snap.method.to_string()),
        spool: snap.spool.map(|k| k.to_string()),
        snapshot_bytes: snap.bytes,
        sha256: sha256.unwrap_or_default(),
        destination: target.display().to_string(),
        warnings,
        ..Backup::default()
    });
    if stderr_is_terminal() && !cli.json {
        note(
            PROG,
            cli.quiet,
            &format!(
                "{} ({} pages) from {} to {} via {}, in {}",
                human(snap.bytes),
                snap.pages,
                source.path().display(),
                target.display(),
                snap.how(),
                seconds(started.elapsed())
            ),
        );
    }
    let _ = std::io::stderr().flush();
    Ok(())
}
