//! The one test harness: a fresh directory per test, the real binaries run in
//! it, their exit code / stdout / stderr captured, and the directory's files
//! (names, sizes, modes, SHA-256) compared before and after.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::fixture;

pub const WM_SNAPSHOT: &str = env!("CARGO_BIN_EXE_wm-snapshot");
pub const WM_SEAL: &str = env!("CARGO_BIN_EXE_wm-seal");
pub const WORKMEM_BACKUP: &str = env!("CARGO_BIN_EXE_workmem-backup");
pub const WM_VERIFY: &str = env!("CARGO_BIN_EXE_wm-verify");
pub const WM_RESTORE: &str = env!("CARGO_BIN_EXE_wm-restore");
pub const WM_PRUNE: &str = env!("CARGO_BIN_EXE_wm-prune");
pub const WM_KEYGEN: &str = env!("CARGO_BIN_EXE_wm-keygen");

/// The binaries run the Linux fast paths (`O_TMPFILE`, …); false when they
/// were built with the `portable` feature, or for another system: then
/// their temporary has a name from the start (see the README's Guarantees).
pub const LINUX_FAST_PATHS: bool = wmbackup::platform::LINUX_FAST_PATHS;

/// A hidden temporary's name as the README gives it: `.NAME.<12 hex>.tmp`.
pub fn is_hidden_temp(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.').and_then(|r| r.strip_suffix(".tmp")) else { return false };
    match rest.rsplit_once('.') {
        Some((dest, hex)) => {
            !dest.is_empty() && hex.len() == 12 && hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        }
        None => false,
    }
}

/// The names in `dir` that are hidden temporaries.
pub fn hidden_temps(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.retain(|n| is_hidden_temp(n));
    v.sort();
    v
}

/// A temporary directory that is the test's whole world.
pub struct Dir {
    _tmp: tempfile::TempDir,
    pub path: PathBuf,
}

impl Dir {
    pub fn new() -> Dir {
        let tmp = tempfile::Builder::new().prefix("wmtest").tempdir().expect("temp dir");
        // Readable by others so that a test running as root can run the binary as nobody.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = tmp.path().to_path_buf();
        Dir { _tmp: tmp, path }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn write(&self, name: &str, data: impl AsRef<[u8]>) -> PathBuf {
        let p = self.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, data).unwrap();
        p
    }

    pub fn mkdir(&self, name: &str) -> PathBuf {
        let p = self.join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.join(name)).unwrap()
    }

    /// Every file below the directory: relative path -> (size, mode, sha256).
    pub fn tree(&self) -> Tree {
        tree(&self.path)
    }

    /// A workmem-shaped database of about `bytes`.
    pub fn workmem_db(&self, name: &str, bytes: u64, wal: bool) -> PathBuf {
        let p = self.join(name);
        fixture::create(&p, bytes, wal, 42).expect("fixture");
        p
    }

    /// A new age identity: (identity file, recipient).
    pub fn age_key(&self, name: &str) -> (PathBuf, String) {
        let id = age_identity();
        let secret = {
            use age::secrecy::ExposeSecret;
            id.to_string().expose_secret().to_string()
        };
        let path = self.write(name, format!("# created by the test\n{secret}\n"));
        (path, id.to_public().to_string())
    }
}

/// The secret line of an identity file made by `Dir::age_key` or age-keygen.
pub fn secret_of(identity: &Path) -> String {
    std::fs::read_to_string(identity)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .expect("a secret key line")
        .to_string()
}

fn age_identity() -> age::x25519::Identity {
    age::x25519::Identity::generate()
}

pub type Tree = BTreeMap<String, (u64, u32, String)>;

pub fn tree(root: &Path) -> Tree {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Tree) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
        let mode = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&p).map(|t| t.display().to_string()).unwrap_or_default();
            out.insert(rel, (0, mode, format!("-> {target}")));
        } else if meta.is_dir() {
            out.insert(format!("{rel}/"), (0, mode, String::new()));
            walk(root, &p, out);
        } else if meta.is_file() {
            out.insert(rel, (meta.len(), mode, sha256_file(&p)));
        } else {
            // FIFOs and sockets: never open them (a FIFO would block).
            out.insert(rel, (0, mode, "special".into()));
        }
    }
}

