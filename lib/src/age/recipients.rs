//! Who can decrypt: every recipient the age 1.3 CLI encrypts to, given
//! literally or in recipients files.
//!
//! - `age1…` X25519 and `ssh-ed25519`/`ssh-rsa` keys, classic;
//! - `age1pq1…` post-quantum hybrids (ML-KEM-768 + X25519, [`super::pq`]),
//!   native in age 1.3;
//! - `age1tag1…` / `age1tagpq1…` tagged recipients (the age crate's);
//! - `age1NAME1…` plugin recipients, through `age-plugin-NAME` on `PATH`.
//!
//! Post-quantum and classic recipients are never mixed in one file, as age
//! 1.3 refuses it: one classic recipient would let whoever breaks it in the
//! future read the file anyway.
//!
//! `-r VALUE` follows the seed's rule: an existing path is a recipients file
//! (even one named `age1…`), a path that cannot exist is parsed as a literal,
//! and any other `stat` failure (EACCES, EIO) is reported as it is. Messages
//! never repeat a line that could be key material: they name the file and
//! the line number, and show a value only when it looks like a path.

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age_core::format::{FileKey, Stanza};
use nix::errno::Errno;
use zeroize::Zeroizing;

use super::pq::HybridRecipient;
use crate::report::RecipientInfo;
use crate::signals::{open_read, Cancel, CancelRead};
use crate::stop::{io_cause, Failure, Hint, Stop};

/// Recipients files larger than this are not recipients files.
const MAX_FILE: u64 = 1 << 20;
const SECRET_PREFIX: &str = "AGE-SECRET-KEY-";
const PLUGIN_SECRET_PREFIX: &str = "AGE-PLUGIN-";
/// The label post-quantum recipients put on their stanzas (age 1.3).
const POSTQUANTUM: &str = "postquantum";

/// What kind of recipient, for reports and the mixing rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    X25519,
    SshEd25519,
    SshRsa,
    /// `age1pq1…`: ML-KEM-768 + X25519.
    Hybrid,
    Tag,
    TagPq,
    Plugin(String),
}

impl Kind {
    /// Post-quantum (`Some(true)`), classic (`Some(false)`), or decided by the
    /// plugin when it wraps the key (`None`).
    pub fn post_quantum(&self) -> Option<bool> {
        match self {
            Kind::Hybrid | Kind::TagPq => Some(true),
            Kind::X25519 | Kind::SshEd25519 | Kind::SshRsa | Kind::Tag => Some(false),
            Kind::Plugin(_) => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::X25519 => f.write_str("X25519"),
            Kind::SshEd25519 => f.write_str("ssh-ed25519"),
            Kind::SshRsa => f.write_str("ssh-rsa"),
            Kind::Hybrid => f.write_str("mlkem768x25519"),
            Kind::Tag => f.write_str("p256tag"),
            Kind::TagPq => f.write_str("mlkem768p256tag"),
            Kind::Plugin(name) => write!(f, "plugin {name}"),
        }
    }
}

/// One recipient, ready to wrap a file key.
pub struct Recipient {
    key: Box<dyn age::Recipient + Send + Sync>,
    pub kind: Kind,
    /// For reports ([`fingerprint`]); empty when made without its text.
    pub fingerprint: String,
}

impl Recipient {
    pub fn new(key: Box<dyn age::Recipient + Send + Sync>, kind: Kind) -> Recipient {
        Recipient { key, kind, fingerprint: String::new() }
    }

    /// How reports name it: its type and fingerprint, never the key.
    pub fn info(&self) -> RecipientInfo {
        RecipientInfo { kind: self.kind.to_string(), fingerprint: self.fingerprint.clone() }
    }
}

/// A short name for a public key in reports: the first 8 hex digits of the
/// SHA-256 of the key as written, `age1…` in lower case (Bech32 ignores
/// case), an SSH key as its type and base64 without the comment. What
/// `printf %s KEY | sha256sum | cut -c1-8` prints.
pub fn fingerprint(key: &str) -> String {
    let key = key.trim();
    let canonical = if starts_with_ignore_case(key, "age1") {
        key.to_ascii_lowercase()
    } else {
        key.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
    digest.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect()
}

impl age::Recipient for Recipient {
    fn wrap_file_key(&self, file_key: &FileKey) -> Result<(Vec<Stanza>, HashSet<String>), age::EncryptError> {
        self.key.wrap_file_key(file_key)
    }
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recipient({})", self.kind)
    }
}

