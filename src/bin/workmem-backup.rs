//! workmem-backup: snapshot + seal in one process, a drop-in for `workmem backup`.

#[path = "part/budget.rs"]
mod budget;
mod common;
#[path = "part/db.rs"]
mod db;
#[path = "part/json.rs"]
mod json;
#[path = "part/keep.rs"]
mod keep;
#[path = "part/progress.rs"]
mod progress;
#[path = "part/sink.rs"]
mod sink;
#[path = "part/snapshot.rs"]
mod snapshot_args;
#[path = "part/spool.rs"]
mod spool;
#[path = "part/verbose.rs"]
mod verbose;

use std::ffi::OsString;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{ArgGroup, CommandFactory, Parser};
use common::{count, human, note, seconds, Common};
use json::Place;
use keep::KeepArgs;
use progress::ProgressBar;
use snapshot_args::SnapshotArgs;
use wmbackup::age::open::{FileKey, Key};
use wmbackup::age::recipients;
use wmbackup::age::seal::Sealer;
use wmbackup::clock::Utc;
use wmbackup::hash::Hashing;
use wmbackup::metrics::{self, MetricsFile};
use wmbackup::output::AtomicFile;
use wmbackup::prune::{self, Policy};
use wmbackup::report::{self, Backup};
use wmbackup::run::Run;
use wmbackup::signals::Cancel;
use wmbackup::sqlite::snapshot::{self, Options};
use wmbackup::sqlite::source::Source;
use wmbackup::stop::Knob;
use wmbackup::verify;
use wmbackup::Error;

const PROG: &str = "workmem-backup";

/// Back up the workmem memory database: a consistent snapshot, age-encrypted,
/// written atomically and durably. A drop-in for `workmem backup`.
#[derive(Parser, Debug)]
#[command(
    name = PROG,
    version,
    group(ArgGroup::new("who").required(true).multiple(true).args(["age_recipient", "recipients_file"])),
    after_help = "Restore with wm-restore, which verifies the backup first and keeps the database it replaces:\n  wm-restore -i identity.txt memory.db.age\n\nOnly the database named (--db, MEMORY_DB_PATH or the default) is backed up;\nback up project databases with a second run and --db.\n\nA history, pruned after each backup, with metrics for Prometheus:\n  workmem-backup -q --to /backups/ -R recipients.txt --keep-daily 7 --keep-weekly 4 \\\n      --metrics-file /var/lib/node_exporter/workmem_backup.prom\n\nSee workmem-backup(1)."
)]
struct Cli {
    /// Destination file, e.g. memory.db.age; a directory (DIR/) gets a new STEM-YYYYMMDDTHHMMSSZ.db.age; - is standard output
    #[arg(long, short = 'o', visible_alias = "output", value_name = "PATH")]
    to: PathBuf,

    /// Encrypt to VALUE: an existing recipients file, else an age1... or ssh-ed25519/ssh-rsa public key (repeatable)
    #[arg(
        long = "age-recipient",
        short = 'r',
        visible_alias = "recipient",
        value_name = "VALUE",
        allow_hyphen_values = true
    )]
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

    /// With --verify: longest the database check may run [default: 120, plus 120 per GiB of database]
    #[arg(long, value_name = "SECONDS", value_parser = budget::parse, requires = "verify")]
    time_budget: Option<Duration>,

    #[command(flatten)]
    keep: KeepArgs,

    /// Print one JSON object instead of the summary (also on failure): on standard output, or on standard error with --to -
    #[arg(long)]
    json: bool,

    /// Also say on stderr what the source was, how it was copied, who can decrypt, and the SHA-256 written
    #[arg(short, long, conflicts_with = "quiet")]
    verbose: bool,

    /// Write the run's outcome for node_exporter's textfile collector to PATH (atomically, mode 0644)
    #[arg(long, value_name = "PATH")]
    metrics_file: Option<PathBuf>,

    /// No progress, notices or summary on stderr, only errors
    #[arg(short, long)]
    quiet: bool,

    #[command(flatten)]
    common: Common,
}

fn main() -> ExitCode {
    common::harden(PROG);
    let (long, takes_value) = go_style_names();
    let long: Vec<&str> = long.iter().map(String::as_str).collect();
    let takes_value: Vec<&str> = takes_value.iter().map(String::as_str).collect();
    let args = accept_go_style(std::env::args_os(), &long, &takes_value);
    let cli: Cli = json::parse_args(PROG, args, true);
    let place = Place::for_data(true, Some(&cli.to));
    json::main_with(PROG, cli.json, place, |cancel, report| run(&cli, cancel, report))
}