pub fn sha256(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_file(p: &Path) -> String {
    match std::fs::read(p) {
        Ok(d) => sha256(&d),
        Err(e) => format!("unreadable: {e}"),
    }
}

/// Asserts that nothing under the directory changed; names what did.
pub fn assert_unchanged(before: &Tree, after: &Tree, what: &str) {
    if before != after {
        let mut diff = Vec::new();
        for (k, v) in after {
            match before.get(k) {
                None => diff.push(format!("created {k}")),
                Some(b) if b != v => diff.push(format!("changed {k}")),
                _ => {}
            }
        }
        for k in before.keys().filter(|k| !after.contains_key(*k)) {
            diff.push(format!("removed {k}"));
        }
        panic!("{what}: the directory changed: {}", diff.join(", "));
    }
}

/// The result of running a binary.
#[derive(Debug)]
pub struct Out {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Out {
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or_else(|| 128 + self.status.signal().unwrap_or(0))
    }

    /// Asserts the exit code and that stderr contains `needle`; returns self.
    #[track_caller]
    pub fn expect(&self, code: i32, needle: &str) -> &Self {
        assert_eq!(self.code(), code, "exit code; stderr: {}", self.stderr);
        assert!(self.stderr.contains(needle), "stderr should contain {needle:?}: {}", self.stderr);
        self
    }

    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code(), 0, "expected success; stderr: {}", self.stderr);
        self
    }

    /// One line, no panic or backtrace: what every error report must look like.
    #[track_caller]
    pub fn one_line_error(&self, prog: &str) -> &Self {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line of stderr expected: {:?}", self.stderr);
        assert!(lines[0].starts_with(&format!("{prog}: ")), "prefixed with the program: {:?}", lines[0]);
        assert!(!self.stderr.contains("panicked"), "no panic: {}", self.stderr);
        self
    }
}

/// A command for one of the binaries, run in `dir` with a clean environment
/// (no MEMORY_DB_PATH, TMPDIR inside the test directory unless set).
pub struct Run {
    cmd: Command,
    stdin: Option<Vec<u8>>,
    stdin_set: bool,
    stdout_set: bool,
}

pub fn run(bin: &str, dir: &Dir) -> Run {
    let mut cmd = Command::new(bin);
    cmd.current_dir(&dir.path).env_remove("MEMORY_DB_PATH").env("TMPDIR", &dir.path).env_remove("RUST_BACKTRACE");
    Run { cmd, stdin: None, stdin_set: false, stdout_set: false }
}

impl Run {
    pub fn args<I, S>(mut self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, k: &str, v: impl AsRef<OsStr>) -> Run {
        self.cmd.env(k, v);
        self
    }

    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Run {
        self.stdin = Some(data.into());
        self
    }

    pub fn stdin_file(mut self, f: std::fs::File) -> Run {
        self.cmd.stdin(f);
        self.stdin_set = true;
        self
    }

    pub fn stdout_file(mut self, f: std::fs::File) -> Run {
        self.cmd.stdout(f);
        self.stdout_set = true;
        self
    }

    /// Runs as an unprivileged user when the tests run as root, so that
    /// permission tests mean something.
    pub fn unprivileged(mut self) -> Run {
        use std::os::unix::process::CommandExt;
        if nix::unistd::geteuid().is_root() {
            self.cmd.uid(65534).gid(65534);
        }
        self
    }

    pub fn command(&mut self) -> &mut Command {
        &mut self.cmd
    }