/// Whether stanzas with these labels may share a file with stanzas labelled
/// `other`: the rule the age crate and Go age apply, with its reason.
pub fn labels_mix(a: &HashSet<String>, b: &HashSet<String>) -> bool {
    a == b
}

/// Whether a label set is the post-quantum one.
pub fn is_post_quantum(labels: &HashSet<String>) -> bool {
    labels.contains(POSTQUANTUM)
}

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
    /// `age-plugin-NAME` is not on `PATH`.
    PluginMissing(String),
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
            Problem::PluginMissing(name) => {
                write!(f, "plugin recipient (age1{name}1...): age-plugin-{name} is not on PATH")
            }
            Problem::UnsupportedSsh(kind) => write!(f, "unsupported SSH key type {kind}"),
            Problem::RsaTooSmall => f.write_str("ssh-rsa key shorter than 2048 bits"),
            Problem::RsaTooLarge => f.write_str("ssh-rsa key longer than 4096 bits"),
            Problem::Invalid => f.write_str("not a valid age or SSH recipient"),
        }
    }
}

impl Problem {
    fn hint(&self) -> Option<Hint> {
        match self {
            Problem::SecretKey => Some("pass the public key instead: age-keygen -y KEYFILE".into()),
            Problem::PluginSecret => Some("pass the plugin's recipient (age1...), not its identity".into()),
            Problem::SshPrivateKey => Some("pass the .pub file instead, e.g. ~/.ssh/id_ed25519.pub".into()),
            Problem::PluginMissing(name) => {
                Some(format!("install age-plugin-{name} where PATH finds it, or use another recipient").into())
            }
            Problem::UnsupportedSsh(_) => Some("use an ssh-ed25519 or ssh-rsa key".into()),
            Problem::RsaTooSmall | Problem::RsaTooLarge => Some("use an ssh-ed25519 key".into()),
            Problem::Invalid => Some("recipients look like age1... or ssh-ed25519 AAAA...".into()),
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
    /// `-r VALUE`: no such file, and not a recipient either. The value is
    /// kept only when it looks like a path (see [`shown`]).
    Neither {
        flag: &'static str,
        value: Option<String>,
        chars: usize,
    },
    Empty {
        flag: &'static str,
    },
    /// `-r VALUE`: whether a file of that name exists cannot be told (the
    /// directory cannot be searched...). The value is kept as in `Neither`.
    Unknowable {
        flag: &'static str,
        value: Option<String>,
        chars: usize,
        source: io::Error,
    },
    /// Post-quantum and classic recipients together.
    Mixed {
        post_quantum: Kind,
        classic: Kind,
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
            Neither { flag, value: Some(v), .. } if starts_with_ignore_case(v, "age1") && !v.contains('/') => {
                write!(f, "recipient: {flag} {v}: not a valid age public key: {}", bech32_problem(v))
            }
            Neither { flag, value: Some(v), .. } => {
                write!(f, "recipient: {flag} {v:?}: neither an existing file nor a valid recipient")
            }
            Neither { flag, value: None, chars } => write!(
                f,
                "recipient: {flag} (a value of {chars} characters, not shown): neither an existing file nor a valid recipient"
            ),
            Empty { flag } => write!(f, "recipient: {flag}: empty value"),
            Unknowable { flag, value: Some(v), source, .. } => {
                write!(f, "recipient: {flag} {v:?}: cannot tell whether it names a file: {}", io_cause(source))
            }
            Unknowable { flag, value: None, chars, source } => write!(
                f,
                "recipient: {flag} (a value of {chars} characters, not shown): cannot tell whether it names a file: {}",
                io_cause(source)
            ),
            Mixed { post_quantum, classic } => write!(
                f,
                "recipients: post-quantum ({post_quantum}) and classic ({classic}) recipients cannot be mixed in \
                 one file: the classic one could be broken by a future quantum computer, and with it the file"
            ),
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
            Bad { problem, .. } => problem.hint(),
            Neither { value: Some(v), .. } if starts_with_ignore_case(v, "age1") && !v.contains('/') => {
                Some("copy the public key again from wm-keygen -y IDENTITY (or age-keygen -y)".into())
            }
            Neither { .. } => Some("give an age1... or ssh-... public key, or the path of a recipients file".into()),
            Mixed { .. } => {
                Some("encrypt to post-quantum recipients only, or make a second backup for the classic ones".into())
            }
            NoRecipients => Some("pass at least one recipient or recipients file".into()),
            NoneInFile { .. } => Some("add one public key per line (age-keygen -y KEYFILE prints one)".into()),
            Unknowable { .. } => Some(
                "check the permissions of the working directory and of the value's directories, or pass the key itself \
                 from a directory that can be searched"
                    .into(),
            ),
            Stat { source, .. } | Read { source, .. } if source.raw_os_error() == Some(Errno::EACCES as i32) => {
                Some("check the file's and its directories' permissions".into())
            }
            _ => None,
        }
    }
}

/// A value the user gave, as a message may show it: anything but what looks
/// like secret key material (a secret key in any case or spelling, a plugin
/// identity, a private key block), which is never repeated. File names and
/// public keys are not secrets; a long one is shortened to its two ends.
pub fn shown(v: &str) -> Option<String> {
    if secret_shaped(v) || v.chars().any(char::is_control) {
        return None;
    }
    let chars: Vec<char> = v.chars().collect();
    if chars.len() <= 100 {
        return Some(v.to_string());
    }
    let (head, tail): (String, String) = (chars[..24].iter().collect(), chars[chars.len() - 8..].iter().collect());
    Some(format!("{head}...{tail} ({} characters)", chars.len()))
}

/// Secret material, or what a damaged secret key still looks like: the
/// words SECRET or PRIVATE in any case, or 20 upper-case letters and digits
/// in a row (secret keys are upper-case Bech32; public keys lower-case).
pub fn secret_shaped(v: &str) -> bool {
    let upper = v.to_ascii_uppercase();
    let longest_upper =
        v.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit())).map(str::len).max().unwrap_or(0);
    looks_secret(v).is_some() || upper.contains("SECRET") || upper.contains("PRIVATE") || longest_upper >= 20
}

