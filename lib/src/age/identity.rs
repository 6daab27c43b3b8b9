//! Who may decrypt: identity files in the age CLI's syntax (`-i FILE`).
//!
//! A file is either an age identity file (`#` comments, blank lines and
//! `AGE-SECRET-KEY-1…` X25519, `AGE-SECRET-KEY-PQ-1…` post-quantum or
//! `AGE-PLUGIN-…` plugin identities) or one unencrypted OpenSSH private key
//! (ssh-ed25519, ssh-rsa). Passphrase-protected identities (an age-encrypted
//! identity file, an encrypted SSH key) would need a prompt: they are refused
//! by kind, with the way around it. A plugin runs without a terminal; when it
//! asks for something (a PIN), the failure says so. Messages name the file
//! and the line, never the line itself; the bytes read are wiped when done.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use age::secrecy::SecretString;
use zeroize::Zeroizing;

use super::pq::HybridIdentity;
use crate::signals::{open_read, Cancel, CancelRead};
use crate::stop::{hint, io_cause, Failure, Hint, Knob, Stop};

/// Identity files larger than this are not identity files.
const MAX_FILE: u64 = 1 << 20;

/// One identity, and where it came from (for the report).
pub struct Identity {
    pub key: Box<dyn age::Identity + Send + Sync>,
    pub kind: &'static str,
    pub file: PathBuf,
    /// For a plugin identity: what the plugin asked for and could not get.
    pub asked: Option<Asked>,
}

/// What a plugin asked of its user, shared with the [`age::Callbacks`] it was given.
#[derive(Clone, Default)]
pub struct Asked(Arc<Mutex<Option<String>>>);

impl Asked {
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn record(&self, what: &str) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert_with(|| what.to_string());
    }
}

/// Callbacks for a plugin run without a terminal: every question goes
/// unanswered and is remembered, so that the failure can say what was asked.
#[derive(Clone)]
struct NoTerminal(Asked);

impl age::Callbacks for NoTerminal {
    fn display_message(&self, _message: &str) {}

    fn confirm(&self, message: &str, _yes: &str, _no: Option<&str>) -> Option<bool> {
        self.0.record(message);
        None
    }

    fn request_public_string(&self, description: &str) -> Option<String> {
        self.0.record(description);
        None
    }

    fn request_passphrase(&self, description: &str) -> Option<SecretString> {
        self.0.record(description);
        None
    }
}

#[derive(Debug)]
pub enum IdentityError {
    Read {
        path: PathBuf,
        source: io::Error,
    },
    Directory {
        path: PathBuf,
    },
    TooLarge {
        path: PathBuf,
    },
    NotText {
        path: PathBuf,
    },
    /// An age-encrypted identity file (`age -p`, or `age-keygen | age -p`).
    Passphrase {
        path: PathBuf,
    },
    EncryptedSsh {
        path: PathBuf,
    },
    UnsupportedSsh {
        path: PathBuf,
        what: String,
    },
    BadSsh {
        path: PathBuf,
    },
    /// A public key where a secret one belongs.
    Recipient {
        path: PathBuf,
        line: usize,
    },
    /// A plugin identity whose plugin is not on `PATH`.
    PluginMissing {
        path: PathBuf,
        line: usize,
        name: String,
    },
    Invalid {
        path: PathBuf,
        line: usize,
    },
    NoneInFile {
        path: PathBuf,
    },
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use IdentityError::*;
        let at = |p: &Path, n: &usize| format!("{}:{n}", p.display());
        match self {
            Read { path, source } => write!(f, "identity file: {}: {}", path.display(), io_cause(source)),
            Directory { path } => write!(f, "identity file: {}: is a directory", path.display()),
            TooLarge { path } => {
                write!(f, "identity file: {}: larger than 1 MiB, not an identity file", path.display())
            }
            NotText { path } => write!(f, "identity file: {}: not a text file", path.display()),
            Passphrase { path } => write!(
                f,
                "identity file: {}: passphrase-protected (age-encrypted) identity files are not supported",
                path.display()
            ),
            EncryptedSsh { path } => {
                write!(f, "identity file: {}: passphrase-protected SSH keys are not supported", path.display())
            }
            UnsupportedSsh { path, what } => write!(f, "identity file: {}: {what} is not supported", path.display()),
            BadSsh { path } => write!(f, "identity file: {}: not a readable SSH private key", path.display()),
            Recipient { path, line } => {
                write!(f, "identity file: {}: this is a public key (recipient), not an identity", at(path, line))
            }
            PluginMissing { path, line, name } => {
                write!(f, "identity file: {}: a plugin identity, but age-plugin-{name} is not on PATH", at(path, line))
            }
            Invalid { path, line } => write!(f, "identity file: {}: not a valid age identity", at(path, line)),
            NoneInFile { path } => {
                write!(f, "identity file: {}: no identities in it (empty or only comments)", path.display())
            }
        }
    }
}