    pub fn go(mut self) -> Out {
        if self.stdin.is_some() {
            self.cmd.stdin(Stdio::piped());
        } else if !self.stdin_set {
            // Not a terminal, not a pipe left open: empty input unless a test says otherwise.
            self.cmd.stdin(Stdio::null());
        }
        if !self.stdout_set {
            self.cmd.stdout(Stdio::piped());
        }
        self.cmd.stderr(Stdio::piped());
        let mut child = self.cmd.spawn().expect("spawn binary");
        if let Some(data) = self.stdin.take() {
            let mut w = child.stdin.take().unwrap();
            std::thread::spawn(move || {
                let _ = w.write_all(&data);
            });
        }
        let out = child.wait_with_output().expect("wait");
        Out { status: out.status, stdout: out.stdout, stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
    }

    /// Starts the binary without waiting (stdout/stderr piped unless set).
    pub fn spawn(mut self) -> Child {
        if self.stdin.is_none() && !self.stdin_set {
            self.cmd.stdin(Stdio::null());
        }
        self.cmd.stderr(Stdio::piped());
        self.cmd.spawn().expect("spawn binary")
    }
}

/// Waits for a child with a deadline; kills it and panics when it hangs.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("process did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

/// Whether an external tool is here, for a test that returns early without
/// it. Missing: locally the test is skipped and the skip recorded (`make
/// test` ends by naming the tools and counting the tests); with CI=true it
/// fails, so that CI can never pass by skipping.
pub fn have(tool: &str) -> bool {
    found_or_skip(tool, Skip::Test)
}

/// Like `have`, for a test that only leaves out some of its cases without
/// the tool.
pub fn have_for_some_cases(tool: &str) -> bool {
    found_or_skip(tool, Skip::SomeCases)
}

fn found_or_skip(tool: &str, skip: Skip) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{tool} is required when CI=true (install it in .ci/run)");
        }
        eprintln!("SKIPPED: {tool} is not installed");
        record_skip(&format!("{tool} not installed"), skip);
    }
    found
}

/// What a test leaves out when something it needs is missing.
#[derive(Clone, Copy)]
pub enum Skip {
    Test,
    SomeCases,
}

/// Records that the running test leaves out what `why` prevents: one line
/// `why<TAB>skipped|cut short<TAB>test name` in `CARGO_TARGET_TMPDIR/skips/`,
/// which `make test` clears first and sums up in its last line
/// (scripts/skipped.sh).
pub fn record_skip(why: &str, skip: Skip) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("skips");
    // libtest names each test's thread after the test.
    let test = std::thread::current().name().unwrap_or("an unnamed test").to_string();
    let scope = match skip {
        Skip::Test => "skipped",
        Skip::SomeCases => "cut short",
    };
    let line = format!("{why}\t{scope}\t{test}\n");
    // One short O_APPEND write per line: lines from parallel tests do not mix.
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::OpenOptions::new().create(true).append(true).open(dir.join("it.tsv"))?.write_all(line.as_bytes())
    });
    if let Err(e) = written {
        panic!("recording a skip in {}: {e}", dir.display());
    }
}