/// What is wrong with a value shaped like an age public key (`age1...`)
/// that does not parse: for a typo, the Bech32 checksum.
fn bech32_problem(v: &str) -> &'static str {
    use bech32::primitives::decode::UncheckedHrpstring;
    /// Bech32 without its 90-character limit, as age writes long keys.
    enum Bech32Long {}
    impl bech32::Checksum for Bech32Long {
        type MidstateRepr = u32;
        const CODE_LENGTH: usize = usize::MAX;
        const CHECKSUM_LENGTH: usize = bech32::Bech32::CHECKSUM_LENGTH;
        const GENERATOR_SH: [u32; 5] = bech32::Bech32::GENERATOR_SH;
        const TARGET_RESIDUE: u32 = bech32::Bech32::TARGET_RESIDUE;
    }
    match UncheckedHrpstring::new(v) {
        Err(_) => "not Bech32: a character that cannot be in a key (b, i, o, 1 after the prefix), or mixed case",
        Ok(h) if !h.has_valid_checksum::<Bech32Long>() => "bad checksum: a character mistyped, missing or extra",
        Ok(_) => "the checksum is right, but no known key has this type or length",
    }
}

/// Secret material anywhere in a value (quoted, indented, pasted with its
/// comment line): such a value is refused by kind and never shown.
pub(crate) fn looks_secret(s: &str) -> Option<Problem> {
    let upper = s.to_ascii_uppercase().replace('_', "-");
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
    let mut r = parse_key(s)?;
    r.fingerprint = fingerprint(s);
    Ok(r)
}

