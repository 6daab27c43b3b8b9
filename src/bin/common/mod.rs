//! What every binary shares and the library must not do: argument parsing
//! (clap), the one-line error report with the flags' spellings, exit codes,
//! shell completions, and number formatting. Pieces only some binaries use
//! live in `part/`, each included by the binaries that use it.

use std::borrow::Cow;
use std::ffi::OsString;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, ValueEnum};
use wmbackup::age::recipients::secret_shaped;
use wmbackup::signals::Cancel;
use wmbackup::stop::{Knob, Stop};
use wmbackup::Error;

/// Flags every binary has. The binaries never read them: `--completions`
/// is answered before their own parsing, but belongs in their `--help`.
#[derive(Debug, Args)]
pub struct Common {
    /// Print a completion script for SHELL (bash, zsh, fish) on standard output and exit
    #[arg(long, value_name = "SHELL", value_enum, exclusive = true)]
    completions: Option<Shell>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Parses the command line; a usage error becomes one line on stderr and
/// exit 2 (clap's own report spans several lines and may repeat a value that
/// was key material); `--help`, `--version` and `--completions` print and exit 0.
pub fn parse_args<T: Parser>(prog: &str, args: Vec<OsString>) -> T {
    parse_args_reporting(prog, args, &|message| {
        say(&format!("{prog}: {message}"));
    })
}

/// [`parse_args`], a usage error's one line (without the `prog: ` prefix)
/// handed to `report` before the exit 2.
pub fn parse_args_reporting<T: Parser>(prog: &str, args: Vec<OsString>, report: &dyn Fn(&str)) -> T {
    // `--completions` stands alone, but clap checks required arguments first.
    if args.get(1).is_some_and(|a| a.to_string_lossy().starts_with("--completions")) {
        let only = Only::try_parse_from(&args).unwrap_or_else(|e| usage_error(prog, e, report));
        completions::<T>(prog, only.common.completions);
    }
    match T::try_parse_from(args) {
        Ok(t) => t,
        Err(e) => usage_error(prog, e, report),
    }
}

/// A command line of `--completions SHELL` alone.
#[derive(Parser)]
struct Only {
    #[command(flatten)]
    common: Common,
}

/// Prints the completion script for `shell` and exits.
fn completions<T: Parser>(prog: &str, shell: Option<Shell>) -> ! {
    let mut cmd = T::command();
    let mut out = io::stdout().lock();
    let shell = match shell {
        Some(Shell::Bash) => clap_complete::Shell::Bash,
        Some(Shell::Zsh) => clap_complete::Shell::Zsh,
        Some(Shell::Fish) => clap_complete::Shell::Fish,
        None => std::process::exit(2),
    };
    clap_complete::generate(shell, &mut cmd, prog, &mut out);
    std::process::exit(if out.flush().is_ok() { 0 } else { 1 });
}

/// `--help` and `--version` print and exit 0; anything else is one line and exit 2.
fn usage_error(prog: &str, e: clap::Error, report: &dyn Fn(&str)) -> ! {
    match e {
        e if !e.use_stderr() => e.exit(),
        e => {
            let folded = fold(&e.to_string());
            let sep = if folded.ends_with('?') { " " } else { "; " };
            report(&format!("{folded}{sep}try '{prog} --help'"));
            std::process::exit(2);
        }
    }
}

/// clap's report on one line: the error, then its tips ("did you mean"),
/// without the usage block; a quoted value that looks like a secret key is
/// not repeated.
fn fold(text: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut listing = false;
    for line in text.lines().map(str::trim).take_while(|l| !l.starts_with("Usage:")) {
        if line.is_empty() {
            continue;
        }
        let line = line.trim_start_matches("error: ");
        let part = match line.strip_prefix("tip: a similar argument exists: ") {
            Some(similar) => format!("did you mean {similar}?"),
            None => match line.strip_prefix("tip: some similar arguments exist: ") {
                Some(similar) => format!("did you mean one of {similar}?"),
                None => line.strip_prefix("tip: ").unwrap_or(line).to_string(),
            },
        };
        let part = hide_secrets(&part);
        // "required arguments were not provided:" lists them on the next lines.
        let listed = part.starts_with('-') || part.starts_with('<');
        match parts.last_mut() {
            Some(last) if last.ends_with(':') && listed => {
                last.push(' ');
                last.push_str(&part);
                listing = true;
            }
            Some(last) if listing && listed => {
                last.push_str(", ");
                last.push_str(&part);
            }
            _ => {
                listing = false;
                parts.push(part);
            }
        }
    }
    if parts.is_empty() {
        "invalid arguments".into()
    } else {
        parts.join("; ")
    }
}

/// clap quotes the values it complains about: a quoted value that looks
/// like a secret key (an age secret key in any spelling, a plugin identity,
/// a private key, or what a damaged one still looks like) is not repeated.
/// File names and public keys are.
fn hide_secrets(message: &str) -> String {
    let mut out = String::new();
    for (i, part) in message.split('\'').enumerate() {
        if i > 0 {
            out.push('\'');
        }
        // Odd parts are inside quotes.
        if i % 2 == 1 && secret_shaped(part) {
            out.push_str("(a value that looks like a secret key, not shown)");
        } else {
            out.push_str(part);
        }
    }
    out
}

/// How this command line spells each knob a remedy may point at.
pub fn spell(k: Knob) -> Cow<'static, str> {
    Cow::Borrowed(match k {
        Knob::Database => "--db",
        Knob::Destination => "--to",
        Knob::SpoolDisk => "--spool disk",
        Knob::SpoolMemory => "--spool memory",
        Knob::Tmpdir => "--tmpdir",
        Knob::BusyTimeout => "--busy-timeout",
        Knob::AllowEmpty => "--allow-empty",
        Knob::Raw => "--raw",
        Knob::Against => "--against",
        Knob::Identity => "-i",
        Knob::Retention => "--keep-last N, --keep-daily N or another --keep-* rule",
        Knob::NamesOnStdin => "- to read the names from standard input",
        Knob::MetricsFile => "--metrics-file",
        Knob::TimeBudget => "--time-budget SECONDS",
    })
}

