//! wm-snapshot: what it promises, each test named after one promise.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rusqlite::Connection;

const METHODS: [&str; 2] = ["vacuum", "pages"];
const SPOOLS: [&str; 3] = ["auto", "memory", "disk"];

#[test]
fn snapshot_round_trips_through_sqlite3_for_every_method_and_spool() {
    if !have("sqlite3") {
        return;
    }
    for wal in [true, false] {
        let d = Dir::new();
        let db = d.workmem_db("memory.db", 600_000, wal);
        let want = content_digest(&db);
        for method in METHODS {
            for spool in SPOOLS {
                let snap = d.join(&format!("snap-{method}-{spool}.db"));
                let out = run(WM_SNAPSHOT, &d).args(["--db", "memory.db", "--method", method, "--spool", spool]).go();
                out.ok();
                std::fs::write(&snap, &out.stdout).unwrap();
                assert_integrity(&snap);
                assert_eq!(content_digest(&snap), want, "wal={wal} method={method} spool={spool}");
            }
        }
    }
}

#[test]
fn snapshot_to_file_is_complete_private_and_leaves_nothing_else() {
    if !have("sqlite3") {
        return;
    }
    let d = Dir::new();
    let db = d.workmem_db("memory.db", 300_000, true);
    let spool_dir = d.mkdir("tmp");
    for method in METHODS {
        let name = format!("snap-{method}.db");
        run(WM_SNAPSHOT, &d)
            .args(["--db", "memory.db", "--to", &name, "--method", method, "--check"])
            .env("TMPDIR", &spool_dir)
            .go()
            .ok();
        let snap = d.join(&name);
        assert_integrity(&snap);
        assert_eq!(content_digest(&snap), content_digest(&db));
        assert_eq!(mode_of(&snap), 0o600, "snapshot files are private");
    }
    assert!(std::fs::read_dir(&spool_dir).unwrap().next().is_none(), "nothing left in TMPDIR");
    let names: Vec<String> = d.tree().keys().cloned().collect();
    for n in &names {
        assert!(
            n.starts_with("memory.db") || n.starts_with("snap-") || n == "tmp/",
            "unexpected file {n} in {names:?}"
        );
    }
}

#[test]
fn snapshot_replaces_an_existing_destination_only_on_success() {
    let d = Dir::new();
    d.workmem_db("memory.db", 200_000, true);
    d.write("snap.db", b"previous snapshot");
    run(WM_SNAPSHOT, &d).args(["--db", "missing.db", "--to", "snap.db"]).go().expect(1, "no such file");
    assert_eq!(d.read("snap.db"), b"previous snapshot");
    run(WM_SNAPSHOT, &d).args(["--db", "memory.db", "--to", "snap.db"]).go().ok();
    assert!(is_plaintext_db(&d.join("snap.db")));
}