fn parse_key(s: &str) -> Result<Recipient, Problem> {
    if let Some(problem) = looks_secret(s) {
        return Err(problem);
    }
    let s = s.trim();
    if starts_with_ignore_case(s, "age1") {
        // Bech32: the human-readable part is everything before the last '1'.
        let lower = s.to_ascii_lowercase();
        let hrp = lower.rfind('1').map(|i| &lower[..i]).unwrap_or("");
        let boxed = |r: Result<Box<dyn age::Recipient + Send + Sync>, ()>, kind: Kind| {
            r.map(|key| Recipient::new(key, kind)).map_err(|()| Problem::Invalid)
        };
        return match hrp {
            "age" => boxed(age::x25519::Recipient::from_str(s).map(|r| Box::new(r) as _).map_err(drop), Kind::X25519),
            "age1pq" => boxed(HybridRecipient::from_str(s).map(|r| Box::new(r) as _).map_err(drop), Kind::Hybrid),
            "age1tag" => boxed(age::tag::Recipient::from_str(s).map(|r| Box::new(r) as _).map_err(drop), Kind::Tag),
            "age1tagpq" => {
                boxed(age::tagpq::Recipient::from_str(s).map(|r| Box::new(r) as _).map_err(drop), Kind::TagPq)
            }
            _ => match hrp.strip_prefix("age1").filter(|n| !n.is_empty()) {
                Some(_) => plugin(s),
                None => Err(Problem::Invalid),
            },
        };
    }
    if s.starts_with("ssh-") || s.starts_with("sk-") || s.starts_with("ecdsa-") {
        use age::ssh::ParseRecipientKeyError as E;
        let kind = if s.starts_with("ssh-rsa ") { Kind::SshRsa } else { Kind::SshEd25519 };
        return match age::ssh::Recipient::from_str(s) {
            Ok(r) => Ok(Recipient::new(Box::new(r), kind)),
            Err(E::Unsupported(kind)) => Err(Problem::UnsupportedSsh(known_ssh_type(&kind))),
            Err(E::RsaModulusTooSmall) => Err(Problem::RsaTooSmall),
            Err(E::RsaModulusTooLarge) => Err(Problem::RsaTooLarge),
            Err(_) => Err(Problem::Invalid),
        };
    }
    Err(Problem::Invalid)
}

/// `age1NAME1…`: encrypted by `age-plugin-NAME`, which must be on `PATH`.
/// The plugin is run without a terminal: it may not ask anything.
fn plugin(s: &str) -> Result<Recipient, Problem> {
    use age::plugin::{RecipientPluginV1, ResolveError};
    let r = age::plugin::Recipient::from_str(s).map_err(|_| Problem::Invalid)?;
    let name = r.plugin().to_string();
    match RecipientPluginV1::new(&name, &[r], &[], age::NoCallbacks) {
        Ok(p) => Ok(Recipient::new(Box::new(p), Kind::Plugin(name))),
        Err(ResolveError::MissingPlugin { .. }) => Err(Problem::PluginMissing(name)),
        Err(_) => Err(Problem::Invalid),
    }
}

/// SSH key types age does not encrypt to, by their published names.
pub const OTHER_SSH_TYPES: &[&str] = &[
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "sk-ssh-ed25519@openssh.com",
    "ssh-dss",
    "ssh-ed448",
];

/// The key type as named, when it is a published one; anything else (a
/// mangled line) is not repeated.
fn known_ssh_type(kind: &str) -> String {
    match OTHER_SSH_TYPES.iter().find(|t| **t == kind) {
        Some(t) => (*t).to_string(),
        None => "(not a published one)".to_string(),
    }
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// Recipients, and what was skipped on the way (to be shown as warnings).
#[derive(Debug, Default)]
pub struct Collected {
    pub recipients: Vec<Recipient>,
    /// e.g. `recipients file "keys.txt": ignoring unsupported SSH key of type ecdsa-sha2-nistp256 at line 3`.
    pub warnings: Vec<String>,
}

/// `-r VALUE`: a recipients file if the path exists, else a literal.
pub fn from_value(flag: &'static str, value: &str, cancel: &Cancel) -> Result<Collected, RecipientsError> {
    if value.is_empty() {
        return Err(RecipientsError::Empty { flag });
    }
    // Key material is refused before any file-system call: an error about
    // the path (EACCES, ELOOP...) would print it.
    if let Some(problem) = looks_secret(value) {
        return Err(RecipientsError::Bad { origin: Origin::Arg(flag), problem });
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
                Ok(r) => Ok(Collected { recipients: vec![r], warnings: Vec::new() }),
                Err(Problem::Invalid) => {
                    Err(RecipientsError::Neither { flag, value: shown(value), chars: value.chars().count() })
                }
                Err(problem) => Err(RecipientsError::Bad { origin: Origin::Arg(flag), problem }),
            }
        }
        Err(e) => {
            Err(RecipientsError::Unknowable { flag, value: shown(value), chars: value.chars().count(), source: e })
        }
    }
}

