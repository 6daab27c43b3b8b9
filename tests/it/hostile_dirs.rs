//! Hostile directories, deterministically: what another user of a directory
//! can leave at the names a run writes (a symlink of theirs, a dangling link
//! at the next backup's name, a FIFO, a directory) never makes a run touch a
//! file outside it; and a root restore gives the database back to its
//! server as it was (owner, group, mode, journal mode). The racing version,
//! a second user swapping names while the tools run, is in the reliability
//! suites.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::harness::*;

/// The unprivileged user the tests hand files to (nobody).
const OTHER: u32 = 65534;

/// The tests that play two users need root (CI runs as root): skipped
/// locally otherwise, a failure when CI=true.
fn root_or_skip() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("this test needs root, and CI runs as root");
    }
    eprintln!("SKIPPED: needs root");
    record_skip("not root", Skip::Test);
    false
}

/// `chown -h`: the link itself, not what it points to.
fn lchown(p: &Path, uid: u32, gid: u32) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: lchown on a NUL-terminated path we made.
    assert_eq!(unsafe { nix::libc::lchown(c.as_ptr(), uid, gid) }, 0, "lchown {}", p.display());
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A small database, rollback or WAL.
fn small_db(path: &Path, wal: bool, rows: u32) {
    let c = Connection::open(path).unwrap();
    if wal {
        c.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(())).unwrap();
    }
    c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);").unwrap();
    for i in 0..rows {
        c.execute("INSERT INTO t(v) VALUES (?1)", [format!("row {i}")]).unwrap();
    }
}

fn rows(db: &Path) -> i64 {
    let c = Connection::open(db).unwrap();
    c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap()
}

/// Header bytes 18 and 19: 2/2 is WAL, 1/1 rollback.
fn header_mode(db: &Path) -> (u8, u8) {
    let b = std::fs::read(db).unwrap();
    (b[18], b[19])
}

/// A directory with a key and a backup of a small database of 300 rows in
/// rollback mode, `src.db`: its header says 1/1, as a VACUUM INTO image of
/// any database did before snapshots of WAL sources kept 2/2.
struct Fx {
    d: Dir,
    key: String,
}

impl Fx {
    fn new() -> Fx {
        let d = Dir::new();
        let (_, key) = d.age_key("key.txt");
        small_db(&d.join("src.db"), false, 300);
        run(WORKMEM_BACKUP, &d).args(["-q", "--db", "src.db", "--to", "src.db.age", "-r", &key]).go().ok();
        Fx { d, key }
    }

    fn restore(&self, target: &Path) -> Run {
        run(WM_RESTORE, &self.d).args(["-i", "key.txt", "--json", "--db"]).args([target, Path::new("src.db.age")])
    }
}

#[test]
fn the_backup_restored_into_an_empty_place_keeps_its_own_rollback_mode() {
    // The premise of the journal-mode test below: the backup says 1/1.
    let fx = Fx::new();
    let to = fx.d.join("plain.db");
    fx.restore(&to).go().ok();
    assert_eq!(header_mode(&to), (1, 1));
}

#[test]
fn a_root_restore_keeps_owner_group_mode_and_wal_of_another_users_database() {
    if !root_or_skip() {
        return;
    }
    for mode in [0o640, 0o660] {
        let fx = Fx::new();
        let data = fx.d.mkdir("data");
        std::os::unix::fs::chown(&data, Some(OTHER), Some(OTHER)).unwrap();
        let db = data.join("memory.db");
        small_db(&db, true, 10);
        std::os::unix::fs::chown(&db, Some(OTHER), Some(OTHER)).unwrap();
        chmod(&db, mode);
        assert_eq!(header_mode(&db), (2, 2));
        let out = fx.restore(&db).go();
        out.ok();
        let m = std::fs::metadata(&db).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (OTHER, OTHER, mode), "owner, group, mode as they were");
        assert_eq!(header_mode(&db), (2, 2), "a WAL database stays WAL, from a 1/1 backup");
        assert_eq!(rows(&db), 300);
        let c = Connection::open(&db).unwrap();
        let jm: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(jm, "wal");
        drop(c);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let w = &v["written"];
        assert_eq!(w["journal_mode"], "wal", "{v}");
        assert_eq!(w["journal_mode_backup"], "delete", "{v}");
        assert!(w["owner"].as_str().unwrap().contains(&format!("uid {OTHER}")), "{v}");
        assert!(w["group"].as_str().unwrap().contains(&format!("gid {OTHER}")), "{v}");
        assert_eq!(w["mode"], format!("{mode:04o}"), "{v}");
        // The server, as its own user, can open and write it again.
        let wrote = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("exec 3<>{} && echo ok", db.display()))
            .uid_gid(OTHER)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&wrote.stdout).trim(), "ok", "the owner can open it read-write");
    }
}

