//! Backups made to hurt their reader: anyone with the public key can seal a
//! database whose schema is code (CHECK constraints, generated columns, FTS5
//! tables whose content is a view). wm-verify, wm-restore and
//! `workmem-backup --verify` must end within the time budget and within
//! 256 MiB above the image, exit 1, and say what was refused. Each test
//! measures from outside the process: its wall time, and its peak resident
//! size from wait4's rusage.
//!
//! A child's ru_maxrss starts from its parent's resident size at the spawn
//! (exec keeps the high-water mark), and this test process may be large
//! while other tests run. So the tool is started by a launcher: this test
//! binary re-executed to run only [`measure_launcher`], a fresh and small
//! process, which spawns the tool, reaps it with wait4 and writes its exit
//! status, wall time and peak RSS to a file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::fixture;
use crate::harness::*;
use rusqlite::Connection;

/// What a check may use above the image, as promised.
const RSS_ABOVE_IMAGE: u64 = 256 << 20;
/// The budget the tests give, and what start-up, decryption and a loaded
/// machine may add to it.
const BUDGET_S: u64 = 3;
const SLACK: Duration = Duration::from_secs(12);

/// The launcher's instructions: the program and its arguments, separated by
/// this byte, and where the figures go.
const ARGV_ENV: &str = "WM_MEASURE_ARGV";
const OUT_ENV: &str = "WM_MEASURE_OUT";
const SEP: char = '\x1f';

struct Measured {
    code: i32,
    stderr: String,
    wall: Duration,
    peak_rss: u64,
}

/// Not a test of its own: the launcher that [`measured`] re-executes this
/// binary for. Without its environment it does nothing.
#[test]
fn measure_launcher() {
    let (Ok(argv), Ok(out)) = (std::env::var(ARGV_ENV), std::env::var(OUT_ENV)) else {
        return;
    };
    let argv: Vec<&str> = argv.split(SEP).collect();
    let started = Instant::now();
    let child = Command::new(argv[0]).args(&argv[1..]).stdin(Stdio::null()).stdout(Stdio::null()).spawn().unwrap();
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter for wait4.
    let mut ru: nix::libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: reaping our own child with valid out-pointers.
    let pid = unsafe { nix::libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    assert_eq!(pid, child.id() as i32, "wait4");
    let wall = started.elapsed();
    std::mem::forget(child);
    let code =
        if nix::libc::WIFEXITED(status) { nix::libc::WEXITSTATUS(status) } else { 128 + nix::libc::WTERMSIG(status) };
    std::fs::write(out, format!("{code} {} {}\n", wall.as_nanos(), ru.ru_maxrss)).unwrap();
}

/// Runs `bin ARGS` in `d` (TMPDIR there, as the harness does) through the
/// launcher; its exit status, stderr, wall time and peak RSS (bytes).
fn measured(d: &Dir, bin: &str, args: &[&str]) -> Measured {
    let out = d.join(".measured");
    let argv = std::iter::once(bin).chain(args.iter().copied()).collect::<Vec<_>>().join(&SEP.to_string());
    let started = Instant::now();
    let launched = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "hostile_images::measure_launcher", "--nocapture", "--test-threads=1", "-q"])
        .current_dir(&d.path)
        .env_remove("MEMORY_DB_PATH")
        .env_remove("RUST_BACKTRACE")
        .env("TMPDIR", &d.path)
        .env(ARGV_ENV, argv)
        .env(OUT_ENV, &out)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let outside = started.elapsed();
    assert!(launched.status.success(), "launcher: {}", String::from_utf8_lossy(&launched.stderr));
    let figures = std::fs::read_to_string(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    let f: Vec<u64> = figures.split_whitespace().map(|v| v.parse().unwrap()).collect();
    let wall = Duration::from_nanos(f[1]);
    assert!(wall <= outside, "the launcher's figure is within the test's own");
    // ru_maxrss is in KiB, but in bytes on Apple systems.
    let peak_rss = if cfg!(target_vendor = "apple") { f[2] } else { f[2] * 1024 };
    Measured { code: f[0] as i32, stderr: String::from_utf8_lossy(&launched.stderr).into_owned(), wall, peak_rss }
}

