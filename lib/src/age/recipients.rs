//! Who can decrypt: age X25519 (`age1…`) and SSH (`ssh-ed25519`, `ssh-rsa`)
//! recipients, given literally or in recipients files.
//!
//! `-r VALUE` follows the seed's rule: an existing path is a recipients file
//! (even one named `age1…`), a path that cannot exist is parsed as a literal,
//! and any other `stat` failure (EACCES, EIO) is reported as it is. Messages
//! never repeat a line that could be key material: they name the file and
//! the line number.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use nix::errno::Errno;

use crate::signals::{open_read, Cancel, CancelRead};
use crate::stop::{io_cause, Failure, Hint, Stop};

/// One recipient, ready to wrap a file key.
pub type Recipient = Box<dyn age::Recipient + Send + Sync>;

/// Recipients files larger than this are not recipients files.
const MAX_FILE: u64 = 1 << 20;
const SECRET_PREFIX: &str = "AGE-SECRET-KEY-";
const PLUGIN_SECRET_PREFIX: &str = "AGE-PLUGIN-";

/// Where a bad recipient came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line value of the named flag.
    Arg(&'static str),
    /// Line `n` (1-based) of a recipients file.
    Line(PathBuf, usize),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Arg(flag) => write!(f, "{flag}"),
            Origin::Line(p, n) => write!(f, "{}:{n}", p.display()),
        }
    }
}

/// Why a line or value is not a usable recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    SecretKey,
    PluginSecret,
    SshPrivateKey,
    Plugin(String),
    UnsupportedSsh(String),
    RsaTooSmall,
    RsaTooLarge,
    Invalid,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::SecretKey => f.write_str("this is an age secret key (AGE-SECRET-KEY-1...), not a recipient"),
            Problem::PluginSecret => f.write_str("this is a plugin identity (AGE-PLUGIN-...), not a recipient"),
            Problem::SshPrivateKey => f.write_str("this is an SSH private key, not a public key"),
            Problem::Plugin(name) => write!(f, "plugin recipients (age1{name}1...) are not supported"),
            Problem::UnsupportedSsh(kind) => write!(f, "unsupported SSH key type {kind}"),
            Problem::RsaTooSmall => f.write_str("ssh-rsa key shorter than 2048 bits"),
            Problem::RsaTooLarge => f.write_str("ssh-rsa key longer than 4096 bits"),
            Problem::Invalid => f.write_str("not a valid age or SSH recipient"),
        }
    }
}

impl Problem {
    fn hint(&self) -> Option<&'static str> {
        match self {
            Problem::SecretKey => Some("pass the public key instead: age-keygen -y KEYFILE"),
            Problem::PluginSecret => Some("pass the plugin's recipient (age1...), not its identity"),
            Problem::SshPrivateKey => Some("pass the .pub file instead, e.g. ~/.ssh/id_ed25519.pub"),
            Problem::Plugin(_) => Some("use an X25519 (age-keygen) or SSH recipient"),
            Problem::UnsupportedSsh(_) => Some("use an ssh-ed25519 or ssh-rsa key"),
            Problem::RsaTooSmall | Problem::RsaTooLarge => Some("use an ssh-ed25519 key"),
            Problem::Invalid => Some("recipients look like age1... or ssh-ed25519 AAAA..."),
        }
    }
}

#[derive(Debug)]
pub enum RecipientsError {
    /// A value or line that is not a recipient.
    Bad {
        origin: Origin,
        problem: Problem,
    },
    /// `-r VALUE`: no such file, and not a recipient either.
    Neither {
        flag: &'static str,
        value: String,
    },
    Empty {
        flag: &'static str,
    },
    Stat {
        path: PathBuf,
        source: io::Error,
    },
    Directory {
        path: PathBuf,
    },
    Read {
        path: PathBuf,
        source: io::Error,
    },
    NotText {
        path: PathBuf,
    },
    TooLarge {
        path: PathBuf,
    },
    NoneInFile {
        path: PathBuf,
    },
    NoRecipients,
}

impl fmt::Display for RecipientsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use RecipientsError::*;
        match self {
            Bad { origin, problem } => write!(f, "recipient: {origin}: {problem}"),
            Neither { flag, value } => {
                write!(f, "recipient: {flag} {}: neither an existing file nor a valid recipient", shorten(value))
            }
            Empty { flag } => write!(f, "recipient: {flag}: empty value"),
            Stat { path, source } => write!(f, "recipients file: {}: {}", path.display(), io_cause(source)),
            Directory { path } => write!(f, "recipients file: {}: is a directory", path.display()),
            Read { path, source } => write!(f, "recipients file: {}: {}", path.display(), io_cause(source)),
            NotText { path } => write!(f, "recipients file: {}: not a text file", path.display()),
            TooLarge { path } => {
                write!(f, "recipients file: {}: larger than 1 MiB, not a recipients file", path.display())
            }
            NoneInFile { path } => {
                write!(f, "recipients file: {}: no recipients in it (empty or only comments)", path.display())
            }
            NoRecipients => f.write_str("no recipients given"),
        }
    }
}

