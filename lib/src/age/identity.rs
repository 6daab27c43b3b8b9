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
use age_core::format::{FileKey, Stanza};
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
    /// For an SSH identity: why it refused a stanza meant for it.
    pub refused: Option<Refused>,
}

impl Identity {
    /// An identity of `kind` read from `file`, neither a plugin nor SSH.
    pub fn new(key: Box<dyn age::Identity + Send + Sync>, kind: &'static str, file: PathBuf) -> Identity {
        Identity { key, kind, file, asked: None, refused: None }
    }

    /// Whether age calls it native (X25519, post-quantum): those are tried
    /// before SSH and plugin identities, whatever the order they were given in.
    pub fn is_native(&self) -> bool {
        matches!(self.kind, "X25519" | "mlkem768x25519")
    }

    /// Why the identity refused the file, when it says more than the age crate's error.
    pub fn refusal(&self) -> Option<String> {
        self.asked
            .as_ref()
            .and_then(Asked::get)
            .or_else(|| self.refused.as_ref().and_then(Refused::get).map(str::to_string))
    }
}

/// Why an SSH identity refused a stanza, shared with the key that refused it.
#[derive(Clone, Default)]
pub struct Refused(Arc<Mutex<Option<&'static str>>>);

impl Refused {
    pub fn get(&self) -> Option<&'static str> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, why: &'static str) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(why);
    }
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
    /// A line that is not an identity; `what` says how, never what it holds.
    Invalid {
        path: PathBuf,
        line: usize,
        what: &'static str,
    },
    NoneInFile {
        path: PathBuf,
    },
    /// Key material given where the identity file's name belongs (never shown).
    KeyNotPath,
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
            Invalid { path, line, what } => write!(f, "identity file: {}: {what}", at(path, line)),
            NoneInFile { path } => {
                write!(f, "identity file: {}: no identities in it (empty or only comments)", path.display())
            }
            KeyNotPath => f.write_str("identity file: the value given is a key (not shown), not the name of a file"),
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
            KeyNotPath => Some("put the key in a file (age-keygen -o key.txt writes one) and pass the file's name".into()),
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
    // A key pasted where its file's name belongs is refused before any
    // file-system call: an error about the path would print the key.
    if super::recipients::looks_secret(&path.to_string_lossy()).is_some() {
        return Err(IdentityError::KeyNotPath);
    }
    // A name that could be a mangled key is not repeated in messages either.
    let name = &super::recipients::shown_name(path);
    let bytes = if path == Path::new("-") {
        read_capped(CancelRead::new(io::stdin(), cancel), name)?
    } else {
        let meta = std::fs::metadata(path).map_err(|e| IdentityError::Read { path: name.clone(), source: e })?;
        if meta.is_dir() {
            return Err(IdentityError::Directory { path: name.clone() });
        }
        if meta.is_file() && meta.len() > MAX_FILE {
            return Err(IdentityError::TooLarge { path: name.clone() });
        }
        let f = open_read(path, cancel).map_err(|e| IdentityError::Read { path: name.clone(), source: e })?;
        read_capped(CancelRead::new(f, cancel), name)?
    };
    parse(name, &bytes)
}

fn read_capped(r: impl Read, path: &Path) -> Result<Zeroizing<Vec<u8>>, IdentityError> {
    let mut bytes = Zeroizing::new(Vec::new());
    r.take(MAX_FILE + 1).read_to_end(&mut bytes).map_err(|e| IdentityError::Read { path: path.into(), source: e })?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(IdentityError::TooLarge { path: path.into() });
    }
    Ok(bytes)
}

/// What Go age reads of an SSH private key file, at most (16 KiB, less one byte).
const MAX_SSH_FILE: usize = (1 << 14) - 1;

/// Why a line is not a valid identity.
const NOT_VALID: &str = "not a valid age identity";

