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
use common::{human, note, seconds, stderr_is_terminal, Common};
use keep::KeepArgs;
use wmbackup::clock::Utc;
use wmbackup::prune::{self, BackupDir, Listing, PruneError};
use wmbackup::report::{self, KeptInfo, PolicyInfo, Prune, SkippedInfo};
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

    /// Delete what the policy drops from DIR (each unlink atomic, then the directory fsynced) and print what was deleted
    #[arg(long)]
    delete: bool,

    /// Say on standard error which rules keep each backup, and which names were not counted
    #[arg(short, long, conflicts_with = "quiet")]
    verbose: bool,

    /// Print one JSON object on standard error instead of the summary (also on failure)
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
    let cli: Cli = json::parse_args(PROG, std::env::args_os().collect());
    json::main_with(PROG, cli.json, |cancel, report| run(&cli, cancel, report))
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
    let plan = prune::plan(listing.backups.clone(), &policy, &[]);
    let dropped: Vec<&str> = plan.dropped.iter().map(|b| b.name.as_str()).collect();
    *report = Some(Prune {
        tool: PROG.into(),
        version: json::version(),
        started: started_at.rfc3339(),
        input: input.clone(),
        delete: cli.delete,
        policy: PolicyInfo {
            last: policy.last,
            hourly: policy.hourly,
            daily: policy.daily,
            weekly: policy.weekly,
            monthly: policy.monthly,
            yearly: policy.yearly,
            within: policy.within.map(|s| s.to_string()),
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
            })
            .collect(),
        dropped: dropped.iter().map(|n| n.to_string()).collect(),
        deleted: Vec::new(),
        skipped: listing
            .skipped
            .iter()
            .map(|(name, why)| SkippedInfo { name: name.clone(), why: why.to_string() })
            .collect(),
        ..Prune::default()
    });
    if cli.verbose && !cli.json {
        explain(&listing, &plan);
    }
    let summary = stderr_is_terminal() && !cli.json && !cli.quiet;
    // Sizes for the summary, taken before anything is deleted.
    let size_of: Vec<(String, u64)> = match &dir {
        Some(d) if summary => dropped.iter().map(|n| (n.to_string(), size(d.path(), n))).collect(),
        _ => Vec::new(),
    };
    let (printed, result) = match &dir {
        Some(dir) if cli.delete => {
            let (deleted, result) =
                dir.delete(&dropped, &Run::new(cancel.clone(), wmbackup::progress::Progress::disabled()));
            if let Some(r) = report.as_mut() {
                r.deleted.clone_from(&deleted);
            }
            (deleted, result.map_err(Error::from))
        }
        _ => (dropped.iter().map(|n| n.to_string()).collect(), Ok(())),
    };
    if let Some(r) = report.as_mut() {
        r.finished = Utc::now().rfc3339();
        r.seconds = report::seconds_since(started);
    }
    // What was deleted is said even when a later deletion failed.
    print_names(&printed)?;
    result?;
    if summary {
        let size = match &dir {
            Some(_) => {
                let bytes = size_of.iter().filter(|(n, _)| printed.contains(n)).map(|(_, b)| b).sum();
                format!(", {}", human(bytes))
            }
            None => String::new(),
        };
        let what = if cli.delete {
            format!("{} deleted{size}", printed.len())
        } else {
            format!("{} to drop{size} (printed; --delete deletes them)", printed.len())
        };
        note(
            PROG,
            false,
            &format!(
                "{input}: {} backups: {} kept, {what}, in {}",
                plan.kept.len() + plan.dropped.len(),
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

/// `-v`: each kept backup with its rules, and what was not counted.
fn explain(listing: &Listing, plan: &prune::Plan) {
    for k in &plan.kept {
        let rules: Vec<&str> = k.rules.iter().map(|r| r.as_str()).collect();
        let link = if listing.symlinks.contains(&k.backup.name) { "; a symbolic link, never followed" } else { "" };
        note(PROG, false, &format!("keep {} ({}{link})", k.backup.name, rules.join(", ")));
    }
    for (name, why) in &listing.skipped {
        note(PROG, false, &format!("skip {name}: {why}; never counted or deleted"));
    }
}

/// What the entry `name` of `dir` weighs (a link as a link; 0 if gone).
fn size(dir: &Path, name: &str) -> u64 {
    std::fs::symlink_metadata(dir.join(name)).map_or(0, |m| m.len())
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