impl Measured {
    /// Exit 1 within the budget and the memory bound, one line saying `needle`.
    #[track_caller]
    fn refused(&self, prog: &str, image: u64, needle: &str) {
        assert_eq!(self.code, 1, "exit 1: {}", self.stderr);
        assert!(self.stderr.contains(needle), "stderr should say {needle:?}: {}", self.stderr);
        assert!(!self.stderr.contains("panicked"), "no panic: {}", self.stderr);
        assert_eq!(self.stderr.lines().filter(|l| l.starts_with(&format!("{prog}: "))).count(), 1, "{}", self.stderr);
        self.bounded(image);
    }

    #[track_caller]
    fn bounded(&self, image: u64) {
        eprintln!("measured: {:?}, peak RSS {} KiB, image {} KiB", self.wall, self.peak_rss >> 10, image >> 10);
        let limit = Duration::from_secs(BUDGET_S) + SLACK;
        assert!(self.wall <= limit, "took {:?}, more than {limit:?}: {}", self.wall, self.stderr);
        assert!(
            self.peak_rss <= image + RSS_ABOVE_IMAGE,
            "peak RSS {} MiB for a {} KiB image: {}",
            self.peak_rss >> 20,
            image >> 10,
            self.stderr
        );
    }
}

/// A database made by `sql`, then with each (name, sql) of `rewrite` put in
/// place of that object's schema text, as a hostile author would (SQLite
/// reads the new text on the next open; nothing of it ran when the rows
/// went in). Sealed to a new key; returns the directory, the backup and the
/// image's size.
fn sealed(sql: &str, rewrite: &[(&str, &str)]) -> (Dir, PathBuf, u64) {
    let d = Dir::new();
    let db = d.join("hostile.db");
    {
        let c = Connection::open(&db).unwrap();
        c.execute_batch(sql).unwrap();
        c.execute_batch("PRAGMA writable_schema = ON").unwrap();
        for (name, text) in rewrite {
            let n = c.execute("UPDATE sqlite_schema SET sql = ?1 WHERE name = ?2", [text, name]).unwrap();
            assert_eq!(n, 1, "{name} rewritten");
        }
        c.execute_batch("PRAGMA writable_schema = OFF").unwrap();
    }
    let image = std::fs::metadata(&db).unwrap().len();
    let (_, r) = d.age_key("id.txt");
    run(WM_SEAL, &d).args(["-q", "-r", &r, "--to", "hostile.age"]).stdin(std::fs::read(&db).unwrap()).go().ok();
    std::fs::remove_file(&db).unwrap();
    (d, PathBuf::from("hostile.age"), image)
}

fn verify(d: &Dir, backup: &Path, extra: &[&str]) -> Measured {
    let budget = BUDGET_S.to_string();
    let backup = backup.to_str().unwrap();
    measured(d, WM_VERIFY, &[&["-i", "id.txt", "--time-budget", &budget], extra, &[backup]].concat())
}

/// A string of `n` characters, made by SQLite at run time.
fn big(n: u64) -> String {
    format!("printf('%.*c', {n}, 'x')")
}

// ------------------------------------------------------------ the shapes

/// The issue's first shape: an FTS5 table whose external content is a view
/// over an endless recursive CTE (UNION, so that it also grows in memory).
/// Counting its rows through its content would never end; views are off.
const FTS5_OVER_ENDLESS_VIEW: &str = "
    CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);
    INSERT INTO notes VALUES (1, 'alpha beta'), (2, 'gamma');
    CREATE VIEW endless(id, body) AS
        WITH RECURSIVE r(i) AS (SELECT 1 UNION SELECT i + 1 FROM r) SELECT i, 'word ' || i FROM r;
    CREATE VIRTUAL TABLE f USING fts5(body, content='endless', content_rowid='id');
    INSERT INTO f(rowid, body) VALUES (1, 'word 1'), (2, 'word 2');
";