/// The backup, then the metrics file whatever the outcome. `report` is
/// filled once the backup is in place.
fn run(cli: &Cli, cancel: &Cancel, report: &mut Option<Backup>) -> Result<(), Error> {
    // A metrics file we could not write would hide every later failure:
    // make sure of it first.
    let metrics = match &cli.metrics_file {
        Some(p) => Some(MetricsFile::create(p)?),
        None => None,
    };
    let mut database = None;
    let result = backup(cli, cancel, report, &mut database);
    let Some(metrics) = metrics else { return result };
    let exit_status = match (&result, cancel.fired()) {
        (Ok(()), _) => 0,
        (Err(_), Some(sig)) => 128u8.saturating_add(sig as u8),
        (Err(e), None) => e.exit_code(),
    };
    let success = report.as_ref().map(|r| metrics::Success {
        timestamp: Utc::now().unix(),
        duration: r.seconds,
        snapshot_bytes: r.snapshot_bytes,
        ciphertext_bytes: r.ciphertext_bytes.unwrap_or(0),
    });
    let run = metrics::Run {
        database,
        destination: cli.to.display().to_string(),
        finished: Utc::now().unix(),
        exit_status,
        success,
    };
    match (metrics.write(&run), result) {
        (Err(e), Ok(())) => Err(e.into()),
        (_, result) => result,
    }
}

fn backup(cli: &Cli, cancel: &Cancel, report: &mut Option<Backup>, database: &mut Option<String>) -> Result<(), Error> {
    let started = Instant::now();
    let started_at = Utc::now();
    // Text on stderr only without --json, which replaces it.
    let quiet = cli.quiet || cli.json;
    let mut warnings = Vec::new();
    let policy = cli.keep.policy();
    let pruning = policy != Policy::default();
    if pruning && !sink::is_dir(&cli.to) {
        return Err(Error::usage(
            "--keep-* needs --to DIR/: only a directory of timestamped backups is pruned",
            Some("end --to with a slash, e.g. --to /backups/, or use wm-prune"),
        ));
    }
    // Everything that can be wrong is found before the snapshot starts.
    let values: Vec<_> = cli.age_recipient.iter().map(|v| ("--age-recipient", v.clone())).collect();
    let files: Vec<_> = cli.recipients_file.iter().map(|f| ("-R", f.clone())).collect();
    let collected = recipients::collect(&values, &files, cancel)?;
    for w in &collected.warnings {
        note(PROG, quiet, &format!("warning: {w}"));
        warnings.push(w.clone());
    }
    let recipients = collected.recipients;
    let db = cli.snap.db.resolve(PROG, quiet)?;
    *database = Some(std::path::absolute(&db).unwrap_or_else(|_| db.clone()).display().to_string());
    let opts = cli.snap.options();
    opts.validate()?;
    let series = sink::Series { stem: prune::stem_of_database(&db), ext: "db.age" };
    let mut sink = sink::open(Some(&cli.to), cancel, cli.armor, Some(&db), &series)?;
    if cli.verify && sink.file_mut().is_none() {
        return Err(Error::usage(
            "--verify needs --to FILE: standard output cannot be read back",
            Some("write to a file, or verify the stream with wm-verify -i IDENTITY at the other end"),
        ));
    }
    let target = sink.target();
    let mut source = Source::open(&db, cli.snap.busy_timeout(), Knob::Database)?;
    let source_info = match cli.json || cli.verbose {
        true => Some(source.info()?),
        false => None,
    };

    let (progress, bar) = ProgressBar::start(quiet, |phase| match phase {
        "output" => "encrypt",
        other => other,
    });
    let run = Run::new(cancel.clone(), progress);
    // The digest costs CPU on the hot path: only when a report carries it.
    let out = Hashing::new(sink, cli.json || cli.verbose);
    let mut sealer = Sealer::new(out, &recipients, cli.armor).map_err(|e| Error::seal(e, &target))?;
    let snap = snapshot::snapshot(&mut source, &opts, &run, &mut sealer).map_err(|e| Error::snapshot(e, &target))?;
    if let Some(text) = snap.forget_warning() {
        note(PROG, quiet, &format!("warning: {text}"));
        warnings.push(text);
    }
    let (out, stats, file_key) = sealer.finish_with_key().map_err(|e| Error::seal(e, &target))?;
    let (mut sink, sha256) = out.finish();
    run.progress.phase("sync", None);
    let verified = match sink.file_mut().filter(|_| cli.verify) {
        Some(file) => Some(verify_written(file, &file_key, &opts, cli.time_budget, &run, &target)?),
        None => None,
    };
    // A new file in a directory may have taken a later name than planned.
    let target = sink.commit()?;
    drop(bar);
    let r = report.insert(Backup {
        tool: PROG.into(),
        version: json::version(),
        started: started_at.rfc3339(),
        source: source_info,
        method: Some(snap.method.to_string()),
        spool: snap.spool.map(|k| k.to_string()),
        snapshot_bytes: snap.bytes,
        ciphertext_bytes: Some(stats.ciphertext),
        sha256: sha256.unwrap_or_default(),
        destination: target.display().to_string(),
        recipients: recipients.iter().map(|r| r.info()).collect(),
        armored: cli.armor,
        verified: verified.is_some(),
        warnings,
        ..Backup::default()
    });
    if cli.verbose && !cli.json {
        verbose::backup(PROG, r);
    }
    let mut summary = format!(
        "backed up {} to {}: {} encrypted ({} snapshot via {}){}",
        source.path().display(),
        target.display(),
        human(stats.ciphertext),
        human(snap.bytes),
        snap.how(),
        verified.unwrap_or_default(),
    );
    let pruned = match pruning {
        true => prune_series(&target, &series, &policy, &run),
        false => Ok(Vec::new()),
    };
    r.finished = Utc::now().rfc3339();
    r.seconds = report::seconds_since(started);
    match pruned {
        Ok(names) => {
            if pruning {
                summary += &format!("; pruned {}", count(names.len() as u64, "older backup", "older backups"));
            }
            r.pruned = names;
            note(PROG, quiet, &format!("{summary} in {}", seconds(started.elapsed())));
            Ok(())
        }
        Err((names, e)) => {
            r.pruned = names;
            note(PROG, quiet, &format!("{summary} in {}", seconds(started.elapsed())));
            Err(e)
        }
    }
}

