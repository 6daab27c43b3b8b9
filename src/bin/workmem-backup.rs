//! workmem-backup: snapshot + seal in one process, a drop-in for `workmem backup`.

mod common;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{ArgGroup, Parser};
use common::{human, note, seconds, ProgressBar, Sink, SnapshotArgs};
use wmbackup::recipients;
use wmbackup::seal::Sealer;
use wmbackup::snapshot::{self, Source};
use wmbackup::Error;

const PROG: &str = "workmem-backup";

/// Long flags that Go's flag package let `workmem backup` users spell with one dash.
const GO_LONG: &[&str] = &[
    "to",
    "db",
    "env-file",
    "age-recipient",
    "recipients-file",
    "armor",
    "method",
    "spool",
    "tmpdir",
    "busy-timeout",
    "check",
    "quiet",
    "help",
    "version",
];
/// Flags whose next argument is a value, never to be rewritten (short ones included).
const GO_VALUE: &[&str] = &[
    "to",
    "db",
    "env-file",
    "age-recipient",
    "recipients-file",
    "method",
    "spool",
    "tmpdir",
    "busy-timeout",
    "r",
    "R",
];

/// Back up the workmem memory database: a consistent snapshot, age-encrypted,
/// written atomically and durably. A drop-in for `workmem backup`.
#[derive(Parser, Debug)]
#[command(
    name = PROG,
    version,
    group(ArgGroup::new("who").required(true).multiple(true).args(["age_recipient", "recipients_file"])),
    after_help = "Restore with the standard age CLI:\n  age -d -i identity.txt backup.age > memory.db\n\nOnly the database named (--db, MEMORY_DB_PATH or the default) is backed up;\nback up project databases with a second run and --db.\n\nSee workmem-backup(1)."
)]
struct Cli {
    /// Destination file, e.g. memory.db.age (- for standard output)
    #[arg(long, value_name = "PATH")]
    to: PathBuf,

    /// Encrypt to VALUE: an existing recipients file, else an age1... or ssh-ed25519/ssh-rsa public key (repeatable)
    #[arg(long = "age-recipient", short = 'r', value_name = "VALUE", allow_hyphen_values = true)]
    age_recipient: Vec<String>,

    /// Encrypt to every recipient listed in FILE, one per line (repeatable)
    #[arg(short = 'R', long = "recipients-file", value_name = "FILE")]
    recipients_file: Vec<PathBuf>,

    /// ASCII-armored (PEM) output
    #[arg(short, long)]
    armor: bool,

    #[command(flatten)]
    snap: SnapshotArgs,

    /// No progress, notices or summary on stderr, only errors
    #[arg(short, long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli: Cli = common::parse_args(PROG, common::accept_go_style(std::env::args_os(), GO_LONG, GO_VALUE));
    common::main_with(PROG, || run(&cli))
}

fn run(cli: &Cli) -> Result<(), Error> {
    let cancel = common::install_signals()?;
    let started = Instant::now();
    // Everything that can be wrong is found before the snapshot starts.
    let values: Vec<_> = cli.age_recipient.iter().map(|v| ("--age-recipient", v.clone())).collect();
    let files: Vec<_> = cli.recipients_file.iter().map(|f| ("-R", f.clone())).collect();
    let recipients = recipients::collect(&values, &files)?;
    let db = cli.snap.resolve_db(PROG, cli.quiet)?;
    let opts = cli.snap.options();
    opts.validate()?;
    let sink = Sink::open(Some(&cli.to), &cancel, cli.armor, &snapshot::protected_paths(&db))?;
    let mut source = Source::open(&db, cli.snap.busy_timeout())?;

    let (progress, bar) = ProgressBar::start(cli.quiet, |phase| match phase {
        "output" => "encrypt",
        other => other,
    });
    let mut sealer = Sealer::new(sink, &recipients, cli.armor)?;
    let report = source.snapshot(&opts, &cancel, &progress, &mut sealer)?;
    let (sink, stats) = sealer.finish()?;
    progress.phase("sync", None);
    let target = sink.describe();
    sink.commit()?;
    drop(bar);

    note(
        PROG,
        cli.quiet,
        &format!(
            "backed up {} to {target}: {} encrypted ({} snapshot via {}) in {}",
            source.path().display(),
            human(stats.ciphertext),
            human(report.bytes),
            report.how(),
            seconds(started.elapsed())
        ),
    );
    Ok(())
}