impl std::error::Error for IdentityError {}

impl Failure for IdentityError {
    fn stop(&self) -> Option<Stop> {
        match self {
            IdentityError::Read { source, .. } => Stop::from_io(source),
            _ => None,
        }
    }

    fn hint(&self) -> Option<Hint> {
        use IdentityError::*;
        match self {
            Passphrase { path } => Some(hint![
                "let age ask for the passphrase and hand over a pipe: ",
                Knob::Identity,
                format!(" <(age -d {})", path.display())
            ]),
            EncryptedSsh { .. } => Some("use an unencrypted copy of the key, or an age identity".into()),
            UnsupportedSsh { .. } => Some("use an age identity (age-keygen), an ssh-ed25519 or an ssh-rsa key".into()),
            Recipient { .. } => Some("pass the secret key file (age-keygen's output), not the public key".into()),
            PluginMissing { name, .. } => {
                Some(format!("install age-plugin-{name} where PATH finds it, or use another identity").into())
            }
            Invalid { .. } | NoneInFile { .. } => {
                Some("an identity file holds AGE-SECRET-KEY-1... (or -PQ-1..., AGE-PLUGIN-...) lines, or is an SSH private key".into())
            }
            _ => None,
        }
    }
}

/// Reads every identity in the file at `path` (`-` is standard input); a
/// signal ends a wait for a FIFO or pipe that is slow to deliver.
pub fn from_file(path: &Path, cancel: &Cancel) -> Result<Vec<Identity>, IdentityError> {
    let bytes = if path == Path::new("-") {
        read_capped(CancelRead::new(io::stdin(), cancel), path)?
    } else {
        let meta = std::fs::metadata(path).map_err(|e| IdentityError::Read { path: path.into(), source: e })?;
        if meta.is_dir() {
            return Err(IdentityError::Directory { path: path.into() });
        }
        if meta.is_file() && meta.len() > MAX_FILE {
            return Err(IdentityError::TooLarge { path: path.into() });
        }
        let f = open_read(path, cancel).map_err(|e| IdentityError::Read { path: path.into(), source: e })?;
        read_capped(CancelRead::new(f, cancel), path)?
    };
    parse(path, &bytes)
}

fn read_capped(r: impl Read, path: &Path) -> Result<Zeroizing<Vec<u8>>, IdentityError> {
    let mut bytes = Zeroizing::new(Vec::new());
    r.take(MAX_FILE + 1).read_to_end(&mut bytes).map_err(|e| IdentityError::Read { path: path.into(), source: e })?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(IdentityError::TooLarge { path: path.into() });
    }
    Ok(bytes)
}

/// Parses an identity file's contents; `path` is for messages.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<Identity>, IdentityError> {
    // An age-encrypted identity file is binary unless armored: look before UTF-8.
    let start = bytes.trim_ascii_start();
    if start.starts_with(b"age-encryption.org/") || start.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----") {
        return Err(IdentityError::Passphrase { path: path.into() });
    }
    let text = std::str::from_utf8(bytes).map_err(|_| IdentityError::NotText { path: path.into() })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim_start().starts_with("-----BEGIN") {
        return ssh(path, text);
    }
    let mut out = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (path, line_no) = (path.to_path_buf(), i + 1);
        let invalid = || IdentityError::Invalid { path: path.clone(), line: line_no };
        let upper = Zeroizing::new(line.to_ascii_uppercase());
        if upper.starts_with("AGE-SECRET-KEY-PQ-1") {
            let key = HybridIdentity::from_str(line).map_err(|_| invalid())?;
            out.push(Identity { key: Box::new(key), kind: "mlkem768x25519", file: path, asked: None });
        } else if upper.starts_with("AGE-SECRET-KEY-1") {
            let key = age::x25519::Identity::from_str(line).map_err(|_| invalid())?;
            out.push(Identity { key: Box::new(key), kind: "X25519", file: path, asked: None });
        } else if upper.starts_with("AGE-PLUGIN-") {
            out.push(plugin(line, path, line_no)?);
        } else if upper.starts_with("AGE1") || line.starts_with("ssh-") {
            return Err(IdentityError::Recipient { path, line: line_no });
        } else {
            return Err(IdentityError::Invalid { path, line: line_no });
        }
    }
    if out.is_empty() {
        return Err(IdentityError::NoneInFile { path: path.into() });
    }
    Ok(out)
}

