//! Hostile directories: a root run never touches a file outside the
//! directory it was given, whatever another user who can write that
//! directory does meanwhile.
//!
//! Each writer runs as root in a directory owned by an unprivileged user
//! (uid/gid 65534), while a process of that user swaps the names the run
//! uses (final names, `.NAME.<hex>.tmp` temporaries, `-wal`/`-shm`/
//! `-journal`, `.pre-restore-*` names, the predictable timestamped names)
//! for a symlink (to canary files and a directory in a root-owned directory
//! outside, or dangling into it), a hard link (to that user's own file
//! outside), a FIFO or a directory. The swaps are driven by inotify events
//! (a name appears, is opened, renamed, removed) and at random moments.
//! Everything outside the directory is stat'ed and checksummed before and
//! after each trial: a file created, changed or removed there counts.
//!
//! A trial counts only if a swap landed while the tool was at work (between
//! its start and its exit). Figures per writer: counted trials, swaps that
//! landed, files outside touched (must be 0), runs that refused, runs that
//! completed, completed runs whose output is right (decrypts to the input /
//! integrity ok with the expected rows), completed runs that left a wrong
//! file of their own (must be 0), hangs and crashes (must be 0: a FIFO must
//! never hang a run; every run has a deadline). `make reliability` runs at
//! least 100 counted trials per writer; `make test` a few. By hand:
//! `WM_HOSTILE_TRIALS=N`, `WM_HOSTILE_ONLY=TEXT` (writers whose label holds
//! TEXT), `WM_HOSTILE_VERBOSE=1` (refusals by message, names taken over).
//!
//! The core-dump test is here too: a tool aborted (SIGABRT) while it holds
//! plaintext and an identity must leave no core holding either.
//!
//! Both need root: skipped otherwise, and failed when CI=true.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::fcntl::{renameat2, OFlag, RenameFlags};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Pid, Uid};

use crate::fixture::{self, Counts};
use crate::harness::*;

/// The unprivileged user ("nobody") who owns the directory and races the run.
const OTHER: u32 = 65534;

/// Runs need root to mean anything: skipped (and recorded) otherwise; a
/// failure when CI=true.
fn root_or_skip() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("the hostile-directory tests need root when CI=true (run the suite as root)");
    }
    eprintln!("SKIPPED: the hostile-directory tests need root");
    record_skip("not root", Skip::Test);
    false
}

/// One clock for the test process and the forked racer (CLOCK_MONOTONIC is
/// system-wide; the Instant is copied into the child by fork).
static EPOCH: OnceLock<Instant> = OnceLock::new();

fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

// ---------------------------------------------------------------------------
// The world: inputs and canaries owned by root, the hostile directory.

struct World {
    _dir: Dir,
    base: PathBuf,
    /// The directory the runs are given: owned by the other user.
    work: PathBuf,
    /// Root-owned canaries: files, a directory, the other user's own file.
    outside: PathBuf,
    /// Where the test reads outputs back (root-owned, 0700; not watched).
    scratch: PathBuf,
    identity: age::x25519::Identity,
    key: PathBuf,
    recipient: String,
    source: PathBuf,
    source_counts: Counts,
    backup: PathBuf,
    old_db: PathBuf,
    raw: Vec<u8>,
    /// The file system everything is on.
    dev: u64,
    /// Everything outside `work` and `scratch`, as it was at the start.
    before: Seen,
}

fn chown_other(p: &Path) {
    nix::unistd::chown(p, Some(Uid::from_raw(OTHER)), Some(Gid::from_raw(OTHER))).unwrap();
}

fn set_mode(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl World {
    fn new() -> World {
        let dir = Dir::new();
        let base = dir.path.canonicalize().unwrap();
        let work = base.join("work");
        let outside = base.join("outside");
        let inputs = base.join("in");
        let scratch = base.join("scratch");
        for d in [&work, &outside, &inputs, &scratch] {
            std::fs::create_dir(d).unwrap();
        }
        set_mode(&work, 0o755);
        chown_other(&work);
        set_mode(&inputs, 0o700);
        set_mode(&scratch, 0o700);
        plant_canaries(&outside);

        let identity = age::x25519::Identity::generate();
        let secret = {
            use age::secrecy::ExposeSecret;
            identity.to_string().expose_secret().to_string()
        };
        let recipient = identity.to_public().to_string();
        let key = inputs.join("key.txt");
        std::fs::write(&key, format!("{secret}\n")).unwrap();
        set_mode(&key, 0o600);

        // Rollback mode: reading it leaves nothing beside it.
        let source = inputs.join("memory.db");
        let source_counts = fixture::create(&source, 600_000, false, 42).expect("fixture");
        let old_db = inputs.join("old.db");
        fixture::create(&old_db, 200_000, true, 7).expect("fixture");
        let backup = inputs.join("backup.age");
        let out = Command::new(WM_SEAL)
            .args(["-q", "-r", &recipient, "--to"])
            .arg(&backup)
            .stdin(File::open(&source).unwrap())
            .output()
            .unwrap();
        assert!(out.status.success(), "sealing the restore's backup: {}", String::from_utf8_lossy(&out.stderr));
        let raw = bytes(200_000, 9);
        let dev = std::fs::metadata(&base).unwrap().dev();
        let mut w = World {
            _dir: dir,
            base,
            work,
            outside,
            scratch,
            identity,
            key,
            recipient,
            source,
            source_counts,
            backup,
            old_db,
            raw,
            dev,
            before: Seen::new(),
        };
        w.before = w.look();
        w
    }

    /// Everything below the base but the hostile directory and the scratch one.
    fn look(&self) -> Seen {
        let mut seen = Seen::new();
        look(&self.base, &self.base, &[self.work.clone(), self.scratch.clone()], &mut seen);
        seen
    }

    /// What changed outside since the start: one line per file.
    fn touched_outside(&self) -> Vec<String> {
        diff(&self.before, &self.look())
    }

    /// The canaries again, after a trial touched them (so that one escape
    /// is not counted again by every later trial).
    fn reset_outside(&mut self) {
        std::fs::remove_dir_all(&self.outside).unwrap();
        std::fs::create_dir(&self.outside).unwrap();
        plant_canaries(&self.outside);
        // The inputs are rebuilt only by a new world; a touched input fails the trial anyway.
        self.before = self.look();
    }

    /// Empties the hostile directory (as root; nothing below it is followed).
    fn clean_work(&self) {
        for e in std::fs::read_dir(&self.work).unwrap().flatten() {
            let p = e.path();
            let is_dir = std::fs::symlink_metadata(&p).map(|m| m.is_dir()).unwrap_or(false);
            let r = if is_dir { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            r.unwrap_or_else(|e| panic!("cleaning {}: {e}", p.display()));
        }
    }

    /// The (device, inode) of every canary file as planted: a name in the
    /// hostile directory that is one of them is the other user's hard link
    /// (also after a run replaced the canary's name outside).
    fn canary_inodes(&self) -> BTreeSet<(u64, u64)> {
        let mut v = BTreeSet::new();
        for what in self.before.values() {
            if what.starts_with("file ") {
                if let Some(ino) = what.split(" inode ").nth(1).and_then(|r| r.split(' ').next()?.parse().ok()) {
                    v.insert((self.dev, ino));
                }
            }
        }
        v
    }
}

/// The canaries: a root file, a root secret, a directory with a file in it,
/// and a file of the other user's own (the only kind it may hard-link).
fn plant_canaries(outside: &Path) {
    set_mode(outside, 0o755);
    std::fs::write(outside.join("canary"), "a root-owned file outside the directory\n").unwrap();
    set_mode(&outside.join("canary"), 0o644);
    std::fs::write(outside.join("secret.db.age"), bytes(4096, 3)).unwrap();
    set_mode(&outside.join("secret.db.age"), 0o600);
    std::fs::create_dir(outside.join("dir")).unwrap();
    std::fs::write(outside.join("dir/inner"), "inside a root-owned directory\n").unwrap();
    std::fs::write(outside.join("nobody-owned"), "the other user's own file, elsewhere\n").unwrap();
    set_mode(&outside.join("nobody-owned"), 0o644);
    chown_other(&outside.join("nobody-owned"));
}

/// Relative path -> what a change would alter: type, mode, owner, size,
/// mtime, inode, link count, content (or link target).
type Seen = BTreeMap<String, String>;

fn look(root: &Path, dir: &Path, skip: &[PathBuf], out: &mut Seen) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if skip.contains(&p) {
            continue;
        }
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
        let ft = m.file_type();
        let what = if ft.is_symlink() {
            format!("link -> {}", std::fs::read_link(&p).map(|t| t.display().to_string()).unwrap_or_default())
        } else if ft.is_dir() {
            "dir".to_string()
        } else if ft.is_file() {
            format!("file {}", sha256_file(&p))
        } else {
            "special".to_string()
        };
        out.insert(
            rel,
            format!(
                "{what} mode {:o} owner {}:{} size {} mtime {}.{} inode {} links {}",
                m.mode(),
                m.uid(),
                m.gid(),
                m.len(),
                m.mtime(),
                m.mtime_nsec(),
                m.ino(),
                m.nlink()
            ),
        );
        if ft.is_dir() {
            look(root, &p, skip, out);
        }
    }
}