/// `age -d -i identity file` with the real age CLI.
pub fn age_decrypt(identity: &Path, file: &Path) -> Result<Vec<u8>, String> {
    let out = Command::new("age").arg("-d").arg("-i").arg(identity).arg(file).output().expect("run age");
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Runs SQL with the system sqlite3 CLI; returns stdout, panics on failure.
#[track_caller]
pub fn sqlite3(db: &Path, sql: &str) -> String {
    let out = Command::new("sqlite3").arg("-batch").arg(db).arg(sql).output().expect("run sqlite3");
    assert!(out.status.success(), "sqlite3 {sql:?} on {}: {}", db.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Everything the round-trip tests compare: schema, row counts, an FTS5 query.
pub fn content_digest(db: &Path) -> String {
    let schema = sqlite3(db, "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY name");
    let counts = sqlite3(
        db,
        "SELECT (SELECT count(*) FROM entities), (SELECT count(*) FROM observations), \
         (SELECT count(*) FROM relations), (SELECT count(*) FROM events), \
         (SELECT count(*) FROM observation_embeddings)",
    );
    let fts = sqlite3(db, "SELECT rowid FROM memory_fts WHERE memory_fts MATCH 'backup AND restore' ORDER BY rowid");
    let sums = sqlite3(db, "SELECT total(length(vector)), total(length(content)) FROM observation_embeddings JOIN observations ON id = observation_id");
    format!("{schema}\n{counts}\n{}\n{sums}", sha256(fts.as_bytes()))
}

/// integrity_check with the system sqlite3 CLI.
#[track_caller]
pub fn assert_integrity(db: &Path) {
    assert_eq!(sqlite3(db, "PRAGMA integrity_check").trim(), "ok", "integrity_check of {}", db.display());
}

/// The file starts with the SQLite header: plaintext.
pub fn is_plaintext_db(p: &Path) -> bool {
    let mut head = [0u8; 16];
    std::fs::File::open(p).and_then(|mut f| f.read_exact(&mut head)).is_ok() && &head == b"SQLite format 3\0"
}

/// Files under `root` (recursively) that contain a SQLite header anywhere.
pub fn files_with_sqlite_header(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for (rel, (_, _, digest)) in tree(root) {
        if rel.ends_with('/') || digest.starts_with("->") || digest == "special" {
            continue;
        }
        let p = root.join(&rel);
        if let Ok(data) = std::fs::read(&p) {
            if data.windows(16).any(|w| w == b"SQLite format 3\0") {
                found.push(p);
            }
        }
    }
    found
}

/// A pseudo-terminal: (controller, terminal side as a File for stdin/stdout).
/// Both ends are close-on-exec from the start: openpty(3) leaves them
/// inheritable, and every child another test spawned meanwhile got two extra
/// descriptors (which moved the source's descriptor in the traced runs of
/// the fault-injection suite).
pub fn pty() -> (std::os::fd::OwnedFd, std::fs::File) {
    use nix::fcntl::OFlag;
    use std::os::unix::fs::OpenOptionsExt;
    let controller = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).expect("posix_openpt");
    nix::pty::grantpt(&controller).expect("grantpt");
    nix::pty::unlockpt(&controller).expect("unlockpt");
    #[cfg(target_os = "linux")]
    let name = nix::pty::ptsname_r(&controller).expect("ptsname_r");
    // No ptsname_r: ptsname's static buffer, one test at a time.
    #[cfg(not(target_os = "linux"))]
    let name = {
        static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: the lock keeps the other tests' threads out of ptsname.
        unsafe { nix::pty::ptsname(&controller) }.expect("ptsname")
    };
    // std opens with O_CLOEXEC.
    let terminal = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NOCTTY)
        .open(&name)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    (controller.into(), terminal)
}

/// A pipe whose ends no child inherits: other tests spawn children all the
/// time, and an inherited write end would keep the pipe open. Without pipe2
/// (macOS), close-on-exec is set just after, which leaves a short window.
pub fn pipe_cloexec() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    #[cfg(not(target_vendor = "apple"))]
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe2");
    #[cfg(target_vendor = "apple")]
    let (r, w) = {
        use nix::fcntl::{fcntl, FcntlArg, FdFlag};
        let (r, w) = nix::unistd::pipe().expect("pipe");
        for fd in [&r, &w] {
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).expect("FD_CLOEXEC");
        }
        (r, w)
    };
    (r, w)
}

pub fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// The reliability suite's scale: `WM_RELIABILITY_FULL=1` (make reliability)
/// runs the full counts; otherwise the quick subset that `make test` runs.
pub fn full_suite() -> bool {
    std::env::var("WM_RELIABILITY_FULL").as_deref() == Ok("1")
}

/// Records figures for the reliability table: one `section.tsv` per caller in
/// CARGO_TARGET_TMPDIR/reliability/ (target/tmp/reliability/ unless
/// CARGO_TARGET_DIR moves it), rows of (figure, value, required value if any).
/// `make reliability` prints them all as one table at the end.
pub fn record_figures(section: &str, rows: &[(&str, u64, Option<u64>)]) {
    let rows: Vec<(&str, u64, Need)> =
        rows.iter().map(|&(name, value, must)| (name, value, must.map_or(Need::Any, Need::Exactly))).collect();
    record_figures_with(section, &rows);
}

/// What a figure of the reliability table must be.
#[derive(Clone, Copy, Debug)]
pub enum Need {
    /// For information.
    Any,
    Exactly(u64),
    /// A count of real events that shows a promise: at least this many.
    AtLeast(u64),
}

/// `record_figures` with lower bounds as well: the required column reads
/// `N` (exactly) or `>=N` (at least), and scripts/reliability-table.sh
/// checks both.
pub fn record_figures_with(section: &str, rows: &[(&str, u64, Need)]) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("reliability");
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = String::new();
    for (name, value, need) in rows {
        let need = match need {
            Need::Any => String::new(),
            Need::Exactly(m) => m.to_string(),
            Need::AtLeast(m) => format!(">={m}"),
        };
        text.push_str(&format!("{section}\t{name}\t{value}\t{need}\n"));
    }
    std::fs::write(dir.join(format!("{}.tsv", section.replace([' ', '/'], "_"))), text).unwrap();
    for (name, value, need) in rows {
        match need {
            Need::Any => {}
            Need::Exactly(m) => assert_eq!(value, m, "{section}: {name} must be {m}"),
            Need::AtLeast(m) => assert!(value >= m, "{section}: {name} must be at least {m}, is {value}"),
        }
    }
}