/// Parses an identity file's contents; `path` is for messages.
///
/// Exactly what the reference age (v1.3.1) reads, and no more: an SSH key
/// file begins with `-----BEGIN` at its first byte; an age identity file has
/// one key per line, exactly as `age-keygen` writes it (upper case, nothing
/// before or after it on the line), `#` comments that begin at the line's
/// first byte, empty lines, and LF or CRLF line ends. So a byte-order mark,
/// spaces or tabs around a key, a comment after a key, or a line of only
/// whitespace are refused, naming the line.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<Identity>, IdentityError> {
    // An age-encrypted identity file is binary unless armored: look before UTF-8.
    let start = bytes.trim_ascii_start();
    if start.starts_with(b"age-encryption.org/") || start.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----") {
        return Err(IdentityError::Passphrase { path: path.into() });
    }
    if bytes.starts_with(b"-----BEGIN") {
        if bytes.len() > MAX_SSH_FILE {
            return Err(IdentityError::TooLarge { path: path.into() });
        }
        let text = std::str::from_utf8(bytes).map_err(|_| IdentityError::NotText { path: path.into() })?;
        return ssh(path, text);
    }
    let mut out = Vec::new();
    for (i, line) in bytes.split(|&c| c == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        let (path, line_no) = (path.to_path_buf(), i + 1);
        let invalid = |what| IdentityError::Invalid { path: path.clone(), line: line_no, what };
        let Ok(line) = std::str::from_utf8(line) else {
            return Err(IdentityError::NotText { path });
        };
        if line.starts_with('\u{feff}') {
            return Err(invalid("begins with a byte-order mark, which age refuses"));
        }
        if line.trim().is_empty() {
            return Err(invalid("a line of only whitespace, which age refuses (an empty line is fine)"));
        }
        if line != line.trim() {
            return Err(invalid("whitespace before or after the key, which age refuses"));
        }
        if line.starts_with("AGE-SECRET-KEY-PQ-1") {
            let key = HybridIdentity::from_str(line).map_err(|_| invalid(key_or_text_after(line)))?;
            out.push(Identity::new(Box::new(key), "mlkem768x25519", path));
        } else if line.starts_with("AGE-SECRET-KEY-1") {
            let key = age::x25519::Identity::from_str(line).map_err(|_| invalid(key_or_text_after(line)))?;
            out.push(Identity::new(Box::new(key), "X25519", path));
        } else if line.starts_with("AGE-PLUGIN-") {
            out.push(plugin(line, path, line_no)?);
        } else if line.starts_with("age1") || line.starts_with("ssh-") {
            return Err(IdentityError::Recipient { path, line: line_no });
        } else if line.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("AGE-")) {
            return Err(invalid("not a valid age identity (age writes its keys in upper case)"));
        } else {
            return Err(invalid(NOT_VALID));
        }
    }
    if out.is_empty() {
        return Err(IdentityError::NoneInFile { path: path.into() });
    }
    Ok(out)
}

/// Why a line that begins like a key does not parse: text after it, or a bad key.
fn key_or_text_after(line: &str) -> &'static str {
    if line.contains(char::is_whitespace) {
        "text after the key on the same line, which age refuses"
    } else {
        NOT_VALID
    }
}

fn ssh(path: &Path, text: &str) -> Result<Vec<Identity>, IdentityError> {
    use age::ssh::{Identity as Ssh, UnsupportedKey};
    let name = Some(path.display().to_string());
    // Read from our (zeroizing) buffer in place: a BufReader would keep an
    // unwiped copy. The age crate copies the text into a String of its own
    // while parsing, which we cannot reach.
    let key = Ssh::from_buffer(text.as_bytes(), name).map_err(|_| IdentityError::BadSsh { path: path.into() })?;
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
    let refused = Refused::default();
    let key = SshIdentity { key, kind, refused: refused.clone() };
    Ok(vec![Identity { key: Box::new(key), kind, file: path.into(), asked: None, refused: Some(refused) }])
}