/// `-R FILE`: always a recipients file.
pub fn from_file(path: &Path, cancel: &Cancel) -> Result<Collected, RecipientsError> {
    // A key given where the file's name belongs: refused before any
    // file-system call, whose error would print it.
    if let Some(problem) = looks_secret(&path.to_string_lossy()) {
        return Err(RecipientsError::Bad { origin: Origin::Arg("-R"), problem });
    }
    // A name that could be a mangled key is not repeated in messages either.
    let name = &shown_name(path);
    let meta = std::fs::metadata(path).map_err(|e| RecipientsError::Stat { path: name.clone(), source: e })?;
    if meta.is_dir() {
        return Err(RecipientsError::Directory { path: name.clone() });
    }
    if meta.is_file() && meta.len() > MAX_FILE {
        return Err(RecipientsError::TooLarge { path: name.clone() });
    }
    // A secret pasted into the file by mistake is wiped when we are done.
    let mut bytes = Zeroizing::new(Vec::new());
    use std::io::Read;
    open_read(path, cancel)
        .and_then(|f| CancelRead::new(f, cancel).take(MAX_FILE + 1).read_to_end(&mut bytes))
        .map_err(|e| RecipientsError::Read { path: name.clone(), source: e })?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(RecipientsError::TooLarge { path: name.clone() });
    }
    parse_file(name, &bytes)
}

/// One recipient per line; blank lines and `#` comments skipped; CRLF
/// accepted. An SSH key of a type age does not support is skipped with a
/// warning, as the age CLI does.
pub fn parse_file(path: &Path, bytes: &[u8]) -> Result<Collected, RecipientsError> {
    let text = std::str::from_utf8(bytes).map_err(|_| RecipientsError::NotText { path: path.into() })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim_start().starts_with("-----BEGIN") {
        return Err(RecipientsError::Bad { origin: Origin::Line(path.into(), 1), problem: Problem::SshPrivateKey });
    }
    let mut out = Collected::default();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_literal(line) {
            Ok(r) => out.recipients.push(r),
            Err(Problem::UnsupportedSsh(kind)) => out.warnings.push(format!(
                "recipients file {:?}: ignoring unsupported SSH key of type {kind:?} at line {}",
                path.display().to_string(),
                i + 1
            )),
            Err(problem) => return Err(RecipientsError::Bad { origin: Origin::Line(path.into(), i + 1), problem }),
        }
    }
    if out.recipients.is_empty() {
        return Err(RecipientsError::NoneInFile { path: path.into() });
    }
    Ok(out)
}

