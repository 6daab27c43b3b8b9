//! wm-keygen: make an age key pair, or print the recipients of an identity
//! file; age-keygen's flags, file format and behaviour, post-quantum keys
//! included, for systems whose age is older than 1.3.

// The sizes and durations the backup tools print are not needed here.
#[allow(dead_code)]
mod common;

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use common::{note, Common};
use wmbackup::age::keygen::{self, Kind};
use wmbackup::clock::Utc;
use wmbackup::output::{AtomicFile, Destination, OutputError};
use wmbackup::signals::{open_read, Cancel, CancelRead};
use wmbackup::stop::{Failure, Hint};
use wmbackup::Error;

const PROG: &str = "wm-keygen";

/// Go's age-keygen reads at most this much of an identity file.
const MAX_INPUT: u64 = 16 << 20;

/// Make an age key pair (X25519, or with -pq post-quantum ML-KEM-768 +
/// X25519), or with -y print the recipient of each identity in a file.
/// Compatible with age-keygen: same flags, same file format.
#[derive(Parser, Debug)]
#[command(
    name = PROG,
    version,
    after_help = "The public key goes to standard error when the key is not written to a terminal.\n\nExamples:\n  wm-keygen -o identity.txt                    # prints the public key\n  wm-keygen -y identity.txt > recipients.txt\n  wm-keygen -pq -o identity-pq.txt\n  workmem-backup -R recipients.txt --to /backups/\n\nSee wm-keygen(1)."
)]
struct Cli {
    /// Make a post-quantum hybrid key pair (ML-KEM-768 + X25519, age1pq1...): age 1.3 and these tools read it, older age does not
    #[arg(long = "pq", conflicts_with = "convert")]
    pq: bool,

    /// Write to FILE, created with mode 0600 and never replaced, instead of standard output
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,

    /// Print the recipient (public key) of each identity in INPUT, one per line
    #[arg(short = 'y')]
    convert: bool,

    /// Say what was written where, on standard error
    #[arg(short, long, conflicts_with = "quiet")]
    verbose: bool,

    /// Nothing on standard error but errors (no "Public key:" line)
    #[arg(short, long)]
    quiet: bool,

    /// With -y: the identity file; - or absent is standard input
    #[arg(value_name = "INPUT", requires = "convert")]
    input: Option<PathBuf>,

    #[command(flatten)]
    common: Common,
}

fn main() -> ExitCode {
    let cli: Cli = common::parse_args(PROG, accept_go_style(std::env::args_os()));
    common::main_with(PROG, |cancel| run(&cli, cancel))
}

fn run(cli: &Cli, cancel: &Cancel) -> Result<(), Error> {
    let output = cli.output.as_deref().filter(|p| *p != Path::new("-"));
    if let Some(p) = output {
        refuse_existing(p)?;
    }
    if cli.convert {
        return convert(cli, output, cancel);
    }
    let kind = if cli.pq { Kind::Hybrid } else { Kind::X25519 };
    let pair = keygen::generate(kind);
    let text = keygen::file_text(&pair, &Utc::now().rfc3339());
    // As age-keygen: the public key on stderr unless the key itself is on a terminal.
    let on_terminal = output.is_none() && io::stdout().is_terminal();
    match output {
        Some(path) => write_new(path, text.as_bytes())?,
        None => {
            warn_world_readable_stdout(cli.quiet);
            write_stdout(text.as_bytes())?;
        }
    }
    if !on_terminal && !cli.quiet {
        common::say(&format!("Public key: {}", pair.public));
    }
    if cli.verbose {
        let what = match kind {
            Kind::X25519 => "an X25519 identity",
            Kind::Hybrid => "a post-quantum (ML-KEM-768 + X25519) identity",
        };
        let place = output.map_or("standard output".to_string(), |p| format!("{} (mode 0600)", p.display()));
        note(PROG, false, &format!("wrote {what} to {place}; give its public key to -r, or wm-keygen -y its file"));
    }
    Ok(())
}