fn diff(before: &Seen, after: &Seen) -> Vec<String> {
    let mut d = Vec::new();
    for (k, v) in after {
        match before.get(k) {
            None => d.push(format!("created {k}: {v}")),
            Some(b) if b != v => d.push(format!("changed {k}: {b} => {v}")),
            _ => {}
        }
    }
    for k in before.keys().filter(|k| !after.contains_key(*k)) {
        d.push(format!("removed {k}"));
    }
    d
}

// ---------------------------------------------------------------------------
// The writers.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tool {
    SealFile,
    SealDir,
    BackupVacuum,
    BackupPages,
    Snapshot,
    Restore,
    Prune,
    Metrics,
}

const TOOLS: [Tool; 8] = [
    Tool::SealFile,
    Tool::SealDir,
    Tool::BackupVacuum,
    Tool::BackupPages,
    Tool::Snapshot,
    Tool::Restore,
    Tool::Prune,
    Tool::Metrics,
];

impl Tool {
    fn label(self) -> &'static str {
        match self {
            Tool::SealFile => "wm-seal --to FILE",
            Tool::SealDir => "wm-seal --to DIR/",
            Tool::BackupVacuum => "workmem-backup (vacuum)",
            Tool::BackupPages => "workmem-backup --method pages",
            Tool::Snapshot => "wm-snapshot --to",
            Tool::Restore => "wm-restore",
            Tool::Prune => "wm-prune --delete",
            Tool::Metrics => "workmem-backup --metrics-file",
        }
    }
}

/// What a completed run must have left.
enum Expect {
    /// An age file (at this name, or where the JSON report says) that
    /// decrypts to the raw input, or to a database with the source's rows.
    Age { name: Option<String>, raw: bool },
    /// A plaintext snapshot with the source's rows.
    Db { name: Option<String> },
    /// `memory.db` holds the backup's rows.
    Restored,
    /// Every backup the policy keeps is still there (by inode).
    Kept(BTreeSet<u64>),
    /// The metrics file says the run succeeded.
    Metrics,
}

struct Prepared {
    cmd: Command,
    stdin: Option<Vec<u8>>,
    /// Names the other user predicts and plants from the start.
    plants: Vec<String>,
    expect: Expect,
}

/// `STEM-STAMP.EXT` for the seconds around now: the predictable names.
fn stamped(stem: &str, ext: &str) -> Vec<String> {
    let t = unix_now();
    (t - 1..=t + 2).map(|t| backup_name(stem, t, ext)).collect()
}