/// The key type of an OpenSSH private key ("ssh-ed25519", "ssh-rsa"), read
/// where the format keeps it: the first string of the public key blob, after
/// the magic, the cipher, the KDF and its options and the key count.
fn ssh_kind(text: &str) -> &'static str {
    use base64::Engine;
    let body: Zeroizing<String> =
        Zeroizing::new(text.lines().filter(|l| !l.starts_with("-----")).map(str::trim).collect());
    let raw = Zeroizing::new(base64::engine::general_purpose::STANDARD.decode(body.as_bytes()).unwrap_or_default());
    fn string(b: &[u8]) -> Option<(&[u8], &[u8])> {
        let len = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
        let s = b.get(4..4usize.checked_add(len)?)?;
        Some((s, &b[4 + len..]))
    }
    let kind = || {
        let rest = raw.strip_prefix(b"openssh-key-v1\0")?;
        let (_cipher, rest) = string(rest)?;
        let (_kdf, rest) = string(rest)?;
        let (_options, rest) = string(rest)?;
        let (public, _) = string(rest.get(4..)?)?;
        let (kind, _) = string(public)?;
        Some(kind)
    };
    match kind() {
        Some(b"ssh-ed25519") => "ssh-ed25519",
        Some(b"ssh-rsa") => "ssh-rsa",
        _ => "ssh",
    }
}

/// An SSH identity that checks each stanza as Go age 1.3.1 does before the
/// age crate unwraps it: the argument count, and the ephemeral share's
/// shape, before the key tag is compared (the age crate skips a stanza whose
/// tag differs, however malformed), and, for ssh-ed25519, a low-order share
/// (its X25519 result is all zeros), which Go refuses and the age crate
/// accepts. Whether the tag is this key's is the age crate's to say (it
/// returns `None` for another key's stanza), so the key is never parsed twice.
struct SshIdentity {
    key: age::ssh::Identity,
    /// "ssh-rsa" or "ssh-ed25519": an identity checks only its own type's stanzas.
    kind: &'static str,
    refused: Refused,
}

impl SshIdentity {
    fn refuse(&self, why: &'static str) -> Option<Result<FileKey, age::DecryptError>> {
        self.refused.record(why);
        Some(Err(age::DecryptError::InvalidHeader))
    }
}

impl age::Identity for SshIdentity {
    fn unwrap_stanza(&self, stanza: &Stanza) -> Option<Result<FileKey, age::DecryptError>> {
        use base64::Engine;
        let mut low_order = false;
        if stanza.tag != self.kind {
            return None;
        }
        match stanza.tag.as_str() {
            "ssh-rsa" if stanza.args.len() != 1 => {
                return self.refuse("an ssh-rsa stanza without exactly one argument");
            }
            "ssh-ed25519" if stanza.args.len() != 2 => {
                return self.refuse("an ssh-ed25519 stanza without exactly two arguments");
            }
            "ssh-ed25519" => {
                let share = base64::engine::general_purpose::STANDARD_NO_PAD.decode(&stanza.args[1]);
                let Some(share) = share.ok().and_then(|s| <[u8; 32]>::try_from(s).ok()) else {
                    return self.refuse("an ssh-ed25519 stanza whose share is not 32 bytes of base64");
                };
                low_order = is_low_order(share);
            }
            _ => {}
        }
        let got = age::Identity::unwrap_stanza(&self.key, stanza);
        match got {
            // Another key's stanza (or not an SSH one): skipped, as Go does.
            None => None,
            Some(_) if low_order => self.refuse("an ssh-ed25519 stanza with a low-order share"),
            Some(Err(e)) => {
                self.refused.record("the stanza for this SSH key does not decrypt: altered, or made for another key");
                Some(Err(e))
            }
            ok => ok,
        }
    }
}

/// Whether X25519 with this share gives all zeros: true of a point of small
/// order, whatever the (clamped) scalar, so any scalar tells.
fn is_low_order(share: [u8; 32]) -> bool {
    let probe = x25519_dalek::StaticSecret::from([0x55u8; 32]);
    !probe.diffie_hellman(&x25519_dalek::PublicKey::from(share)).was_contributory()
}

