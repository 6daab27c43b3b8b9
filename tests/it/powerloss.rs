//! Power-loss trials: what survives when the machine stops, not just the
//! process. A SIGKILL only ends the process; the kernel still writes what it
//! wrote. Here the file system itself is stopped (`xfs_io -x -c shutdown`,
//! which does not flush its journal: what was not made durable is lost),
//! then unmounted and mounted again, on loop images of ext4 (mounted
//! `noauto_da_alloc`, so that ext4's replace-by-rename heuristic hides no
//! missing fsync) and XFS.
//!
//! Each tool that writes a file is cut at every system call of its commit
//! sequence (strace delivers SIGKILL there), at random moments, and right
//! after it finished. After each cut the destination holds the old content
//! or the new one, complete; the new one whenever the tool exited 0. The
//! harness proves it can fail: the same trials with the file's fsync, then
//! the directory's, made no-ops must be caught.
//!
//! Histories have a third state: `workmem-backup --to DIR/ --keep-*` may be
//! cut with its new backup durable and the older one not yet deleted, and
//! `wm-prune --delete` with some deletions lost; never after exit 0, never
//! with a file changed or a kept backup gone.
//!
//! Needs root, `/dev/loop-control`, `mount`, e2fsprogs, xfsprogs and strace.
//! `make test` runs one cut per commit step on ext4; `make reliability` all.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::fixture;
use crate::harness::*;
use crate::reliability_restore::{crashed, rows, Crashed};

/// A file system on a loop image, mounted, that can be cut.
struct Fs {
    kind: &'static str,
    img: PathBuf,
    mnt: PathBuf,
    _dir: Dir,
}

impl Fs {
    fn new(kind: &'static str) -> Fs {
        let dir = Dir::new();
        let img = dir.join(&format!("{kind}.img"));
        let mnt = dir.mkdir("mnt");
        let size = if kind == "xfs" { "320M" } else { "96M" };
        sh(&["truncate", "-s", size, &img.display().to_string()]);
        match kind {
            "ext4" => sh(&["mkfs.ext4", "-q", "-F", &img.display().to_string()]),
            _ => sh(&["mkfs.xfs", "-q", "-f", &img.display().to_string()]),
        }
        let fs = Fs { kind, img, mnt, _dir: dir };
        fs.mount();
        fs
    }

    fn mount(&self) {
        let opts = if self.kind == "ext4" { "loop,noauto_da_alloc" } else { "loop" };
        sh(&["mount", "-o", opts, &self.img.display().to_string(), &self.mnt.display().to_string()]);
    }

    /// The power cut: stop the file system without flushing, remount.
    fn cut(&self) {
        sh(&["xfs_io", "-x", "-c", "shutdown", &self.mnt.display().to_string()]);
        sh(&["umount", &self.mnt.display().to_string()]);
        self.mount();
    }

    /// A fresh directory for one trial, made durable (so that only the
    /// trial's own writes are at stake).
    fn trial_dir(&self, n: usize) -> PathBuf {
        let d = self.mnt.join(format!("t{n}"));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("tmp")).unwrap();
        sh(&["sync", "-f", &d.display().to_string()]);
        d
    }
}

impl Drop for Fs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
    }
}

#[track_caller]
fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Everything the trials need, or a recorded skip (a failure under CI=true).
fn can_cut() -> bool {
    let why = if !nix::unistd::geteuid().is_root() {
        Some("not root (power-loss trials mount loop images)")
    } else if !Path::new("/dev/loop-control").exists() {
        Some("no /dev/loop-control")
    } else {
        None
    };
    if let Some(why) = why {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("power-loss trials: {why}; CI=true requires them");
        }
        eprintln!("SKIPPED: power-loss trials: {why}");
        record_skip(why, Skip::Test);
        return false;
    }
    ["strace", "xfs_io", "mkfs.ext4", "mkfs.xfs", "mount", "sqlite3"].iter().all(|t| have(t))
}

/// Where a destination stands after a cut.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Old,
    New,
    /// A history between the two: the new backup durable, the policy's
    /// deletions not all (a state a rerun finishes); never after exit 0.
    Between,
    Broken(String),
}

