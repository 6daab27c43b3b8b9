//! wm-seal: age-encrypt standard input into a file, atomically and durably, or to stdout.

mod common;
#[path = "part/input.rs"]
mod input;
#[path = "part/sink.rs"]
mod sink;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{ArgGroup, Parser};
use common::{human, note, seconds, stderr_is_terminal, Common};
use wmbackup::age::recipients;
use wmbackup::age::seal::{self, StreamOptions};
use wmbackup::progress::Progress;
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
    after_help = "Restore with the standard age CLI:\n  age -d -i identity.txt backup.age > memory.db\n\nExamples:\n  wm-snapshot | wm-seal -r keys.txt --to memory.db.age\n  wm-snapshot | wm-seal -r age1... | rclone rcat remote:memory.db.age\n\nSee wm-seal(1)."
)]
struct Cli {
    /// Encrypt to RECIPIENT: an existing recipients file, else an age1... or ssh-ed25519/ssh-rsa public key (repeatable)
    #[arg(short = 'r', long = "recipient", value_name = "RECIPIENT", allow_hyphen_values = true)]
    recipient: Vec<String>,

    /// Encrypt to every recipient listed in FILE, one per line (repeatable)
    #[arg(short = 'R', long = "recipients-file", value_name = "FILE")]
    recipients_file: Vec<PathBuf>,

    /// Write to PATH (temporary in its directory, fsync, rename, fsync directory); - or absent is standard output
    #[arg(long, value_name = "PATH")]
    to: Option<PathBuf>,

    /// ASCII-armored (PEM) output; allowed to a terminal
    #[arg(short, long)]
    armor: bool,

    /// Seal any bytes: skip the check that SQLite input is complete
    #[arg(long)]
    raw: bool,

    /// Accept empty input (without it, empty input is an error)
    #[arg(long)]
    allow_empty: bool,

    /// No summary on stderr, only errors
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
    let input = input::stdin_data("pipe the data in, e.g. wm-snapshot | wm-seal -r KEY --to backup.age")?;
    let values: Vec<_> = cli.recipient.iter().map(|v| ("-r", v.clone())).collect();
    let files: Vec<_> = cli.recipients_file.iter().map(|f| ("-R", f.clone())).collect();
    let collected = recipients::collect(&values, &files, cancel)?;
    for w in &collected.warnings {
        note(PROG, cli.quiet, &format!("warning: {w}"));
    }
    let recipients = collected.recipients;
    let sink = sink::open(cli.to.as_deref(), cancel, cli.armor, None)?;
    let target = sink.target();
    let opts = StreamOptions { armor: cli.armor, raw: cli.raw, allow_empty: cli.allow_empty };
    let mut input = CancelRead::new(input, cancel);
    let run = Run::new(cancel.clone(), Progress::disabled());
    let (sink, stats) = seal::seal_stream(&mut input, "standard input", sink, &recipients, opts, &run)
        .map_err(|e| Error::seal(e, &target))?;
    sink.commit()?;
    if stderr_is_terminal() {
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