trait AsUser {
    fn uid_gid(&mut self, id: u32) -> &mut Self;
}

impl AsUser for std::process::Command {
    fn uid_gid(&mut self, id: u32) -> &mut Self {
        use std::os::unix::process::CommandExt;
        self.uid(id).gid(id)
    }
}

#[test]
fn a_restore_copies_permission_bits_never_a_set_id_bit() {
    if !root_or_skip() {
        return;
    }
    let fx = Fx::new();
    let data = fx.d.mkdir("data");
    let db = data.join("memory.db");
    small_db(&db, false, 3);
    // As a user of the directory could leave it: their file, set-id bits on.
    std::os::unix::fs::chown(&db, Some(OTHER), Some(OTHER)).unwrap();
    chmod(&db, 0o6755);
    fx.restore(&db).go().ok();
    let m = std::fs::metadata(&db).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (OTHER, OTHER, 0o755));
}

#[test]
fn a_hard_link_at_to_file_is_replaced_by_name_and_the_file_it_shares_is_untouched() {
    let fx = Fx::new();
    let outside = Dir::new();
    let victim = outside.write("victim", "a file elsewhere, never to be changed");
    let before = outside.tree();
    std::fs::hard_link(&victim, fx.d.join("out.db")).unwrap();
    run(WM_SNAPSHOT, &fx.d).args(["--db", "src.db", "--to", "out.db"]).go().ok();
    assert_eq!(rows(&fx.d.join("out.db")), 300);
    assert_unchanged(&before, &outside.tree(), "the file the planted hard link shared");
}

#[test]
fn a_root_restore_with_no_old_database_gives_it_the_directorys_owner_and_0600() {
    if !root_or_skip() {
        return;
    }
    let fx = Fx::new();
    let data = fx.d.mkdir("data");
    std::os::unix::fs::chown(&data, Some(OTHER), Some(OTHER)).unwrap();
    let db = data.join("memory.db");
    fx.restore(&db).go().ok();
    let m = std::fs::metadata(&db).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (OTHER, OTHER, 0o600));
    assert_eq!(header_mode(&db), (1, 1), "no old database: the backup's own mode");
}

#[test]
fn a_restore_never_follows_a_symlink_at_the_database_or_its_journals() {
    let fx = Fx::new();
    let outside = Dir::new();
    let victim = outside.write("victim.db", "not a database, and never to be touched");
    let before = outside.tree();
    let data = fx.d.mkdir("data");
    let db = data.join("memory.db");
    for suffix in ["", "-wal", "-shm", "-journal"] {
        if !suffix.is_empty() {
            small_db(&db, false, 5);
        }
        let link = PathBuf::from(format!("{}{suffix}", db.display()));
        symlink(&victim, &link).unwrap();
        let out = fx.restore(&db).go();
        assert_eq!(out.code(), 1, "{suffix}: {}", out.stderr);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(v["error"].as_str().unwrap().contains("is a symlink"), "{suffix}: {v}");
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link is left as it was");
        std::fs::remove_file(&link).unwrap();
        let _ = std::fs::remove_file(&db);
    }
    assert_unchanged(&before, &outside.tree(), "the file the links pointed to");
}

#[test]
fn a_fifo_or_a_directory_at_a_name_a_run_writes_is_refused() {
    let fx = Fx::new();
    let fifo = fx.d.join("fifo.age");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    fx.d.mkdir("dir.age");
    let before = fx.d.tree();
    // (An existing directory as --to is a directory to write a new backup
    // into: only the metrics file and the restore target are names there.)
    let out = run(WORKMEM_BACKUP, &fx.d).args(["--db", "src.db", "-r", &fx.key, "--to", "fifo.age"]).go();
    out.expect(1, "not a regular file").one_line_error("workmem-backup");
    let out = run(WM_SNAPSHOT, &fx.d).args(["--db", "src.db", "--to", "fifo.age"]).go();
    out.expect(1, "not a regular file").one_line_error("wm-snapshot");
    for (to, says) in [("fifo.age", "not a regular file"), ("dir.age", "is a directory")] {
        let out = run(WORKMEM_BACKUP, &fx.d)
            .args(["-q", "--db", "src.db", "-r", &fx.key, "--to", "out.age", "--metrics-file", to])
            .go();
        out.expect(1, says).one_line_error("workmem-backup");
        let _ = std::fs::remove_file(fx.d.join("out.age"));
    }
    assert_unchanged(&before, &fx.d.tree(), "refused runs");
    for (target, says) in [("fifo.age", "not a regular file"), ("dir.age", "is a directory")] {
        let out = fx.restore(&fx.d.join(target)).go();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(out.code(), 1);
        assert!(v["error"].as_str().unwrap().contains(says), "{v}");
    }
}