fn prepare(w: &World, tool: Tool, rng: &mut fixture::Rng) -> Prepared {
    let work = &w.work;
    let to_dir = rng.below(2) == 0;
    let mut cmd;
    let mut stdin = None;
    let plants;
    let expect;
    match tool {
        Tool::SealFile | Tool::SealDir => {
            cmd = Command::new(WM_SEAL);
            cmd.args(["--raw", "--json", "-r", &w.recipient, "--to"]);
            if tool == Tool::SealFile {
                cmd.arg(work.join("out.age"));
                plants = vec!["out.age".to_string()];
                expect = Expect::Age { name: Some("out.age".into()), raw: true };
            } else {
                cmd.arg(format!("{}/", work.display()));
                plants = stamped("backup", "db.age");
                expect = Expect::Age { name: None, raw: true };
            }
            stdin = Some(w.raw.clone());
        }
        Tool::BackupVacuum | Tool::BackupPages | Tool::Metrics => {
            cmd = Command::new(WORKMEM_BACKUP);
            cmd.args(["--json", "-r", &w.recipient, "--db"]).arg(&w.source);
            if tool == Tool::BackupPages {
                cmd.args(["--method", "pages"]);
            }
            let mut p = Vec::new();
            if to_dir && tool != Tool::Metrics {
                cmd.arg("--to").arg(format!("{}/", work.display()));
                p.extend(stamped("memory", "db.age"));
                expect = Expect::Age { name: None, raw: false };
            } else {
                cmd.arg("--to").arg(work.join("out.db.age"));
                p.push("out.db.age".to_string());
                expect = if tool == Tool::Metrics {
                    Expect::Metrics
                } else {
                    Expect::Age { name: Some("out.db.age".into()), raw: false }
                };
            }
            if tool == Tool::Metrics {
                cmd.arg("--metrics-file").arg(work.join("metrics.prom"));
                p.push("metrics.prom".to_string());
            }
            plants = p;
        }
        Tool::Snapshot => {
            cmd = Command::new(WM_SNAPSHOT);
            cmd.args(["--json", "--db"]).arg(&w.source).arg("--to");
            if to_dir {
                cmd.arg(format!("{}/", work.display()));
                plants = stamped("memory", "db");
                expect = Expect::Db { name: None };
            } else {
                cmd.arg(work.join("snap.db"));
                plants = vec!["snap.db".to_string()];
                expect = Expect::Db { name: Some("snap.db".into()) };
            }
        }
        Tool::Restore => {
            // The service user's database, as the server left it.
            let db = work.join("memory.db");
            std::fs::copy(&w.old_db, &db).unwrap();
            set_mode(&db, 0o640);
            chown_other(&db);
            cmd = Command::new(WM_RESTORE);
            cmd.args(["--json", "-i"]).arg(&w.key).arg("--db").arg(&db).arg(&w.backup);
            let mut p: Vec<String> = ["memory.db", "memory.db-wal", "memory.db-shm", "memory.db-journal"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            let t = unix_now();
            for t in t - 1..=t + 2 {
                let stamp = wmbackup::clock::Utc::from_unix(t).stamp();
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    p.push(format!("memory.db.pre-restore-{stamp}{suffix}"));
                }
            }
            plants = p;
            expect = Expect::Restored;
        }
        Tool::Prune => {
            // Eight backups an hour apart, made by root; the newest three stay.
            let mut names = Vec::new();
            for h in 0..8 {
                let name = backup_name("backup", 1_767_225_600 + h * 3600, "db.age");
                let p = work.join(&name);
                std::fs::write(&p, bytes(1000, h as u64)).unwrap();
                set_mode(&p, 0o600);
                names.push(name);
            }
            let kept = names[5..].iter().map(|n| std::fs::metadata(work.join(n)).unwrap().ino()).collect();
            cmd = Command::new(WM_PRUNE);
            cmd.args(["--json", "--keep-last", "3", "--delete"]).arg(format!("{}/", work.display()));
            plants = names;
            expect = Expect::Kept(kept);
        }
    }
    cmd.current_dir(&w.base).env_remove("MEMORY_DB_PATH").env_remove("RUST_BACKTRACE").env("TMPDIR", &w.scratch);
    Prepared { cmd, stdin, plants, expect }
}

// ---------------------------------------------------------------------------
// The other user's process.

/// How the racer picks its moments.
#[derive(Clone, Copy)]
enum Drive {
    Inotify,
    Random,
    Both,
}

/// What replaces a name.
const KINDS: [&str; 8] = [
    "symlink to a root file outside",
    "symlink to the other user's file outside",
    "dangling symlink outside",
    "symlink to a directory outside",
    "hard link to the other user's file outside",
    "FIFO",
    "directory",
    "dangling relative symlink outside",
];

/// One record the racer sends per swap that landed: when, what, where.
const RECORD: usize = 64;
const READY: u8 = 255;

struct Swap {
    at: u64,
    kind: u8,
    name: String,
}

struct Racer {
    pid: Pid,
    go: OwnedFd,
    records: mpsc::Receiver<Swap>,
    stopped: bool,
}

/// Forks the racer: it drops to the other user, watches the directory,
/// says it is ready, waits for "go", then swaps until it is killed.
fn start_racer(w: &World, plants: &[String], drive: Drive, seed: u64) -> Racer {
    EPOCH.get_or_init(Instant::now);
    let parent = nix::unistd::getpid();
    let (go_r, go_w) = pipe_cloexec();
    let (rec_r, rec_w) = pipe_cloexec();
    let links = Links {
        root_file: w.outside.join("canary"),
        other_file: w.outside.join("nobody-owned"),
        dir: w.outside.join("dir"),
        dangling: (0..4).map(|i| w.outside.join(format!("absent-{i}"))).collect(),
        relative: "../outside/dir/absent".into(),
    };
    let plants: Vec<OsString> = plants.iter().map(OsString::from).collect();
    // SAFETY: the child only makes system calls and allocates (glibc's
    // malloc is usable after fork); it never returns, never prints, and
    // ends with _exit.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            let plan = Plan { work: &w.work, links: &links, plants: &plants, drive, seed, parent };
            let code = match race(&plan, &go_r, &rec_w) {
                Ok(()) => 0,
                Err(_) => 3,
            };
            // SAFETY: ends the forked child without running the parent's exit handlers.
            unsafe { nix::libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(go_r);
            drop(rec_w);
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let mut f = File::from(rec_r);
                let mut buf = [0u8; RECORD];
                while f.read_exact(&mut buf).is_ok() {
                    let at = u64::from_le_bytes(buf[..8].try_into().unwrap());
                    let len = buf[9] as usize;
                    let name = String::from_utf8_lossy(&buf[10..10 + len]).into_owned();
                    if tx.send(Swap { at, kind: buf[8], name }).is_err() {
                        break;
                    }
                }
            });
            let ready = rx.recv_timeout(Duration::from_secs(10)).map(|s| s.kind);
            if ready != Ok(READY) {
                let _ = kill(child, Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(child, None);
                panic!("the racer did not start (as uid {OTHER})");
            }
            Racer { pid: child, go: go_w, records: rx, stopped: false }
        }
    }
}

impl Racer {
    fn go(&self) {
        nix::unistd::write(&self.go, b"g").expect("telling the racer to go");
    }

    /// Kills the racer; every swap it made.
    fn stop(&mut self) -> Vec<Swap> {
        self.end();
        self.records.iter().collect()
    }

    fn end(&mut self) {
        if !self.stopped {
            self.stopped = true;
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(self.pid, None);
        }
    }
}

/// A trial that fails half-way leaves no racer behind.
impl Drop for Racer {
    fn drop(&mut self) {
        self.end();
    }
}

struct Links {
    root_file: PathBuf,
    other_file: PathBuf,
    dir: PathBuf,
    dangling: Vec<PathBuf>,
    relative: PathBuf,
}

