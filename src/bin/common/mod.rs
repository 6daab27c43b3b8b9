//! What the three binaries share and the library must not do: flags (clap),
//! printing, exit codes, the progress bar. Each binary uses a subset, hence
//! the `dead_code` allowance.
#![allow(dead_code)]

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use wmbackup::output::{AtomicFile, Destination};
use wmbackup::progress::Progress;
use wmbackup::signals::{Cancel, CancelWrite};
use wmbackup::snapshot::{self, Method, SpoolMode};
use wmbackup::source::{self, DotenvOutcome, Env};
use wmbackup::Error;

/// Parses the command line; a usage error becomes one line on stderr and
/// exit 2 (clap's own report spans several lines and may repeat a value that
/// was key material); `--help` and `--version` print as usual.
pub fn parse_args<T: clap::Parser>(prog: &str, args: Vec<OsString>) -> T {
    match T::try_parse_from(args) {
        Ok(t) => t,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let text = e.to_string();
            // The error itself, folded onto one line; clap's usage block is left out.
            let folded: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty() && !l.starts_with("Usage:"))
                .map(|l| l.trim().trim_start_matches("error: "))
                .collect();
            let folded = folded.join(" ");
            let first = if folded.is_empty() { "invalid arguments" } else { folded.as_str() };
            let first = if first.contains("PRIVATE KEY") || first.to_ascii_uppercase().contains("AGE-SECRET-KEY") {
                "an argument looks like key material and cannot be used here"
            } else {
                first
            };
            let _ = writeln!(io::stderr(), "{prog}: {first}; try '{prog} --help'");
            std::process::exit(2);
        }
    }
}

/// Signals become a cancellation token; first thing in every binary's run,
/// before any thread exists (the signal mask is inherited).
pub fn install_signals() -> Result<Cancel, Error> {
    Cancel::on_signals().map_err(|e| Error::Setup { what: "start: cannot watch signals", source: e })
}

/// Runs a binary's body and turns its outcome into one stderr line and an exit code.
pub fn main_with(prog: &str, body: impl FnOnce() -> Result<(), Error>) -> ExitCode {
    match body() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(line) = e.report(prog) {
                let _ = writeln!(io::stderr(), "{line}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MethodArg {
    /// VACUUM INTO a spool: compact, the design's method.
    Vacuum,
    /// Stream pages from sqlite_dbpage in one read transaction: fastest.
    Pages,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SpoolArg {
    /// memory when the snapshot fits comfortably in available memory, else disk
    Auto,
    /// SQLite's memdb: the plaintext never touches disk
    Memory,
    /// an unnamed temporary file under --tmpdir
    Disk,
}

/// The snapshot flags of wm-snapshot and workmem-backup.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Source database [default: $MEMORY_DB_PATH, else memory.db beside this program, else ./memory.db]
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,

    /// Load variables (MEMORY_DB_PATH) from a .env file first; the process environment wins
    #[arg(long, value_name = "PATH")]
    pub env_file: Option<PathBuf>,

    /// How to take the snapshot
    #[arg(long, value_enum, default_value = "vacuum")]
    pub method: MethodArg,

    /// Where a snapshot waits before it is written out
    #[arg(long, value_enum, default_value = "auto")]
    pub spool: SpoolArg,

    /// Directory for a disk spool [default: $TMPDIR, else /tmp]
    #[arg(long, value_name = "DIR")]
    pub tmpdir: Option<PathBuf>,

    /// How long to wait for a writer that holds the database locked
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub busy_timeout: u64,

    /// Also run PRAGMA quick_check on the snapshot before writing it out
    #[arg(long)]
    pub check: bool,
}

impl SnapshotArgs {
    pub fn options(&self) -> snapshot::Options {
        snapshot::Options {
            method: match self.method {
                MethodArg::Vacuum => Method::Vacuum,
                MethodArg::Pages => Method::Pages,
            },
            spool: match self.spool {
                SpoolArg::Auto => SpoolMode::Auto,
                SpoolArg::Memory => SpoolMode::Memory,
                SpoolArg::Disk => SpoolMode::Disk,
            },
            tmpdir: self.tmpdir.clone(),
            check: self.check,
        }
    }

    pub fn busy_timeout(&self) -> Duration {
        Duration::from_millis(self.busy_timeout)
    }

    /// The database path, by the workmem server's rules. A `.env` file that
    /// exists but cannot be read is a warning, as in the server.
    pub fn resolve_db(&self, prog: &str, quiet: bool) -> Result<PathBuf, Error> {
        let mut env = Env::from_process();
        if let Some(path) = &self.env_file {
            match source::read_dotenv(path) {
                Ok(DotenvOutcome::Loaded(pairs)) => env = env.with_dotenv(pairs),
                Ok(DotenvOutcome::Missing) => {}
                Err(e) => warn(prog, quiet, &e.to_string()),
            }
        }
        let exe_dir = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf));
        let resolved = source::resolve_db_path(self.db.as_deref(), &env, exe_dir.as_deref(), std::env::current_dir)?;
        Ok(resolved.path)
    }
}