#[test]
fn fts5_over_an_endless_view_is_refused_within_the_bounds() {
    let (d, backup, image) = sealed(FTS5_OVER_ENDLESS_VIEW, &[]);
    let m = verify(&d, &backup, &[]);
    m.refused("wm-verify", image, "refused: FTS5 table f takes its rows from view endless");
}

/// The issue's second shape: a CHECK constraint that builds a 900 MB
/// string for every row (integrity_check evaluates CHECK constraints).
#[test]
fn check_constraint_building_a_900_mb_string_is_refused_as_too_long() {
    let check = format!("CREATE TABLE t(x INTEGER, CHECK (length({}) > 0))", big(900_000_000));
    let (d, backup, image) = sealed("CREATE TABLE t(x INTEGER); INSERT INTO t VALUES (1), (2), (3);", &[("t", &check)]);
    let m = verify(&d, &backup, &[]);
    m.refused("wm-verify", image, "refused: to check integrity, it made or held a value longer than 64 MiB");
}

/// The same through a generated column that integrity_check must compute
/// (NOT NULL on a virtual column).
#[test]
fn generated_column_building_a_900_mb_string_is_refused_as_too_long() {
    let table = format!("CREATE TABLE g(x INTEGER, y TEXT AS ({}) VIRTUAL NOT NULL)", big(900_000_000));
    let (d, backup, image) = sealed(
        "CREATE TABLE g(x INTEGER, y TEXT AS ('y') VIRTUAL NOT NULL); INSERT INTO g(x) VALUES (1);",
        &[("g", &table)],
    );
    let m = verify(&d, &backup, &[]);
    m.refused("wm-verify", image, "it made or held a value longer than 64 MiB");
}

/// Strings just under the length limit, many at once (a function's
/// arguments are all held before it runs): the heap cap stops it.
#[test]
fn check_constraint_holding_many_long_strings_at_once_is_refused_for_memory() {
    let terms: Vec<String> = (0..12).map(|i| big(60_000_000 + i)).collect();
    let check = format!("CREATE TABLE t(x INTEGER, CHECK (length(max({})) > 0))", terms.join(", "));
    let (d, backup, image) = sealed("CREATE TABLE t(x INTEGER); INSERT INTO t VALUES (1);", &[("t", &check)]);
    let m = verify(&d, &backup, &[]);
    m.refused("wm-verify", image, "it needed more than 192 MiB of memory beyond the database");
}

/// Work that is slow but small: a 10 MB string for each of many rows. The
/// time budget ends it.
#[test]
fn check_constraint_slow_on_every_row_ends_at_the_time_budget() {
    let check = format!("CREATE TABLE t(x INTEGER, CHECK (length({}) > 0))", big(10_000_000));
    let rows =
        "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r LIMIT 20000) INSERT INTO t SELECT i FROM r";
    let (d, backup, image) = sealed(&format!("CREATE TABLE t(x INTEGER); {rows};"), &[("t", &check)]);
    let m = verify(&d, &backup, &[]);
    m.refused("wm-verify", image, "it took longer than the time budget (3 s)");
    assert!(m.stderr.contains("--time-budget"), "names the knob: {}", m.stderr);
    assert!(m.wall >= Duration::from_secs(BUDGET_S), "ran to the budget: {:?}", m.wall);
}

/// A view is never run: an endless one beside ordinary tables verifies, fast.
#[test]
fn an_endless_view_is_never_run_and_the_tables_verify() {
    let (d, backup, image) = sealed(
        "CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);
         CREATE VIEW endless AS WITH RECURSIVE r(i) AS (SELECT 1 UNION SELECT i + 1 FROM r) SELECT i FROM r;",
        &[],
    );
    // -v: the report's detail, the table and its row count, on success.
    let m = verify(&d, &backup, &["-v"]);
    assert_eq!(m.code, 0, "{}", m.stderr);
    assert!(m.stderr.contains("t ") || m.stderr.contains("t\t") || m.stderr.contains(" t"), "{}", m.stderr);
    m.bounded(image);
}