/// Applies `policy` to the backups of `series` beside the one just made
/// (`target`, always kept), and deletes what it drops. Returns what was
/// deleted, also when a deletion failed.
fn prune_series(
    target: &Path,
    series: &sink::Series,
    policy: &Policy,
    run: &Run,
) -> Result<Vec<String>, (Vec<String>, Error)> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let new = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match prune::prune_series(dir, &series.stem, series.ext, &new, policy, run) {
        (deleted, Ok(())) => Ok(deleted),
        (deleted, Err(e)) => {
            Err((deleted, Error::about(&format!("prune (the new backup {} is in place)", target.display()), e)))
        }
    }
}

/// Reads the durable but not yet visible backup back from disk and verifies
/// it with the file key: a backup that fails never replaces the previous one.
fn verify_written(
    file: &mut AtomicFile,
    file_key: &FileKey,
    opts: &Options,
    time_budget: Option<Duration>,
    run: &Run,
    target: &Path,
) -> Result<String, Error> {
    file.sync()?;
    let input = BufReader::with_capacity(1 << 20, file.read_back()?);
    run.progress.phase("verify", None);
    let vopts = verify::Options { spool: opts.spool.clone(), size_hint: None, time_budget };
    let (report, result) = verify::verify(Box::new(input), Key::FileKey(file_key), &vopts, run);
    // The temporary is dropped on error: an older backup at `target` stays.
    result.map_err(|e| Error::about(&format!("verify: {} (new backup, not put in place)", target.display()), e))?;
    let tables = count(report.tables.len() as u64, "table", "tables");
    let fts5 = count(report.fts5.len() as u64, "FTS5 table", "FTS5 tables");
    Ok(format!(", verified (integrity_check ok, {tables} counted, {fts5} queried)"))
}

/// Every long flag of this command, and every flag (long or short) whose
/// next argument is its value and never to be rewritten: from clap's own
/// definition, so that a new flag can never be forgotten here.
fn go_style_names() -> (Vec<String>, Vec<String>) {
    let mut cmd = Cli::command();
    cmd.build();
    let (mut long, mut takes_value) = (Vec::new(), Vec::new());
    for a in cmd.get_arguments() {
        let value = a.get_action().takes_values();
        if let Some(l) = a.get_long() {
            long.push(l.to_string());
            if value {
                takes_value.push(l.to_string());
            }
        }
        if let Some(c) = a.get_short().filter(|_| value) {
            takes_value.push(c.to_string());
        }
    }
    (long, takes_value)
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
    fn every_long_flag_is_accepted_go_style_and_only_value_flags_take_the_next_argument() {
        let (long, value) = go_style_names();
        for f in ["to", "db", "age-recipient", "keep-daily", "metrics-file", "json", "verify", "help", "version"] {
            assert!(long.iter().any(|l| l == f), "{f} in {long:?}");
        }
        for f in ["to", "db", "R", "r", "keep-within", "metrics-file"] {
            assert!(value.iter().any(|v| v == f), "{f} takes a value: {value:?}");
        }
        for f in ["json", "verify", "armor", "q", "help"] {
            assert!(!value.iter().any(|v| v == f), "{f} takes no value: {value:?}");
        }
    }

    #[test]
    fn go_style_flags_become_double_dash_but_values_stay() {
        let args = ["prog", "-to", "-db", "-db=x", "--age-recipient", "-to", "-R", "-db", "-q"].map(OsString::from);
        let got = accept_go_style(args, &["to", "db", "age-recipient"], &["to", "db", "age-recipient", "R"]);
        let got: Vec<_> = got.iter().map(|s| s.to_string_lossy().into_owned()).collect();
        assert_eq!(got, ["prog", "--to", "-db", "--db=x", "--age-recipient", "-to", "-R", "-db", "-q"]);
    }
}