pub fn warn(prog: &str, quiet: bool, msg: &str) {
    if !quiet {
        let _ = writeln!(io::stderr(), "{prog}: warning: {msg}");
    }
}

pub fn note(prog: &str, quiet: bool, msg: &str) {
    if !quiet {
        let _ = writeln!(io::stderr(), "{prog}: {msg}");
    }
}

/// Where data goes: standard output, or a file that appears only when complete.
pub enum Sink {
    Stdout(CancelWrite<File>),
    File(AtomicFile),
}

impl Sink {
    /// `None` or `-`: standard output, refused when it is a terminal unless
    /// `terminal_ok` (ASCII armor). Otherwise an atomic file, whose creation
    /// proves the directory writable before any real work starts.
    pub fn open(to: Option<&Path>, cancel: &Cancel, terminal_ok: bool, protected: &[PathBuf]) -> Result<Sink, Error> {
        match to {
            None => Sink::stdout(cancel, terminal_ok),
            Some(p) if p == Path::new("-") => Sink::stdout(cancel, terminal_ok),
            Some(p) => {
                let dest = Destination::resolve(p)?;
                dest.refuse_protected(protected)?;
                Ok(Sink::File(AtomicFile::create(dest)?))
            }
        }
    }

    fn stdout(cancel: &Cancel, terminal_ok: bool) -> Result<Sink, Error> {
        let out = io::stdout();
        if out.is_terminal() && !terminal_ok {
            return Err(Error::usage(
                "refusing to write binary data to a terminal",
                Some("pipe the output into a command, redirect it to a file, or use --to FILE"),
            ));
        }
        let fd = out.as_fd().try_clone_to_owned().map_err(|e| Error::usage(format!("standard output: {e}"), None))?;
        wmbackup::output::widen_pipe(&fd);
        Ok(Sink::Stdout(CancelWrite::new(File::from(fd), cancel)))
    }

    /// Where the data went, for messages.
    pub fn describe(&self) -> String {
        match self {
            Sink::Stdout(_) => "standard output".into(),
            Sink::File(f) => f.destination().path.display().to_string(),
        }
    }

    /// The atomic file, when the output is one.
    pub fn file_mut(&mut self) -> Option<&mut AtomicFile> {
        match self {
            Sink::File(f) => Some(f),
            Sink::Stdout(_) => None,
        }
    }

