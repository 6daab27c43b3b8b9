//! wm-prune: apply a retention policy to timestamped backups, in a directory
//! or named on standard input; print what it drops, or delete it.

mod common;
#[path = "part/json.rs"]
mod json;
#[path = "part/keep.rs"]
mod keep;

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use common::{count, human, note, seconds, Common};
use json::Place;
use keep::KeepArgs;
use wmbackup::clock::Utc;
use wmbackup::prune::{self, BackupDir, Listing, PruneError, Span};
use wmbackup::report::{self, KeptInfo, PartialInfo, PolicyInfo, Prune, SkippedInfo};
use wmbackup::run::Run;
use wmbackup::signals::{Cancel, CancelRead};
use wmbackup::Error;

const PROG: &str = "wm-prune";

/// Apply a retention policy (restic's forget) to timestamped backups named
/// STEM-YYYYMMDDTHHMMSSZ.EXT: print the names it drops, one per line, or
/// delete them with --delete. Other names are never counted or touched.
#[derive(Parser, Debug)]
#[command(
    name = PROG,
    version,
    after_help = "Examples:\n  wm-prune --keep-daily 7 --keep-weekly 4 /backups            # what would go\n  wm-prune --keep-daily 7 --keep-weekly 4 --delete /backups\n  rclone lsf remote:backups | wm-prune --keep-daily 7 - | rclone delete remote:backups --files-from-raw -\n\nSee wm-prune(1)."
)]
struct Cli {
    #[command(flatten)]
    keep: KeepArgs,

    /// A partial upload (NAME.partial) older than DURATION, by the time in its name, is stale: printed, or deleted with --delete
    #[arg(long, value_name = "DURATION", default_value = "1d", value_parser = Span::parse)]
    partial_age: Span,

    /// Delete what the policy drops from DIR (each unlink atomic, then the directory fsynced) and print what was deleted
    #[arg(long)]
    delete: bool,

    /// Say on standard error which rules keep each backup, and which names were not counted
    #[arg(short, long, conflicts_with = "quiet")]
    verbose: bool,

    /// Print one JSON object on standard output instead of the names and the summary (also on failure)
    #[arg(long)]
    json: bool,

    /// No summary on standard error, only errors
    #[arg(short, long)]
    quiet: bool,

    /// The directory of backups, or - to read names from standard input, one per line
    #[arg(value_name = "DIR|-")]
    input: PathBuf,

    #[command(flatten)]
    common: Common,
}

fn main() -> ExitCode {
    common::harden(PROG);
    let cli: Cli = json::parse_args(PROG, std::env::args_os().collect(), false);
    json::main_with(PROG, cli.json, Place::Stdout, |cancel, report| run(&cli, cancel, report))
}