/// A writer on its own connection (so SQLite's locking between it and the
/// binary's process is the real one), committing as fast as it can until
/// `stop`. Every transaction keeps two invariants: one embedding per
/// observation, and the `ledger` table's total at 1000 (the table is made
/// here unless the test made it). Returns the number of commits.
pub fn spawn_writer(db: &Path, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<u64> {
    let db = db.to_path_buf();
    std::thread::spawn(move || {
        let mut conn = rusqlite::Connection::open(&db).unwrap();
        conn.busy_timeout(Duration::from_secs(30)).unwrap();
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS ledger(id INTEGER PRIMARY KEY, balance INTEGER);
             INSERT OR IGNORE INTO ledger VALUES (1, 500), (2, 500);",
        )
        .unwrap();
        let mut rng = fixture::Rng::new(11);
        let mut n = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let tx = conn.transaction().unwrap();
            let k = 1 + rng.below(10);
            fixture::insert_observations(&tx, &mut rng, k, 20).unwrap();
            tx.execute("DELETE FROM observations WHERE id = (SELECT min(id) FROM observations)", []).unwrap();
            tx.execute(
                "DELETE FROM observation_embeddings WHERE observation_id NOT IN (SELECT id FROM observations)",
                [],
            )
            .unwrap();
            let amount = rng.below(100) as i64;
            tx.execute("UPDATE ledger SET balance = balance - ?1 WHERE id = 1", [amount]).unwrap();
            tx.execute("UPDATE ledger SET balance = balance + ?1 WHERE id = 2", [amount]).unwrap();
            tx.commit().unwrap();
            n += 1;
        }
        n
    })
}

/// Deterministic bytes that start like neither a SQLite nor an age file.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fixture::Rng::new(seed);
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&rng.next().to_le_bytes());
    }
    v.truncate(len);
    if let Some(b) = v.first_mut() {
        *b = b'x';
    }
    v
}

/// A new identity made by the real `age-keygen`: (identity file, recipient).
pub fn age_keygen(d: &Dir, name: &str) -> (PathBuf, String) {
    let p = d.join(name);
    let st = Command::new("age-keygen").arg("-o").arg(&p).stderr(Stdio::null()).status().expect("run age-keygen");
    assert!(st.success(), "age-keygen -o {}", p.display());
    let out = Command::new("age-keygen").arg("-y").arg(&p).output().expect("run age-keygen -y");
    assert!(out.status.success(), "age-keygen -y: {}", String::from_utf8_lossy(&out.stderr));
    (p, String::from_utf8(out.stdout).unwrap().trim().to_string())
}

