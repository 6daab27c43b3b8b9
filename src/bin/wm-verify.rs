//! wm-verify: prove that an age-encrypted backup restores, without writing plaintext.

#[path = "part/backup.rs"]
mod backup;
#[path = "part/budget.rs"]
mod budget;
mod common;
#[path = "part/input.rs"]
mod input;
#[path = "part/json.rs"]
mod json;
#[path = "part/progress.rs"]
mod progress;
#[path = "part/spool.rs"]
mod spool;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use backup::{ReadArgs, Reading};
use clap::Parser;
use common::{count, human, note, seconds, Common};
use json::Place;
use progress::ProgressBar;
use spool::SpoolArg;
use wmbackup::age::identity;
use wmbackup::age::open::Key;
use wmbackup::check::{self, CheckError};
use wmbackup::report::{Outcome, Tagged, Verification};
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
    after_help = "Exit status: 0 restorable, 1 not restorable (or could not tell; with several backups, any one), 2 usage error.\n\nExamples:\n  wm-verify -i key.txt memory.db.age\n  wm-verify -i key.txt /backups/            # the newest backup of each series\n  wm-verify -i key.txt --all /backups/      # every backup\n  rclone cat remote:memory.db.age | wm-verify -i key.txt\n  wm-verify -i ~/.ssh/id_ed25519 --against ~/.workmem/memory.db --json memory.db.age\n\nSee wm-verify(1)."
)]
struct Cli {
    #[command(flatten)]
    read: ReadArgs,

    /// Where the decrypted database waits while it is checked
    #[arg(long, value_enum, default_value = "auto")]
    spool: SpoolArg,

    /// Show the live database's row counts beside the backup's, and the difference (one backup only)
    #[arg(long, value_name = "DB")]
    against: Option<PathBuf>,

    /// With a directory or several backups: check every one, not only the newest of each series
    #[arg(long)]
    all: bool,

    /// How long --against waits for a writer that holds the database locked
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    busy_timeout: u64,

    /// Print the report as one JSON object on standard output (also when the backup fails); an array of them for several backups
    #[arg(long)]
    json: bool,

    /// Say on stderr what was checked: the age file, the database, every table's rows
    #[arg(short, long, conflicts_with = "quiet")]
    verbose: bool,

    /// No summary on stderr, only errors
    #[arg(short, long)]
    quiet: bool,

    /// The age file to verify; - or absent is standard input. Several files, or a directory of timestamped backups, check a history
    #[arg(value_name = "BACKUP")]
    backup: Vec<PathBuf>,

    #[command(flatten)]
    common: Common,
}

fn main() -> ExitCode {
    common::harden(PROG);
    let cli: Cli = json::parse_args(PROG, std::env::args_os().collect(), false);
    json::main_with(PROG, cli.json, Place::Stdout, |cancel, report| run(&cli, cancel, report))
}

/// `--json`: one backup's object, or with several the array of theirs,
/// each with its own `tool`, `version`, `exit` and `error`.
enum Report {
    One(Box<Tagged<Verification>>),
    Many(Vec<Tagged<Verification>>),
}

impl serde::Serialize for Report {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Report::One(r) => r.serialize(s),
            Report::Many(v) => v.serialize(s),
        }
    }
}

impl Outcome for Report {
    /// Each backup of several ended on its own; the run's error is theirs, counted.
    fn set_outcome(&mut self, exit: u8, error: Option<String>) {
        if let Report::One(r) = self {
            r.set_outcome(exit, error);
        }
    }
}

/// A backup's report as `--json` prints it.
fn tagged(report: Verification, exit: u8) -> Tagged<Verification> {
    Tagged { tool: PROG.into(), version: json::version(), exit, report }
}

fn run(cli: &Cli, cancel: &Cancel, out: &mut Option<Report>) -> Result<(), Error> {
    let history = cli.backup.len() > 1 || cli.backup.first().is_some_and(|p| p.is_dir());
    if history {
        return run_history(cli, cancel, out);
    }
    let started = Instant::now();
    let Reading { name, identities, input, opts } =
        cli.read.open(cli.spool, cli.backup.first().map(Path::new), cancel, PIPE_HINT)?;

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
    report.restorable = result.is_ok();
    let text = (!cli.json).then(|| summary(human_report(&name, &report, started), cli.verbose));
    *out = Some(Report::One(Box::new(tagged(report, 0))));
    result?;
    if let Some(text) = text {
        note(PROG, cli.quiet, &text);
    }
    Ok(())
}

