//! wm-restore: put a backup back in place of the workmem database, losing nothing.

#[path = "part/backup.rs"]
mod backup;
#[path = "part/budget.rs"]
mod budget;
mod common;
#[path = "part/db.rs"]
mod db;
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
use wmbackup::age::open::Key;
use wmbackup::prune;
use wmbackup::report::{Copies, Restoration, Tagged};
use wmbackup::restore::{self, RestoreError};
use wmbackup::run::Run;
use wmbackup::signals::Cancel;
use wmbackup::sqlite::resolve;
use wmbackup::Error;

/// How to hand the backup over on standard input.
const PIPE_HINT: &str =
    "pipe the backup in, e.g. rclone cat remote:memory.db.age | wm-restore -i key.txt, or name the file";

const PROG: &str = "wm-restore";

/// Restore an age-encrypted backup over the workmem database, safely: the
/// backup is verified first, the database being replaced is kept whole
/// (with its -wal, -shm and -journal) under a new name, and no journal of
/// the old database is ever left beside the restored one.
#[derive(Parser, Debug)]
#[command(
    name = PROG,
    version,
    after_help = "Exit status: 0 restored (or, with --dry-run, would be), 1 not restored (nothing changed), 2 usage error.\n\nExamples:\n  wm-restore -i key.txt memory.db.age\n  rclone cat remote:memory.db.age | wm-restore -i key.txt --db /srv/workmem/memory.db\n  wm-restore -i key.txt --dry-run memory.db.age\n\nSee wm-restore(1)."
)]
struct Cli {
    #[command(flatten)]
    read: ReadArgs,

    /// Database to restore [default: $MEMORY_DB_PATH, else memory.db beside this program, else ./memory.db]
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,

    /// Load variables (MEMORY_DB_PATH) from a .env file first; the process environment wins
    #[arg(long, value_name = "PATH")]
    env_file: Option<PathBuf>,

    /// How long to wait for a connection that holds the database locked before giving up
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    busy_timeout: u64,

    /// Where the decrypted database is checked before it replaces the old one
    #[arg(long, value_enum, default_value = "auto")]
    spool: RestoreSpool,

    /// Verify the backup and say what would be kept, removed and written; change nothing
    #[arg(long)]
    dry_run: bool,

    /// Print the report as one JSON object on standard output (also when the restore fails)
    #[arg(long)]
    json: bool,

    /// Say on stderr what was kept, moved and verified, beside the summary line
    #[arg(short, long, conflicts_with = "quiet")]
    verbose: bool,

    /// No summary on stderr, only errors
    #[arg(short, long)]
    quiet: bool,

    /// The age file to restore; - or absent is standard input
    #[arg(value_name = "BACKUP")]
    backup: Option<PathBuf>,

    #[command(flatten)]
    common: Common,
}

/// `--spool` of a restore: the same three choices as wm-verify's, but
/// "disk" is the new file itself, not a temporary.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RestoreSpool {
    /// memory when the database fits comfortably in available memory and the process's limits (and, on Linux, the new file can be written around the page cache), else disk
    Auto,
    /// checked in memory, written to the new file meanwhile: memory the size of the database
    Memory,
    /// checked in the new file itself: no memory the size of the database
    Disk,
}

impl From<RestoreSpool> for SpoolArg {
    fn from(s: RestoreSpool) -> SpoolArg {
        match s {
            RestoreSpool::Auto => SpoolArg::Auto,
            RestoreSpool::Memory => SpoolArg::Memory,
            RestoreSpool::Disk => SpoolArg::Disk,
        }
    }
}

fn main() -> ExitCode {
    common::harden(PROG);
    let cli: Cli = json::parse_args(PROG, std::env::args_os().collect(), false);
    json::main_with(PROG, cli.json, Place::Stdout, |cancel, report| run(&cli, cancel, report))
}