/// Gathers `-r` values and `-R` files, in order: at least one recipient,
/// and never post-quantum and classic ones together.
pub fn collect(
    values: &[(&'static str, String)],
    files: &[(&'static str, PathBuf)],
    cancel: &Cancel,
) -> Result<Collected, RecipientsError> {
    let mut out = Collected::default();
    let mut add = |c: Collected| {
        out.recipients.extend(c.recipients);
        out.warnings.extend(c.warnings);
    };
    for (flag, v) in values {
        add(from_value(flag, v, cancel)?);
    }
    for (_, f) in files {
        add(from_file(f, cancel)?);
    }
    if out.recipients.is_empty() {
        return Err(RecipientsError::NoRecipients);
    }
    let kind_of = |pq: bool| out.recipients.iter().map(|r| &r.kind).find(|k| k.post_quantum() == Some(pq)).cloned();
    if let (Some(post_quantum), Some(classic)) = (kind_of(true), kind_of(false)) {
        return Err(RecipientsError::Mixed { post_quantum, classic });
    }
    Ok(out)
}

/// `path` as messages show it: itself, unless its file name holds a run of
/// 20 or more characters that keys are made of (see [`shown`]).
pub(crate) fn shown_name(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let keyish = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '=');
    let longest_run = name.split(|c: char| !keyish(c)).map(str::len).max().unwrap_or(0);
    if longest_run < 20 {
        return path.to_path_buf();
    }
    PathBuf::from(format!("(a name of {} characters, not shown)", path.as_os_str().len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const X25519: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
    const SECRET: &str = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX";
    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN alice@example";

    fn hybrid() -> String {
        crate::age::pq::HybridIdentity::generate().to_public().to_string()
    }

    #[test]
    fn literals() {
        assert!(parse_literal(X25519).is_ok());
        assert!(parse_literal(ED25519).is_ok());
        assert_eq!(parse_literal(&hybrid()).unwrap().kind, Kind::Hybrid);
        assert_eq!(parse_literal(SECRET).err(), Some(Problem::SecretKey));
        assert_eq!(parse_literal(&SECRET.replace('-', "_")).err(), Some(Problem::SecretKey));
        assert_eq!(parse_literal(&SECRET.to_lowercase()).err(), Some(Problem::SecretKey));
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
    fn fingerprints_are_sha256_of_the_key_as_written_ignoring_case_and_ssh_comments() {
        let want: String = ring::digest::digest(&ring::digest::SHA256, X25519.as_bytes()).as_ref()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(parse_literal(X25519).unwrap().fingerprint, want);
        assert_eq!(fingerprint(&X25519.to_uppercase()), want);
        let bare = ED25519.rsplit_once(' ').unwrap().0;
        assert_eq!(parse_literal(ED25519).unwrap().fingerprint, fingerprint(bare));
        assert_eq!(fingerprint(bare).len(), 8);
    }

    #[test]
    fn a_plugin_recipient_needs_its_binary_on_path() {
        // A valid Bech32 plugin recipient for a plugin nobody has.
        let r = age_core::primitives::bech32_encode(bech32::Hrp::parse_unchecked("age1nosuchplugin"), &[1, 2, 3]);
        assert_eq!(parse_literal(&r).err(), Some(Problem::PluginMissing("nosuchplugin".into())));
    }

    #[test]
    fn post_quantum_and_classic_recipients_are_never_mixed() {
        let c = Cancel::manual().unwrap();
        let pq = ("-r", hybrid());
        let classic = ("-r", X25519.to_string());
        match collect(&[pq.clone(), classic], &[], &c) {
            Err(e @ RecipientsError::Mixed { .. }) => assert!(e.to_string().contains("cannot be mixed")),
            other => panic!("{:?}", other.map(|c| c.recipients.len())),
        }
        assert_eq!(collect(&[pq.clone(), ("-r", hybrid())], &[], &c).unwrap().recipients.len(), 2);
    }

    #[test]
    fn file_with_comments_crlf_and_line_numbers() {
        let p = Path::new("keys.txt");
        let ok = format!("# team\r\n\r\n{X25519}\r\n  {ED25519}  \r\n");
        assert_eq!(parse_file(p, ok.as_bytes()).unwrap().recipients.len(), 2);
        let bad = format!("# team\n{X25519}\n{SECRET}\n");
        match parse_file(p, bad.as_bytes()) {
            Err(RecipientsError::Bad { origin: Origin::Line(_, 3), problem: Problem::SecretKey }) => {}
            other => panic!("{:?}", other.map(|v| v.recipients.len())),
        }
        assert!(matches!(parse_file(p, b"# only\n\n"), Err(RecipientsError::NoneInFile { .. })));
        assert!(matches!(parse_file(p, b""), Err(RecipientsError::NoneInFile { .. })));
        assert!(matches!(
            parse_file(p, b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n"),
            Err(RecipientsError::Bad { problem: Problem::SshPrivateKey, .. })
        ));
    }

    #[test]
    fn unsupported_ssh_keys_in_a_file_are_skipped_with_a_warning() {
        let ecdsa = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=";
        if parse_literal(ecdsa).err() != Some(Problem::UnsupportedSsh("ecdsa-sha2-nistp256".into())) {
            panic!("the age crate should call ecdsa-sha2-nistp256 an unsupported SSH key type");
        }
        let text = format!("{X25519}\n{ecdsa}\n");
        let got = parse_file(Path::new("k.txt"), text.as_bytes()).unwrap();
        assert_eq!(got.recipients.len(), 1);
        assert_eq!(got.warnings.len(), 1);
        assert!(got.warnings[0].contains("at line 2"), "{:?}", got.warnings);
    }

    #[test]
    fn value_prefers_an_existing_file_even_named_like_a_key() {
        let c = Cancel::manual().unwrap();
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join(X25519);
        std::fs::write(&file, format!("{ED25519}\n")).unwrap();
        let got = from_value("-r", file.to_str().unwrap(), &c).unwrap();
        assert_eq!(got.recipients.len(), 1);
        assert!(matches!(from_value("-r", d.path().to_str().unwrap(), &c), Err(RecipientsError::Directory { .. })));
        assert!(matches!(from_value("-r", "nope.txt", &c), Err(RecipientsError::Neither { value: Some(_), .. })));
        assert!(matches!(from_value("-r", "", &c), Err(RecipientsError::Empty { .. })));
        for secretish in [SECRET.to_string(), SECRET.replace('-', "_"), SECRET.to_lowercase(), SECRET[10..].to_string()]
        {
            let msg = from_value("-r", &secretish, &c).err().unwrap().to_string();
            assert!(!msg.contains("GFPYY") && !msg.contains("gfpyy"), "a secret must never be echoed: {msg}");
        }
    }
}