impl std::error::Error for RecipientsError {}

impl Failure for RecipientsError {
    fn stop(&self) -> Option<Stop> {
        match self {
            RecipientsError::Read { source, .. } => Stop::from_io(source),
            _ => None,
        }
    }

    /// An empty value is a wrong invocation, typically an unset shell variable.
    fn exit_code(&self) -> u8 {
        match self {
            RecipientsError::Empty { .. } => 2,
            _ => 1,
        }
    }

    fn hint(&self) -> Option<Hint> {
        use RecipientsError::*;
        match self {
            Bad { problem, .. } => problem.hint().map(Hint::from),
            Neither { .. } => Some("give an age1... or ssh-... public key, or the path of a recipients file".into()),
            NoRecipients => Some("pass at least one recipient or recipients file".into()),
            NoneInFile { .. } => Some("add one public key per line (age-keygen -y KEYFILE prints one)".into()),
            Stat { source, .. } | Read { source, .. } if source.raw_os_error() == Some(Errno::EACCES as i32) => {
                Some("check the file's and its directories' permissions".into())
            }
            _ => None,
        }
    }
}

/// Shows at most 60 characters of a user's value.
fn shorten(v: &str) -> String {
    if v.chars().count() > 60 {
        format!("{:?}...", v.chars().take(57).collect::<String>())
    } else {
        format!("{v:?}")
    }
}

/// Secret material anywhere in a value (quoted, indented, pasted with its
/// comment line): such a value is refused by kind and never shown.
fn looks_secret(s: &str) -> Option<Problem> {
    let upper = s.to_ascii_uppercase();
    if upper.contains(SECRET_PREFIX) {
        Some(Problem::SecretKey)
    } else if upper.contains(PLUGIN_SECRET_PREFIX) {
        Some(Problem::PluginSecret)
    } else if upper.contains("PRIVATE KEY-----") {
        Some(Problem::SshPrivateKey)
    } else {
        None
    }
}

/// Parses one recipient literal.
pub fn parse_literal(s: &str) -> Result<Recipient, Problem> {
    if let Some(problem) = looks_secret(s) {
        return Err(problem);
    }
    let s = s.trim();
    if starts_with_ignore_case(s, "age1") {
        // Bech32: the human-readable part is everything before the last '1'.
        let lower = s.to_ascii_lowercase();
        let hrp = lower.rfind('1').map(|i| &lower[..i]).unwrap_or("");
        if hrp == "age" {
            return age::x25519::Recipient::from_str(s).map(|r| Box::new(r) as Recipient).map_err(|_| Problem::Invalid);
        }
        if let Some(name) = hrp.strip_prefix("age1").filter(|n| !n.is_empty()) {
            return Err(Problem::Plugin(name.to_string()));
        }
        return Err(Problem::Invalid);
    }
    if s.starts_with("ssh-") || s.starts_with("sk-") || s.starts_with("ecdsa-") {
        use age::ssh::ParseRecipientKeyError as E;
        return match age::ssh::Recipient::from_str(s) {
            Ok(r) => Ok(Box::new(r)),
            Err(E::Unsupported(kind)) => Err(Problem::UnsupportedSsh(kind)),
            Err(E::RsaModulusTooSmall) => Err(Problem::RsaTooSmall),
            Err(E::RsaModulusTooLarge) => Err(Problem::RsaTooLarge),
            Err(_) => Err(Problem::Invalid),
        };
    }
    Err(Problem::Invalid)
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// `-r VALUE`: a recipients file if the path exists, else a literal.
pub fn from_value(flag: &'static str, value: &str, cancel: &Cancel) -> Result<Vec<Recipient>, RecipientsError> {
    if value.is_empty() {
        return Err(RecipientsError::Empty { flag });
    }
    match std::fs::metadata(value) {
        Ok(m) if m.is_dir() => Err(RecipientsError::Directory { path: value.into() }),
        Ok(_) => from_file(Path::new(value), cancel),
        // These three say the path cannot name a file: treat the value as a key.
        // (ENAMETOOLONG: an ssh-rsa key is longer than a file name may be.)
        Err(e)
            if matches!(
                e.raw_os_error().map(Errno::from_raw),
                Some(Errno::ENOENT | Errno::ENAMETOOLONG | Errno::ENOTDIR)
            ) =>
        {
            match parse_literal(value) {
                Ok(r) => Ok(vec![r]),
                Err(Problem::Invalid) => Err(RecipientsError::Neither { flag, value: value.to_string() }),
                Err(problem) => Err(RecipientsError::Bad { origin: Origin::Arg(flag), problem }),
            }
        }
        Err(e) => Err(RecipientsError::Stat { path: value.into(), source: e }),
    }
}

/// `-R FILE`: always a recipients file.
pub fn from_file(path: &Path, cancel: &Cancel) -> Result<Vec<Recipient>, RecipientsError> {
    let meta = std::fs::metadata(path).map_err(|e| RecipientsError::Stat { path: path.into(), source: e })?;
    if meta.is_dir() {
        return Err(RecipientsError::Directory { path: path.into() });
    }
    if meta.is_file() && meta.len() > MAX_FILE {
        return Err(RecipientsError::TooLarge { path: path.into() });
    }
    let mut bytes = Vec::new();
    use std::io::Read;
    open_read(path, cancel)
        .and_then(|f| CancelRead::new(f, cancel).take(MAX_FILE + 1).read_to_end(&mut bytes))
        .map_err(|e| RecipientsError::Read { path: path.into(), source: e })?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(RecipientsError::TooLarge { path: path.into() });
    }
    parse_file(path, &bytes)
}