fn run(cli: &Cli, cancel: &Cancel, tagged: &mut Option<Tagged<Restoration>>) -> Result<(), Error> {
    let started = Instant::now();
    let target = db::resolve(cli.db.as_deref(), cli.env_file.as_deref(), PROG, cli.quiet, resolve::resolve_db_target)?;
    let Reading { name, identities, input, opts: vopts } =
        cli.read.open(cli.spool.into(), cli.backup.as_deref(), cancel, PIPE_HINT)?;
    let opts = restore::Options {
        verify: vopts,
        dry_run: cli.dry_run,
        now: None,
        busy_timeout: Duration::from_millis(cli.busy_timeout),
    };

    let (progress, bar) = ProgressBar::start(cli.quiet || cli.json, |phase| phase);
    let run = Run::new(cancel.clone(), progress);
    let (mut report, result) = restore::restore(input, Key::Identities(&identities), &target, &opts, &run);
    drop(bar);
    report.backup = name.clone();
    // The verification is the one wm-verify would report for this backup:
    // restorable when it was verified whole, whatever happened after.
    let v = &mut report.verification;
    v.backup = name.clone();
    v.restorable = !matches!(result, Err(RestoreError::Verify(_))) && v.integrity_check.as_deref() == Some("ok");
    report.copies = copies_beside(&target);
    let result = result.map_err(|e| match e {
        RestoreError::Verify(v) => Error::about(&name, v),
        other => Error::from(other),
    });
    let report = &tagged.insert(Tagged { tool: PROG.into(), version: json::version(), exit: 0, report }).report;
    result?;
    if !cli.json {
        let text = human_report(report, started);
        let text = match text.split_once('\n') {
            Some((first, _)) if !cli.verbose => first.to_string(),
            _ => text,
        };
        note(PROG, cli.quiet, &text);
    }
    Ok(())
}

/// The restore copies beside `target` (`NAME.pre-restore-STAMP` sets).
fn copies_beside(target: &Path) -> Option<Copies> {
    let dir = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = target.file_name()?.to_str()?;
    let copies = prune::restore_copies(dir, name).ok()?;
    Some(Copies { count: copies.names.len() as u64, bytes: copies.bytes })
}

/// What was done, on stderr.
fn human_report(r: &Restoration, started: Instant) -> String {
    let verb = if r.dry_run { "would restore" } else { "restored" };
    let mut s = format!("{verb} {} to {}", r.backup, r.target);
    if let Some(w) = &r.written {
        s += &format!(" ({}, {} pages, {} journal mode)", human(w.bytes), w.page_count, w.journal_mode);
    }
    s += &format!(" in {}", seconds(started.elapsed()));
    if let Some(w) = &r.written {
        let verb = if r.dry_run { "would give" } else { "gave it" };
        let from_old = match w.journal_mode != w.journal_mode_backup {
            true => format!(" (the old database's; the backup's was {})", w.journal_mode_backup),
            false => String::new(),
        };
        s += &format!(
            "\n  {verb:<10} owner {}, group {}, mode {}, {} journal mode{from_old}",
            w.owner, w.group, w.mode, w.journal_mode
        );
    }
    let would = if r.dry_run { "would keep" } else { "kept" };
    match &r.kept {
        Some(k) => {
            s += &format!(
                "\n  {would:<10} {} ({}, {}): open it with sqlite3 as it was",
                k.name,
                count(k.files.len() as u64, "file", "files"),
                human(k.bytes)
            );
        }
        None => s += "\n  kept       nothing: there was no database there",
    }
    for path in &r.removed {
        let verb = if r.dry_run { "would move" } else { "moved" };
        s += &format!("\n  {verb:<10} {path} into the kept copy");
    }
    for path in &r.cleaned {
        s += &format!("\n  cleaned    {path} (left by an interrupted restore; its file is still in place)");
    }
    if let Some(c) = r.copies.as_ref().filter(|c| c.count > 0) {
        s += &format!(
            "\n  copies     {} restore copies beside it, {} in all (a series wm-prune prunes as sets: see wm-prune(1))",
            c.count,
            human(c.bytes)
        );
    }
    let v = &r.verification;
    s += &format!(
        "\n  verified   integrity_check {}, {} counted, {} queried",
        v.integrity_check.as_deref().unwrap_or("-"),
        count(v.tables.len() as u64, "table", "tables"),
        count(v.fts5.len() as u64, "FTS5 table", "FTS5 tables")
    );
    if r.dry_run {
        s += "\n  dry run: nothing was changed";
    }
    s
}