#[test]
fn bad_sources_fail_with_one_line_and_create_nothing() {
    let d = Dir::new();
    d.mkdir("adir");
    d.write("empty.db", b"");
    d.write("text.db", b"this is not a database at all, just some text\n");
    let mut truncated = b"SQLite format 3\0".to_vec();
    truncated.extend_from_slice(&[0x10, 0x00, 1, 1, 0, 64, 32, 32]);
    d.write("cut.db", &truncated);
    nix::unistd::mkfifo(&d.join("fifo.db"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let cases: &[(&str, &str)] = &[
        ("missing.db", "no such file"),
        ("adir", "is a directory"),
        ("empty.db", "empty file (0 bytes)"),
        ("text.db", "not a SQLite database"),
        ("cut.db", "truncated SQLite header"),
        ("fifo.db", "not a regular file"),
        ("nodir/memory.db", "no such file"),
    ];
    for (db, needle) in cases {
        let before = d.tree();
        for to in [None, Some("out.db")] {
            let mut r = run(WM_SNAPSHOT, &d).args(["--db", db]);
            if let Some(t) = to {
                r = r.args(["--to", t]);
            }
            let out = r.go();
            out.expect(1, needle).one_line_error("wm-snapshot");
            assert!(out.stderr.contains(db.trim_start_matches("./")), "names the path: {}", out.stderr);
            assert!(out.stdout.is_empty(), "nothing on stdout");
        }
        assert_unchanged(&before, &d.tree(), db);
    }
    assert!(!d.join("missing.db").exists(), "a read-only open never creates the source");
}

#[test]
fn unreadable_source_is_reported_as_permission_denied() {
    let d = Dir::new();
    let db = d.workmem_db("memory.db", 100_000, false);
    std::fs::set_permissions(&db, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    let before = d.tree();
    let out = run(WM_SNAPSHOT, &d).args(["--db", "memory.db"]).unprivileged().go();
    out.expect(1, "permission denied").one_line_error("wm-snapshot");
    assert_unchanged(&before, &d.tree(), "unreadable source");
}

#[test]
fn destination_that_is_the_source_is_refused_before_reading() {
    let d = Dir::new();
    d.workmem_db("memory.db", 100_000, true);
    // Make the -wal exist so that it can be linked to.
    Connection::open(d.join("memory.db"))
        .unwrap()
        .execute_batch("PRAGMA wal_autocheckpoint=0; INSERT INTO events(label) VALUES ('x');")
        .unwrap();
    std::fs::hard_link(d.join("memory.db"), d.join("hard.db")).unwrap();
    symlink("memory.db", d.join("link.db")).unwrap();
    symlink("memory.db-journal", d.join("dangling.db")).unwrap();
    d.mkdir("sub");
    let before = d.tree();
    for to in [
        "memory.db",
        "./memory.db",
        "sub/../memory.db",
        "hard.db",
        "link.db",
        "dangling.db",
        "memory.db-wal",
        "memory.db-shm",
    ] {
        let out = run(WM_SNAPSHOT, &d).args(["--db", "memory.db", "--to", to]).go();
        out.expect(1, "is the source database").one_line_error("wm-snapshot");
        assert_unchanged(&before, &d.tree(), to);
    }
    let abs = d.join("memory.db");
    run(WM_SNAPSHOT, &d).args(["--db", "./memory.db", "--to"]).arg_path(&abs).go().expect(1, "is the source database");
}

trait ArgPath {
    fn arg_path(self, p: &Path) -> Self;
}
impl ArgPath for Run {
    fn arg_path(self, p: &Path) -> Self {
        self.args([p])
    }
}

#[test]
fn destination_directory_problems_are_clear() {
    let d = Dir::new();
    d.workmem_db("memory.db", 100_000, true);
    d.mkdir("out");
    let ro = d.mkdir("ro");
    std::fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
    let before = d.tree();
    run(WM_SNAPSHOT, &d)
        .args(["--db", "memory.db", "--to", "nodir/snap.db"])
        .go()
        .expect(1, "nodir")
        .one_line_error("wm-snapshot");
    run(WM_SNAPSHOT, &d).args(["--db", "memory.db", "--to", "nodir/"]).go().expect(1, "no such file or directory");
    run(WM_SNAPSHOT, &d)
        .args(["--db", "memory.db", "--to", "ro/snap.db"])
        .unprivileged()
        .go()
        .expect(1, "permission denied");
    assert_unchanged(&before, &d.tree(), "bad destinations");
}

#[test]
fn refuses_to_write_a_database_to_a_terminal() {
    let d = Dir::new();
    d.workmem_db("memory.db", 100_000, true);
    let (_controller, tty) = pty();
    let out = run(WM_SNAPSHOT, &d).args(["--db", "memory.db"]).stdout_file(tty).go();
    out.expect(2, "terminal");
    assert!(out.stderr.contains("--to"), "suggests --to: {}", out.stderr);
}

#[test]
fn empty_db_flag_is_a_usage_error() {
    let d = Dir::new();
    let out = run(WM_SNAPSHOT, &d).args(["--db", ""]).go();
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(out.stderr.contains("--db"), "names the flag: {}", out.stderr);
    let out = run(WM_SNAPSHOT, &d).args(["--db", "memory.db", "--to", ""]).go();
    assert_eq!(out.code(), 2, "{}", out.stderr);
}

#[test]
fn closed_pipe_ends_quietly_with_exit_1_and_no_residue() {
    let d = Dir::new();
    d.workmem_db("memory.db", 3_000_000, true);
    let tmp = d.mkdir("tmp");
    for method in METHODS {
        let mut child = run(WM_SNAPSHOT, &d)
            .args(["--db", "memory.db", "--method", method, "--spool", "disk"])
            .env("TMPDIR", &tmp)
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        // Read a few bytes, then hang up, like `| head -c 10`.
        let mut out = child.stdout.take().unwrap();
        let mut ten = [0u8; 10];
        std::io::Read::read_exact(&mut out, &mut ten).unwrap();
        drop(out);
        let status = wait_timeout(&mut child, Duration::from_secs(20));
        let err = stderr_of(&mut child);
        assert_eq!(status.code(), Some(1), "{method}: exit 1 on EPIPE; stderr: {err}");
        assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
        assert!(std::fs::read_dir(&tmp).unwrap().next().is_none(), "no spool left");
    }
}

#[test]
fn sigint_and_sigterm_stop_the_run_remove_temporaries_and_exit_128_plus_n() {
    let d = Dir::new();
    d.workmem_db("memory.db", 3_000_000, true);
    let tmp = d.mkdir("tmp");
    for (sig, code) in [(Signal::SIGINT, 130), (Signal::SIGTERM, 143)] {
        for (method, to) in [("vacuum", None), ("pages", None), ("vacuum", Some("snap.db")), ("pages", Some("snap.db"))]
        {
            let mut r = run(WM_SNAPSHOT, &d)
                .args(["--db", "memory.db", "--method", method, "--spool", "disk"])
                .env("TMPDIR", &tmp);
            // To a pipe nobody reads: the run blocks mid-stream, the signal finds it there.
            let (reader, writer) = std::io::pipe().unwrap();
            if let Some(t) = to {
                r = r.args(["--to", t]);
            }
            let mut child = r.command().stdout(writer).stderr(Stdio::piped()).stdin(Stdio::null()).spawn().unwrap();
            std::thread::sleep(Duration::from_millis(300));
            kill(Pid::from_raw(child.id() as i32), sig).unwrap();
            let started = Instant::now();
            let status = wait_timeout(&mut child, Duration::from_secs(20));
            drop(reader);
            let err = stderr_of(&mut child);
            if to.is_none() {
                assert_eq!(status.code(), Some(code), "{sig} {method}: {err}");
                assert!(started.elapsed() < Duration::from_secs(5), "stops promptly");
            } else {
                // To a file the run may already be over; if the signal won, nothing was committed.
                let c = status.code().unwrap();
                assert!(c == 0 || c == code, "{sig} {method} --to: exit {c}: {err}");
                if c == code {
                    assert!(!d.join("snap.db").exists(), "interrupted: no destination");
                }
                let _ = std::fs::remove_file(d.join("snap.db"));
            }
            assert!(std::fs::read_dir(&tmp).unwrap().next().is_none(), "no spool left after {sig}");
            let stray: Vec<_> = d.tree().into_keys().filter(|k| k.starts_with('.') || k.contains(".tmp")).collect();
            assert!(stray.is_empty(), "no temporaries: {stray:?}");
        }
    }
}

#[test]
fn locked_source_waits_for_busy_timeout_then_fails_clearly() {
    let d = Dir::new();
    let db = d.workmem_db("memory.db", 100_000, false);
    let holder = Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE; INSERT INTO events(label) VALUES ('held');").unwrap();
    for method in METHODS {
        let started = Instant::now();
        let out = run(WM_SNAPSHOT, &d).args(["--db", "memory.db", "--busy-timeout", "300", "--method", method]).go();
        let took = started.elapsed();
        out.expect(1, "locked").one_line_error("wm-snapshot");
        assert!(out.stderr.contains("--busy-timeout"), "hint names the flag: {}", out.stderr);
        assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(5), "{method}: waited {took:?}");
    }
    holder.execute_batch("ROLLBACK").unwrap();
}

#[test]
fn source_is_never_written() {
    let d = Dir::new();
    let db = d.workmem_db("memory.db", 400_000, false);
    let before = sha256_file(&db);
    for method in METHODS {
        for spool in SPOOLS {
            run(WM_SNAPSHOT, &d).args(["--db", "memory.db", "--method", method, "--spool", spool, "--check"]).go().ok();
        }
    }
    assert_eq!(sha256_file(&db), before, "rollback-journal source byte-identical");
    let listing: Vec<_> = d.tree().into_keys().collect();
    assert_eq!(listing, vec!["memory.db".to_string()], "no -journal or other file appeared");
}

fn assert_consistent(snap: &Path) {
    assert_integrity(snap);
    let c = Connection::open(snap).unwrap();
    let (obs, emb, orphans): (i64, i64, i64) = c
        .query_row(
            "SELECT (SELECT count(*) FROM observations), (SELECT count(*) FROM observation_embeddings), \
             (SELECT count(*) FROM observation_embeddings WHERE observation_id NOT IN (SELECT id FROM observations))",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(obs, emb, "one embedding per observation in {}", snap.display());
    assert_eq!(orphans, 0);
}

#[test]
fn snapshots_are_consistent_while_another_process_writes() {
    if !have("sqlite3") {
        return;
    }
    for wal in [true, false] {
        let d = Dir::new();
        let db = d.workmem_db("memory.db", 2_000_000, wal);
        let stop = Arc::new(AtomicBool::new(false));
        let w = spawn_writer(&db, stop.clone());
        for i in 0..20 {
            let method = METHODS[i % 2];
            let name = format!("snap{i}.db");
            let out = if i % 4 < 2 {
                run(WM_SNAPSHOT, &d).args(["--db", "memory.db", "--method", method, "--to", &name]).go()
            } else {
                let out = run(WM_SNAPSHOT, &d).args(["--db", "memory.db", "--method", method]).go();
                std::fs::write(d.join(&name), &out.stdout).unwrap();
                out
            };
            out.ok();
            assert_consistent(&d.join(&name));
        }
        stop.store(true, Ordering::Relaxed);
        let commits = w.join().unwrap();
        assert!(commits > 20, "the writer really wrote during the snapshots ({commits} commits, wal={wal})");
    }
}

#[test]
fn env_file_and_memory_db_path_pick_the_source() {
    let d = Dir::new();
    d.workmem_db("a.db", 100_000, true);
    d.workmem_db("b.db", 100_000, true);
    d.write(".env", "# comment\nexport MEMORY_DB_PATH='b.db' # trailing\n");
    let a_rows = |out: &Out| {
        let p = d.join("x.db");
        std::fs::write(&p, &out.stdout).unwrap();
        Connection::open(&p).unwrap().query_row("SELECT count(*) FROM entities", [], |r| r.get::<_, i64>(0)).unwrap()
    };
    // .env is used when the process has no MEMORY_DB_PATH...
    let out = run(WM_SNAPSHOT, &d).args(["--env-file", ".env"]).go();
    out.ok();
    assert!(a_rows(&out) > 0);
    // ...and the process environment wins, even over the file, and --db over both.
    run(WM_SNAPSHOT, &d).args(["--env-file", ".env"]).env("MEMORY_DB_PATH", "  nope.db  ").go().expect(1, "nope.db");
    run(WM_SNAPSHOT, &d).args(["--env-file", ".env", "--db", "a.db"]).env("MEMORY_DB_PATH", "nope.db").go().ok();
    // A missing .env is silently ignored.
    run(WM_SNAPSHOT, &d).args(["--env-file", "missing.env", "--db", "a.db"]).go().ok();
}

#[test]
fn to_a_directory_names_the_snapshot_after_the_database_and_the_utc_second() {
    if !have("sqlite3") {
        return;
    }
    let d = Dir::new();
    let db = d.workmem_db("memory.db", 300_000, true);
    d.mkdir("snaps");
    let t0 = unix_now();
    run(WM_SNAPSHOT, &d).args(["--db", "memory.db", "--to", "snaps/"]).go().ok();
    let snap = the_backup_in(&d.join("snaps"), "memory", "db", t0, unix_now());
    assert_integrity(&snap);
    assert_eq!(content_digest(&snap), content_digest(&db));
}

#[test]
fn json_report_has_the_sha256_of_the_snapshot_and_the_source_as_it_was() {
    if !have("sqlite3") {
        return;
    }
    let d = Dir::new();
    let db = d.workmem_db("memory.db", 300_000, false);
    let out = run(WM_SNAPSHOT, &d).args(["--db", "memory.db", "--json", "--method", "pages"]).go();
    out.ok();
    let (v, keys) = json_on_stderr(&out);
    assert_eq!(keys, sorted_keys(&BACKUP_KEYS), "{v}");
    assert_eq!(v["tool"], "wm-snapshot");
    assert_eq!(v["sha256"], sha256(&out.stdout), "the digest of the image written to stdout");
    assert_eq!(v["snapshot_bytes"], out.stdout.len());
    assert_eq!(v["destination"], "standard output");
    assert_eq!(
        (v["ciphertext_bytes"].clone(), v["recipients"].clone()),
        (serde_json::Value::Null, serde_json::json!([]))
    );
    assert_eq!(v["method"], "pages");
    assert_eq!(v["source"]["journal_mode"], "rollback");
    let pages = sqlite3(&db, "PRAGMA page_count").trim().parse::<u64>().unwrap();
    assert_eq!(v["source"]["page_count"], pages);
}