/// One recipient per line; blank lines and `#` comments skipped; CRLF accepted.
pub fn parse_file(path: &Path, bytes: &[u8]) -> Result<Vec<Recipient>, RecipientsError> {
    let text = std::str::from_utf8(bytes).map_err(|_| RecipientsError::NotText { path: path.into() })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim_start().starts_with("-----BEGIN") {
        return Err(RecipientsError::Bad { origin: Origin::Line(path.into(), 1), problem: Problem::SshPrivateKey });
    }
    let mut out = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let r = parse_literal(line)
            .map_err(|problem| RecipientsError::Bad { origin: Origin::Line(path.into(), i + 1), problem })?;
        out.push(r);
    }
    if out.is_empty() {
        return Err(RecipientsError::NoneInFile { path: path.into() });
    }
    Ok(out)
}

/// Gathers `-r` values and `-R` files, in order; at least one recipient.
pub fn collect(
    values: &[(&'static str, String)],
    files: &[(&'static str, PathBuf)],
    cancel: &Cancel,
) -> Result<Vec<Recipient>, RecipientsError> {
    let mut out = Vec::new();
    for (flag, v) in values {
        out.extend(from_value(flag, v, cancel)?);
    }
    for (_, f) in files {
        out.extend(from_file(f, cancel)?);
    }
    if out.is_empty() {
        return Err(RecipientsError::NoRecipients);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const X25519: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
    const SECRET: &str = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX";
    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN alice@example";

    #[test]
    fn literals() {
        assert!(parse_literal(X25519).is_ok());
        assert!(parse_literal(ED25519).is_ok());
        assert_eq!(parse_literal(SECRET).err(), Some(Problem::SecretKey));
        assert_eq!(parse_literal("age1yubikey1qwerty").err(), Some(Problem::Plugin("yubikey".into())));
        assert_eq!(parse_literal(&X25519[..40]).err(), Some(Problem::Invalid));
        assert_eq!(parse_literal("hello").err(), Some(Problem::Invalid));
        assert_eq!(
            parse_literal("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBN")
                .err()
                .map(|p| matches!(p, Problem::UnsupportedSsh(_) | Problem::Invalid)),
            Some(true)
        );
    }

    #[test]
    fn file_with_comments_crlf_and_line_numbers() {
        let p = Path::new("keys.txt");
        let ok = format!("# team\r\n\r\n{X25519}\r\n  {ED25519}  \r\n");
        assert_eq!(parse_file(p, ok.as_bytes()).unwrap().len(), 2);
        let bad = format!("# team\n{X25519}\n{SECRET}\n");
        match parse_file(p, bad.as_bytes()) {
            Err(RecipientsError::Bad { origin: Origin::Line(_, 3), problem: Problem::SecretKey }) => {}
            other => panic!("{:?}", other.map(|v| v.len())),
        }
        assert!(matches!(parse_file(p, b"# only\n\n"), Err(RecipientsError::NoneInFile { .. })));
        assert!(matches!(parse_file(p, b""), Err(RecipientsError::NoneInFile { .. })));
        assert!(matches!(
            parse_file(p, b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n"),
            Err(RecipientsError::Bad { problem: Problem::SshPrivateKey, .. })
        ));
    }

    #[test]
    fn value_prefers_an_existing_file_even_named_like_a_key() {
        let c = Cancel::manual().unwrap();
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join(X25519);
        std::fs::write(&file, format!("{ED25519}\n")).unwrap();
        let got = from_value("-r", file.to_str().unwrap(), &c).unwrap();
        assert_eq!(got.len(), 1);
        assert!(matches!(from_value("-r", d.path().to_str().unwrap(), &c), Err(RecipientsError::Directory { .. })));
        assert!(matches!(from_value("-r", "nope.txt", &c), Err(RecipientsError::Neither { .. })));
        assert!(matches!(from_value("-r", "", &c), Err(RecipientsError::Empty { .. })));
        let msg = from_value("-r", SECRET, &c).err().unwrap().to_string();
        assert!(!msg.contains("GFPYY"), "a secret must never be echoed: {msg}");
    }
}
