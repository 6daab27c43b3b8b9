//! Key pairs as Go's `age-keygen` makes them, and the recipients of an
//! identity file (`age-keygen -y`): what `wm-keygen` needs and nothing else.
//!
//! The file format is age-keygen's, byte for byte apart from the time:
//! `# created: RFC 3339`, `# public key: age1…`, the secret key; each line
//! ends with `\n`. `-y` accepts what Go's `age.ParseIdentities` accepts
//! (native X25519 and post-quantum identities, `#` comments, empty lines)
//! and refuses the rest, naming the line but never repeating it.

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use age::secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::pq::HybridIdentity;
use crate::stop::{Failure, Hint};

/// Which key pair to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `AGE-SECRET-KEY-1…` / `age1…`: what every age reads (age 1.0 on).
    X25519,
    /// `AGE-SECRET-KEY-PQ-1…` / `age1pq1…`: ML-KEM-768 + X25519 (age 1.3 on).
    Hybrid,
}

/// A new key pair: the secret key (wiped when dropped) and its recipient.
pub struct KeyPair {
    pub secret: SecretString,
    pub public: String,
}

/// A new random key pair of `kind`, from the operating system's CSPRNG.
pub fn generate(kind: Kind) -> KeyPair {
    match kind {
        Kind::X25519 => {
            let id = age::x25519::Identity::generate();
            KeyPair { secret: id.to_string(), public: id.to_public().to_string() }
        }
        Kind::Hybrid => {
            let id = HybridIdentity::generate();
            KeyPair { secret: id.to_string(), public: id.to_public().to_string() }
        }
    }
}

/// The identity file's text, as age-keygen writes it; `created` is the
/// RFC 3339 time of the `# created:` line.
pub fn file_text(pair: &KeyPair, created: &str) -> Zeroizing<String> {
    Zeroizing::new(format!("# created: {created}\n# public key: {}\n{}\n", pair.public, pair.secret.expose_secret()))
}

/// At most `limit` bytes of `r` (Go's age-keygen reads 16 MiB), wiped when dropped.
pub fn read_capped(r: impl Read, limit: u64) -> io::Result<Zeroizing<Vec<u8>>> {
    let mut bytes = Zeroizing::new(Vec::new());
    r.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Why an identity file gave no recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConvertError {
    NotText,
    /// Line `line` is not a native age identity; `what` says what it looks like.
    Line {
        line: usize,
        what: &'static str,
    },
    NoIdentities,
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvertError::NotText => f.write_str("not an identity file: not UTF-8 text"),
            ConvertError::Line { line, what } => write!(f, "line {line}: {what} (the line is not shown)"),
            ConvertError::NoIdentities => f.write_str("no identities found"),
        }
    }
}

impl std::error::Error for ConvertError {}

impl Failure for ConvertError {
    fn hint(&self) -> Option<Hint> {
        Some(match self {
            ConvertError::Line { what, .. } if what.starts_with("a public key") => {
                "give the secret key file (wm-keygen's output): its public key is already the recipient".into()
            }
            _ => "an identity file holds AGE-SECRET-KEY-1... or AGE-SECRET-KEY-PQ-1... lines, as wm-keygen writes them"
                .into(),
        })
    }
}

/// The recipient of every identity in an identity file's `text`, in order
/// (`age-keygen -y`). Lines are split as Go's `bufio.ScanLines` splits them
/// (a `\r` before the `\n` is dropped); a line is skipped when empty or
/// when it starts with `#`, and must otherwise be an identity as it stands.
pub fn recipients(text: &[u8]) -> Result<Vec<String>, ConvertError> {
    let text = std::str::from_utf8(text).map_err(|_| ConvertError::NotText)?;
    let mut out = Vec::new();
    let body = text.strip_suffix('\n').unwrap_or(text);
    if body.is_empty() {
        return Err(ConvertError::NoIdentities);
    }
    for (i, line) in body.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |what| ConvertError::Line { line: i + 1, what };
        if line.starts_with("AGE-SECRET-KEY-PQ-1") {
            let id =
                HybridIdentity::from_str(line).map_err(|_| bad("a post-quantum secret key that does not decode"))?;
            out.push(id.to_public().to_string());
        } else if line.starts_with("AGE-SECRET-KEY-1") {
            let id =
                age::x25519::Identity::from_str(line).map_err(|_| bad("an X25519 secret key that does not decode"))?;
            out.push(id.to_public().to_string());
        } else if line.starts_with("age1") {
            return Err(bad("a public key (age1...), not a secret key"));
        } else {
            return Err(bad("not a native age identity"));
        }
    }
    if out.is_empty() {
        return Err(ConvertError::NoIdentities);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_file_converts_back_to_its_public_key_for_both_kinds() {
        for kind in [Kind::X25519, Kind::Hybrid] {
            let pair = generate(kind);
            let text = file_text(&pair, "2026-12-03T10:00:00Z");
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines[0], "# created: 2026-12-03T10:00:00Z");
            assert_eq!(lines[1], format!("# public key: {}", pair.public));
            assert_eq!(recipients(text.as_bytes()).unwrap(), vec![pair.public.clone()]);
            let prefix = if kind == Kind::Hybrid { "age1pq1" } else { "age1" };
            assert!(pair.public.starts_with(prefix), "{}", pair.public);
        }
    }

    #[test]
    fn conversion_refuses_what_go_refuses_and_never_repeats_the_line() {
        let pair = generate(Kind::X25519);
        let secret = pair.secret.expose_secret().to_string();
        let spaced = format!(" {secret}\n");
        let e = recipients(spaced.as_bytes()).unwrap_err();
        assert_eq!(e, ConvertError::Line { line: 1, what: "not a native age identity" });
        assert!(!e.to_string().contains(&secret[16..]), "{e}");
        let typo = format!("# c\n{}X\n", &secret[..secret.len() - 1]);
        assert!(matches!(recipients(typo.as_bytes()), Err(ConvertError::Line { line: 2, .. })));
        assert_eq!(recipients(b"# only comments\n\n"), Err(ConvertError::NoIdentities));
        assert_eq!(recipients(b""), Err(ConvertError::NoIdentities));
        let public = format!("{}\n", pair.public);
        assert!(recipients(public.as_bytes()).unwrap_err().to_string().contains("a public key"));
        let crlf = format!("# c\r\n{secret}\r\n");
        assert_eq!(recipients(crlf.as_bytes()).unwrap(), vec![pair.public]);
    }
}
