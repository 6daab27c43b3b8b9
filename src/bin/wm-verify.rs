//! wm-verify: prove that an age-encrypted backup restores, without writing plaintext.

#[path = "part/backup.rs"]
mod backup;
mod common;
#[path = "part/input.rs"]
mod input;
#[path = "part/progress.rs"]
mod progress;
#[path = "part/spool.rs"]
mod spool;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use backup::{print_json, ReadArgs, Reading};
use clap::Parser;
use common::{human, note, seconds, Common};
use progress::ProgressBar;
use wmbackup::age::open::Key;
use wmbackup::report::Verification;
use wmbackup::run::Run;
use wmbackup::signals::Cancel;
use wmbackup::verify;
use wmbackup::Error;

/// How to hand the backup over on standard input.
const PIPE_HINT: &str =
    "pipe the backup in, e.g. rclone cat remote:memory.db.age | wm-verify -i key.txt, or name the file";

const PROG: &str = "wm-verify";

/// Check that an age-encrypted SQLite backup is intact (complete and
/// unaltered since it was encrypted to your key) and that the database in
/// it is whole: integrity_check, FTS5 queries, row counts. age does not say
/// who wrote it (see wm-verify(1)). The plaintext stays in memory or in an
/// unnamed temporary file; nothing readable is left behind.
#[derive(Parser, Debug)]
#[command(
    name = PROG,
    version,
    after_help = "Exit status: 0 restorable, 1 not restorable (or could not tell), 2 usage error.\n\nExamples:\n  wm-verify -i key.txt memory.db.age\n  rclone cat remote:memory.db.age | wm-verify -i key.txt\n  wm-verify -i ~/.ssh/id_ed25519 --against ~/.workmem/memory.db --json memory.db.age\n\nSee wm-verify(1)."
)]
struct Cli {
    #[command(flatten)]
    read: ReadArgs,

    /// Show the live database's row counts beside the backup's, and the difference
    #[arg(long, value_name = "DB")]
    against: Option<PathBuf>,

    /// How long --against waits for a writer that holds the database locked
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    busy_timeout: u64,

    /// Print the report as one JSON object on standard output (also when the backup fails)
    #[arg(long)]
    json: bool,

    /// No report on stderr, only errors
    #[arg(short, long)]
    quiet: bool,

    /// The age file to verify; - or absent is standard input
    #[arg(value_name = "BACKUP")]
    backup: Option<PathBuf>,

    #[command(flatten)]
    common: Common,
}

fn main() -> ExitCode {
    let cli: Cli = common::parse_args(PROG, std::env::args_os().collect());
    common::main_with(PROG, |cancel| run(&cli, cancel))
}

fn run(cli: &Cli, cancel: &Cancel) -> Result<(), Error> {
    let started = Instant::now();
    let Reading { name, identities, input, opts } = cli.read.open(cli.backup.as_deref(), cancel, PIPE_HINT)?;

    let (progress, bar) = ProgressBar::start(cli.quiet || cli.json, |phase| phase);
    let run = Run::new(cancel.clone(), progress);
    let (mut report, result) = verify::verify(input, Key::Identities(&identities), &opts, &run);
    report.backup = name.clone();
    report.against = cli.against.as_ref().map(|p| p.display().to_string());
    let result = result.map_err(|e| Error::about(&name, e)).and_then(|()| match &cli.against {
        Some(live) => verify::compare_live(live, Duration::from_millis(cli.busy_timeout), &run, &mut report)
            .map_err(|e| Error::about("--against", e)),
        None => Ok(()),
    });
    drop(bar);
    if cli.json && !matches!(result, Err(Error::Stopped(_))) {
        report.restorable = result.is_ok();
        report.error = result.as_ref().err().map(|e| e.to_string());
        print_json(&report)?;
    }
    result?;
    if !cli.json {
        note(PROG, cli.quiet, &human_report(&name, &report, started));
    }
    Ok(())
}

/// The summary on stderr: what was checked, and every table's rows.
fn human_report(name: &str, r: &Verification, started: Instant) -> String {
    let mut s = format!("{name}: restorable (verified in {})", seconds(started.elapsed()));
    if let Some(opened_by) = &r.opened_by {
        let armor = if r.armored == Some(true) { ", ASCII-armored" } else { "" };
        s += &format!(
            "\n  age file   {}{armor}, intact, and encrypted to your key; opened with the {opened_by}",
            human(r.ciphertext)
        );
    }
    if let (Some(size), Some(pages), Some(page_size), Some(version)) =
        (r.size, r.page_count, r.page_size, &r.sqlite_version)
    {
        s +=
            &format!("\n  database   {}, {pages} pages of {page_size} bytes, written by SQLite {version}", human(size));
    }
    if let Some(i) = &r.integrity_check {
        s += &format!("\n  integrity  {i}");
    }
    for f in &r.fts5 {
        s += &format!(
            "\n  fts5       {} answers queries ({} rows for a term of its index)",
            f.table,
            f.hits.unwrap_or(0)
        );
    }
    let width = r.tables.iter().map(|t| t.name.len()).max().unwrap_or(5).max(5);
    let num = |n: Option<u64>| n.map_or("-".to_string(), |n| n.to_string());
    if let Some(live) = &r.against {
        s += &format!("\n  against    {live}");
        s += &format!("\n  {:<width$}  {:>12}  {:>12}  {:>10}", "table", "backup", "live", "difference");
        for t in &r.tables {
            let diff = match t.difference {
                None => "-".to_string(),
                Some(0) => "0".to_string(),
                Some(d) => format!("{d:+}"),
            };
            s += &format!("\n  {:<width$}  {:>12}  {:>12}  {diff:>10}", t.name, num(t.rows), num(t.live_rows));
        }
    } else {
        s += &format!("\n  {:<width$}  {:>12}", "table", "rows");
        for t in &r.tables {
            s += &format!("\n  {:<width$}  {:>12}", t.name, num(t.rows));
        }
    }
    s
}
