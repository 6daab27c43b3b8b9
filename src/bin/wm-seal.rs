//! wm-seal: age-encrypt standard input into a file, atomically and durably, or to stdout.

mod common;
#[path = "part/input.rs"]
mod input;
#[path = "part/json.rs"]
mod json;
#[path = "part/sink.rs"]
mod sink;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{ArgGroup, Parser};
use common::{human, note, seconds, stderr_is_terminal, Common};
use wmbackup::age::recipients;
use wmbackup::age::seal::{self, StreamOptions};
use wmbackup::clock::Utc;
use wmbackup::hash::Hashing;
use wmbackup::progress::Progress;
use wmbackup::prune::{self, Judged};
use wmbackup::report::{self, Backup};
use wmbackup::run::Run;
use wmbackup::signals::{Cancel, CancelRead};
use wmbackup::Error;

const PROG: &str = "wm-seal";

/// Encrypt standard input with age to one or more recipients, into a file
/// that appears only complete and durable, or to standard output.
#[derive(Parser, Debug)]
#[command(
    name = PROG,
    version,
    group(ArgGroup::new("who").required(true).multiple(true).args(["recipient", "recipients_file"])),
    after_help = "Restore with the standard age CLI:\n  age -d -i identity.txt backup.age > memory.db\n\nExamples:\n  wm-snapshot | wm-seal -r keys.txt --to memory.db.age\n  wm-snapshot | wm-seal -r age1... | rclone rcat remote:m.db.age.partial &&\n    rclone moveto remote:m.db.age.partial remote:m.db.age   # with set -o pipefail\n\nSee wm-seal(1)."
)]
struct Cli {
    /// Encrypt to RECIPIENT: an existing recipients file, else an age1... or ssh-ed25519/ssh-rsa public key (repeatable)
    #[arg(short = 'r', long = "recipient", value_name = "RECIPIENT", allow_hyphen_values = true)]
    recipient: Vec<String>,

    /// Encrypt to every recipient listed in FILE, one per line (repeatable)
    #[arg(short = 'R', long = "recipients-file", value_name = "FILE")]
    recipients_file: Vec<PathBuf>,

    /// Write to PATH (temporary in its directory, fsync, rename, fsync directory); a directory (DIR/) gets a new STEM-YYYYMMDDTHHMMSSZ.db.age; - or absent is standard output
    #[arg(long, value_name = "PATH")]
    to: Option<PathBuf>,

    /// The STEM of the names --to DIR/ gives [default: backup]
    #[arg(long, value_name = "NAME")]
    stem: Option<String>,

    /// ASCII-armored (PEM) output; allowed to a terminal
    #[arg(short, long)]
    armor: bool,

    /// Seal any bytes: skip the check that SQLite input is complete
    #[arg(long)]
    raw: bool,

    /// Accept empty input (without it, empty input is an error)
    #[arg(long)]
    allow_empty: bool,

    /// Print one JSON object on standard error instead of the summary (also on failure)
    #[arg(long)]
    json: bool,

    /// No summary on stderr, only errors
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
    let series = series(cli)?;
    let input = input::stdin_data("pipe the data in, e.g. wm-snapshot | wm-seal -r KEY --to backup.age")?;
    let values: Vec<_> = cli.recipient.iter().map(|v| ("-r", v.clone())).collect();
    let files: Vec<_> = cli.recipients_file.iter().map(|f| ("-R", f.clone())).collect();
    let collected = recipients::collect(&values, &files, cancel)?;
    for w in &collected.warnings {
        note(PROG, quiet, &format!("warning: {w}"));
    }
    let recipients = collected.recipients;
    let sink = sink::open(cli.to.as_deref(), cancel, cli.armor, None, &series)?;
    let target = sink.target();
    let opts = StreamOptions { armor: cli.armor, raw: cli.raw, allow_empty: cli.allow_empty };
    let mut input = CancelRead::new(input, cancel);
    let run = Run::new(cancel.clone(), Progress::disabled());
    let out = Hashing::new(sink, cli.json);
    let (out, stats) = seal::seal_stream(&mut input, "standard input", out, &recipients, opts, &run)
        .map_err(|e| Error::seal(e, &target))?;
    let (sink, sha256) = out.finish();
    // A new file in a directory may have taken a later name than planned.
    let target = sink.commit()?;
    *report = Some(Backup {
        tool: PROG.into(),
        version: json::version(),
        started: started_at.rfc3339(),
        finished: Utc::now().rfc3339(),
        seconds: report::seconds_since(started),
        snapshot_bytes: stats.plaintext,
        ciphertext_bytes: Some(stats.ciphertext),
        sha256: sha256.unwrap_or_default(),
        destination: target.display().to_string(),
        recipients: recipients.iter().map(|r| r.info()).collect(),
        armored: cli.armor,
        warnings: collected.warnings,
        ..Backup::default()
    });
    if stderr_is_terminal() && !cli.json {
        note(
            PROG,
            cli.quiet,
            &format!(
                "sealed {} into {} ({}) for {} recipient(s) in {}",
                human(stats.plaintext),
                target.display(),
                human(stats.ciphertext),
                recipients.len(),
                seconds(started.elapsed())
            ),
        );
    }
    Ok(())
}

/// How `--to DIR/` names the file: `--stem` (default `backup`), and
/// `.db.age`, or `.age` with `--raw` (any bytes, not a database).
fn series(cli: &Cli) -> Result<sink::Series, Error> {
    let ext = if cli.raw { "age" } else { "db.age" };
    let Some(stem) = &cli.stem else { return Ok(sink::Series { stem: "backup".into(), ext }) };
    if !cli.to.as_deref().is_some_and(sink::is_dir) {
        return Err(Error::usage(
            "--stem names files in --to DIR/ only",
            Some("end --to with a slash, e.g. --to /backups/"),
        ));
    }
    // The name must be one that wm-prune counts.
    match prune::judge(&prune::name(stem, &Utc::now(), ext)) {
        Judged::Backup(b) if b.stem == *stem => Ok(sink::Series { stem: stem.clone(), ext }),
        _ => Err(Error::usage(
            format!("--stem {stem:?}: not usable in a backup's name"),
            Some("use letters, digits, dots, dashes or underscores, not starting with a dot, e.g. --stem memory"),
        )),
    }
}
