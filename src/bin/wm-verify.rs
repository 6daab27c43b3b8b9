//! wm-verify: prove that an age-encrypted backup restores, without writing plaintext.

mod common;

use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use common::{human, seconds, ProgressBar, SpoolArg};
use wmbackup::identity;
use wmbackup::signals::{Cancel, CancelRead};
use wmbackup::snapshot::SpoolMode;
use wmbackup::unseal::{Key, UnsealError};
use wmbackup::verify::{self, Report, VerifyError};
use wmbackup::Error;

const PROG: &str = "wm-verify";

/// Check that an age-encrypted SQLite backup decrypts completely and
/// authentically and that the database in it is whole: integrity_check,
/// FTS5 queries, row counts. The plaintext stays in memory or in an
/// unnamed temporary file; nothing readable is left behind.
#[derive(Parser, Debug)]
#[command(
    name = PROG,
    version,
    after_help = "Exit status: 0 restorable, 1 not restorable (or could not tell), 2 usage error.\n\nExamples:\n  wm-verify -i key.txt memory.db.age\n  rclone cat remote:memory.db.age | wm-verify -i key.txt\n  wm-verify -i ~/.ssh/id_ed25519 --against ~/.workmem/memory.db --json memory.db.age\n\nSee wm-verify(1)."
)]
struct Cli {
    /// Decrypt with the identities in FILE: age-keygen output or an SSH private key (repeatable; - is standard input)
    #[arg(short = 'i', long = "identity", value_name = "FILE", required = true)]
    identity: Vec<PathBuf>,

    /// Where the decrypted database waits while it is checked
    #[arg(long, value_enum, default_value = "auto")]
    spool: SpoolArg,

    /// Directory for a disk spool [default: $TMPDIR, else /tmp]
    #[arg(long, value_name = "DIR")]
    tmpdir: Option<PathBuf>,

    /// Show the live database's row counts beside the backup's, and the difference
    #[arg(long, value_name = "DB")]
    against: Option<PathBuf>,

    /// How long --against waits for a writer that holds the database locked
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    busy_timeout: u64,

    /// Print the report as one JSON object on standard output (also when the backup fails)
    #[arg(long)]
    json: bool,

    /// No report on stderr, only errors
    #[arg(short, long)]
    quiet: bool,

    /// The age file to verify; - or absent is standard input
    #[arg(value_name = "BACKUP")]
    backup: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli: Cli = common::parse_args(PROG, std::env::args_os().collect());
    common::main_with(PROG, || run(&cli))
}

fn run(cli: &Cli) -> Result<(), Error> {
    let cancel = common::install_signals()?;
    let started = Instant::now();
    let from_stdin = cli.backup.as_deref().is_none_or(|p| p == Path::new("-"));
    if from_stdin && cli.identity.iter().any(|p| p == Path::new("-")) {
        return Err(Error::usage(
            "-i - and the backup cannot both come from standard input",
            Some("pass the backup as a file argument, or the identity as a file"),
        ));
    }
    let name = match &cli.backup {
        Some(p) if !from_stdin => p.display().to_string(),
        _ => "standard input".to_string(),
    };
    let identities = identity::collect(&cli.identity, &cancel)?;
    let opts = verify::Options {
        spool: match cli.spool {
            SpoolArg::Auto => SpoolMode::Auto,
            SpoolArg::Memory => SpoolMode::Memory,
            SpoolArg::Disk => SpoolMode::Disk,
        },
        tmpdir: cli.tmpdir.clone(),
        against: cli.against.clone(),
        busy_timeout: std::time::Duration::from_millis(cli.busy_timeout),
        size_hint: None,
    };
    opts.validate().map_err(|e| Error::verify(&name, e))?;
    let (input, size_hint) = open_backup(cli, from_stdin, &name, &cancel)?;
    let opts = verify::Options { size_hint, ..opts };

    let (progress, bar) = ProgressBar::start(cli.quiet || cli.json, |phase| phase);
    let (report, result) = verify::verify(input, Key::Identities(&identities), &opts, &cancel, &progress);
    drop(bar);
    let result = result.map_err(|e| Error::verify(&name, e));
    if cli.json && !matches!(result, Err(Error::Stopped(_))) {
        let error = result.as_ref().err().map(|e| e.to_string());
        let mut out = io::stdout().lock();
        writeln!(out, "{}", json(&name, &report, error.as_deref())).and_then(|()| out.flush()).map_err(|e| {
            Error::from(wmbackup::output::OutputError::Write { path: "standard output".into(), source: e })
        })?;
    }
    result?;
    if !cli.quiet && !cli.json {
        let _ = io::stderr().write_all(human_report(&name, &report, started).as_bytes());
    }
    Ok(())
}

/// The backup as a buffered reader that a signal interrupts, and its size when it has one.
fn open_backup(
    cli: &Cli,
    from_stdin: bool,
    name: &str,
    cancel: &Cancel,
) -> Result<(Box<dyn BufRead>, Option<u64>), Error> {
    let unreadable = |e: io::Error| Error::verify(name, VerifyError::Unseal(UnsealError::Read(e)));
    let (file, size) = match &cli.backup {
        Some(p) if !from_stdin => {
            let f = wmbackup::signals::open_read(p, cancel).map_err(unreadable)?;
            // A directory opens; its first read fails with "is a directory".
            let meta = f.metadata().map_err(unreadable)?;
            (f, meta.is_file().then_some(meta.len()))
        }
        _ => (
            common::stdin_not_terminal(
                "pipe the backup in, e.g. rclone cat remote:memory.db.age | wm-verify -i key.txt, or name the file",
            )?,
            None,
        ),
    };
    Ok((Box::new(BufReader::with_capacity(1 << 20, CancelRead::new(file, cancel))), size))
}