/// `AGE-PLUGIN-NAME-1…`: opened by `age-plugin-NAME`, which must be on `PATH`.
fn plugin(line: &str, path: PathBuf, line_no: usize) -> Result<Identity, IdentityError> {
    use age::plugin::{IdentityPluginV1, ResolveError};
    let invalid = || IdentityError::Invalid { path: path.clone(), line: line_no, what: NOT_VALID };
    let id = age::plugin::Identity::from_str(line).map_err(|_| invalid())?;
    let name = id.plugin().to_string();
    let asked = Asked::default();
    match IdentityPluginV1::new(&name, &[id], NoTerminal(asked.clone())) {
        Ok(p) => Ok(Identity { key: Box::new(p), kind: "plugin", file: path, asked: Some(asked), refused: None }),
        Err(ResolveError::MissingPlugin { .. }) => Err(IdentityError::PluginMissing { path, line: line_no, name }),
        Err(_) => Err(invalid()),
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

    #[test]
    fn what_go_age_refuses_in_an_identity_file_is_refused_naming_the_line() {
        let id = age::x25519::Identity::generate();
        let key = id.to_string().expose_secret().to_string();
        let p = Path::new("k.txt");
        for (text, line, what) in [
            (format!("\u{feff}{key}\n"), 1, "byte-order mark"),
            (format!("# c\n {key}\n"), 2, "whitespace before or after"),
            (format!("{key}\t\n"), 1, "whitespace before or after"),
            (format!("{key} # mine\n"), 1, "text after the key"),
            (format!("{key}\n  \n"), 2, "only whitespace"),
            (format!("  # indented\n{key}\n"), 1, "whitespace before or after"),
            (format!("{}\n", key.to_lowercase()), 1, "upper case"),
        ] {
            match parse(p, text.as_bytes()) {
                Err(e @ IdentityError::Invalid { line: l, .. }) if l == line => {
                    assert!(e.to_string().contains(what), "{what}: {e}");
                    assert!(!e.to_string().contains(&key[20..40]), "{e}");
                }
                Err(e) => panic!("{what}: {e}"),
                Ok(_) => panic!("{what}: accepted"),
            }
        }
        // What Go age accepts: CRLF, empty lines, comments at the first byte, no final newline.
        assert_eq!(parse(p, format!("# c\r\n\r\n{key}\r\n").as_bytes()).unwrap().len(), 1);
        assert_eq!(parse(p, key.as_bytes()).unwrap().len(), 1);
    }

    /// The SSH key of the fuzz corpus: its key tag, its X25519 scalar and
    /// public key (as age derives them), its text, and its identity.
    fn ed25519() -> (String, [u8; 32], [u8; 32], String, Identity) {
        use base64::Engine;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/fuzz/identity/ssh-ed25519");
        let text = std::fs::read_to_string(&dir).unwrap();
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        let raw = base64::engine::general_purpose::STANDARD.decode(body).unwrap();
        let string = |at: &mut usize, from: &[u8]| {
            let len = u32::from_be_bytes(from[*at..*at + 4].try_into().unwrap()) as usize;
            *at += 4 + len;
            from[*at - len..*at].to_vec()
        };
        // magic, cipher, kdf, kdf options, key count, the public key blob, the private section.
        let mut at = b"openssh-key-v1\0".len();
        for _ in 0..3 {
            string(&mut at, &raw);
        }
        at += 4;
        let public = string(&mut at, &raw);
        let private = string(&mut at, &raw);
        // check ints, key type, public key, then seed || public key.
        let mut at = 8;
        string(&mut at, &private);
        string(&mut at, &private);
        let both = string(&mut at, &private);
        let digest = ring::digest::digest(&ring::digest::SHA256, &public);
        let tag = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&digest.as_ref()[..4]);
        let scalar: [u8; 32] =
            ring::digest::digest(&ring::digest::SHA512, &both[..32]).as_ref()[..32].try_into().unwrap();
        let x_public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(scalar)).to_bytes();
        let mut ids = parse(&dir, text.as_bytes()).unwrap();
        assert_eq!(ids[0].kind, "ssh-ed25519");
        (tag, scalar, x_public, text, ids.remove(0))
    }

    /// A stanza for the key with a low-order share, which anyone can make:
    /// the shared secret is all zeros, so the wrapping key is public.
    fn low_order_stanza(tag: &str, x_public: &[u8; 32], file_key: &[u8; 16]) -> Stanza {
        use base64::Engine;
        use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
        let mut share = [0u8; 32];
        share[0] = 1;
        let mut salt = share.to_vec();
        salt.extend_from_slice(x_public);
        let mut key = [0u8; 32];
        struct Len;
        impl ring::hkdf::KeyType for Len {
            fn len(&self) -> usize {
                32
            }
        }
        ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, &salt)
            .extract(&[0u8; 32])
            .expand(&[b"age-encryption.org/v1/ssh-ed25519"], Len)
            .unwrap()
            .fill(&mut key)
            .unwrap();
        let aead = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &key).unwrap());
        let mut body = file_key.to_vec();
        aead.seal_in_place_append_tag(Nonce::assume_unique_for_key([0; 12]), Aad::empty(), &mut body).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(share);
        Stanza { tag: "ssh-ed25519".into(), args: vec![tag.to_string(), b64], body }
    }

    #[test]
    fn a_low_order_ssh_ed25519_stanza_that_the_age_crate_opens_is_refused() {
        let (tag, _, x_public, text, id) = ed25519();
        let stanza = low_order_stanza(&tag, &x_public, &[42; 16]);
        // The age crate alone opens it: anyone with the public key could make it.
        let crate_key = age::ssh::Identity::from_buffer(text.as_bytes(), None).unwrap();
        assert!(matches!(age::Identity::unwrap_stanza(&crate_key, &stanza), Some(Ok(_))), "the crate opens it");
        assert!(matches!(id.key.unwrap_stanza(&stanza), Some(Err(_))), "we refuse it, as Go age does");
        assert_eq!(id.refusal().as_deref(), Some("an ssh-ed25519 stanza with a low-order share"));
    }

    #[test]
    fn ssh_stanzas_are_checked_as_go_age_checks_them_before_the_key_tag() {
        use base64::Engine;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD_NO_PAD.encode(b);
        let (tag, _, _, _, id) = ed25519();
        let stanza = |args: &[&str]| Stanza {
            tag: "ssh-ed25519".into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            body: vec![7; 32],
        };
        let (low, other_tag, share) = (b64(&[0; 32]), b64(&[1, 2, 3, 4]), b64(&[9; 32]));
        let malformed = |args: &[&str]| matches!(id.key.unwrap_stanza(&stanza(args)), Some(Err(_)));
        // Malformed, whatever the tag: refused, as Go refuses them.
        assert!(malformed(&[&other_tag]), "one argument");
        assert!(malformed(&[&other_tag, &share, "x"]), "three arguments");
        assert!(malformed(&[&other_tag, "!!!"]), "a share that is not base64");
        assert!(malformed(&[&other_tag, &b64(&[9; 31])]), "a 31-byte share");
        // Another key's well-formed stanza, even with a low-order share: skipped.
        assert!(id.key.unwrap_stanza(&stanza(&[&other_tag, &low])).is_none());
        assert!(id.key.unwrap_stanza(&stanza(&[&other_tag, &share])).is_none());
        // This key's tag with a low-order share: refused, and said so.
        assert!(malformed(&[&tag, &low]));
        let fresh = ed25519().4;
        let mut one = [0u8; 32];
        one[0] = 1;
        assert!(matches!(fresh.key.unwrap_stanza(&stanza(&[&tag, &b64(&one)])), Some(Err(_))));
        assert_eq!(fresh.refusal().as_deref(), Some("an ssh-ed25519 stanza with a low-order share"));
        // An ssh-rsa stanza is not this key's business, however malformed.
        let rsa = Stanza { tag: "ssh-rsa".into(), args: vec![], body: vec![] };
        assert!(id.key.unwrap_stanza(&rsa).is_none());
    }
}