    /// Makes the output final: flush stdout, or fsync + rename + fsync dir.
    pub fn commit(self) -> Result<(), Error> {
        match self {
            Sink::Stdout(mut w) => w.flush().map_err(|e| {
                Error::from(wmbackup::output::OutputError::Write { path: "standard output".into(), source: e })
            }),
            Sink::File(f) => Ok(f.commit()?),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Stdout(w) => w.write(buf),
            Sink::File(f) => f.write(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout(w) => w.write_all(buf),
            Sink::File(f) => f.write_all(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout(w) => w.flush(),
            Sink::File(f) => f.flush(),
        }
    }
}

/// Refuses a terminal on standard input: the data must be piped in (`hint` says how).
pub fn stdin_not_terminal(hint: &str) -> Result<File, Error> {
    let input = io::stdin();
    if input.is_terminal() {
        return Err(Error::usage("refusing to read data from a terminal", Some(hint)));
    }
    let fd = input.as_fd().try_clone_to_owned().map_err(|e| Error::usage(format!("standard input: {e}"), None))?;
    wmbackup::output::widen_pipe(&fd);
    Ok(File::from(fd))
}

pub fn stderr_is_terminal() -> bool {
    io::stderr().is_terminal()
}

/// Human sizes: 1536 -> "1.5 KiB".
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn seconds(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Draws the library's [`Progress`] on stderr until dropped.
pub struct ProgressBar {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProgressBar {
    /// Only on a terminal and without -q; otherwise a disabled progress.
    pub fn start(quiet: bool, label: fn(&'static str) -> &'static str) -> (Progress, Option<ProgressBar>) {
        if quiet || !stderr_is_terminal() {
            return (Progress::disabled(), None);
        }
        let progress = Progress::enabled();
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (progress.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    // Parked, not asleep: Drop wakes it at once instead of waiting out the tick.
                    std::thread::park_timeout(Duration::from_millis(150));
                    if s.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Some((phase, done)) = p.read() {
                        let line = render(label(phase.name), done, phase.total, phase.started.elapsed());
                        let _ = write!(io::stderr(), "\r\x1b[2K{line}");
                    }
                }
                let _ = write!(io::stderr(), "\r\x1b[2K");
            })
            .ok();
        (progress, Some(ProgressBar { stop, thread }))
    }
}

impl Drop for ProgressBar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// `snapshot [#####-----]  120.0 MiB / 512.0 MiB  310.2 MiB/s  ETA 1 s`
fn render(phase: &str, done: u64, total: Option<u64>, elapsed: Duration) -> String {
    let rate = done as f64 / elapsed.as_secs_f64().max(0.001);
    let rate_s = format!("{}/s", human(rate as u64));
    match total {
        Some(t) if t > 0 => {
            let frac = (done as f64 / t as f64).clamp(0.0, 1.0);
            let filled = (frac * 20.0).round() as usize;
            let eta = if rate > 0.0 { (t.saturating_sub(done)) as f64 / rate } else { 0.0 };
            format!(
                "{phase:<9} [{}{}] {:>10} / {:<10} {rate_s:>12}  ETA {:.0} s",
                "#".repeat(filled),
                "-".repeat(20 - filled),
                human(done),
                human(t),
                eta
            )
        }
        // A phase that moves no bytes (integrity check, sync): how long it has run.
        _ if done == 0 => format!("{phase:<9} {:.0} s", elapsed.as_secs_f64()),
        _ => format!("{phase:<9} {:>10} {rate_s:>12}", human(done)),
    }
}

/// Go's flag package accepted `-to` as well as `--to`; so do we, for the
/// long flags a `workmem backup` user may have in a script.
pub fn accept_go_style(args: impl IntoIterator<Item = OsString>, long: &[&str], takes_value: &[&str]) -> Vec<OsString> {
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
    fn a_phase_without_bytes_shows_its_elapsed_time_not_zero_bytes() {
        assert_eq!(render("check", 0, None, Duration::from_secs(3)), "check     3 s");
        let line = render("decrypt", 1 << 20, None, Duration::from_secs(1));
        assert!(line.contains("1.0 MiB") && line.contains("/s"), "{line}");
    }

    #[test]
    fn go_style_flags_become_double_dash_but_values_stay() {
        let args = ["prog", "-to", "-db", "-db=x", "--age-recipient", "-to", "-R", "-db", "-q"].map(OsString::from);
        let got = accept_go_style(args, &["to", "db", "age-recipient"], &["to", "db", "age-recipient", "R"]);
        let got: Vec<_> = got.iter().map(|s| s.to_string_lossy().into_owned()).collect();
        assert_eq!(got, ["prog", "--to", "-db", "--db=x", "--age-recipient", "-to", "-R", "-db", "-q"]);
    }
}