/// What one racer does: where, with what, which names first, when, and
/// the test process it dies with.
struct Plan<'a> {
    work: &'a Path,
    links: &'a Links,
    plants: &'a [OsString],
    drive: Drive,
    seed: u64,
    parent: Pid,
}

/// The racer's body, in the forked child.
fn race(plan: &Plan<'_>, go: &OwnedFd, rec: &OwnedFd) -> nix::Result<()> {
    let Plan { work, links, plants, drive, seed, parent } = *plan;
    // Nothing of the test process's stays open here: another test's files
    // and pipes must not look held by this process.
    let keep = [go.as_raw_fd(), rec.as_raw_fd()];
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|rd| rd.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    for fd in fds {
        if fd > 2 && !keep.contains(&fd) {
            let _ = nix::unistd::close(fd);
        }
    }
    nix::unistd::setgroups(&[Gid::from_raw(OTHER)])?;
    nix::unistd::setgid(Gid::from_raw(OTHER))?;
    nix::unistd::setuid(Uid::from_raw(OTHER))?;
    // Gone with the test process, whatever ends it (after setuid, which
    // clears the setting); a parent already gone: stop now.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    if nix::unistd::getppid() != parent {
        return Ok(());
    }
    let dir =
        File::from(nix::fcntl::open(work, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?);
    let watch = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
    watch.add_watch(
        work,
        AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_OPEN
            | AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_ATTRIB,
    )?;
    let mut rng = fixture::Rng::new(seed);
    // Some trials swap once or twice only, so that runs also get past the
    // swaps and complete (a racer that never stops makes nearly every
    // restore refuse).
    let budget = [1, 2, 4, u32::MAX][rng.below(4) as usize];
    let mut st = State { dir, links, rec, n: 0, per_name: BTreeMap::new(), budget, landed: 0 };
    st.send(READY, OsStr::new(""))?;
    let mut b = [0u8; 1];
    nix::unistd::read(go, &mut b)?;
    // Up to two predicted names planted at once, as the tool starts (more
    // would make most runs refuse at their first look, before the races
    // that matter).
    if !plants.is_empty() {
        for _ in 0..rng.below(3) {
            let name = &plants[rng.below(plants.len() as u64) as usize];
            let kind = rng.below(KINDS.len() as u64) as u8;
            st.swap(name, kind)?;
        }
    }
    let (events, random) = match drive {
        Drive::Inotify => (true, false),
        Drive::Random => (false, true),
        Drive::Both => (true, true),
    };
    loop {
        let wait_ms: u16 = if random { rng.below(4) as u16 } else { 50 };
        let mut fds = [nix::poll::PollFd::new(watch.as_fd(), nix::poll::PollFlags::POLLIN)];
        let ready = nix::poll::poll(&mut fds, wait_ms).unwrap_or(0);
        if ready > 0 {
            let evs = watch.read_events().unwrap_or_default();
            if !events {
                continue;
            }
            for e in evs {
                let Some(name) = e.name else { continue };
                // The racer's own names, and the "#INODE" names inotify gives unnamed files.
                if name.as_bytes().starts_with(b"zz-atk-") || name.as_bytes().starts_with(b"#") {
                    continue;
                }
                let seen = st.per_name.entry(name.clone()).or_insert(0);
                if *seen >= 3 {
                    continue;
                }
                *seen += 1;
                let kind = rng.below(KINDS.len() as u64) as u8;
                st.swap(&name, kind)?;
            }
        } else if random {
            // A name the run uses or will use: what is there, or a prediction.
            let mut names: Vec<OsString> =
                std::fs::read_dir(work).map(|rd| rd.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
            names.retain(|n| !n.as_bytes().starts_with(b"zz-atk-"));
            names.extend(plants.iter().cloned());
            if names.is_empty() {
                continue;
            }
            let name = names[rng.below(names.len() as u64) as usize].clone();
            let kind = rng.below(KINDS.len() as u64) as u8;
            st.swap(&name, kind)?;
        }
    }
}

struct State<'a> {
    dir: File,
    links: &'a Links,
    rec: &'a OwnedFd,
    n: u64,
    per_name: BTreeMap<OsString, u32>,
    /// How many swaps this trial's racer makes at most, and has made.
    budget: u32,
    landed: u32,
}