#[test]
fn a_symlink_of_another_user_at_to_file_or_the_metrics_file_is_refused_and_named() {
    if !root_or_skip() {
        return;
    }
    let fx = Fx::new();
    let outside = Dir::new();
    let victim = outside.write("victim", "root's file, never to be replaced");
    let shared = fx.d.mkdir("shared");
    let link = shared.join("out.age");
    symlink(&victim, &link).unwrap();
    lchown(&link, OTHER, OTHER);
    let dangling = shared.join("new.age");
    symlink(outside.join("created"), &dangling).unwrap();
    lchown(&dangling, OTHER, OTHER);
    let before = outside.tree();
    let mut seal = run(WM_SEAL, &fx.d).args(["-r", &fx.key, "--to", "shared/out.age"]);
    seal = seal.stdin(b"some data".to_vec());
    let runs = [
        (
            "workmem-backup",
            run(WORKMEM_BACKUP, &fx.d).args(["--db", "src.db", "-r", &fx.key, "--to", "shared/out.age"]),
        ),
        (
            "workmem-backup",
            run(WORKMEM_BACKUP, &fx.d).args(["--db", "src.db", "-r", &fx.key, "--to", "shared/new.age"]),
        ),
        ("wm-snapshot", run(WM_SNAPSHOT, &fx.d).args(["--db", "src.db", "--to", "shared/out.age"])),
        ("wm-seal", seal),
        (
            "workmem-backup",
            run(WORKMEM_BACKUP, &fx.d).args([
                "-q",
                "--db",
                "src.db",
                "-r",
                &fx.key,
                "--to",
                "mine.age",
                "--metrics-file",
                "shared/new.age",
            ]),
        ),
    ];
    for (prog, r) in runs {
        let out = r.go();
        out.expect(1, "is a symlink owned by").one_line_error(prog);
        assert!(out.stderr.contains(&format!("uid {OTHER}")), "names the owner: {}", out.stderr);
        assert!(out.stderr.contains("shared/"), "names the link: {}", out.stderr);
    }
    assert_unchanged(&before, &outside.tree(), "the files the links pointed to");
    assert!(!fx.d.join("mine.age").exists(), "a metrics file that cannot be written fails the run first");
    // Root's own link is followed: writing through it replaces its target.
    std::fs::remove_file(&link).unwrap();
    symlink(&victim, &link).unwrap();
    run(WM_SNAPSHOT, &fx.d).args(["--db", "src.db", "--to", "shared/out.age"]).go().ok();
    assert_eq!(rows(&victim), 300, "the link's target now holds the snapshot");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
}

#[test]
fn a_link_planted_at_the_next_backups_name_is_never_followed() {
    let fx = Fx::new();
    let outside = Dir::new();
    let bk = fx.d.mkdir("bk");
    // Links at every name of the next few seconds, for wm-snapshot's series.
    let now = unix_now();
    for t in now..now + 4 {
        symlink(outside.join(&format!("planted-{t}")), bk.join(backup_name("src", t, "db"))).unwrap();
    }
    let out = run(WM_SNAPSHOT, &fx.d).args(["--db", "src.db", "--to", "bk/"]).go();
    out.ok();
    assert!(std::fs::read_dir(&outside.path).unwrap().next().is_none(), "nothing created outside");
    let made: Vec<PathBuf> = std::fs::read_dir(&bk)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !std::fs::symlink_metadata(p).unwrap().file_type().is_symlink())
        .collect();
    assert_eq!(made.len(), 1, "{made:?}");
    let name = made[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!((now + 4..now + 14).any(|t| name == backup_name("src", t, "db")), "{name}: a later second, same series");
    assert_eq!(rows(&made[0]), 300);
}