fn ssh(path: &Path, text: &str) -> Result<Vec<Identity>, IdentityError> {
    use age::ssh::{Identity as Ssh, UnsupportedKey};
    let name = Some(path.display().to_string());
    let key = Ssh::from_buffer(io::BufReader::new(text.as_bytes()), name)
        .map_err(|_| IdentityError::BadSsh { path: path.into() })?;
    let kind = match &key {
        Ssh::Unencrypted(_) if text.contains("BEGIN RSA PRIVATE KEY") => "ssh-rsa",
        Ssh::Unencrypted(_) => ssh_kind(text),
        Ssh::Encrypted(_) | Ssh::Unsupported(UnsupportedKey::EncryptedPem | UnsupportedKey::EncryptedSsh(_)) => {
            return Err(IdentityError::EncryptedSsh { path: path.into() })
        }
        Ssh::Unsupported(UnsupportedKey::Hardware(t) | UnsupportedKey::Type(t)) => {
            return Err(IdentityError::UnsupportedSsh { path: path.into(), what: format!("SSH key type {t}") })
        }
    };
    Ok(vec![Identity { key: Box::new(key), kind, file: path.into(), asked: None }])
}

/// `AGE-PLUGIN-NAME-1…`: opened by `age-plugin-NAME`, which must be on `PATH`.
fn plugin(line: &str, path: PathBuf, line_no: usize) -> Result<Identity, IdentityError> {
    use age::plugin::{IdentityPluginV1, ResolveError};
    let invalid = || IdentityError::Invalid { path: path.clone(), line: line_no };
    let id = age::plugin::Identity::from_str(line).map_err(|_| invalid())?;
    let name = id.plugin().to_string();
    let asked = Asked::default();
    match IdentityPluginV1::new(&name, &[id], NoTerminal(asked.clone())) {
        Ok(p) => Ok(Identity { key: Box::new(p), kind: "plugin", file: path, asked: Some(asked) }),
        Err(ResolveError::MissingPlugin { .. }) => Err(IdentityError::PluginMissing { path, line: line_no, name }),
        Err(_) => Err(invalid()),
    }
}

/// The key type named inside an OpenSSH private key ("ssh-ed25519", "ssh-rsa").
fn ssh_kind(text: &str) -> &'static str {
    use base64::Engine;
    let body: Zeroizing<String> =
        Zeroizing::new(text.lines().filter(|l| !l.starts_with("-----")).map(str::trim).collect());
    let raw = Zeroizing::new(base64::engine::general_purpose::STANDARD.decode(body.as_bytes()).unwrap_or_default());
    let has = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
    if has(b"ssh-ed25519") {
        "ssh-ed25519"
    } else if has(b"ssh-rsa") {
        "ssh-rsa"
    } else {
        "ssh"
    }
}

/// All identities of all files, in order.
pub fn collect(files: &[PathBuf], cancel: &Cancel) -> Result<Vec<Identity>, IdentityError> {
    let mut out = Vec::new();
    for f in files {
        out.extend(from_file(f, cancel)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    #[test]
    fn age_identity_file_with_comments() {
        let id = age::x25519::Identity::generate();
        let secret = id.to_string().expose_secret().to_string();
        let text = format!("# created: now\r\n# public key: {}\r\n\r\n{secret}\r\n", id.to_public());
        let got = parse(Path::new("k.txt"), text.as_bytes()).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].kind, "X25519");
    }

    #[test]
    fn refusals_name_the_line_and_never_the_key() {
        let id = age::x25519::Identity::generate();
        let secret = id.to_string().expose_secret().to_string();
        let p = Path::new("k.txt");
        let bad = format!("{secret}\n{}x\n", &secret[..secret.len() - 1]);
        let e = parse(p, bad.as_bytes()).err().unwrap();
        assert!(matches!(e, IdentityError::Invalid { line: 2, .. }), "{e}");
        assert!(!e.to_string().contains(&secret[20..40]));
        let e = parse(p, format!("{}\n", id.to_public()).as_bytes()).err().unwrap();
        assert!(matches!(e, IdentityError::Recipient { line: 1, .. }));
        assert!(matches!(parse(p, b"# nothing\n"), Err(IdentityError::NoneInFile { .. })));
        assert!(matches!(parse(p, b"age-encryption.org/v1\n-> scrypt\xff"), Err(IdentityError::Passphrase { .. })));
        assert!(matches!(parse(p, b"AGE-PLUGIN-YUBIKEY-1QQQ\n"), Err(IdentityError::Invalid { .. })));
        let plugin = age_core::primitives::bech32_encode(bech32::Hrp::parse_unchecked("AGE-PLUGIN-NOSUCH-"), &[1]);
        let e = parse(p, format!("{}\n", plugin.to_uppercase()).as_bytes()).err().unwrap();
        assert!(matches!(&e, IdentityError::PluginMissing { name, .. } if name == "nosuch"), "{e}");
    }
}