impl State<'_> {
    fn send(&self, kind: u8, name: &OsStr) -> nix::Result<()> {
        let mut buf = [0u8; RECORD];
        buf[..8].copy_from_slice(&now_ns().to_le_bytes());
        buf[8] = kind;
        let n = name.as_bytes();
        let len = n.len().min(RECORD - 10);
        buf[9] = len as u8;
        buf[10..10 + len].copy_from_slice(&n[..len]);
        nix::unistd::write(self.rec, &buf).map(|_| ())
    }

    /// Puts a hostile object of `kind` at `name`: made under a name of the
    /// racer's, then exchanged with what is at `name` (or renamed there
    /// when nothing is). Records it when it landed.
    fn swap(&mut self, name: &OsStr, kind: u8) -> nix::Result<()> {
        if self.landed >= self.budget {
            return Ok(());
        }
        let stage = format!("zz-atk-{}", self.n);
        self.n += 1;
        let l = self.links;
        let made = match kind {
            0 => nix::unistd::symlinkat(&l.root_file, &self.dir, stage.as_str()),
            1 => nix::unistd::symlinkat(&l.other_file, &self.dir, stage.as_str()),
            2 => nix::unistd::symlinkat(&l.dangling[(self.n % 4) as usize], &self.dir, stage.as_str()),
            3 => nix::unistd::symlinkat(&l.dir, &self.dir, stage.as_str()),
            4 => nix::unistd::linkat(&self.dir, &l.other_file, &self.dir, stage.as_str(), nix::fcntl::AtFlags::empty()),
            5 => nix::unistd::mkfifoat(&self.dir, stage.as_str(), Mode::from_bits_truncate(0o666)),
            6 => nix::sys::stat::mkdirat(&self.dir, stage.as_str(), Mode::from_bits_truncate(0o777)),
            _ => nix::unistd::symlinkat(&l.relative, &self.dir, stage.as_str()),
        };
        if made.is_err() {
            return Ok(());
        }
        let landed = match renameat2(&self.dir, stage.as_str(), &self.dir, name, RenameFlags::RENAME_EXCHANGE) {
            Ok(()) => true,
            Err(nix::errno::Errno::ENOENT) => {
                renameat2(&self.dir, stage.as_str(), &self.dir, name, RenameFlags::RENAME_NOREPLACE).is_ok()
            }
            Err(_) => false,
        };
        if landed {
            self.landed += 1;
            self.send(kind, name)
        } else {
            let flag =
                if kind == 6 { nix::unistd::UnlinkatFlags::RemoveDir } else { nix::unistd::UnlinkatFlags::NoRemoveDir };
            let _ = nix::unistd::unlinkat(&self.dir, stage.as_str(), flag);
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------
// Trials.

#[derive(Default)]
struct Figures {
    attempts: u64,
    counted: u64,
    swaps: u64,
    outside: u64,
    refused: u64,
    completed: u64,
    right: u64,
    replaced: u64,
    wrong: u64,
    hangs: u64,
    crashes: u64,
    by_kind: [u64; KINDS.len()],
    by_name: [u64; NAMES.len()],
    /// Why runs refused: the error with digits blurred, and how often.
    reasons: BTreeMap<String, u64>,
}

/// The output of a completed run.
enum Judged {
    Right,
    /// The name holds the other user's object after the run (it swapped
    /// after the run's last step, e.g. right after the rename), and the
    /// run's file is not under one of the other user's names either.
    Replaced(String),
    /// A file the run made, with the wrong content: never acceptable.
    Wrong(String),
}

/// The deadline of one run: a FIFO or anything else must never hang it.
const RUN_LIMIT: Duration = Duration::from_secs(30);

fn trial(w: &mut World, tool: Tool, i: u64, f: &mut Figures) {
    // xorshift's first outputs keep the seed's low bits: spread the seed, skip a few.
    let mut rng = fixture::Rng::new((i * 8 + tool as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    for _ in 0..4 {
        rng.next();
    }
    let drive = [Drive::Inotify, Drive::Random, Drive::Both][(i % 3) as usize];
    let mut p = prepare(w, tool, &mut rng);
    let mut racer = start_racer(w, &p.plants, drive, rng.next());
    p.cmd.stdin(if p.stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    p.cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let t0 = now_ns();
    let mut child = p.cmd.spawn().expect("spawn the tool");
    racer.go();
    if let Some(data) = p.stdin.take() {
        let mut s = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let _ = s.write_all(&data);
        });
    }
    // A watchdog kills a run that outlives its deadline.
    let pid = Pid::from_raw(child.id() as i32);
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(RUN_LIMIT) == Err(mpsc::RecvTimeoutError::Timeout) {
            let _ = kill(pid, Signal::SIGKILL);
            return true;
        }
        false
    });
    let out = child.wait_with_output().expect("wait for the tool");
    let t1 = now_ns();
    let swaps = racer.stop();
    let _ = done_tx.send(());
    let hung = watchdog.join().unwrap_or(true);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();

    f.attempts += 1;
    let during: Vec<&Swap> = swaps.iter().filter(|s| s.kind != READY && s.at >= t0 && s.at <= t1).collect();
    let judged = if out.status.success() { Some(judge(w, &p.expect, &stderr)) } else { None };
    w.clean_work();
    let touched = w.touched_outside();
    if !touched.is_empty() {
        let names: Vec<String> = during.iter().map(|s| format!("{} at {}", KINDS[s.kind as usize], s.name)).collect();
        eprintln!(
            "{}: trial {i}: outside the directory: {}; exit {:?}; swaps: {}; stderr: {}",
            tool.label(),
            touched.join("; "),
            out.status.code(),
            names.join(", "),
            stderr.trim()
        );
        w.reset_outside();
    }
    // Files touched outside, hangs and crashes count whether or not a swap
    // was timed inside the run; the rest only in counted trials.
    f.outside += touched.len() as u64;
    let crashed = !hung && (out.status.signal().is_some() || stderr.contains("panicked"));
    if hung {
        f.hangs += 1;
        eprintln!("{}: trial {i}: the run hung past {RUN_LIMIT:?}", tool.label());
    } else if crashed {
        f.crashes += 1;
        eprintln!("{}: trial {i}: crashed: {:?}: {}", tool.label(), out.status, stderr.trim());
    }
    if during.is_empty() {
        return;
    }
    f.counted += 1;
    f.swaps += during.len() as u64;
    for s in &during {
        f.by_kind[s.kind as usize] += 1;
        f.by_name[name_class(&s.name)] += 1;
    }
    if hung || crashed {
        return;
    }
    if !out.status.success() {
        f.refused += 1;
        *f.reasons.entry(reason(&stderr)).or_insert(0) += 1;
    } else {
        f.completed += 1;
        match judged {
            Some(Judged::Right) => f.right += 1,
            Some(Judged::Replaced(why)) => {
                f.replaced += 1;
                if std::env::var("WM_HOSTILE_VERBOSE").is_ok() {
                    eprintln!("{}: trial {i}: replaced after the run: {why}", tool.label());
                }
            }
            Some(Judged::Wrong(why)) => {
                f.wrong += 1;
                eprintln!("{}: trial {i}: completed with a wrong file: {why}; stderr: {}", tool.label(), stderr.trim());
            }
            None => {}
        }
    }
}

/// The kinds of names a run uses, as the table counts the swaps at them.
const NAMES: [&str; 5] = [
    "a final name (--to FILE, the database, the metrics file)",
    "a .NAME.<hex>.tmp temporary",
    "a -wal, -shm or -journal name",
    "a .pre-restore-* name",
    "a timestamped STEM-YYYYMMDDTHHMMSSZ name",
];

fn name_class(name: &str) -> usize {
    let stamped = name.as_bytes().windows(17).any(|w| {
        w[0] == b'-'
            && w[1..9].iter().all(u8::is_ascii_digit)
            && w[9] == b'T'
            && w[10..16].iter().all(u8::is_ascii_digit)
            && w[16] == b'Z'
    });
    if is_hidden_temp(name) {
        1
    } else if name.contains(".pre-restore-") {
        3
    } else if name.ends_with("-wal") || name.ends_with("-shm") || name.ends_with("-journal") {
        2
    } else if stamped {
        4
    } else {
        0
    }
}

/// A refusal's message, without the JSON around it and with digits
/// blurred, so that the same reason is counted once.
fn reason(stderr: &str) -> String {
    let line = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    let text = serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| line.to_string());
    text.chars().map(|c| if c.is_ascii_digit() { '#' } else { c }).collect()
}

/// The last JSON object the run printed (stderr for the writers).
fn destination(stderr: &str) -> Option<PathBuf> {
    let line = stderr.lines().rev().find(|l| l.starts_with('{'))?;
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    Some(PathBuf::from(v.get("destination")?.as_str()?))
}