/// The first line of `text`, or with `-v` all of it.
fn summary(text: String, verbose: bool) -> String {
    match text.split_once('\n') {
        Some((first, _)) if !verbose => first.to_string(),
        _ => text,
    }
}

/// Several backups, one at a time: a line for each, a summary, exit 1 if
/// any is not restorable; never stopping at a failure, only at a signal.
fn run_history(cli: &Cli, cancel: &Cancel, out: &mut Option<Report>) -> Result<(), Error> {
    let started = Instant::now();
    if cli.against.is_some() {
        return Err(Error::usage(
            "--against compares one backup with the live database; several were named",
            Some("name one backup file with --against"),
        ));
    }
    if cli.backup.iter().any(|p| p == Path::new("-")) {
        return Err(Error::usage(
            "- (standard input) cannot be one of several backups",
            Some("name the backup files, or pipe one backup in alone"),
        ));
    }
    let targets = check::select(&cli.backup, cli.all)?;
    let identities = identity::collect(&cli.read.identity, cancel)?;
    let opts = verify::Options {
        spool: spool::place(cli.spool, cli.read.tmpdir.as_ref()),
        size_hint: None,
        time_budget: cli.read.time_budget,
    };
    opts.validate().map_err(|e| Error::about("--spool", e))?;
    let (progress, bar) = ProgressBar::start(cli.quiet || cli.json, |phase| phase);
    let run = Run::new(cancel.clone(), progress);
    let mut reports = Vec::with_capacity(targets.len());
    let (mut failed, mut older) = (0, 0);
    for target in &targets {
        let one = Instant::now();
        let (report, result) = check::verify_file(&target.path, Key::Identities(&identities), &opts, &run);
        if let Some(stop) = run.stopped() {
            return Err(Error::Stopped(stop));
        }
        older += target.skipped_older;
        let name = target.path.display();
        match &result {
            Ok(()) => note(PROG, cli.quiet || cli.json, &format!("{name}: {}", one_line(&report, one))),
            Err(e) => {
                failed += 1;
                if !cli.json {
                    note(PROG, false, &format!("{name}: NOT restorable: {e}"));
                }
            }
        }
        let exit = u8::from(result.is_err());
        reports.push(tagged(Verification { error: result.as_ref().err().map(|e| e.to_string()), ..report }, exit));
    }
    drop(bar);
    *out = Some(Report::Many(reports));
    let older = match older {
        0 => String::new(),
        n => format!("; {n} older backup(s) not checked (--all checks them)"),
    };
    if failed > 0 {
        if !cli.json {
            note(
                PROG,
                false,
                &format!(
                    "checked {} backup(s) in {}: {} restorable, {failed} NOT restorable{older}",
                    targets.len(),
                    seconds(started.elapsed()),
                    targets.len() - failed
                ),
            );
        }
        let e: Error = CheckError::NotRestorable { failed, checked: targets.len() }.into();
        // Under --json the array is on stdout and the run's error, which no
        // one object holds, on stderr.
        if let Some(line) = e.report(PROG, &common::spell).filter(|_| cli.json) {
            common::say(&line);
        }
        return Err(e);
    }
    note(
        PROG,
        cli.quiet || cli.json,
        &format!("checked {} backup(s) in {}: all restorable{older}", targets.len(), seconds(started.elapsed())),
    );
    Ok(())
}

/// A restorable backup in one line: its database, integrity, tables.
fn one_line(r: &Verification, started: Instant) -> String {
    let size = r.size.map_or("-".to_string(), human);
    let rows: u64 = r.tables.iter().filter_map(|t| t.rows).sum();
    format!(
        "restorable ({size} database, integrity_check {}, {} tables, {rows} rows, {} FTS5) in {}",
        r.integrity_check.as_deref().unwrap_or("-"),
        r.tables.len(),
        r.fts5.len(),
        seconds(started.elapsed())
    )
}

/// The report on stderr: a summary line, then what was checked, and every table's rows.
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
            "\n  fts5       {} answers queries ({} for a term of its index)",
            f.table,
            count(f.hits.unwrap_or(0), "row", "rows")
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