/// A new SSH key made by the real `ssh-keygen` (`passphrase` may be empty):
/// (private key file, public key line), or `None` when ssh-keygen refuses
/// the kind (e.g. RSA keys too small for its policy).
pub fn ssh_keygen(d: &Dir, name: &str, passphrase: &str, kind: &[&str]) -> Option<(PathBuf, String)> {
    let p = d.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-N", passphrase, "-C", "wm-test"])
        .args(kind)
        .arg("-f")
        .arg(&p)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh-keygen");
    if !out.status.success() {
        eprintln!("ssh-keygen {kind:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let public = std::fs::read_to_string(d.join(&format!("{name}.pub"))).unwrap().trim().to_string();
    Some((p, public))
}

/// Sends SIGTERM to a child that must still be waiting, and asserts that it
/// stops promptly with 143 and says why; returns its stderr.
#[track_caller]
pub fn sigterm_expect_143(child: &mut Child, what: &str) -> String {
    use nix::sys::signal::{kill, Signal};
    assert!(child.try_wait().unwrap().is_none(), "{what}: still waiting before the signal");
    kill(nix::unistd::Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let started = Instant::now();
    let status = wait_timeout(child, Duration::from_secs(10));
    let err = stderr_of(child);
    assert_eq!(status.code(), Some(143), "{what}: {err}");
    assert!(started.elapsed() < Duration::from_secs(3), "{what}: stops promptly");
    assert!(err.contains("interrupted by SIGTERM"), "{what}: says why: {err}");
    err
}

/// No 8-character piece of `secret` (after its prefix) appears in `text`, in any case.
#[track_caller]
pub fn assert_not_echoed(text: &str, secret: &str, what: &str) {
    let body: Vec<char> = secret.chars().collect();
    let lower = text.to_lowercase();
    for w in body.windows(8).skip(16) {
        let piece: String = w.iter().collect::<String>().to_lowercase();
        assert!(!lower.contains(&piece), "{what}: the secret must never be echoed, found {piece:?} in: {text}");
    }
}

/// A server started by a test, killed when the test ends, even by a panic.
pub struct Server {
    pub name: &'static str,
    pub child: Child,
}

impl Server {
    /// Waits until 127.0.0.1:port accepts connections; panics with the server's
    /// stderr when it exits first or takes too long.
    pub fn wait_for_port(&mut self, port: u16) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let err = stderr_of(&mut self.child);
                panic!("{} exited early ({status}): {err}", self.name);
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            if start.elapsed() > Duration::from_secs(15) {
                panic!("{} did not listen on port {port} within 15 s", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `rclone serve webdav` of `served` on a free local port, and the
/// environment that makes `wmtest:` that remote for rclone commands (with
/// TMPDIR set to `tmp`). The server stops when the value is dropped.
pub fn webdav(served: &Path, conf: &Path, tmp: &Path) -> (Server, Vec<(String, String)>) {
    let port = free_port();
    let mut server = Server {
        name: "rclone serve webdav",
        child: Command::new("rclone")
            .arg("serve")
            .arg("webdav")
            .arg("--addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--config")
            .arg(conf)
            .arg(served)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rclone serve webdav"),
    };
    server.wait_for_port(port);
    let envs = [
        ("RCLONE_CONFIG", conf.display().to_string()),
        ("RCLONE_CONFIG_WMTEST_TYPE", "webdav".into()),
        ("RCLONE_CONFIG_WMTEST_URL", format!("http://127.0.0.1:{port}")),
        ("RCLONE_CONFIG_WMTEST_VENDOR", "other".into()),
        ("TMPDIR", tmp.display().to_string()),
    ];
    (server, envs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// The keys of `--json`'s backup object (workmem-backup, wm-seal,
/// wm-snapshot), as their man pages list them.
pub const BACKUP_KEYS: [&str; 19] = [
    "tool",
    "version",
    "exit",
    "error",
    "started",
    "finished",
    "seconds",
    "source",
    "method",
    "spool",
    "snapshot_bytes",
    "ciphertext_bytes",
    "sha256",
    "destination",
    "recipients",
    "armored",
    "verified",
    "pruned",
    "warnings",
];

/// Seconds since the epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The name a backup of series `stem`/`ext` gets at Unix time `t`.
pub fn backup_name(stem: &str, t: i64, ext: &str) -> String {
    format!("{stem}-{}.{ext}", wmbackup::clock::Utc::from_unix(t).stamp())
}

/// The one file in `dir`, which must be named like a backup of
/// `stem`/`ext` made between Unix times `t0` and `t1`.
#[track_caller]
pub fn the_backup_in(dir: &Path, stem: &str, ext: &str, t0: i64, t1: i64) -> PathBuf {
    let names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names.len(), 1, "one file in {}: {names:?}", dir.display());
    assert!(
        (t0..=t1).any(|t| backup_name(stem, t, ext) == names[0]),
        "{} is {stem}-STAMP.{ext} for a second of the run",
        names[0]
    );
    dir.join(&names[0])
}

/// The one JSON object a `--json` run printed on standard error: one line,
/// nothing else on stderr; its keys sorted.
#[track_caller]
pub fn json_on_stderr(out: &Out) -> (serde_json::Value, Vec<String>) {
    one_object(&out.stderr, "stderr")
}

/// The one JSON object a `--json` run printed on standard output (where the
/// report goes whenever stdout carries no backup): one line, nothing else
/// on stdout, nothing on stderr; its keys sorted.
#[track_caller]
pub fn json_on_stdout(out: &Out) -> (serde_json::Value, Vec<String>) {
    assert!(out.stderr.is_empty(), "the report replaces the messages on stderr: {:?}", out.stderr);
    one_object(&String::from_utf8_lossy(&out.stdout), "stdout")
}

#[track_caller]
fn one_object(text: &str, place: &str) -> (serde_json::Value, Vec<String>) {
    let text = text.strip_suffix('\n').unwrap_or(text);
    assert!(!text.contains('\n'), "one line on {place}: {text:?}");
    assert!(text.starts_with('{') && text.ends_with('}'), "one JSON object, nothing around it, on {place}: {text:?}");
    let v: serde_json::Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("one JSON object on {place}: {e}: {text:?}"));
    let mut keys: Vec<String> = v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    keys.sort();
    (v, keys)
}

/// Sorted, for comparing key lists.
pub fn sorted_keys(keys: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    k.sort();
    k
}

/// A failure as `--json` reports it: exactly tool, version, exit, error;
/// the exit status also the process's; the error saying `needle`. On
/// standard output, or on standard error when the command line sent the
/// backup to standard output (then stdout is empty: nothing was made).
#[track_caller]
pub fn assert_json_failure(out: &Out, prog: &str, code: i32, needle: &str) {
    assert_eq!(out.code(), code, "exit code; stderr: {}", out.stderr);
    let (v, keys) = if out.stdout.is_empty() { json_on_stderr(out) } else { json_on_stdout(out) };
    assert_eq!(keys, sorted_keys(&["tool", "version", "exit", "error"]), "a failure's keys: {v}");
    assert_eq!(v["tool"], prog, "{v}");
    assert_eq!(v["exit"], code, "{v}");
    let error = v["error"].as_str().unwrap_or_else(|| panic!("error is a string: {v}"));
    assert!(error.contains(needle), "the error should say {needle:?}: {v}");
    assert!(!error.starts_with(&format!("{prog}:")), "no program prefix inside the object: {v}");
}

/// The way round an ssh-keygen that refuses small RSA keys makes a key that
/// ssh-keygen itself reads as such.
#[test]
fn an_rsa_key_made_with_openssl_reads_as_one_of_that_size() {
    if !have("openssl") || !have("ssh-keygen") {
        return;
    }
    let d = Dir::new();
    let (path, public) = ssh_rsa_public_by_openssl(&d, "small", 1024);
    assert!(public.starts_with("ssh-rsa AAAAB3NzaC1yc2E"), "{public}");
    let out = Command::new("ssh-keygen").arg("-l").arg("-f").arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.starts_with("1024 ") && text.contains("(RSA)"), "{text}");
}

/// The children of other tests must not inherit a test's terminal: the
/// fault-injection suite counts on the descriptors its tracees get.
#[test]
fn a_pty_is_not_inherited_by_children_spawned_meanwhile() {
    let inherited = || {
        let out = Command::new("sh")
            .args(["-c", "ls /proc/self/fd"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .expect("run sh");
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    let before = inherited();
    let (_controller, _terminal) = pty();
    assert_eq!(inherited(), before, "a child spawned while a pty is open gets no extra descriptor");
}

/// A directory on another file system than `near`, for as long as the value
/// lives: /dev/shm where it is a file system of its own, else a tmpfs
/// mounted for the test (root only; CI runs as root). Without either the
/// test is skipped and the skip recorded, and with CI=true it fails.
pub struct OtherFs {
    dir: Option<tempfile::TempDir>,
    mount: Option<tempfile::TempDir>,
    pub path: PathBuf,
}

pub fn other_file_system(near: &Path) -> Option<OtherFs> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(near).unwrap().dev();
    let shm = Path::new("/dev/shm");
    if shm.is_dir() && std::fs::metadata(shm).unwrap().dev() != dev {
        if let Ok(t) = tempfile::Builder::new().prefix("wmother").tempdir_in(shm) {
            let path = t.path().to_path_buf();
            return Some(OtherFs { dir: Some(t), mount: None, path });
        }
    }
    let point = tempfile::Builder::new().prefix("wmmount").tempdir().unwrap();
    let mounted = nix::unistd::geteuid().is_root()
        && Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs"])
            .arg(point.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if mounted && std::fs::metadata(point.path()).unwrap().dev() != dev {
        let path = point.path().to_path_buf();
        return Some(OtherFs { dir: None, mount: Some(point), path });
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("no second file system: /dev/shm is on the same one and `mount -t tmpfs` needs root");
    }
    eprintln!("SKIPPED: no second file system (/dev/shm is not one, and mounting a tmpfs needs root)");
    record_skip("no second file system", Skip::Test);
    None
}

impl Drop for OtherFs {
    fn drop(&mut self) {
        drop(self.dir.take());
        if let Some(point) = self.mount.take() {
            let _ = Command::new("umount").arg(point.path()).status();
        }
    }
}

/// An SSH RSA public key of `bits` bits in `NAME.pub`, and its line: made
/// by ssh-keygen, or, where ssh-keygen refuses the size (a policy may
/// forbid RSA-1024), from an RSA key made by `openssl genrsa`, its modulus
/// written out in SSH's wire format. A test needs only the public half.
pub fn ssh_rsa_public(d: &Dir, name: &str, bits: u32) -> (PathBuf, String) {
    if let Some((_, public)) = ssh_keygen(d, name, "", &["-t", "rsa", "-b", &bits.to_string()]) {
        return (d.join(&format!("{name}.pub")), public);
    }
    ssh_rsa_public_by_openssl(d, name, bits)
}

fn ssh_rsa_public_by_openssl(d: &Dir, name: &str, bits: u32) -> (PathBuf, String) {
    assert!(have("openssl"), "openssl is needed to make an RSA-{bits} key that ssh-keygen refuses");
    let out = Command::new("sh")
        .args(["-c", &format!("openssl genrsa {bits} 2>/dev/null | openssl rsa -noout -modulus")])
        .output()
        .expect("run openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text.trim().strip_prefix("Modulus=").unwrap_or_else(|| panic!("openssl: {text:?}"));
    let modulus: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    // string "ssh-rsa", mpint e, mpint n (a leading zero keeps it positive).
    let mut blob = Vec::new();
    let mut put = |bytes: &[u8]| {
        blob.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        blob.extend_from_slice(bytes);
    };
    put(b"ssh-rsa");
    put(&[0x01, 0x00, 0x01]);
    put(&[&[0u8][..], &modulus].concat());
    let public = format!("ssh-rsa {} wm-test", base64(&blob));
    let path = d.write(&format!("{name}.pub"), format!("{public}\n"));
    (path, public)
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Whether the file system under `dir` takes `O_DIRECT` (tmpfs before Linux 6.6 does not).
#[cfg(target_os = "linux")]
pub fn direct_io_works(dir: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    let probe = dir.join(".direct-probe");
    let ok = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(nix::libc::O_DIRECT)
        .open(&probe)
        .is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

/// How many of a file's pages are in the page cache, of how many (`mincore`).
#[cfg(target_os = "linux")]
pub fn cached_pages(path: &Path) -> (usize, usize) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len() as usize;
    let pages = len.div_ceil(4096);
    // SAFETY: a read-only shared mapping of a file we opened, unmapped below;
    // mincore fills one byte per page into a vector of that length.
    unsafe {
        let map =
            nix::libc::mmap(std::ptr::null_mut(), len, nix::libc::PROT_READ, nix::libc::MAP_SHARED, f.as_raw_fd(), 0);
        assert_ne!(map, nix::libc::MAP_FAILED);
        let mut resident = vec![0u8; pages];
        assert_eq!(nix::libc::mincore(map, len, resident.as_mut_ptr()), 0);
        nix::libc::munmap(map, len);
        (resident.iter().filter(|b| *b & 1 == 1).count(), pages)
    }
}

/// No `O_DIRECT` is probed off Linux: the tests that need it do not run there.
#[cfg(not(target_os = "linux"))]
pub fn direct_io_works(_dir: &Path) -> bool {
    false
}

/// Read only on Linux, where [`direct_io_works`] can say yes.
#[cfg(not(target_os = "linux"))]
pub fn cached_pages(path: &Path) -> (usize, usize) {
    panic!("page-cache residency of {} is read on Linux only", path.display())
}