/// Where a completed run's file is, and whether it is one the run made.
fn own_file(w: &World, name: &Option<String>, stderr: &str) -> Result<PathBuf, Judged> {
    let path = match name {
        Some(n) => w.work.join(n),
        None => match destination(stderr) {
            Some(d) => d,
            None => return Err(Judged::Wrong(format!("no destination in the report: {}", stderr.trim()))),
        },
    };
    if path.parent() != Some(w.work.as_path()) {
        return Err(Judged::Wrong(format!("the report names {} outside the directory", path.display())));
    }
    let m = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) => return Err(Judged::Replaced(format!("{}: {e}", path.display()))),
    };
    if !m.file_type().is_file() {
        let what = match std::fs::read_link(&path) {
            Ok(t) => format!("a symlink to {}", t.display()),
            Err(_) if m.is_dir() => "a directory".to_string(),
            Err(_) => format!("a {:?}", m.file_type()),
        };
        return Err(Judged::Replaced(format!("{} is {what}", path.display())));
    }
    if w.canary_inodes().contains(&(m.dev(), m.ino())) {
        return Err(Judged::Replaced(format!("{} is a hard link to a file outside", path.display())));
    }
    Ok(path)
}

/// Whether a database file is whole and holds the source's rows (read from
/// a copy, so that nothing is created beside it).
fn db_right(w: &World, p: &Path) -> Result<(), String> {
    let copy = w.scratch.join("check.db");
    let _ = std::fs::remove_file(&copy);
    std::fs::copy(p, &copy).map_err(|e| e.to_string())?;
    let conn = rusqlite::Connection::open_with_flags(&copy, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| e.to_string())?;
    let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).map_err(|e| e.to_string())?;
    let counts = fixture::counts(&conn).map_err(|e| e.to_string())?;
    drop(conn);
    let _ = std::fs::remove_file(&copy);
    if ok != "ok" {
        return Err(format!("integrity_check: {ok}"));
    }
    if counts != w.source_counts {
        return Err(format!("rows {counts:?}, expected {:?}", w.source_counts));
    }
    Ok(())
}

/// Whether `path` is the file the run should have made.
fn check(w: &World, expect: &Expect, path: &Path) -> Result<(), String> {
    match expect {
        Expect::Age { raw, .. } => {
            let plain = decrypt(&w.identity, path)?;
            if *raw {
                return if plain == w.raw { Ok(()) } else { Err("not the input".into()) };
            }
            let p = w.scratch.join("plain.db");
            std::fs::write(&p, &plain).unwrap();
            let r = db_right(w, &p);
            let _ = std::fs::remove_file(&p);
            r
        }
        Expect::Db { .. } | Expect::Restored => db_right(w, path),
        Expect::Metrics => {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.lines().any(|l| l.starts_with("workmem_backup_last_success{") && l.ends_with("} 1")) {
                Ok(())
            } else {
                Err("it does not say the run succeeded".into())
            }
        }
        Expect::Kept(_) => Ok(()),
    }
}

fn judge(w: &World, expect: &Expect, stderr: &str) -> Judged {
    let name = match expect {
        Expect::Age { name, .. } | Expect::Db { name } => name.clone(),
        Expect::Restored => Some("memory.db".into()),
        Expect::Metrics => Some("metrics.prom".into()),
        Expect::Kept(kept) => {
            let present: BTreeSet<u64> = std::fs::read_dir(&w.work)
                .unwrap()
                .flatten()
                .filter_map(|e| std::fs::symlink_metadata(e.path()).ok())
                .filter(|m| m.is_file())
                .map(|m| m.ino())
                .collect();
            let lost = kept.difference(&present).count();
            return if lost == 0 {
                Judged::Right
            } else {
                Judged::Wrong(format!("{lost} backup(s) the policy keeps were deleted"))
            };
        }
    };
    match own_file(w, &name, stderr) {
        Ok(path) => match check(w, expect, &path) {
            Ok(()) => Judged::Right,
            Err(e) => Judged::Wrong(format!("{}: {e}", path.display())),
        },
        // The other user's object is at the name: the run's file is right
        // if the other user moved it to one of its own names (an exchange).
        Err(Judged::Replaced(why)) => {
            let canaries = w.canary_inodes();
            let moved = std::fs::read_dir(&w.work).unwrap().flatten().any(|e| {
                e.file_name().as_bytes().starts_with(b"zz-atk-")
                    && std::fs::symlink_metadata(e.path())
                        .is_ok_and(|m| m.is_file() && !canaries.contains(&(m.dev(), m.ino())))
                    && check(w, expect, &e.path()).is_ok()
            });
            if moved {
                Judged::Right
            } else {
                Judged::Replaced(why)
            }
        }
        Err(j) => j,
    }
}

