//! Where the database is: the workmem server's resolver (`--db`, then
//! `MEMORY_DB_PATH`, then `memory.db` beside the executable, then in the
//! working directory) and its `.env` loader.
//!
//! Nothing here mutates the process environment: a `.env` file is parsed into
//! an [`Env`] that answers lookups with the server's precedence (a variable
//! already in the process environment wins, even when it is empty).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use crate::stop::{hint, io_cause, Failure, Hint, Knob};

/// The environment variable the workmem server reads for its database path.
pub const DB_ENV_VAR: &str = "MEMORY_DB_PATH";
/// The database file name the server uses when nothing else is said.
pub const DEFAULT_DB_NAME: &str = "memory.db";

#[derive(Debug)]
pub enum ResolveError {
    /// `--db ''` or an equally empty value: almost always an unset shell variable.
    EmptyPath,
    /// Neither the executable's directory nor the working directory holds `memory.db`.
    NotFound { tried: Vec<PathBuf> },
    /// The working directory cannot be determined.
    Cwd(io::Error),
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::EmptyPath => write!(f, "resolve database: empty path"),
            ResolveError::NotFound { tried } => {
                let list: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
                write!(f, "resolve database: no {DEFAULT_DB_NAME} found (tried {})", list.join(", "))
            }
            ResolveError::Cwd(e) => write!(f, "resolve database: current directory: {e}"),
        }
    }
}

impl std::error::Error for ResolveError {}

impl Failure for ResolveError {
    fn hint(&self) -> Option<Hint> {
        match self {
            ResolveError::EmptyPath => Some(hint![
                "give a path, or leave ",
                Knob::Database,
                format!(" out to use {DB_ENV_VAR} or the default")
            ]),
            ResolveError::NotFound { .. } => Some(hint!["pass ", Knob::Database, format!(" PATH or set {DB_ENV_VAR}")]),
            ResolveError::Cwd(_) => None,
        }
    }

    /// An empty path is a wrong invocation, typically an unset shell variable.
    fn exit_code(&self) -> u8 {
        match self {
            ResolveError::EmptyPath => 2,
            _ => 1,
        }
    }
}

/// Which rule picked the database path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The caller named it explicitly.
    Given,
    EnvVar,
    ExeDir,
    Cwd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub path: PathBuf,
    pub origin: Origin,
}

/// Lookup of environment variables with the server's `.env` semantics.
#[derive(Debug, Default, Clone)]
pub struct Env {
    dotenv: HashMap<String, OsString>,
    /// `None` means: use the real process environment.
    process: Option<HashMap<String, OsString>>,
}

impl Env {
    /// The process environment alone.
    pub fn from_process() -> Self {
        Env::default()
    }

    /// A fixed environment, for tests.
    pub fn fixed<K: Into<String>, V: Into<OsString>>(vars: impl IntoIterator<Item = (K, V)>) -> Self {
        Env { dotenv: HashMap::new(), process: Some(vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect()) }
    }

    /// Adds the values of a parsed `.env` file underneath the process environment.
    pub fn with_dotenv(mut self, pairs: Vec<(String, OsString)>) -> Self {
        self.dotenv.extend(pairs);
        self
    }

    /// The process value if the variable is set at all (even empty), else the `.env` value.
    pub fn get(&self, key: &str) -> Option<OsString> {
        let from_process = match &self.process {
            Some(map) => map.get(key).cloned(),
            None => std::env::var_os(key),
        };
        from_process.or_else(|| self.dotenv.get(key).cloned())
    }
}

/// Resolves the database path as the workmem server does: `given` (the
/// caller's explicit path), else `MEMORY_DB_PATH`, else `memory.db` beside
/// the executable, else in the working directory.
///
/// `exe_dir` is the directory of the running executable, if known; `cwd` the
/// working directory. The executable's directory is used when `memory.db`
/// exists there; otherwise the working directory's (the server always used
/// the executable's directory, creating the file if needed: a backup tool
/// cannot create its source, so it falls through to the next candidate and
/// names every place it looked when none holds the file).
pub fn resolve_db_path(
    given: Option<&Path>,
    env: &Env,
    exe_dir: Option<&Path>,
    cwd: impl FnOnce() -> io::Result<PathBuf>,
) -> Result<Resolved, ResolveError> {
    if let Some(p) = given {
        if p.as_os_str().is_empty() {
            return Err(ResolveError::EmptyPath);
        }
        return Ok(Resolved { path: clean(p), origin: Origin::Given });
    }
    if let Some(value) = env.get(DB_ENV_VAR) {
        let trimmed = trim_ascii(value.as_bytes());
        if !trimmed.is_empty() {
            return Ok(Resolved { path: clean(Path::new(OsStr::from_bytes(trimmed))), origin: Origin::EnvVar });
        }
    }
    let mut tried = Vec::new();
    if let Some(dir) = exe_dir {
        let candidate = dir.join(DEFAULT_DB_NAME);
        if candidate.exists() {
            return Ok(Resolved { path: candidate, origin: Origin::ExeDir });
        }
        tried.push(candidate);
    }
    let candidate = cwd().map_err(ResolveError::Cwd)?.join(DEFAULT_DB_NAME);
    if candidate.exists() || tried.is_empty() {
        return Ok(Resolved { path: candidate, origin: Origin::Cwd });
    }
    tried.push(candidate);
    Err(ResolveError::NotFound { tried })
}