fn human_report(name: &str, r: &Report, started: Instant) -> String {
    let mut s = format!("{PROG}: {name}: restorable (verified in {})\n", seconds(started.elapsed()));
    if let Some(h) = &r.header {
        let armor = if h.armored { ", ASCII-armored" } else { "" };
        s += &format!(
            "  age file   {}{armor}, complete and authentic; opened with the {}\n",
            human(r.ciphertext),
            h.opened_by
        );
    }
    if let Some(db) = &r.database {
        s += &format!(
            "  database   {}, {} pages of {} bytes, written by SQLite {}\n",
            human(db.size),
            db.page_count,
            db.page_size,
            db.sqlite_version
        );
    }
    if let Some(i) = &r.integrity {
        s += &format!("  integrity  {i}\n");
    }
    for f in &r.fts5 {
        s += &format!(
            "  fts5       {} answers queries ({} rows for a term of its index)\n",
            f.table,
            f.hits.unwrap_or(0)
        );
    }
    let width = r.tables.iter().map(|t| t.name.len()).max().unwrap_or(5).max(5);
    let num = |n: Option<u64>| n.map_or("-".to_string(), |n| n.to_string());
    if let Some(live) = &r.against {
        s += &format!("  against    {}\n", live.display());
        s += &format!("  {:<width$}  {:>12}  {:>12}  {:>10}\n", "table", "backup", "live", "difference");
        for t in &r.tables {
            let diff = match t.difference() {
                None => "-".to_string(),
                Some(0) => "0".to_string(),
                Some(d) => format!("{d:+}"),
            };
            s += &format!("  {:<width$}  {:>12}  {:>12}  {diff:>10}\n", t.name, num(t.rows), num(t.live_rows));
        }
    } else {
        s += &format!("  {:<width$}  {:>12}\n", "table", "rows");
        for t in &r.tables {
            s += &format!("  {:<width$}  {:>12}\n", t.name, num(t.rows));
        }
    }
    s
}

/// The report as one compact JSON object.
fn json(name: &str, r: &Report, error: Option<&str>) -> String {
    let opt = |n: Option<u64>| n.map_or("null".to_string(), |n| n.to_string());
    let db = r.database.as_ref();
    let mut fields = vec![
        ("backup", json_str(name)),
        ("restorable", error.is_none().to_string()),
        ("error", error.map_or("null".into(), json_str)),
        ("opened_by", r.header.as_ref().map_or("null".into(), |h| json_str(&h.opened_by))),
        (
            "recipients",
            r.header.as_ref().map_or("null".into(), |h| {
                format!("[{}]", h.stanzas.iter().map(|s| json_str(s)).collect::<Vec<_>>().join(","))
            }),
        ),
        ("armored", r.header.as_ref().map_or("null".into(), |h| h.armored.to_string())),
        ("ciphertext", r.ciphertext.to_string()),
        ("size", opt(db.map(|d| d.size))),
        ("page_size", opt(db.map(|d| d.page_size as u64))),
        ("page_count", opt(db.map(|d| d.page_count))),
        ("sqlite_version", db.map_or("null".into(), |d| json_str(&d.sqlite_version))),
        ("spool", r.spool.map_or("null".into(), |k| json_str(&k.to_string()))),
        ("integrity_check", r.integrity.as_deref().map_or("null".into(), json_str)),
    ];
    let fts5: Vec<String> = r
        .fts5
        .iter()
        .map(|f| {
            format!(
                "{{\"table\":{},\"ok\":{},\"hits\":{},\"error\":{}}}",
                json_str(&f.table),
                f.error.is_none(),
                opt(f.hits),
                f.error.as_deref().map_or("null".into(), json_str)
            )
        })
        .collect();
    fields.push(("fts5", format!("[{}]", fts5.join(","))));
    fields.push(("against", r.against.as_ref().map_or("null".into(), |p| json_str(&p.display().to_string()))));
    let tables: Vec<String> = r
        .tables
        .iter()
        .map(|t| {
            format!(
                "{{\"name\":{},\"rows\":{},\"live_rows\":{},\"difference\":{}}}",
                json_str(&t.name),
                opt(t.rows),
                opt(t.live_rows),
                t.difference().map_or("null".into(), |d| d.to_string())
            )
        })
        .collect();
    fields.push(("tables", format!("[{}]", tables.join(","))));
    let body: Vec<String> = fields.into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", body.join(","))
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\nd\u{1}é"), "\"a\\\"b\\\\c\\nd\\u0001é\"");
    }

    #[test]
    fn failed_report_is_still_one_object() {
        let j = json("x.age", &Report::default(), Some("x.age: truncated"));
        assert!(j.starts_with("{\"backup\":\"x.age\",\"restorable\":false,\"error\":\"x.age: truncated\""), "{j}");
        assert!(j.ends_with("\"tables\":[]}"), "{j}");
    }
}