#[test]
fn a_database_swapped_during_the_restore_is_noticed_undone_and_nothing_changes() {
    if !have("strace") {
        return;
    }
    let fx = Fx::new();
    let data = fx.d.mkdir("data");
    let db = data.join("memory.db");
    small_db(&db, true, 10);
    // An empty -wal: the kept set is the -wal (linked first), then the database.
    std::fs::write(data.join("memory.db-wal"), b"").unwrap();
    let _ = std::fs::remove_file(data.join("memory.db-shm"));
    let planted = fx.d.write("planted.db", "another user's file");
    // The second link (the database's) waits 2 s before it is made; the
    // first (the -wal's) shows when the swap has started.
    let mut child = run("strace", &fx.d)
        .args(["-f", "-o", "/dev/null", "-e", "trace=linkat", "-e", "inject=linkat:delay_enter=2000000:when=2"])
        .args([Path::new(WM_RESTORE), Path::new("-i"), Path::new("key.txt"), Path::new("--db"), &db])
        .args(["src.db.age"])
        .spawn();
    let started = std::time::Instant::now();
    let kept_wal = loop {
        let found = std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().contains(".pre-restore-") && p.to_string_lossy().ends_with("-wal"));
        if let Some(p) = found {
            break p;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "the restore never started its swap");
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    // What a user of the directory does: another file takes the database's name.
    let original = data.join("moved-away.db");
    std::fs::rename(&db, &original).unwrap();
    std::fs::rename(&planted, &db).unwrap();
    let status = wait_timeout(&mut child, std::time::Duration::from_secs(60));
    let stderr = stderr_of(&mut child);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the database was replaced during the restore; nothing was changed"), "{stderr}");
    assert_eq!(std::fs::read(&db).unwrap(), b"another user's file", "the swapped-in file is left as it is");
    assert!(!kept_wal.exists(), "the kept names are undone");
    let left: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".pre-restore-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(data.join("memory.db-wal").exists(), "the journal keeps its name");
    assert_eq!(rows(&original), 10, "the original database, wherever it was moved, is whole");
}

/// `Max core file size` from /proc/PID/limits: (soft, hard).
fn core_limits(pid: u32) -> Option<(String, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max core file size"))?;
    let fields: Vec<&str> = line["Max core file size".len()..].split_whitespace().collect();
    Some((fields.first()?.to_string(), fields.get(1)?.to_string()))
}

#[test]
fn every_tool_that_holds_keys_or_plaintext_runs_with_core_dumps_off() {
    if !cfg!(target_os = "linux") {
        return;
    }
    let fx = Fx::new();
    chmod(&fx.d.join("key.txt"), 0o644);
    let as_root = nix::unistd::geteuid().is_root();
    let theirs = fx.d.mkdir("theirs");
    if as_root {
        std::os::unix::fs::chown(&theirs, Some(OTHER), Some(OTHER)).unwrap();
    }
    // Each waits on its standard input, which the test holds open.
    let cases: [(&str, &[&str]); 4] = [
        (WM_SEAL, &["-r", &fx.key, "--to", "-"]),
        (WM_VERIFY, &["-i", "key.txt"]),
        (WM_RESTORE, &["-i", "key.txt", "--db", "theirs/never.db"]),
        (WM_PRUNE, &["--keep-last", "1", "-"]),
    ];
    for (bin, args) in cases {
        let mut cmd = std::process::Command::new(bin);
        cmd.args(args)
            .current_dir(&fx.d.path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if as_root {
            // As another user, so that the kernel's ownership of /proc/PID
            // shows the dumpable flag: root's when it is off.
            cmd.uid_gid(OTHER);
        }
        let mut child = cmd.spawn().unwrap();
        let pid = child.id();
        let started = std::time::Instant::now();
        let limits = loop {
            // The limit is set first thing, before any argument is read.
            match core_limits(pid) {
                Some(l) if l.0 == "0" && l.1 == "0" => break l,
                _ if started.elapsed() > std::time::Duration::from_secs(10) => break core_limits(pid).unwrap(),
                _ => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        };
        assert_eq!(limits, ("0".to_string(), "0".to_string()), "{bin}: RLIMIT_CORE soft and hard");
        if as_root {
            let owner = std::fs::metadata(format!("/proc/{pid}/limits")).unwrap().uid();
            assert_eq!(owner, 0, "{bin}: not dumpable (its /proc files are root's, not uid {OTHER}'s)");
        }
        // SIGABRT: no core is made (the wait status says so).
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGABRT).unwrap();
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert!(!status.core_dumped(), "{bin}: no core dumped");
        assert_eq!(status.signal(), Some(nix::libc::SIGABRT), "{bin}: {status:?}");
    }
}