/// The database to write (a restore): the same precedence as
/// [`resolve_db_path`], and when no candidate exists, the working
/// directory's `memory.db`, to be created.
pub fn resolve_db_target(
    given: Option<&Path>,
    env: &Env,
    exe_dir: Option<&Path>,
    cwd: impl FnOnce() -> io::Result<PathBuf>,
) -> Result<Resolved, ResolveError> {
    match resolve_db_path(given, env, exe_dir, cwd) {
        Err(ResolveError::NotFound { mut tried }) => match tried.pop() {
            Some(path) => Ok(Resolved { path, origin: Origin::Cwd }),
            None => Err(ResolveError::NotFound { tried }),
        },
        other => other,
    }
}

/// Lexical clean-up like Go's `filepath.Clean`: drops `.` components and
/// duplicate slashes; `..` is kept (resolving it lexically is wrong with symlinks).
fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let is_space = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let start = b.iter().position(|c| !is_space(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !is_space(c)).map_or(start, |i| i + 1);
    &b[start..end]
}

/// What reading a `.env` file gave.
#[derive(Debug)]
pub enum DotenvOutcome {
    Loaded(Vec<(String, OsString)>),
    /// The file does not exist: silently nothing, as in the server.
    Missing,
}

#[derive(Debug)]
pub struct DotenvError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for DotenvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "read env file: {}: {}", self.path.display(), io_cause(&self.source))
    }
}

impl std::error::Error for DotenvError {}

/// Reads and parses a `.env` file. A missing file is not an error; any other
/// read failure is returned so that the caller can warn and carry on, as the
/// server does.
pub fn read_dotenv(path: &Path) -> Result<DotenvOutcome, DotenvError> {
    match std::fs::read(path) {
        Ok(content) => Ok(DotenvOutcome::Loaded(parse_dotenv(&content))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(DotenvOutcome::Missing),
        Err(e) => Err(DotenvError { path: path.to_path_buf(), source: e }),
    }
}

/// Parses `.env` content with the workmem server's rules: `KEY=value`,
/// optional `export ` prefix, single or double quotes taken literally (no
/// escapes), inline `#` comments only on unquoted values and only after a
/// space or tab, full-line `#` comments, UTF-8 BOM and CRLF tolerated,
/// malformed lines skipped. A key given twice keeps its last value.
pub fn parse_dotenv(content: &[u8]) -> Vec<(String, OsString)> {
    let content = content.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(content);
    let mut out: Vec<(String, OsString)> = Vec::new();
    for raw in content.split(|&c| c == b'\n') {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let mut line = trim_ascii(raw);
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        if let Some(rest) = line.strip_prefix(b"export ") {
            line = trim_start_blank(rest);
        }
        let Some(eq) = line.iter().position(|&c| c == b'=') else { continue };
        let key = trim_ascii(&line[..eq]);
        if !is_valid_key(key) {
            continue;
        }
        let rest = trim_start_blank(&line[eq + 1..]);
        let value: &[u8] = match rest.first() {
            Some(&q) if q == b'"' || q == b'\'' => {
                // Text after the closing quote (spaces, a comment, garbage) is ignored.
                match rest[1..].iter().position(|&c| c == q) {
                    Some(close) => &rest[1..1 + close],
                    None => continue, // unterminated quote: the whole line is skipped
                }
            }
            _ => {
                let end = inline_comment_start(rest).unwrap_or(rest.len());
                trim_end_blank(&rest[..end])
            }
        };
        // Keys are ASCII by construction (is_valid_key).
        let key = String::from_utf8_lossy(key).into_owned();
        out.retain(|(k, _)| *k != key);
        out.push((key, OsString::from_vec(value.to_vec())));
    }
    out
}

fn trim_start_blank(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&c| c != b' ' && c != b'\t').unwrap_or(b.len());
    &b[start..]
}

fn trim_end_blank(b: &[u8]) -> &[u8] {
    let end = b.iter().rposition(|&c| c != b' ' && c != b'\t').map_or(0, |i| i + 1);
    &b[..end]
}

