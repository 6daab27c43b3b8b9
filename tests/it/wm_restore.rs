//! wm-restore: the crashed-server case, keeping the old set whole, never a
//! stale journal beside the restored database, in-use refusals, and a
//! catalogue of bad inputs that each change nothing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

const PROG: &str = "wm-restore";

/// A directory with `memory.db` (a small table `t` of 5,000 rows, WAL or
/// rollback), an age key and a backup of the database as it is now.
struct Fx {
    d: Dir,
    db: PathBuf,
    id: PathBuf,
    backup: PathBuf,
}

impl Fx {
    fn new(wal: bool) -> Fx {
        let d = Dir::new();
        let db = d.join("memory.db");
        let c = rusqlite::Connection::open(&db).unwrap();
        if wal {
            c.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(())).unwrap();
        }
        c.execute_batch(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
             CREATE VIRTUAL TABLE f USING fts5(v);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<5000)
             INSERT INTO t(v) SELECT 'row ' || i || ' ' || hex(zeroblob(150)) FROM n;
             INSERT INTO f(v) SELECT v FROM t WHERE id <= 100;",
        )
        .unwrap();
        drop(c);
        let (id, key) = d.age_key("key.txt");
        run(WORKMEM_BACKUP, &d).args(["-q", "--db", "memory.db", "--to", "memory.db.age", "-r", &key]).go().ok();
        let backup = d.join("memory.db.age");
        Fx { d, db, id, backup }
    }

    fn restore(&self, args: &[&str]) -> Run {
        run(WM_RESTORE, &self.d).args(["-i", "key.txt", "--db", "memory.db"]).args(args)
    }

    /// The kept copy's main file.
    fn kept(&self) -> Option<PathBuf> {
        let mut kept: Vec<_> = std::fs::read_dir(&self.d.path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy().into_owned();
                n.starts_with("memory.db.pre-restore-")
                    && !n.ends_with("-wal")
                    && !n.ends_with("-shm")
                    && !n.ends_with("-journal")
            })
            .collect();
        kept.sort();
        kept.pop()
    }
}

fn rows(db: &Path) -> i64 {
    sqlite3(db, "SELECT count(*) FROM t").trim().parse().unwrap()
}