/// A tool under trial: how to set up its directory, its command line, and
/// how to judge what the directory holds.
struct Tool {
    name: &'static str,
    setup: Box<dyn Fn(&Path)>,
    args: Vec<String>,
    stdin: Option<PathBuf>,
    judge: Box<dyn Fn(&Path) -> Verdict>,
}

fn command(tool: &Tool, dir: &Path, strace: &[String]) -> Command {
    let mut c = if strace.is_empty() {
        Command::new(&tool.args[0])
    } else {
        let mut c = Command::new("strace");
        c.args(strace).arg(&tool.args[0]);
        c
    };
    c.args(&tool.args[1..]).current_dir(dir).env("TMPDIR", dir.join("tmp")).env_remove("MEMORY_DB_PATH");
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    match &tool.stdin {
        Some(p) => c.stdin(std::fs::File::open(dir.join(p)).unwrap()),
        None => c.stdin(Stdio::null()),
    };
    c
}

fn status_of(mut c: Command) -> ExitStatus {
    let mut child = c.spawn().unwrap();
    wait_timeout(&mut child, Duration::from_secs(120))
}

/// The commit sequence's system calls, in order (name, occurrence), from a
/// traced run; and where the file's and the directory's fsync are in it.
fn commit_calls(tool: &Tool, fs: &Fs) -> Vec<(String, usize)> {
    const CALLS: [&str; 6] = ["fsync", "linkat", "renameat", "renameat2", "unlink", "unlinkat"];
    let dir = fs.trial_dir(0);
    (tool.setup)(&dir);
    let log = dir.join("trace.log");
    let strace: Vec<String> = ["-f", "-o", &log.display().to_string(), "-e", &format!("trace={}", CALLS.join(","))]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let st = status_of(command(tool, &dir, &strace));
    assert!(st.success(), "{}: the traced reference run failed", tool.name);
    let text = std::fs::read_to_string(&log).unwrap();
    let mut seen = std::collections::HashMap::<String, usize>::new();
    let mut calls = Vec::new();
    for line in text.lines() {
        for name in CALLS {
            if line.contains(&format!(" {name}(")) && !line.contains("resumed") {
                let n = seen.entry(name.to_string()).or_default();
                *n += 1;
                calls.push((name.to_string(), *n));
            }
        }
    }
    calls
}

#[derive(Default)]
struct Tally {
    cuts: u64,
    at_syscalls: u64,
    at_random: u64,
    after_exit: u64,
    old: u64,
    new: u64,
    broken: u64,
    old_after_exit_0: u64,
    between: u64,
    between_after_exit_0: u64,
}

impl Tally {
    fn count(&mut self, tool: &str, fs: &str, what: &str, exited_0: bool, v: Verdict) {
        self.cuts += 1;
        match v {
            Verdict::Old if exited_0 => {
                self.old_after_exit_0 += 1;
                eprintln!("power loss {tool} on {fs} ({what}): the old content, although the tool exited 0");
            }
            Verdict::Old => self.old += 1,
            Verdict::New => self.new += 1,
            Verdict::Between if exited_0 => {
                self.between_after_exit_0 += 1;
                eprintln!("power loss {tool} on {fs} ({what}): deletions lost although the tool exited 0");
            }
            Verdict::Between => self.between += 1,
            Verdict::Broken(why) => {
                self.broken += 1;
                eprintln!("power loss {tool} on {fs} ({what}): BROKEN: {why}");
            }
        }
    }
}