fn is_valid_key(key: &[u8]) -> bool {
    !key.is_empty()
        && key.iter().enumerate().all(|(i, &c)| c == b'_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()))
}

fn inline_comment_start(s: &[u8]) -> Option<usize> {
    s.windows(2).position(|w| (w[0] == b' ' || w[0] == b'\t') && w[1] == b'#')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &str) -> Vec<(String, String)> {
        parse_dotenv(s.as_bytes()).into_iter().map(|(k, v)| (k, v.to_string_lossy().into_owned())).collect()
    }

    fn one(s: &str) -> Option<String> {
        parsed(s).into_iter().find(|(k, _)| k == "K").map(|(_, v)| v)
    }

    #[test]
    fn dotenv_simple_and_export_prefix() {
        assert_eq!(one("K=v"), Some("v".into()));
        assert_eq!(one("export K=v"), Some("v".into()));
        assert_eq!(one("export    K = v  "), Some("v".into()));
        assert_eq!(one("K="), Some("".into()));
    }

    #[test]
    fn dotenv_quotes_are_literal() {
        assert_eq!(one(r#"K="a b \n c""#), Some(r"a b \n c".into()));
        assert_eq!(one("K='a # b'"), Some("a # b".into()));
        assert_eq!(one(r#"K="x" # comment"#), Some("x".into()));
        assert_eq!(one(r#"K="x"garbage"#), Some("x".into()));
        assert_eq!(one(r#"K="unterminated"#), None);
        assert_eq!(one("K='$HOME'"), Some("$HOME".into()));
    }

    #[test]
    fn dotenv_inline_comment_needs_whitespace_and_no_quotes() {
        assert_eq!(one("K=a#b"), Some("a#b".into()));
        assert_eq!(one("K=a #b"), Some("a".into()));
        assert_eq!(one("K=a\t# b"), Some("a".into()));
        // As in the server: the blank after '=' is trimmed first, so this '#' is a value.
        assert_eq!(one("K= #not a comment"), Some("#not a comment".into()));
    }

    #[test]
    fn dotenv_bom_crlf_comments_and_malformed_lines() {
        let got = parsed("\u{feff}A=1\r\n# c\r\n\r\nnot a pair\r\n1BAD=x\r\nB-C=y\r\n=z\r\nD=2\r\n");
        assert_eq!(got, vec![("A".into(), "1".into()), ("D".into(), "2".into())]);
    }

    #[test]
    fn dotenv_last_duplicate_wins() {
        assert_eq!(one("K=1\nK=2"), Some("2".into()));
    }

    #[test]
    fn process_env_wins_even_when_empty() {
        let env = Env::fixed([("K", "")]).with_dotenv(vec![("K".into(), "file".into())]);
        assert_eq!(env.get("K"), Some("".into()));
        let env = Env::fixed(Vec::<(String, String)>::new()).with_dotenv(vec![("K".into(), "file".into())]);
        assert_eq!(env.get("K"), Some("file".into()));
    }

    #[test]
    fn resolver_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("bin");
        let cwd = dir.path().join("cwd");
        std::fs::create_dir_all(&exe).unwrap();
        std::fs::create_dir_all(&cwd).unwrap();
        std::fs::write(exe.join(DEFAULT_DB_NAME), b"x").unwrap();
        std::fs::write(cwd.join(DEFAULT_DB_NAME), b"x").unwrap();
        let env = Env::fixed([(DB_ENV_VAR, "  /e/m.db \n")]);
        let c = || Ok(cwd.clone());

        let r = resolve_db_path(Some(Path::new("./f.db")), &env, Some(&exe), c).unwrap();
        assert_eq!(r, Resolved { path: "f.db".into(), origin: Origin::Given });
        let r = resolve_db_path(None, &env, Some(&exe), c).unwrap();
        assert_eq!(r, Resolved { path: "/e/m.db".into(), origin: Origin::EnvVar });
        let blank = Env::fixed([(DB_ENV_VAR, "   ")]);
        let r = resolve_db_path(None, &blank, Some(&exe), c).unwrap();
        assert_eq!(r.origin, Origin::ExeDir);
        std::fs::remove_file(exe.join(DEFAULT_DB_NAME)).unwrap();
        let r = resolve_db_path(None, &blank, Some(&exe), c).unwrap();
        assert_eq!(r, Resolved { path: cwd.join(DEFAULT_DB_NAME), origin: Origin::Cwd });
        std::fs::remove_file(cwd.join(DEFAULT_DB_NAME)).unwrap();
        match resolve_db_path(None, &blank, Some(&exe), c) {
            Err(ResolveError::NotFound { tried }) => assert_eq!(tried.len(), 2),
            other => panic!("expected NotFound, got {other:?}"),
        }
        assert!(matches!(resolve_db_path(Some(Path::new("")), &env, Some(&exe), c), Err(ResolveError::EmptyPath)));
    }
}