/// Runs a binary's body with signals watched, and turns its outcome into
/// one stderr line and an exit code. Whatever failed after a signal came
/// failed because of it: the signal is reported.
pub fn main_with(prog: &str, body: impl FnOnce(&Cancel) -> Result<(), Error>) -> ExitCode {
    exit_with(prog, watched(body))
}

/// First thing in every tool that holds keys or plaintext: no core dump
/// of this process, and no `ptrace` by another of the same user
/// ([`wmbackup::harden`]). If the system refuses, the run stops: exit 1.
pub fn harden(prog: &str) {
    if let Err(e) = wmbackup::harden::no_core_dumps() {
        let e = Error::Setup { what: "start: cannot turn core dumps off", source: e };
        if let Some(line) = e.report(prog, &spell) {
            say(&line);
        }
        std::process::exit(i32::from(e.exit_code()));
    }
}

/// Runs `body` with signals watched. Whatever failed after a signal came
/// failed because of it: the result is then the signal.
pub fn watched(body: impl FnOnce(&Cancel) -> Result<(), Error>) -> Result<(), Error> {
    // First thing, before any thread exists: the signal mask is inherited.
    match Cancel::on_signals() {
        Ok(cancel) => match (body(&cancel), cancel.fired()) {
            (Err(_), Some(sig)) => Err(Error::Stopped(Stop::Interrupted(sig))),
            (result, _) => result,
        },
        Err(e) => Err(Error::Setup { what: "start: cannot watch signals", source: e }),
    }
}

/// One stderr line for a failure, and the exit code.
fn exit_with(prog: &str, result: Result<(), Error>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(line) = e.report(prog, &spell) {
                say(&line);
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// One line on stderr, prefixed with the program, unless `quiet`.
pub fn note(prog: &str, quiet: bool, msg: &str) {
    if !quiet {
        say(&format!("{prog}: {msg}"));
    }
}

/// One line on stderr in one write(2), so that the lines of jobs sharing a
/// log (cron, a systemd unit's journal) never interleave mid-line.
pub fn say(line: &str) {
    let mut text = String::with_capacity(line.len() + 1);
    text.push_str(line);
    text.push('\n');
    let _ = io::stderr().write_all(text.as_bytes());
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

/// `1 row`, `2 rows`: the count and the word that goes with it.
pub fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    match n.into() {
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    }
}

pub fn seconds(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_that_look_like_secret_keys_are_not_repeated_but_names_are() {
        let hidden = "unexpected argument '(a value that looks like a secret key, not shown)' found";
        for secret in [
            "AGE_SECRET_KEY_1GFPYYSJZGFPYYSJZGFPYYSJZ",
            "age-secret-key-1gfpyysjzgfpyysjz",
            "QQZGFPYYSJZGFPYYSJZGFPYYSJZ",
        ] {
            assert_eq!(hide_secrets(&format!("unexpected argument '{secret}' found")), hidden);
        }
        for m in [
            "invalid value 'fast' for '--spool <SPOOL>'",
            "unexpected argument 'backups/memory-20261201T020000Z.db.age' found",
            "unexpected argument 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p' found",
        ] {
            assert_eq!(hide_secrets(m), m, "ordinary values, file names, public keys and flag names stay");
        }
    }

    #[test]
    fn clap_tips_are_kept_on_the_one_line() {
        let text = "error: unexpected argument '--keep-lst' found\n\n  tip: a similar argument exists: '--keep-last'\n\nUsage: wm-prune [OPTIONS]\n\nFor more information, try '--help'.\n";
        assert_eq!(fold(text), "unexpected argument '--keep-lst' found; did you mean '--keep-last'?");
        let text = "error: the following required arguments were not provided:\n  --identity <FILE>\n  --to <PATH>\n\nUsage: x\n";
        assert_eq!(fold(text), "the following required arguments were not provided: --identity <FILE>, --to <PATH>");
    }
}