/// All trials of one tool on one file system.
fn trials(tool: &Tool, fs: &Fs, full: bool, t: &mut Tally) {
    let calls = commit_calls(tool, fs);
    assert!(!calls.is_empty(), "{}: a commit sequence", tool.name);
    let mut n = 1;
    // A cut at every system call of the commit sequence.
    for (name, when) in &calls {
        let dir = fs.trial_dir(n);
        n += 1;
        (tool.setup)(&dir);
        let log = dir.join("trace.log");
        let strace: Vec<String> = [
            "-f",
            "-o",
            &log.display().to_string(),
            "-e",
            &format!("trace={name}"),
            "-e",
            &format!("inject={name}:signal=KILL:when={when}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let st = status_of(command(tool, &dir, &strace));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        fs.cut();
        if st.signal() == Some(9) && text.contains("killed by SIGKILL") {
            t.at_syscalls += 1;
            t.count(tool.name, fs.kind, &format!("killed at {name} #{when}"), false, (tool.judge)(&dir));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    // Right after the tool finished: the new content, durably.
    let finished = if full { 5 } else { 1 };
    for _ in 0..finished {
        let dir = fs.trial_dir(n);
        n += 1;
        (tool.setup)(&dir);
        let st = status_of(command(tool, &dir, &[]));
        assert!(st.success(), "{}: a plain run", tool.name);
        fs.cut();
        t.after_exit += 1;
        t.count(tool.name, fs.kind, "cut after exit 0", true, (tool.judge)(&dir));
        let _ = std::fs::remove_dir_all(&dir);
    }
    if !full {
        return;
    }
    // At random moments within the tool's own duration.
    let dir = fs.trial_dir(n);
    (tool.setup)(&dir);
    let started = Instant::now();
    assert!(status_of(command(tool, &dir, &[])).success());
    let took = started.elapsed();
    let mut rng = fixture::Rng::new(took.as_nanos() as u64);
    let mut landed = 0;
    while landed < 40 {
        let dir = fs.trial_dir(n);
        n += 1;
        (tool.setup)(&dir);
        let mut child = command(tool, &dir, &[]).spawn().unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(took.mul_f64(1.2).as_micros().max(1) as u64)));
        let _ = child.kill();
        let st = wait_timeout(&mut child, Duration::from_secs(60));
        fs.cut();
        let exited_0 = st.success();
        if st.signal() == Some(9) {
            landed += 1;
            t.at_random += 1;
        } else {
            t.after_exit += 1;
        }
        t.count(tool.name, fs.kind, &format!("random kill, status {st:?}"), exited_0, (tool.judge)(&dir));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The controls: the tool with its file's fsync, then its directory's, made
/// a no-op (a tool that only deletes: the directory's), run to the end and cut. Each must be caught (broken, or the old
/// content after exit 0): otherwise these trials could not see a missing fsync.
fn controls(tool: &Tool, fs: &Fs, runs: usize) -> (u64, u64) {
    let calls = commit_calls(tool, fs);
    let points = match calls.iter().position(|(n, _)| n == "renameat") {
        Some(rename) => vec![
            ("file fsync skipped", calls[..rename].iter().rev().find(|(n, _)| n == "fsync").expect("a file fsync").1),
            (
                "directory fsync skipped",
                calls[rename..].iter().find(|(n, _)| n == "fsync").expect("a directory fsync").1,
            ),
        ],
        // Deleting only: the directory's fsync after the last unlink.
        None => {
            vec![("directory fsync skipped", calls.iter().rev().find(|(n, _)| n == "fsync").expect("an fsync").1)]
        }
    };
    let (mut tried, mut caught) = (0, 0);
    for (what, when) in points {
        for i in 0..runs {
            let dir = fs.trial_dir(1000 + i);
            (tool.setup)(&dir);
            let strace: Vec<String> =
                ["-f", "-o", "/dev/null", "-e", "trace=fsync", "-e", &format!("inject=fsync:retval=0:when={when}")]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
            let st = status_of(command(tool, &dir, &strace));
            assert!(st.success(), "{} ({what}): the tool believes it succeeded", tool.name);
            fs.cut();
            tried += 1;
            match (tool.judge)(&dir) {
                Verdict::New => eprintln!("power loss control {} on {} ({what}): NOT caught", tool.name, fs.kind),
                _ => caught += 1,
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    (tried, caught)
}

// ---------------------------------------------------------------------------
// The tools and their judges
// ---------------------------------------------------------------------------

/// Two databases (old: 300 rows, new: 5,000), a key, the old backup sealed.
struct Fixture {
    old_db: Vec<u8>,
    new_db: Vec<u8>,
    old_backup: Vec<u8>,
    key: Vec<u8>,
    recipient: String,
}

fn fixture() -> Fixture {
    let d = Dir::new();
    let make = |name: &str, rows: u32| {
        let c = rusqlite::Connection::open(d.join(name)).unwrap();
        c.execute_batch(&format!(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<{rows})
             INSERT INTO t(v) SELECT randomblob(200) FROM n;"
        ))
        .unwrap();
    };
    make("old.db", 300);
    make("new.db", 5000);
    let (id, recipient) = d.age_key("key.txt");
    let out = run(WM_SEAL, &d).args(["-q", "-r", &recipient, "--to", "old.age"]).stdin(d.read("old.db")).go();
    out.ok();
    Fixture {
        old_db: d.read("old.db"),
        new_db: d.read("new.db"),
        old_backup: d.read("old.age"),
        key: std::fs::read(id).unwrap(),
        recipient,
    }
}

/// `rows` of table t in an age backup, through wm-verify (which also proves it whole).
fn backup_rows(dir: &Path, file: &str) -> Result<u64, String> {
    let out = Command::new(WM_VERIFY).current_dir(dir).args(["--json", "-i", "key.txt", file]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}"))?;
    if v["restorable"] != true {
        return Err(v["error"].to_string());
    }
    v["tables"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "t"))
        .and_then(|t| t["rows"].as_u64())
        .ok_or("no table t".into())
}

fn judge_backup(f: &Fixture, dir: &Path, file: &str) -> Verdict {
    match std::fs::read(dir.join(file)) {
        Ok(bytes) if bytes == f.old_backup => Verdict::Old,
        Ok(_) => match backup_rows(dir, file) {
            Ok(5000) => Verdict::New,
            other => Verdict::Broken(format!("{file}: {other:?}")),
        },
        Err(e) => Verdict::Broken(format!("{file}: {e}")),
    }
}

fn tools(f: &'static Fixture, c: &'static Crashed) -> Vec<Tool> {
    let seal_setup = move |d: &Path| {
        std::fs::write(d.join("key.txt"), &f.key).unwrap();
        std::fs::write(d.join("dest.age"), &f.old_backup).unwrap();
        std::fs::write(d.join("input.db"), &f.new_db).unwrap();
        sh(&["sync", "-f", &d.display().to_string()]);
    };
    let backup = |name: &'static str, extra: &[&str]| Tool {
        name,
        setup: Box::new(seal_setup),
        args: [WORKMEM_BACKUP, "-q", "--db", "input.db", "--to", "dest.age", "-r", f.recipient.as_str()]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect(),
        stdin: None,
        judge: Box::new(move |d| judge_backup(f, d, "dest.age")),
    };
    vec![
        Tool {
            name: "wm-seal --to",
            setup: Box::new(seal_setup),
            args: [WM_SEAL, "-q", "-r", &f.recipient, "--to", "dest.age"].iter().map(|s| s.to_string()).collect(),
            stdin: Some(PathBuf::from("input.db")),
            judge: Box::new(move |d| judge_backup(f, d, "dest.age")),
        },
        backup("workmem-backup --to (vacuum)", &[]),
        backup("workmem-backup --to (pages)", &["--method", "pages"]),
        Tool {
            name: "wm-snapshot --to",
            setup: Box::new(move |d: &Path| {
                std::fs::write(d.join("input.db"), &f.new_db).unwrap();
                std::fs::write(d.join("dest.db"), &f.old_db).unwrap();
                sh(&["sync", "-f", &d.display().to_string()]);
            }),
            args: [WM_SNAPSHOT, "-q", "--db", "input.db", "--to", "dest.db"].iter().map(|s| s.to_string()).collect(),
            stdin: None,
            judge: Box::new(move |d| match std::fs::read(d.join("dest.db")) {
                Ok(b) if b == f.old_db => Verdict::Old,
                Ok(_) => match rows(&d.join("dest.db")) {
                    Ok(5000) => Verdict::New,
                    other => Verdict::Broken(format!("dest.db: {other:?}")),
                },
                Err(e) => Verdict::Broken(e.to_string()),
            }),
        },
        Tool {
            name: "workmem-backup --to DIR/ --keep-last 2",
            setup: Box::new(move |d: &Path| {
                std::fs::write(d.join("key.txt"), &f.key).unwrap();
                std::fs::write(d.join("memory.db"), &f.new_db).unwrap();
                std::fs::create_dir(d.join("hist")).unwrap();
                for name in HISTORY {
                    std::fs::write(d.join("hist").join(name), &f.old_backup).unwrap();
                }
                sh(&["sync", "-f", &d.display().to_string()]);
            }),
            args: [WORKMEM_BACKUP, "-q", "--db", "memory.db", "--to", "hist/", "--keep-last", "2", "-r", &f.recipient]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            stdin: None,
            judge: Box::new(move |d| judge_history(f, d)),
        },
        Tool {
            name: "wm-prune --delete --keep-last 2",
            setup: Box::new(move |d: &Path| {
                std::fs::create_dir(d.join("hist")).unwrap();
                for name in PRUNED.iter().chain(&PRUNE_KEPT) {
                    std::fs::write(d.join("hist").join(name), &f.old_backup).unwrap();
                }
                sh(&["sync", "-f", &d.display().to_string()]);
            }),
            args: [WM_PRUNE, "-q", "--keep-last", "2", "--delete", "hist"].iter().map(|s| s.to_string()).collect(),
            stdin: None,
            judge: Box::new(move |d| judge_prune(f, d)),
        },
        Tool {
            name: "wm-restore",
            setup: Box::new(move |d: &Path| {
                c.write_into(d);
                sh(&["sync", "-f", &d.display().to_string()]);
            }),
            args: [WM_RESTORE, "-q", "-i", "key.txt", "--db", "memory.db", "b.age"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            stdin: None,
            judge: Box::new(move |d| judge_restore(c, d)),
        },
    ]
}

/// The history workmem-backup starts from: `--keep-last 2` keeps the new
/// backup and the newest of these, and deletes the other.
const HISTORY: [&str; 2] = ["memory-20200101T000000Z.db.age", "memory-20200102T000000Z.db.age"];

/// The names of `hist/`, the temporaries of a killed run excepted (hidden):
/// the only names a power cut may bring back or take away.
fn listing(d: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(d.join("hist"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// A history after a cut: untouched (old); the new backup durable and
/// whole, the older one deleted, the newer kept (new); the new backup in
/// place with the deletion lost (between). Any old file changed, any kept
/// one lost, or a new one that does not restore is broken.
fn judge_history(f: &Fixture, d: &Path) -> Verdict {
    let names = listing(d);
    for old in names.iter().filter(|n| HISTORY.contains(&n.as_str())) {
        if std::fs::read(d.join("hist").join(old)).ok().as_ref() != Some(&f.old_backup) {
            return Verdict::Broken(format!("{old} changed"));
        }
    }
    let new: Vec<&String> = names.iter().filter(|n| !HISTORY.contains(&n.as_str())).collect();
    let has = |n: &str| names.iter().any(|x| x == n);
    match new.as_slice() {
        [] if names == HISTORY => Verdict::Old,
        [] => Verdict::Broken(format!("a backup deleted before the new one was durable: {names:?}")),
        [n] => match backup_rows(d, &format!("hist/{n}")) {
            Ok(5000) if !has(HISTORY[1]) => Verdict::Broken(format!("the newer old backup is gone: {names:?}")),
            Ok(5000) if has(HISTORY[0]) => Verdict::Between,
            Ok(5000) => Verdict::New,
            other => Verdict::Broken(format!("{n}: {other:?}")),
        },
        more => Verdict::Broken(format!("more than one new name: {more:?}")),
    }
}

/// wm-prune's history: five backups, the two newest kept.
const PRUNED: [&str; 3] =
    ["memory-20200101T000000Z.db.age", "memory-20200102T000000Z.db.age", "memory-20200103T000000Z.db.age"];
const PRUNE_KEPT: [&str; 2] = ["memory-20200104T000000Z.db.age", "memory-20200105T000000Z.db.age"];

/// A pruned directory after a cut: every file left is byte for byte what it
/// was and the kept two are there; all five (old), the two (new), or some
/// of the dropped still there (between).
fn judge_prune(f: &Fixture, d: &Path) -> Verdict {
    let names = listing(d);
    for n in &names {
        if std::fs::read(d.join("hist").join(n)).ok().as_ref() != Some(&f.old_backup) {
            return Verdict::Broken(format!("{n} changed"));
        }
        if !PRUNED.contains(&n.as_str()) && !PRUNE_KEPT.contains(&n.as_str()) {
            return Verdict::Broken(format!("{n}: a name that was not there"));
        }
    }
    if !PRUNE_KEPT.iter().all(|k| names.iter().any(|n| n == k)) {
        return Verdict::Broken(format!("a kept backup is gone: {names:?}"));
    }
    match names.len() {
        5 => Verdict::Old,
        2 => Verdict::New,
        _ => Verdict::Between,
    }
}

/// The restore's own promise: the old set (its content whole, as a server
/// would open it) or the restored database with no old journal beside it;
/// and the old content kept whenever it is no longer in place.
fn judge_restore(c: &Crashed, d: &Path) -> Verdict {
    let db = d.join("memory.db");
    let restored = sha256_file(&db) == c.plain_sha;
    if restored {
        let stale: Vec<_> =
            ["memory.db-wal", "memory.db-shm", "memory.db-journal"].iter().filter(|n| d.join(n).exists()).collect();
        if !stale.is_empty() {
            return Verdict::Broken(format!("old journals beside the restored database: {stale:?}"));
        }
        let kept = std::fs::read_dir(d).unwrap().flatten().map(|e| e.path()).any(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("memory.db.pre-restore-")
                && !n.contains("-wal")
                && !n.contains("-shm")
                && rows(&p) == Ok(2500)
        });
        return if kept { Verdict::New } else { Verdict::Broken("the old content is not kept".into()) };
    }
    match rows(&db) {
        Ok(2500) => Verdict::Old,
        other => Verdict::Broken(format!("memory.db: {other:?}")),
    }
}

#[test]
fn after_a_power_cut_every_destination_holds_the_old_or_the_new_and_the_new_after_exit_0() {
    if !can_cut() {
        return;
    }
    let full = full_suite();
    let f: &'static Fixture = Box::leak(Box::new(fixture()));
    let c: &'static Crashed = Box::leak(Box::new(crashed()));
    let kinds: &[&'static str] = if full { &["ext4", "xfs"] } else { &["ext4"] };
    let mut t = Tally::default();
    let (mut controls_tried, mut controls_caught) = (0, 0);
    for &kind in kinds {
        let fs = Fs::new(kind);
        for tool in tools(f, c) {
            trials(&tool, &fs, full, &mut t);
            if tool.name.starts_with("wm-seal")
                || tool.name.starts_with("workmem-backup --to (vacuum)")
                || tool.name.starts_with("wm-prune")
            {
                let (tried, caught) = controls(&tool, &fs, if full { 3 } else { 1 });
                controls_tried += tried;
                controls_caught += caught;
            }
        }
    }
    println!(
        "power loss ({}): {} cuts ({} at system calls of a commit sequence, {} at random moments, {} after the tool \
         finished): {} old, {} new, {} between (a history's new backup in place, its deletions not yet), {} broken, \
         {} old although exit 0, {} deletions lost although exit 0; controls caught {} of {}",
        kinds.join(", "),
        t.cuts,
        t.at_syscalls,
        t.at_random,
        t.after_exit,
        t.old,
        t.new,
        t.between,
        t.broken,
        t.old_after_exit_0,
        t.between_after_exit_0,
        controls_caught,
        controls_tried
    );
    record_figures(
        "power loss",
        &[
            (&format!("cuts (on {})", kinds.join(" and ")), t.cuts, None),
            ("  killed at a system call of the commit, then cut", t.at_syscalls, None),
            ("  killed at a random moment, then cut", t.at_random, None),
            ("  cut after the tool exited 0", t.after_exit, None),
            ("old content", t.old, None),
            ("new content", t.new, None),
            ("a history between the two (new backup in place, deletions not yet)", t.between, None),
            ("broken", t.broken, Some(0)),
            ("old content although the tool exited 0", t.old_after_exit_0, Some(0)),
            ("deletions lost although the tool exited 0", t.between_after_exit_0, Some(0)),
            ("controls (an fsync made a no-op) run", controls_tried, None),
            ("controls caught", controls_caught, Some(controls_tried)),
        ],
    );
}
