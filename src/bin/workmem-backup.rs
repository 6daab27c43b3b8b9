//! workmem-backup: snapshot + seal in one process, a drop-in for `workmem backup`.

mod common;

use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{ArgGroup, Parser};
use common::{human, note, seconds, ProgressBar, Sink, SnapshotArgs};
use wmbackup::output::AtomicFile;
use wmbackup::progress::Progress;
use wmbackup::recipients;
use wmbackup::seal::Sealer;
use wmbackup::signals::Cancel;
use wmbackup::snapshot::{self, Source};
use wmbackup::unseal::{FileKey, Key};
use wmbackup::verify;
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
    "verify",
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

    /// Before putting the backup in place, read it back from disk and verify it as wm-verify does
    #[arg(long)]
    verify: bool,

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
    let recipients = recipients::collect(&values, &files, &cancel)?;
    let db = cli.snap.resolve_db(PROG, cli.quiet)?;
    let opts = cli.snap.options();
    opts.validate()?;
    let mut sink = Sink::open(Some(&cli.to), &cancel, cli.armor, &snapshot::protected_paths(&db))?;
    if cli.verify && sink.file_mut().is_none() {
        return Err(Error::usage(
            "--verify needs --to FILE: standard output cannot be read back",
            Some("write to a file, or verify the stream with wm-verify -i IDENTITY at the other end"),
        ));
    }
    let mut source = Source::open(&db, cli.snap.busy_timeout())?;

    let (progress, bar) = ProgressBar::start(cli.quiet, |phase| match phase {
        "output" => "encrypt",
        other => other,
    });
    let mut sealer = Sealer::new(sink, &recipients, cli.armor)?;
    let report = source.snapshot(&opts, &cancel, &progress, &mut sealer)?;
    let (mut sink, stats, file_key) = sealer.finish_with_key()?;
    progress.phase("sync", None);
    let target = sink.describe();
    let verified = match sink.file_mut().filter(|_| cli.verify) {
        Some(file) => Some(verify_written(file, &file_key, &opts, &cancel, &progress, &target)?),
        None => None,
    };
    sink.commit()?;
    drop(bar);

    note(
        PROG,
        cli.quiet,
        &format!(
            "backed up {} to {target}: {} encrypted ({} snapshot via {}){} in {}",
            source.path().display(),
            human(stats.ciphertext),
            human(report.bytes),
            report.how(),
            verified.unwrap_or_default(),
            seconds(started.elapsed())
        ),
    );
    Ok(())
}

/// Reads the durable but not yet visible backup back from disk and verifies
/// it with the file key: a backup that fails never replaces the previous one.
fn verify_written(
    file: &mut AtomicFile,
    file_key: &FileKey,
    opts: &snapshot::Options,
    cancel: &Cancel,
    progress: &Progress,
    target: &str,
) -> Result<String, Error> {
    file.sync()?;
    let input = BufReader::with_capacity(1 << 20, file.read_back()?);
    progress.phase("verify", None);
    let vopts = verify::Options { spool: opts.spool, tmpdir: opts.tmpdir.clone(), ..verify::Options::default() };
    let (report, result) = verify::verify(Box::new(input), Key::FileKey(file_key), &vopts, cancel, progress);
    // The temporary is dropped on error: an older backup at `target` stays.
    result.map_err(|e| Error::verify(&format!("verify: {target} (new backup, not put in place)"), e))?;
    let tables = report.tables.len();
    Ok(format!(", verified (integrity_check ok, {tables} tables counted, {} FTS5 queried)", report.fts5.len()))
}