/// The disk spool is bounded the same way. (A connection onto a read-only
/// file never even parses CHECK constraints; generated columns it computes.)
#[test]
fn disk_spool_refuses_the_same_shape_within_the_bounds() {
    let table = format!("CREATE TABLE g(x INTEGER, y TEXT AS ({}) VIRTUAL NOT NULL)", big(900_000_000));
    let (d, backup, image) = sealed(
        "CREATE TABLE g(x INTEGER, y TEXT AS ('y') VIRTUAL NOT NULL); INSERT INTO g(x) VALUES (1);",
        &[("g", &table)],
    );
    let m = verify(&d, &backup, &["--spool", "disk"]);
    m.refused("wm-verify", image, "it made or held a value longer than 64 MiB");
}

/// wm-restore verifies first: a hostile backup changes nothing.
#[test]
fn restore_of_a_hostile_backup_is_refused_and_changes_nothing() {
    let (d, backup, image) = sealed(FTS5_OVER_ENDLESS_VIEW, &[]);
    let target = d.workmem_db("memory.db", 64 << 10, false);
    let before = sha256_file(&target);
    let budget = BUDGET_S.to_string();
    let (target_s, backup_s) = (target.to_str().unwrap(), backup.to_str().unwrap());
    let m = measured(&d, WM_RESTORE, &["-q", "-i", "id.txt", "--time-budget", &budget, "--db", target_s, backup_s]);
    m.refused("wm-restore", image, "refused: FTS5 table f takes its rows from view endless");
    assert_eq!(sha256_file(&target), before, "the database is unchanged");
    let names: Vec<String> =
        std::fs::read_dir(&d.path).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    assert!(!names.iter().any(|n| n.contains("pre-restore")), "nothing kept: {names:?}");
}

/// `workmem-backup --verify` of a hostile source: the snapshot copies the
/// schema as it is, the read-back check refuses it, no backup is put in place.
#[test]
fn backup_verify_of_a_hostile_database_is_refused_and_writes_nothing() {
    let d = Dir::new();
    let db = d.join("memory.db");
    {
        let c = Connection::open(&db).unwrap();
        c.execute_batch("CREATE TABLE t(x INTEGER); INSERT INTO t VALUES (1); PRAGMA writable_schema = ON").unwrap();
        let check = format!("CREATE TABLE t(x INTEGER, CHECK (length({}) > 0))", big(900_000_000));
        c.execute("UPDATE sqlite_schema SET sql = ?1 WHERE name = 't'", [&check]).unwrap();
    }
    let image = std::fs::metadata(&db).unwrap().len();
    let (_, r) = d.age_key("id.txt");
    let budget = BUDGET_S.to_string();
    let args = ["-q", "--db", "memory.db", "--to", "out.age", "-r", &r, "--verify", "--time-budget", &budget];
    let m = measured(&d, WORKMEM_BACKUP, &args);
    m.refused("workmem-backup", image, "it made or held a value longer than 64 MiB");
    assert!(!d.join("out.age").exists(), "no backup put in place");
}

/// A real workmem database verifies as before under the bounds, and its
/// FTS5 table is counted through its shadow tables with the same figure.
#[test]
fn a_workmem_database_verifies_with_the_same_counts_under_the_bounds() {
    let d = Dir::new();
    let db = d.workmem_db("memory.db", 4 << 20, true);
    let counts = fixture::counts(&Connection::open(&db).unwrap()).unwrap();
    let (_, r) = d.age_key("id.txt");
    run(WORKMEM_BACKUP, &d).args(["-q", "--db", "memory.db", "--to", "b.age", "-r", &r]).go().ok();
    let out = run(WM_VERIFY, &d).args(["-i", "id.txt", "--json", "b.age"]).go();
    out.ok();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = |name: &str| {
        v["tables"].as_array().unwrap().iter().find(|t| t["name"] == name).map(|t| t["rows"].as_u64().unwrap())
    };
    let live = Connection::open(&db).unwrap();
    let fts: u64 = live.query_row("SELECT count(*) FROM memory_fts", [], |r| r.get::<_, i64>(0)).unwrap() as u64;
    assert_eq!(rows("memory_fts"), Some(fts), "FTS5 rows as count(*) says");
    assert_eq!(rows("observations"), Some(counts.observations as u64));
    assert_eq!(rows("entities"), Some(counts.entities as u64));
}
