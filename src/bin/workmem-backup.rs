//! workmem-backup: snapshot + seal in one process, a drop-in for `workmem backup`.

mod common;
#[path = "part/db.rs"]
mod db;
#[path = "part/progress.rs"]
mod progress;
#[path = "part/sink.rs"]
mod sink;
#[path = "part/snapshot.rs"]
mod snapshot_args;
#[path = "part/spool.rs"]
mod spool;

use std::ffi::OsString;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{ArgGroup, Parser};
use common::{human, note, seconds, Common};
use progress::ProgressBar;
use snapshot_args::SnapshotArgs;
use wmbackup::age::open::{FileKey, Key};
use wmbackup::age::recipients;
use wmbackup::age::seal::Sealer;
use wmbackup::output::AtomicFile;
use wmbackup::run::Run;
use wmbackup::signals::Cancel;
use wmbackup::sqlite::snapshot::{self, Options};
use wmbackup::sqlite::source::Source;
use wmbackup::stop::Knob;
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
    "completions",
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
    "completions",
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

    #[command(flatten)]
    common: Common,
}

fn main() -> ExitCode {
    let args = accept_go_style(std::env::args_os(), GO_LONG, GO_VALUE);
    let cli: Cli = common::parse_args(PROG, args);
    common::main_with(PROG, |cancel| run(&cli, cancel))
}

fn run(cli: &Cli, cancel: &Cancel) -> Result<(), Error> {
    let started = Instant::now();
    // Everything that can be wrong is found before the snapshot starts.
    let values: Vec<_> = cli.age_recipient.iter().map(|v| ("--age-recipient", v.clone())).collect();
    let files: Vec<_> = cli.recipients_file.iter().map(|f| ("-R", f.clone())).collect();
    let collected = recipients::collect(&values, &files, cancel)?;
    for w in &collected.warnings {
        note(PROG, cli.quiet, &format!("warning: {w}"));
    }
    let recipients = collected.recipients;
    let db = cli.snap.db.resolve(PROG, cli.quiet)?;
    let opts = cli.snap.options();
    opts.validate()?;
    let mut sink = sink::open(Some(&cli.to), cancel, cli.armor, Some(&db))?;
    if cli.verify && sink.file_mut().is_none() {
        return Err(Error::usage(
            "--verify needs --to FILE: standard output cannot be read back",
            Some("write to a file, or verify the stream with wm-verify -i IDENTITY at the other end"),
        ));
    }
    let target = sink.target();
    let mut source = Source::open(&db, cli.snap.busy_timeout(), Knob::Database)?;

    let (progress, bar) = ProgressBar::start(cli.quiet, |phase| match phase {
        "output" => "encrypt",
        other => other,
    });
    let run = Run::new(cancel.clone(), progress);
    let mut sealer = Sealer::new(sink, &recipients, cli.armor).map_err(|e| Error::seal(e, &target))?;
    let report = snapshot::snapshot(&mut source, &opts, &run, &mut sealer).map_err(|e| Error::snapshot(e, &target))?;
    let (mut sink, stats, file_key) = sealer.finish_with_key().map_err(|e| Error::seal(e, &target))?;
    run.progress.phase("sync", None);
    let verified = match sink.file_mut().filter(|_| cli.verify) {
        Some(file) => Some(verify_written(file, &file_key, &opts, &run, &target)?),
        None => None,
    };
    sink.commit()?;
    drop(bar);

    note(
        PROG,
        cli.quiet,
        &format!(
            "backed up {} to {}: {} encrypted ({} snapshot via {}){} in {}",
            source.path().display(),
            target.display(),
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
    opts: &Options,
    run: &Run,
    target: &Path,
) -> Result<String, Error> {
    file.sync()?;
    let input = BufReader::with_capacity(1 << 20, file.read_back()?);
    run.progress.phase("verify", None);
    let vopts = verify::Options { spool: opts.spool.clone(), ..verify::Options::default() };
    let (report, result) = verify::verify(Box::new(input), Key::FileKey(file_key), &vopts, run);
    // The temporary is dropped on error: an older backup at `target` stays.
    result.map_err(|e| Error::about(&format!("verify: {} (new backup, not put in place)", target.display()), e))?;
    let tables = report.tables.len();
    Ok(format!(", verified (integrity_check ok, {tables} tables counted, {} FTS5 queried)", report.fts5.len()))
}

/// Go's flag package accepted `-to` as well as `--to`; so do we, for the
/// long flags a `workmem backup` user may have in a script.
fn accept_go_style(args: impl IntoIterator<Item = OsString>, long: &[&str], takes_value: &[&str]) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut value_next = false;
    for a in args {
        if value_next {
            value_next = false;
            out.push(a);
            continue;
        }
        let s = a.to_string_lossy();
        if let Some(rest) = s.strip_prefix('-').filter(|r| !r.starts_with('-')) {
            let name = rest.split('=').next().unwrap_or("");
            value_next = takes_value.contains(&name) && !rest.contains('=');
            if long.contains(&name) {
                out.push(OsString::from(format!("--{rest}")));
                continue;
            }
        }
        if let Some(rest) = s.strip_prefix("--") {
            value_next = takes_value.contains(&rest) && !rest.contains('=');
        }
        out.push(a);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_flags_become_double_dash_but_values_stay() {
        let args = ["prog", "-to", "-db", "-db=x", "--age-recipient", "-to", "-R", "-db", "-q"].map(OsString::from);
        let got = accept_go_style(args, &["to", "db", "age-recipient"], &["to", "db", "age-recipient", "R"]);
        let got: Vec<_> = got.iter().map(|s| s.to_string_lossy().into_owned()).collect();
        assert_eq!(got, ["prog", "--to", "-db", "--db=x", "--age-recipient", "-to", "-R", "-db", "-q"]);
    }
}