fn run(cli: &Cli, cancel: &Cancel, report: &mut Option<Prune>) -> Result<(), Error> {
    let started = Instant::now();
    let started_at = Utc::now();
    let policy = cli.keep.policy();
    policy.validate()?;
    let from_stdin = cli.input == Path::new("-");
    if from_stdin && cli.delete {
        return Err(Error::usage(
            "--delete needs a DIR: names read from standard input are deleted where they live",
            Some("feed the names to the remote's own delete, e.g. rclone delete remote:DIR --files-from-raw -"),
        ));
    }
    let input = if from_stdin { "standard input".to_string() } else { cli.input.display().to_string() };
    let (listing, dir) = if from_stdin {
        (read_names(cancel)?, None)
    } else {
        let dir = BackupDir::open(&cli.input)?;
        if cli.delete {
            dir.check_writable()?;
        }
        (dir.list()?, Some(dir))
    };
    let now = Utc::now();
    let plan = prune::plan(listing.backups.clone(), &policy, &[], &now);
    let stale_before = cli.partial_age.before(&now);
    let stale = listing.stale_partials(&stale_before);
    let doomed = listing.to_remove(&plan, &stale_before);
    let doomed: Vec<&str> = doomed.iter().map(String::as_str).collect();
    let span = |s: Option<Span>| s.map(|s| s.to_string());
    *report = Some(Prune {
        tool: PROG.into(),
        version: json::version(),
        started: started_at.rfc3339(),
        input: input.clone(),
        delete: cli.delete,
        policy: PolicyInfo {
            last: policy.last.map(|c| c.as_i64()),
            hourly: policy.hourly.map(|c| c.as_i64()),
            daily: policy.daily.map(|c| c.as_i64()),
            weekly: policy.weekly.map(|c| c.as_i64()),
            monthly: policy.monthly.map(|c| c.as_i64()),
            yearly: policy.yearly.map(|c| c.as_i64()),
            within: span(policy.within),
            within_hourly: span(policy.within_hourly),
            within_daily: span(policy.within_daily),
            within_weekly: span(policy.within_weekly),
            within_monthly: span(policy.within_monthly),
            within_yearly: span(policy.within_yearly),
            partial_age: cli.partial_age.to_string(),
        },
        backups: (plan.kept.len() + plan.dropped.len()) as u64,
        kept: plan
            .kept
            .iter()
            .map(|k| KeptInfo {
                name: k.backup.name.clone(),
                time: k.backup.time.rfc3339(),
                rules: k.rules.iter().map(|r| r.to_string()).collect(),
                symlink: listing.symlinks.contains(&k.backup.name),
                companions: listing.files_of(&k.backup.name).split_off(1),
            })
            .collect(),
        dropped: plan.dropped.iter().map(|b| b.name.clone()).collect(),
        deleted: Vec::new(),
        skipped: listing
            .skipped
            .iter()
            .map(|(name, why)| SkippedInfo { name: name.clone(), why: why.to_string() })
            .collect(),
        partial: listing
            .partials
            .iter()
            .map(|(name, time)| PartialInfo {
                name: name.clone(),
                time: time.map(|t| t.rfc3339()),
                stale: stale.contains(name),
            })
            .collect(),
        ..Prune::default()
    });
    if cli.verbose && !cli.json {
        explain(&listing, &plan, &stale, &cli.partial_age);
    }
    let summary = !cli.json && !cli.quiet;
    // Sizes for the summary, taken before anything is deleted.
    let size_of: Vec<(String, u64)> = match &dir {
        Some(d) if summary => doomed.iter().map(|n| (n.to_string(), d.size(n))).collect(),
        _ => Vec::new(),
    };
    let (printed, result) = match &dir {
        Some(dir) if cli.delete => {
            let (deleted, result) =
                dir.delete(&doomed, &Run::new(cancel.clone(), wmbackup::progress::Progress::disabled()));
            if let Some(r) = report.as_mut() {
                r.deleted.clone_from(&deleted);
            }
            (deleted, result.map_err(Error::from))
        }
        _ => (doomed.iter().map(|n| n.to_string()).collect(), Ok(())),
    };
    if let Some(r) = report.as_mut() {
        r.finished = Utc::now().rfc3339();
        r.seconds = report::seconds_since(started);
    }
    // What was deleted is said even when a later deletion failed; under
    // --json, in the report.
    if !cli.json {
        print_names(&printed)?;
    }
    result?;
    if summary {
        let size = match &dir {
            Some(_) => {
                // A set: 10,000 dropped names against a list took 0.1 s.
                let printed: std::collections::HashSet<&String> = printed.iter().collect();
                let bytes = size_of.iter().filter(|(n, _)| printed.contains(n)).map(|(_, b)| b).sum();
                format!(", {}", human(bytes))
            }
            None => String::new(),
        };
        let dropped = plan.dropped.len();
        let partials =
            if stale.is_empty() { String::new() } else { format!(" and {} stale partial upload(s)", stale.len()) };
        let what = if cli.delete {
            format!("{dropped} dropped{partials}, {} file(s) deleted{size}", printed.len())
        } else {
            format!("{dropped} to drop{partials}{size} (printed; --delete deletes them)")
        };
        note(
            PROG,
            false,
            &format!(
                "{input}: {}: {} kept, {what}, in {}",
                count((plan.kept.len() + plan.dropped.len()) as u64, "backup", "backups"),
                plan.kept.len(),
                seconds(started.elapsed())
            ),
        );
    }
    Ok(())
}

/// The names on standard input, read whole (a listing, not data).
fn read_names(cancel: &Cancel) -> Result<Listing, Error> {
    let unreadable = |e: io::Error| PruneError::Read { source_name: "standard input".into(), source: e };
    let fd = io::stdin().as_fd().try_clone_to_owned().map_err(unreadable)?;
    let mut text = Vec::new();
    CancelRead::new(File::from(fd), cancel).read_to_end(&mut text).map_err(unreadable)?;
    Ok(prune::parse_lines(&text, "standard input")?)
}

/// `-v`: each kept backup with restic's reasons, and what was not counted.
fn explain(listing: &Listing, plan: &prune::Plan, stale: &[String], partial_age: &Span) {
    for k in &plan.kept {
        let rules: Vec<String> = k.rules.iter().map(|r| r.to_string()).collect();
        let link = if listing.symlinks.contains(&k.backup.name) { "; a symbolic link, never followed" } else { "" };
        let with = listing.files_of(&k.backup.name).split_off(1);
        let with = if with.is_empty() { String::new() } else { format!("; with {}", with.join(", ")) };
        note(PROG, false, &format!("keep {} ({}{link}{with})", k.backup.name, rules.join(", ")));
    }
    for (name, why) in &listing.skipped {
        note(PROG, false, &format!("skip {name}: {why}; never counted or deleted"));
    }
    for (name, time) in &listing.partials {
        let what = match time {
            _ if stale.contains(name) => format!("older than {partial_age}: stale, dropped"),
            Some(_) => format!("newer than {partial_age}: may still be uploading, left alone"),
            None => "no time in its name: age unknown, never deleted".to_string(),
        };
        note(PROG, false, &format!("partial upload {name}, never counted: {what}"));
    }
}

/// One name per line on standard output.
fn print_names(names: &[String]) -> Result<(), Error> {
    let stdout = Path::new("standard output");
    let mut out = BufWriter::new(io::stdout().lock());
    for n in names {
        writeln!(out, "{n}").map_err(|e| Error::writing(stdout, e))?;
    }
    out.flush().map_err(|e| Error::writing(stdout, e))
}