fn decrypt(identity: &age::x25519::Identity, p: &Path) -> Result<Vec<u8>, String> {
    let f = File::open(p).map_err(|e| e.to_string())?;
    let d = age::Decryptor::new_buffered(std::io::BufReader::new(f)).map_err(|e| e.to_string())?;
    let mut r = d.decrypt(std::iter::once(identity as &dyn age::Identity)).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

#[test]
fn a_second_user_racing_every_writer_never_makes_a_root_run_touch_a_file_outside() {
    if !root_or_skip() {
        return;
    }
    let want = if full_suite() { 100 } else { 3 };
    // WM_HOSTILE_TRIALS=N and WM_HOSTILE_ONLY=LABEL narrow a run by hand (not
    // in `make reliability`, whose table then misses the other writers).
    let want = std::env::var("WM_HOSTILE_TRIALS").ok().and_then(|n| n.parse().ok()).unwrap_or(want);
    let only = std::env::var("WM_HOSTILE_ONLY").unwrap_or_default();
    let mut w = World::new();
    let mut all: Vec<(Tool, Figures)> = Vec::new();
    for tool in TOOLS.into_iter().filter(|t| t.label().contains(only.as_str())) {
        let mut f = Figures::default();
        let mut i = 0;
        // A trial without a swap inside the run does not count: try again, within reason.
        while f.counted < want && f.attempts < want * 4 + 10 {
            trial(&mut w, tool, i, &mut f);
            i += 1;
        }
        eprintln!(
            "{}: {} trials ({} counted), {} swaps landed during runs, {} files outside touched, {} refused, {} completed ({} right, {} replaced after, {} wrong), {} hangs, {} crashes",
            tool.label(),
            f.attempts,
            f.counted,
            f.swaps,
            f.outside,
            f.refused,
            f.completed,
            f.right,
            f.replaced,
            f.wrong,
            f.hangs,
            f.crashes
        );
        if std::env::var("WM_HOSTILE_VERBOSE").is_ok() {
            for (why, n) in &f.reasons {
                eprintln!("  refused {n}x: {why}");
            }
        }
        all.push((tool, f));
    }
    let mut rows: Vec<(String, u64, Need)> = Vec::new();
    for (tool, f) in &all {
        let l = tool.label();
        rows.push((format!("{l}: trials counted"), f.counted, Need::AtLeast(want)));
        rows.push((format!("{l}: swaps landed during runs"), f.swaps, Need::AtLeast(want)));
        rows.push((format!("{l}: files outside touched"), f.outside, Need::Exactly(0)));
        rows.push((format!("{l}: refused"), f.refused, Need::Any));
        rows.push((format!("{l}: completed"), f.completed, Need::Any));
        rows.push((format!("{l}: completed, output right"), f.right, Need::Any));
        rows.push((format!("{l}: completed, name taken over afterwards"), f.replaced, Need::Any));
        rows.push((format!("{l}: completed, own file wrong"), f.wrong, Need::Exactly(0)));
        rows.push((format!("{l}: hung or crashed"), f.hangs + f.crashes, Need::Exactly(0)));
    }
    let mut kinds = [0u64; KINDS.len()];
    for (_, f) in &all {
        for (k, n) in f.by_kind.iter().enumerate() {
            kinds[k] += n;
        }
    }
    for (k, n) in kinds.iter().enumerate() {
        rows.push((format!("all writers: swaps during runs: {}", KINDS[k]), *n, Need::AtLeast(1)));
    }
    // Every kind of name was swapped; a short run may miss one.
    let need = if want >= 100 { Need::AtLeast(1) } else { Need::Any };
    for (k, label) in NAMES.iter().enumerate() {
        let n: u64 = all.iter().map(|(_, f)| f.by_name[k]).sum();
        rows.push((format!("all writers: swaps during runs at {label}"), n, need));
    }
    let rows: Vec<(&str, u64, Need)> = rows.iter().map(|(n, v, need)| (n.as_str(), *v, *need)).collect();
    record_figures_with("hostile_dirs", &rows);
}

// ---------------------------------------------------------------------------
// Core dumps.

/// Where this system puts a core, read from kernel.core_pattern: a file
/// (relative to the dumping process's working directory, or absolute), or
/// a program (`|...`), which the test cannot read without changing the
/// machine for every other process.
enum CoreSink {
    Files(PathBuf),
    Program(String),
}

fn core_sink(cwd: &Path) -> CoreSink {
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default().trim().to_string();
    if pattern.starts_with('|') {
        return CoreSink::Program(pattern);
    }
    let dir = match Path::new(&pattern).parent() {
        Some(p) if !p.as_os_str().is_empty() => cwd.join(p),
        _ => cwd.to_path_buf(),
    };
    CoreSink::Files(dir)
}

fn names_in(dir: &Path) -> BTreeSet<PathBuf> {
    std::fs::read_dir(dir).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default()
}

/// A command as the other user, with cores allowed as far as the hard limit
/// lets (the tool's own hardening must be what stops them).
fn allowing_cores(bin: &str, cwd: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.current_dir(cwd).uid(OTHER).gid(OTHER).env_remove("MEMORY_DB_PATH").env("TMPDIR", cwd);
    // SAFETY: getrlimit/setrlimit are async-signal-safe; nothing is allocated.
    unsafe {
        cmd.pre_exec(|| {
            use nix::sys::resource::{getrlimit, setrlimit, Resource};
            let (_, hard) = getrlimit(Resource::RLIMIT_CORE)?;
            setrlimit(Resource::RLIMIT_CORE, hard, hard)?;
            Ok(())
        });
    }
    cmd
}

/// The 32 bytes an `AGE-SECRET-KEY-1...` line encodes (bech32, checksum dropped).
fn identity_bytes(secret: &str) -> Vec<u8> {
    const CHARSET: &[u8] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    let lower = secret.to_ascii_lowercase();
    let data = &lower[lower.rfind('1').unwrap() + 1..];
    let five: Vec<u8> = data.bytes().map(|c| CHARSET.iter().position(|&x| x == c).unwrap() as u8).collect::<Vec<u8>>();
    let five = &five[..five.len() - 6];
    let (mut acc, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for v in five {
        acc = (acc << 5) | *v as u32;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// What /proc shows of a running process: its RLIMIT_CORE (soft), and
/// whether it is dumpable (a process that is not has its /proc files
/// owned by root, whatever user it runs as).
fn core_state(pid: u32) -> (String, bool) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .and_then(|l| l.split_whitespace().nth(4))
        .unwrap_or("?")
        .to_string();
    // Not /proc/PID itself: world-readable directories keep the real owner.
    let dumpable = std::fs::metadata(format!("/proc/{pid}/status")).map(|m| m.uid() != 0).unwrap_or(true);
    (soft, dumpable)
}

fn bytes_read(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    io.lines().find_map(|l| l.strip_prefix("rchar: ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

#[test]
fn a_tool_aborted_while_it_holds_plaintext_and_an_identity_leaves_no_core_holding_them() {
    if !root_or_skip() {
        return;
    }
    let d = Dir::new();
    let base = d.path.canonicalize().unwrap();
    // The run's world belongs to the other user: the tool runs as that user,
    // so that /proc shows whether it made itself undumpable.
    let cwd = base.join("run");
    std::fs::create_dir(&cwd).unwrap();
    set_mode(&cwd, 0o700);
    chown_other(&cwd);

    // A database with a marker in its first pages, sealed to a new identity.
    let marker = format!("WM-CORE-MARKER-{}", &sha256(&bytes(64, unix_now() as u64))[..24]);
    let db = base.join("marked.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("CREATE TABLE marker(text TEXT)").unwrap();
        conn.execute("INSERT INTO marker VALUES (?1)", [&marker]).unwrap();
    }
    fixture::create(&db, 3_000_000, false, 5).expect("fixture");
    let identity = age::x25519::Identity::generate();
    let secret = {
        use age::secrecy::ExposeSecret;
        identity.to_string().expose_secret().to_string()
    };
    let key = cwd.join("key.txt");
    std::fs::write(&key, format!("{secret}\n")).unwrap();
    set_mode(&key, 0o600);
    chown_other(&key);
    let sealed = Command::new(WM_SEAL)
        .args(["-q", "-r", &identity.to_public().to_string()])
        .stdin(File::open(&db).unwrap())
        .output()
        .unwrap();
    assert!(sealed.status.success(), "sealing: {}", String::from_utf8_lossy(&sealed.stderr));
    let ciphertext = sealed.stdout;
    let needles: Vec<(&str, Vec<u8>)> = vec![
        ("the plaintext marker", marker.clone().into_bytes()),
        ("the identity's text", secret.clone().into_bytes()),
        ("the identity's text (lower case)", secret.to_ascii_lowercase().into_bytes()),
        ("the identity's key bytes", identity_bytes(&secret)),
    ];

    // Can this system keep a core where the test finds it? Proved with a
    // process that does nothing to prevent one.
    let sink = core_sink(&cwd);
    let collectable = match &sink {
        CoreSink::Program(p) => {
            eprintln!("cores go to a program ({p}): the test proves instead that none can be made");
            false
        }
        CoreSink::Files(dir) => {
            let before = names_in(dir);
            let mut sleeper = allowing_cores("sleep", &cwd).arg("30").stdin(Stdio::null()).spawn().unwrap();
            std::thread::sleep(Duration::from_millis(100));
            kill(Pid::from_raw(sleeper.id() as i32), Signal::SIGABRT).unwrap();
            let st = wait_timeout(&mut sleeper, Duration::from_secs(20));
            let made: Vec<PathBuf> = names_in(dir).difference(&before).cloned().collect();
            for p in &made {
                let _ = std::fs::remove_file(p);
            }
            let ok = st.core_dumped() && !made.is_empty();
            eprintln!(
                "cores go to files in {}: a process that allows them {} one",
                dir.display(),
                if ok { "left" } else { "did not leave" }
            );
            ok
        }
    };

    // wm-verify --spool memory, given all of the backup but its last byte:
    // it has read the identity and decrypted (into memory) all it can, and
    // waits for the rest.
    let core_dir = match &sink {
        CoreSink::Files(dir) => dir.clone(),
        CoreSink::Program(_) => cwd.clone(),
    };
    let before = names_in(&core_dir);
    let mut tool = allowing_cores(WM_VERIFY, &cwd)
        .args(["--spool", "memory", "-q", "-i"])
        .arg(&key)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = tool.id();
    let mut input = tool.stdin.take().unwrap();
    let body = ciphertext[..ciphertext.len() - 1].to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&body);
        input
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while bytes_read(pid) < (ciphertext.len() - 1) as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(Instant::now() < deadline, "wm-verify did not read its input (read {} bytes)", bytes_read(pid));
    // Reading is done; let it decrypt and spool what it read.
    std::thread::sleep(Duration::from_millis(500));
    assert!(tool.try_wait().unwrap().is_none(), "wm-verify ended before it was stopped: {}", stderr_of(&mut tool));
    let (core_limit, dumpable) = core_state(pid);
    kill(Pid::from_raw(pid as i32), Signal::SIGABRT).unwrap();
    let st = wait_timeout(&mut tool, Duration::from_secs(30));
    drop(feeder.join());
    let cores: Vec<PathBuf> = names_in(&core_dir).difference(&before).cloned().collect();
    let mut found = Vec::new();
    for c in &cores {
        let data = std::fs::read(c).unwrap_or_default();
        for (what, needle) in &needles {
            if contains(&data, needle) {
                found.push(format!("{} holds {what}", c.display()));
            }
        }
    }
    eprintln!(
        "wm-verify aborted mid-work: {:?}, core dumped: {}, new cores: {}, its RLIMIT_CORE: {core_limit}, dumpable: {dumpable}",
        st,
        st.core_dumped(),
        cores.len()
    );
    for f in &found {
        eprintln!("{f}");
    }
    record_figures_with(
        "core_dumps",
        &[
            ("cores are files the test can read (1) or go to a program (0)", collectable as u64, Need::Any),
            ("wm-verify --spool memory runs aborted with SIGABRT mid-work", 1, Need::AtLeast(1)),
            ("cores left by them", cores.len() as u64, Need::Any),
            ("cores holding the plaintext marker or the identity", found.len() as u64, Need::Exactly(0)),
            ("its RLIMIT_CORE was 0 (1 yes)", (core_limit == "0") as u64, Need::Any),
            ("it was not dumpable (1 yes)", (!dumpable) as u64, Need::Any),
        ],
    );
    assert_eq!(st.signal(), Some(Signal::SIGABRT as i32), "wm-verify ended by SIGABRT: {st:?}");
    assert!(found.is_empty(), "a core holds secrets: {}", found.join("; "));
    if collectable {
        // The case that held: cores are files this test reads; none was made, or none holds a secret.
        assert!(
            !st.core_dumped() || !cores.is_empty(),
            "the kernel reports a core, but none appeared in {}",
            core_dir.display()
        );
    } else {
        // No core can be read here: prove that none could be made.
        assert_eq!(core_limit, "0", "wm-verify's RLIMIT_CORE must be 0 (/proc/{pid}/limits)");
        assert!(!dumpable, "wm-verify must not be dumpable (/proc/{pid}/status owned by root)");
    }
}

// ---------------------------------------------------------------------------
// One case the racer found, kept as a plain test.

/// `--to NAME` where NAME is the other user's symlink to a directory
/// outside: not a directory destination (which would put a new
/// timestamped file in the directory it points to), but a link the run
/// does not own, refused like any other.
#[test]
fn another_users_link_to_a_directory_is_not_taken_for_a_to_directory() {
    if !root_or_skip() {
        return;
    }
    let w = World::new();
    let link = w.work.join("out.age");
    let cases: [(&str, Vec<String>, bool); 3] = [
        (WM_SEAL, vec!["--raw".into(), "-r".into(), w.recipient.clone()], true),
        (WORKMEM_BACKUP, vec!["-r".into(), w.recipient.clone(), "--db".into(), w.source.display().to_string()], false),
        (WM_SNAPSHOT, vec!["--db".into(), w.source.display().to_string()], false),
    ];
    for (bin, args, stdin) in cases {
        std::os::unix::fs::symlink(w.outside.join("dir"), &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(OTHER), Some(OTHER)).unwrap();
        let mut cmd = Command::new(bin);
        cmd.args(&args).arg("--to").arg(&link).env_remove("MEMORY_DB_PATH").env("TMPDIR", &w.scratch);
        cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(mut s) = child.stdin.take() {
            let _ = s.write_all(&w.raw);
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let bin = Path::new(bin).file_name().unwrap().to_string_lossy();
        let touched = w.touched_outside();
        assert!(touched.is_empty(), "{bin} --to LINK: outside the directory: {}; stderr: {stderr}", touched.join("; "));
        assert_ne!(out.status.code(), Some(0), "{bin} --to LINK must refuse the other user's link");
        assert!(stderr.contains("out.age"), "{bin}: the error names the link: {stderr}");
        w.clean_work();
    }
}