fn names(d: &Dir) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(&d.path).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// A `sqlite3` process on `db` fed `sql` and left waiting for more input,
/// once `ready` holds (e.g. its WAL has grown).
fn sqlite3_session(db: &Path, sql: &str, ready: impl Fn() -> bool) -> Child {
    let mut child = Command::new("sqlite3")
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run sqlite3");
    child.stdin.as_mut().unwrap().write_all(sql.as_bytes()).unwrap();
    let started = Instant::now();
    while !ready() {
        assert!(started.elapsed() < Duration::from_secs(20), "sqlite3 session never got ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn sigkill(mut child: Child) {
    use std::os::unix::process::ExitStatusExt;
    child.kill().unwrap();
    let st = child.wait().unwrap();
    assert_eq!(st.signal(), Some(9), "the writer died of SIGKILL");
}

/// The state a killed server leaves: rows deleted and committed into the
/// WAL, never checkpointed, the process gone.
fn crash_a_wal_writer(db: &Path) {
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    let child =
        sqlite3_session(db, "PRAGMA wal_autocheckpoint=0;\nDELETE FROM t WHERE id % 2 = 0;\nSELECT 'done';\n", || {
            std::fs::metadata(&wal).is_ok_and(|m| m.len() > 40_000)
        });
    std::thread::sleep(Duration::from_millis(200));
    sigkill(child);
}

#[test]
fn after_a_crashed_server_the_restore_has_the_backups_rows_and_the_kept_copy_the_servers() {
    if !have("sqlite3") {
        return;
    }
    let fx = Fx::new(true);
    crash_a_wal_writer(&fx.db);
    let wal_before = fx.d.read("memory.db-wal");
    let mode_before = mode_of(&fx.db);
    assert!(fx.d.join("memory.db-shm").exists());
    fx.restore(&["-q", "memory.db.age"]).go().ok();
    // Nothing of the old set beside the restored database.
    assert!(!fx.d.join("memory.db-wal").exists() && !fx.d.join("memory.db-shm").exists(), "{:?}", names(&fx.d));
    assert_eq!(rows(&fx.db), 5000, "exactly the backup's rows");
    assert_integrity(&fx.db);
    assert_eq!(mode_of(&fx.db), mode_before, "the old database's mode, for the server");
    let kept = fx.kept().expect("a kept copy");
    let kept_wal = PathBuf::from(format!("{}-wal", kept.display()));
    assert_eq!(std::fs::read(&kept_wal).unwrap(), wal_before, "the crashed server's WAL is kept as it was");
    assert_eq!(rows(&kept), 2500, "the kept copy opens with the crashed server's rows");
    assert_eq!(sqlite3(&fx.db, "SELECT count(*) FROM f WHERE f MATCH 'row'").trim(), "100", "FTS5 answers");
    // The server's next open works: a WAL-mode writer.
    let c = rusqlite::Connection::open(&fx.db).unwrap();
    c.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(())).unwrap();
    c.execute("INSERT INTO t(v) VALUES ('after the restore')", []).unwrap();
    drop(c);
    assert_eq!(rows(&fx.db), 5001);
    assert_integrity(&fx.db);
}

/// Why the tool exists: the README's old way, `age -d > memory.db` beside a
/// crashed server's WAL, silently gives the wrong rows.
#[test]
fn decrypting_over_a_crashed_servers_database_with_age_gives_the_wrong_rows() {
    if !have("sqlite3") || !have("age") {
        return;
    }
    let fx = Fx::new(true);
    crash_a_wal_writer(&fx.db);
    let plain = age_decrypt(&fx.id, &fx.backup).unwrap();
    std::fs::write(&fx.db, plain).unwrap();
    assert_eq!(rows(&fx.db), 2500, "SQLite replayed the old WAL onto the restored file");
    assert_integrity(&fx.db);
}

#[test]
fn a_rollback_journal_left_by_a_killed_writer_is_kept_and_rolls_back_in_the_kept_copy() {
    if !have("sqlite3") {
        return;
    }
    let fx = Fx::new(false);
    let journal = fx.d.join("memory.db-journal");
    // A transaction bigger than a one-page cache spills into the database file.
    let child = sqlite3_session(
        &fx.db,
        "PRAGMA cache_size=1;\nBEGIN;\nUPDATE t SET v = v || ' changed';\nDELETE FROM t WHERE id > 100;\n",
        || std::fs::metadata(&journal).is_ok_and(|m| m.len() > 0),
    );
    std::thread::sleep(Duration::from_millis(300));
    sigkill(child);
    assert!(journal.exists(), "a hot journal");
    let journal_before = std::fs::read(&journal).unwrap();
    fx.restore(&["-q", "memory.db.age"]).go().ok();
    assert!(!journal.exists(), "no old journal beside the restored database: {:?}", names(&fx.d));
    assert_eq!(rows(&fx.db), 5000);
    assert_integrity(&fx.db);
    let kept = fx.kept().unwrap();
    let kept_journal = PathBuf::from(format!("{}-journal", kept.display()));
    assert_eq!(std::fs::read(&kept_journal).unwrap(), journal_before, "the journal is kept as it was");
    assert_eq!(rows(&kept), 5000, "the kept copy rolls back to before the killed transaction");
    assert_eq!(sqlite3(&kept, "SELECT count(*) FROM t WHERE v LIKE '%changed'").trim(), "0");
}

/// Where memory is short, wm-restore decrypts into the new file and checks
/// it there, mapped: nothing holds the database a second time. Under an
/// RLIMIT_DATA of 64 MiB (the heap and private anonymous memory; a shared
/// mapping of a file is not counted) `auto` sees the limit, and a 128 MiB
/// database restores and is whole; the same limit stops wm-verify with its
/// memory spool, which must hold the image.
#[test]
fn a_restore_holds_no_copy_of_the_database_in_memory() {
    let d = Dir::new();
    let db = d.workmem_db("memory.db", 128 << 20, true);
    let (_, key) = d.age_key("key.txt");
    run(WORKMEM_BACKUP, &d).args(["-q", "--db", "memory.db", "--to", "b.age", "-r", &key]).go().ok();
    let before = have("sqlite3").then(|| content_digest(&db));
    std::fs::remove_file(&db).unwrap();
    let limited = |bin: &str, args: &[&str]| {
        let mut r = run(bin, &d).args(args);
        // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(r.command(), || {
                let limit = nix::libc::rlimit { rlim_cur: 64 << 20, rlim_max: 64 << 20 };
                if nix::libc::setrlimit(nix::libc::RLIMIT_DATA, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        r.go()
    };
    let verify = limited(WM_VERIFY, &["-q", "-i", "key.txt", "--spool", "memory", "b.age"]);
    assert_eq!(verify.code(), 1, "the limit holds a memory spool back: {}", verify.stderr);
    let out = limited(WM_RESTORE, &["-q", "-i", "key.txt", "--db", "memory.db", "b.age"]);
    assert_eq!(out.code(), 0, "restore under a 64 MiB RLIMIT_DATA: {}", out.stderr);
    if let Some(before) = before {
        assert_integrity(&db);
        assert_eq!(content_digest(&db), before, "the restored database is the backed-up one");
    }
}

#[test]
fn a_target_that_does_not_exist_is_created_private_whatever_the_umask() {
    let fx = Fx::new(true);
    let out = run(WM_RESTORE, &fx.d).args(["-i", "key.txt", "--db", "new/restored.db", "memory.db.age"]);
    fx.d.mkdir("new");
    out.go().ok();
    let restored = fx.d.join("new/restored.db");
    assert_eq!(mode_of(&restored), 0o600);
    assert_eq!(names_in(&fx.d.join("new")), vec!["restored.db"], "nothing else, no kept copy of nothing");
    if have("sqlite3") {
        assert_eq!(rows(&restored), 5000);
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn the_target_comes_from_memory_db_path_and_the_env_file_as_for_backups() {
    let fx = Fx::new(false);
    fx.d.mkdir("srv");
    fx.d.write(".env", "MEMORY_DB_PATH=srv/from-env.db\n");
    run(WM_RESTORE, &fx.d).args(["-q", "-i", "key.txt", "--env-file", ".env", "memory.db.age"]).go().ok();
    assert!(fx.d.join("srv/from-env.db").exists());
    run(WM_RESTORE, &fx.d).args(["-q", "-i", "key.txt", "memory.db.age"]).env("MEMORY_DB_PATH", "srv/var.db").go().ok();
    assert!(fx.d.join("srv/var.db").exists());
}

#[test]
fn a_dry_run_verifies_says_what_it_would_do_and_changes_nothing() {
    let fx = Fx::new(true);
    std::fs::write(fx.d.join("memory.db-wal"), b"").unwrap();
    let before = fx.d.tree();
    let out = fx.restore(&["--dry-run", "-v", "memory.db.age"]).go();
    out.ok();
    for needle in ["would restore", "would keep", "memory.db.pre-restore-", "nothing was changed", "integrity_check ok"]
    {
        assert!(out.stderr.contains(needle), "{needle:?}: {}", out.stderr);
    }
    assert_unchanged(&before, &fx.d.tree(), "dry run");
}

#[test]
fn the_json_report_says_what_was_kept_removed_and_written() {
    let fx = Fx::new(true);
    std::fs::write(fx.d.join("memory.db-wal"), b"").unwrap();
    let _ = std::fs::remove_file(fx.d.join("memory.db-shm"));
    let out = fx.restore(&["--json", "memory.db.age"]).go();
    out.ok();
    assert!(out.stderr.is_empty(), "the report goes to stdout: {}", out.stderr);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["restored"], true);
    assert_eq!(v["dry_run"], false);
    assert!(v["error"].is_null());
    assert!(v["kept"]["name"].as_str().unwrap().contains("memory.db.pre-restore-"));
    let kept: Vec<&str> = v["kept"]["files"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert_eq!(kept.len(), 2, "the database and its -wal: {kept:?}");
    assert!(kept[0].ends_with("-wal") && !kept[1].ends_with("-wal"), "journals first: {kept:?}");
    assert_eq!(v["removed"].as_array().unwrap().len(), 1);
    assert_eq!(v["written"]["page_size"], 4096);
    assert_eq!(v["verification"]["integrity_check"], "ok");
    let failed = fx.restore(&["--json", "key.txt"]).go();
    assert_eq!(failed.code(), 1);
    let v: serde_json::Value = serde_json::from_slice(&failed.stdout).unwrap();
    assert_eq!(v["restored"], false);
    assert!(v["error"].as_str().unwrap().contains("not an age file"), "{v}");
}

/// A backup that decrypts whole but fails the check (an index out of
/// order with its table) restores under no spool: on the memory path the
/// new file was being written while the check ran, and it must go with the
/// failure. Exit 1, the message of the check, the directory as it was.
#[test]
fn a_backup_that_fails_the_check_changes_nothing_whichever_way_it_is_checked() {
    let fx = Fx::new(true);
    let bad = fx.d.join("bad.db");
    let c = rusqlite::Connection::open(&bad).unwrap();
    c.execute_batch(
        "CREATE TABLE t(a INTEGER); CREATE INDEX i ON t(a);
         WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM n WHERE x<2000) INSERT INTO t SELECT x FROM n;
         PRAGMA writable_schema=ON;
         UPDATE sqlite_schema SET sql='CREATE INDEX i ON t(a DESC)' WHERE name='i';",
    )
    .unwrap();
    drop(c);
    let key = recipient_of(&fx.d);
    run(WM_SEAL, &fx.d).args(["-q", "--raw", "-r", &key, "--to", "bad.age"]).stdin(fx.d.read("bad.db")).go().ok();
    std::fs::remove_file(&bad).unwrap();
    let before = fx.d.tree();
    for spool in ["memory", "disk", "auto"] {
        let out = fx.restore(&["--spool", spool, "bad.age"]).go();
        out.expect(1, "integrity").one_line_error(PROG);
        assert_unchanged(&before, &fx.d.tree(), &format!("--spool {spool}"));
    }
}

/// `--spool memory` checks the database in memory and writes the new file
/// meanwhile; `--spool disk` checks the new file itself; `auto` takes
/// memory for a small backup where the file can be written around the page
/// cache (the Linux fast paths), the new file elsewhere. Each restores the
/// same database, in WAL mode as before, and the report says which ran.
/// Written around the cache, the restored file leaves (almost) nothing of
/// itself in the page cache.
#[test]
fn a_restore_checks_in_memory_or_in_the_new_file_as_asked() {
    let fx = Fx::new(true);
    let digest = |db: &Path| -> String {
        let c = rusqlite::Connection::open(db).unwrap();
        c.query_row("SELECT count(*) || ' ' || sum(length(v)) || ' ' || group_concat(id % 97) FROM t", [], |r| r.get(0))
            .unwrap()
    };
    let want = digest(&fx.db);
    let auto = if LINUX_FAST_PATHS { "memory" } else { "disk" };
    for (spool, checked_in) in [("memory", "memory"), ("disk", "disk"), ("auto", auto)] {
        // The kept copy is named by the second: the last run's goes first.
        for e in std::fs::read_dir(&fx.d.path).unwrap().flatten() {
            if e.file_name().to_string_lossy().contains(".pre-restore-") {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
        let out = fx.restore(&["--json", "--spool", spool, "memory.db.age"]).go();
        out.ok();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["verification"]["spool"], checked_in, "--spool {spool}: {v}");
        // Before anything reads the file.
        if spool == "memory" && LINUX_FAST_PATHS && direct_io_works(&fx.d.path) {
            let (cached, pages) = cached_pages(&fx.db);
            assert!(cached * 10 <= pages, "--spool memory: {cached} of {pages} pages of the new file cached");
        }
        assert_eq!(v["written"]["journal_mode"], "wal", "--spool {spool}");
        assert_integrity(&fx.db);
        assert_eq!(digest(&fx.db), want, "--spool {spool}: the backed-up database");
    }
}

#[test]
fn an_idle_wal_connection_makes_it_in_use_and_nothing_changes() {
    if !have("sqlite3") {
        return;
    }
    let fx = Fx::new(true);
    // Ready once its first query has run (the -shm may be there before
    // sqlite3 opens anything: the backup's read can leave it).
    let ready = fx.d.join("ready");
    let sql = format!("SELECT count(*) FROM t;\n.once '{}'\nSELECT 'ready';\n", ready.display());
    let child = sqlite3_session(&fx.db, &sql, || std::fs::read(&ready).is_ok_and(|r| r.starts_with(b"ready")));
    let before = fx.d.tree();
    let out = fx.restore(&["--busy-timeout", "200", "memory.db.age"]).go();
    out.expect(1, "in use").one_line_error(PROG);
    assert!(out.stderr.contains("stop the workmem server"), "{}", out.stderr);
    assert_unchanged(&before, &fx.d.tree(), "in use");
    sigkill(child);
}

/// An idle rollback-journal connection holds no lock: only `/proc` shows it,
/// on Linux. The portable paths cannot see it (README, per platform).
#[cfg(all(target_os = "linux", not(feature = "portable")))]
#[test]
fn an_idle_rollback_connection_in_another_process_makes_it_in_use() {
    if !have("sqlite3") {
        return;
    }
    let fx = Fx::new(false);
    let child = sqlite3_session(&fx.db, "SELECT count(*) FROM t;\n", || true);
    // Until the process has the database open (it may be slow to start).
    let fds = PathBuf::from(format!("/proc/{}/fd", child.id()));
    let started = Instant::now();
    while !std::fs::read_dir(&fds)
        .is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == fx.db))))
    {
        assert!(started.elapsed() < Duration::from_secs(20), "sqlite3 never opened the database");
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = fx.d.tree();
    let out = fx.restore(&["--busy-timeout", "100", "memory.db.age"]).go();
    out.expect(1, "in use (process").one_line_error(PROG);
    assert_unchanged(&before, &fx.d.tree(), "in use by an idle process");
    sigkill(child);
}

#[test]
fn a_database_in_use_is_waited_for_up_to_busy_timeout() {
    let fx = Fx::new(false);
    // Before the lock: reading a file in this process would drop this
    // process's locks on it (POSIX locks belong to the process).
    let before = fx.d.tree();
    let c = rusqlite::Connection::open(&fx.db).unwrap();
    c.execute_batch("BEGIN IMMEDIATE; UPDATE t SET v = 'x' WHERE id = 1;").unwrap();
    let started = Instant::now();
    let out = fx.restore(&["--busy-timeout", "300", "memory.db.age"]).go();
    out.expect(1, "in use").one_line_error(PROG);
    assert!(started.elapsed() >= Duration::from_millis(300), "it waited");
    // Let go within the timeout: the restore goes ahead.
    let child = fx.restore(&["-q", "--busy-timeout", "10000", "memory.db.age"]).spawn();
    std::thread::sleep(Duration::from_millis(300));
    c.execute_batch("ROLLBACK").unwrap();
    drop(c);
    assert_unchanged(&before, &fx.d.tree(), "in use: nothing changed before it was let go");
    let mut child = child;
    let status = wait_timeout(&mut child, Duration::from_secs(30));
    assert!(status.success(), "{}", stderr_of(&mut child));
    assert!(fx.kept().is_some());
}

#[test]
fn a_kept_copy_is_never_overwritten() {
    let fx = Fx::new(true);
    // The next run's name, taken: any stamp of the next few seconds.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    for s in now..now + 30 {
        let stamp = utc_stamp(s);
        fx.d.write(&format!("memory.db.pre-restore-{stamp}"), b"precious");
    }
    let before = fx.d.tree();
    let out = fx.restore(&["memory.db.age"]).go();
    out.expect(1, "already exists").one_line_error(PROG);
    assert_unchanged(&before, &fx.d.tree(), "kept name taken");
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time, as the tools name things.
fn utc_stamp(secs: i64) -> String {
    let out = Command::new("date").args(["-u", "-d", &format!("@{secs}"), "+%Y%m%dT%H%M%SZ"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_restore_killed_while_keeping_leaves_names_the_next_run_removes() {
    let fx = Fx::new(true);
    std::fs::write(fx.d.join("memory.db-wal"), b"").unwrap();
    std::fs::write(fx.d.join("memory.db-shm"), vec![0u8; 32768]).unwrap();
    // As a run killed between its links leaves them: other names of the live journals.
    std::fs::hard_link(fx.d.join("memory.db-wal"), fx.d.join("memory.db.pre-restore-20200101T000000Z-wal")).unwrap();
    std::fs::hard_link(fx.d.join("memory.db-shm"), fx.d.join("memory.db.pre-restore-20200101T000000Z-shm")).unwrap();
    let out = fx.restore(&["-v", "memory.db.age"]).go();
    out.ok();
    assert!(out.stderr.contains("cleaned"), "{}", out.stderr);
    assert!(!names(&fx.d).iter().any(|n| n.contains("20200101")), "{:?}", names(&fx.d));
}

#[test]
fn sigterm_while_waiting_for_the_backup_changes_nothing() {
    let fx = Fx::new(true);
    let before = fx.d.tree();
    let mut child =
        fx.restore(&[]).command().stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    sigterm_expect_143(&mut child, "wm-restore waiting for its backup on stdin");
    assert_unchanged(&before, &fx.d.tree(), "SIGTERM");
}

/// Each bad input: exit 1 (or 2), one line naming what is wrong, and the
/// directory exactly as it was.
#[test]
fn every_bad_input_fails_in_one_line_and_changes_nothing() {
    let fx = Fx::new(true);
    let d = &fx.d;
    let (_other, _) = d.age_key("other.txt");
    let good = std::fs::read(&fx.backup).unwrap();
    d.write("cut.age", &good[..good.len() - 100]);
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 1;
    d.write("flipped.age", flipped);
    d.write("plain.db", std::fs::read(&fx.db).unwrap());
    d.mkdir("adir");
    d.mkdir("ro");
    std::os::unix::fs::symlink("memory.db", d.join("link.db")).unwrap();
    nix::unistd::mkfifo(&d.join("fifo.db"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let not_sqlite = d.join("not-sqlite.age");
    let sealed = run(WM_SEAL, d)
        .args(["-q", "--raw", "-r", &recipient_of(d), "--to", "not-sqlite.age"])
        .stdin(b"just some text".to_vec())
        .go();
    sealed.ok();
    assert!(not_sqlite.exists());
    let cases: Vec<(&str, Vec<&str>, i32, &str)> = vec![
        ("backup missing", vec!["missing.age"], 1, "no such file"),
        ("backup a directory", vec!["adir"], 1, "is a directory"),
        ("wrong identity", vec!["-i", "other.txt", "memory.db.age"], 1, "no identity given opens it"),
        ("truncated backup", vec!["cut.age"], 1, "truncated"),
        ("altered backup", vec!["flipped.age"], 1, "altered"),
        ("payload not SQLite", vec!["not-sqlite.age"], 1, "not a SQLite database"),
        ("a plaintext database given as the backup", vec!["plain.db"], 1, "not an age file"),
        ("target a directory", vec!["--db", "adir", "memory.db.age"], 1, "is a directory"),
        ("target a FIFO", vec!["--db", "fifo.db", "memory.db.age"], 1, "not a regular file"),
        ("target a symlink", vec!["--db", "link.db", "memory.db.age"], 1, "is a symlink"),
        ("target's directory missing", vec!["--db", "nodir/memory.db", "memory.db.age"], 1, "directory does not exist"),
        ("empty --db", vec!["--db=", "memory.db.age"], 2, "--db"),
        ("no identity", vec!["memory.db.age"], 2, "required"),
        ("identity file missing", vec!["-i", "nokey.txt", "memory.db.age"], 1, "nokey.txt"),
        ("--tmpdir missing", vec!["--tmpdir", "notmp", "memory.db.age"], 1, "notmp"),
        ("--spool of no kind", vec!["--spool", "tmpfs", "memory.db.age"], 2, "--spool"),
    ];
    let before = d.tree();
    for (what, args, code, needle) in &cases {
        let mut r = run(WM_RESTORE, d);
        if !args.contains(&"-i") && *what != "no identity" {
            r = r.args(["-i", "key.txt"]);
        }
        if !args.iter().any(|a| a.starts_with("--db")) {
            r = r.args(["--db", "memory.db"]);
        }
        let out = r.args(args).go();
        assert_eq!(out.code(), *code, "{what}: {}", out.stderr);
        assert!(out.stderr.contains(needle), "{what}: {needle:?} in {}", out.stderr);
        out.one_line_error(PROG);
        assert_unchanged(&before, &d.tree(), what);
    }
    // A directory this user cannot write (as nobody, when the tests run as root).
    std::fs::copy(&fx.db, d.join("ro/memory.db")).unwrap();
    std::fs::set_permissions(d.join("ro"), std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
    std::fs::set_permissions(d.join("key.txt"), std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let before = d.tree();
    let out = run(WM_RESTORE, d).args(["-i", "key.txt", "--db", "ro/memory.db", "memory.db.age"]).unprivileged().go();
    assert_eq!(out.code(), 1, "read-only directory: {}", out.stderr);
    out.one_line_error(PROG);
    assert_unchanged(&before, &d.tree(), "read-only directory");
}

fn recipient_of(d: &Dir) -> String {
    let secret = secret_of(&d.join("key.txt"));
    let id: age::x25519::Identity = secret.parse().unwrap();
    id.to_public().to_string()
}

/// Failures injected into the write of the new database and into each rename
/// of the swap (ENOSPC, EIO, EXDEV, EACCES): exit 1, one line, and the
/// directory as it was, the crashed server's journals included.
#[test]
fn injected_write_and_rename_failures_are_undone_and_change_nothing() {
    if !have("strace") || !have("sqlite3") {
        return;
    }
    // strace counts calls per thread. The new database is written on a
    // thread of its own, a megabyte at a time (the image is 1.5 MB), and the
    // main thread's first write is the error message: the second write is
    // the copy's, and only the copy's.
    let faults: [(&str, &str, &str); 6] = [
        ("write", "ENOSPC", "2"),
        ("write", "EIO", "2"),
        ("renameat", "EXDEV", "1"),
        ("renameat", "EACCES", "1"),
        ("renameat", "EXDEV", "2"),
        ("renameat", "EACCES", "2"),
    ];
    let mut fired = 0;
    for (call, errno, when) in faults {
        let fx = Fx::new(true);
        crash_a_wal_writer(&fx.db);
        let before = fx.d.tree();
        let inject = format!("inject={call}:error={errno}:when={when}");
        let log = fx.d.join("strace.log");
        let out = run("strace", &fx.d)
            .args(["-f", "-o"])
            .args([&log])
            .args(["-e", &format!("trace={call}"), "-e", &inject, WM_RESTORE])
            .args(["-i", "key.txt", "--db", "memory.db", "memory.db.age"])
            .go();
        let what = format!("{call} {errno} at call {when}");
        let log = std::fs::read_to_string(&log).unwrap();
        let injected: Vec<&str> = log.lines().filter(|l| l.contains("(INJECTED)")).collect();
        assert_eq!(injected.len(), 1, "{what}: one injection: {log}");
        if call == "write" {
            assert!(!injected[0].contains("write(2,"), "{what}: the copy's write, not the message's: {log}");
        }
        std::fs::remove_file(fx.d.join("strace.log")).unwrap();
        assert_eq!(out.code(), 1, "{what}: {}", out.stderr);
        out.one_line_error(PROG);
        assert!(out.stderr.contains("nothing was changed") || out.stderr.contains("write:"), "{what}: {}", out.stderr);
        assert_unchanged(&before, &fx.d.tree(), &what);
        assert_eq!(rows(&fx.db), 2500, "{what}: the old set opens as it was");
        fired += 1;
    }
    assert_eq!(fired, 6);
}