/// `-y`: the recipients of the identities in INPUT (or standard input).
fn convert(cli: &Cli, output: Option<&Path>, cancel: &Cancel) -> Result<(), Error> {
    let input = cli.input.as_deref().filter(|p| *p != Path::new("-"));
    let name = input.map_or("standard input".to_string(), |p| p.display().to_string());
    let unreadable = |e: io::Error| KeyError::new(format!("{name}: {}", wmbackup::stop::io_cause(&e)), None);
    let bytes = match input {
        Some(p) => {
            if p.is_dir() {
                return Err(KeyError::new(format!("{name}: is a directory"), Some("name the identity file")).into());
            }
            let f = open_read(p, cancel).map_err(unreadable)?;
            keygen::read_capped(CancelRead::new(f, cancel), MAX_INPUT).map_err(unreadable)?
        }
        None => keygen::read_capped(CancelRead::new(io::stdin(), cancel), MAX_INPUT).map_err(unreadable)?,
    };
    let recipients = keygen::recipients(&bytes).map_err(|e| Error::about(&name, e))?;
    let text: String = recipients.iter().map(|r| format!("{r}\n")).collect();
    match output {
        Some(path) => write_new(path, text.as_bytes())?,
        None => write_stdout(text.as_bytes())?,
    }
    let n = recipients.len();
    let to = output.map_or("standard output".to_string(), |p| p.display().to_string());
    note(PROG, cli.quiet, &format!("{} of {name} written to {to}", common::count(n as u64, "recipient", "recipients")));
    Ok(())
}

/// age-keygen never replaces a file: neither do we, and we say so first.
fn refuse_existing(path: &Path) -> Result<(), Error> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(KeyError::new(
            format!("{}: is a directory", path.display()),
            Some(&format!("name a file inside it, e.g. -o {}", path.join("identity.txt").display())),
        )
        .into()),
        Ok(_) => Err(exists(path)),
        Err(_) => Ok(()),
    }
}

fn exists(path: &Path) -> Error {
    KeyError::new(
        format!("{}: already exists; a key file is never replaced", path.display()),
        Some("choose another -o FILE (the existing key may still be needed to decrypt backups)"),
    )
    .into()
}

/// A new file at `path`, mode 0600, complete and durable before it has its
/// name; never one that appeared meanwhile.
fn write_new(path: &Path, text: &[u8]) -> Result<(), Error> {
    let map = |e: OutputError| match e {
        OutputError::Exists(_) => exists(path),
        other => other.into(),
    };
    let mut file = AtomicFile::create_new(Destination::resolve(path).map_err(map)?).map_err(map)?;
    file.write_all(text).map_err(|e| Error::writing(path, e))?;
    file.commit().map_err(map)?;
    Ok(())
}

fn write_stdout(text: &[u8]) -> Result<(), Error> {
    let mut out = io::stdout().lock();
    out.write_all(text).and_then(|()| out.flush()).map_err(|e| Error::writing(Path::new("standard output"), e))
}

/// As age-keygen: `wm-keygen > key.txt` under umask 022 leaves a secret
/// readable by everyone; say so (the key is written all the same).
fn warn_world_readable_stdout(quiet: bool) {
    use std::os::fd::AsFd;
    let Ok(fd) = io::stdout().as_fd().try_clone_to_owned() else { return };
    let Ok(meta) = File::from(fd).metadata() else { return };
    if meta.is_file() && meta.permissions().mode() & 0o004 != 0 {
        note(PROG, quiet, "warning: writing a secret key to a world-readable file; chmod 600 it, or use -o FILE");
    }
}

/// A key file problem: what and the remedy.
#[derive(Debug)]
struct KeyError {
    what: String,
    hint: Option<String>,
}

impl KeyError {
    fn new(what: String, hint: Option<&str>) -> KeyError {
        KeyError { what, hint: hint.map(str::to_string) }
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl std::error::Error for KeyError {}

impl Failure for KeyError {
    fn hint(&self) -> Option<Hint> {
        self.hint.clone().map(Hint::from)
    }
}

/// Go's flag package spells the long flags with one dash: `-pq`,
/// `-output FILE`, `-version`. They become clap's `--pq`, … (before `--`,
/// and never the value of `-o`).
fn accept_go_style(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let (mut value_next, mut done) = (false, false);
    for a in args {
        let s = a.to_string_lossy().into_owned();
        if done || value_next {
            value_next = false;
            out.push(a);
            continue;
        }
        done = s == "--";
        let rewritten = match s.as_str() {
            "-pq" | "-version" | "-help" => Some(format!("-{s}")),
            _ if s == "-output" || s.starts_with("-output=") => Some(format!("-{s}")),
            _ => None,
        };
        value_next = matches!(s.as_str(), "-o" | "--output" | "-output");
        out.push(rewritten.map_or(a, OsString::from));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_long_flags_are_accepted_but_never_a_value() {
        let args =
            ["wm-keygen", "-pq", "-output", "-pq", "-o", "-version", "-output=x", "--", "-pq"].map(OsString::from);
        let got: Vec<String> = accept_go_style(args).iter().map(|s| s.to_string_lossy().into_owned()).collect();
        assert_eq!(got, ["wm-keygen", "--pq", "--output", "-pq", "-o", "-version", "--output=x", "--", "-pq"]);
    }
}
