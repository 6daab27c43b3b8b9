//! The reliability suite (issue 6): crash safety under SIGKILL, consistency
//! under concurrent writers and locks, no plaintext or secrets touched, and
//! every backup restorable with the real `age` and `sqlite3` CLIs.
//!
//! `make test` runs a quick subset; `make reliability` sets
//! WM_RELIABILITY_FULL=1 for the full counts (100 kill trials per binary, 50
//! snapshots per load scenario) in a release build. Figures go to the table
//! printed at the end of `make reliability` (see harness::record_figures).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::fixture;
use crate::harness::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rusqlite::Connection;

/// Where a trial stands afterwards.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    OldKept,
    NewCommitted,
    Corrupt(String),
}

struct Keys {
    old_id: PathBuf,
    new_id: PathBuf,
    new_recipient: String,
}

/// A crash-trial world: the source in `src/`, backups in `dest/`, spools in `tmp/`.
struct World {
    d: Dir,
    db: PathBuf,
    dest: PathBuf,
    old_backup: Vec<u8>,
    old_plain_sha: String,
    new_digest: String,
    keys: Keys,
}

fn world(db_bytes: u64) -> World {
    let d = Dir::new();
    d.mkdir("src");
    d.mkdir("dest");
    d.mkdir("tmp");
    let db = d.workmem_db("src/memory.db", db_bytes, true);
    let (old_id, old_recipient) = d.age_key("old-identity.txt");
    let (new_id, new_recipient) = d.age_key("new-identity.txt");
    // The old backup: some other, smaller database, sealed to the old key.
    let old_db = d.workmem_db("old.db", 200_000, false);
    let dest = d.join("dest/backup.age");
    run(WORKMEM_BACKUP, &d)
        .args(["-q", "--db"])
        .args([&old_db])
        .args(["--to"])
        .args([&dest])
        .args(["--age-recipient", &old_recipient])
        .go()
        .ok();
    let old_backup = std::fs::read(&dest).unwrap();
    let old_plain_sha = sha256(&age_decrypt(&old_id, &dest).expect("the old backup decrypts"));
    let new_digest = content_digest(&db);
    World { d, db, dest, old_backup, old_plain_sha, new_digest, keys: Keys { old_id, new_id, new_recipient } }
}

impl World {
    fn reset(&self) {
        std::fs::write(&self.dest, &self.old_backup).unwrap();
        std::fs::set_permissions(&self.dest, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }

    /// Decrypts the destination with either key and says what it is.
    fn judge(&self) -> Outcome {
        if let Ok(plain) = age_decrypt(&self.keys.old_id, &self.dest) {
            return if sha256(&plain) == self.old_plain_sha {
                Outcome::OldKept
            } else {
                Outcome::Corrupt("old key decrypts to other bytes".into())
            };
        }
        match age_decrypt(&self.keys.new_id, &self.dest) {
            Ok(plain) => {
                let restored = self.d.join("restored.db");
                std::fs::write(&restored, plain).unwrap();
                let check = sqlite3(&restored, "PRAGMA integrity_check");
                if check.trim() != "ok" {
                    return Outcome::Corrupt(format!("integrity_check: {check}"));
                }
                if content_digest(&restored) != self.new_digest {
                    return Outcome::Corrupt("restored rows differ from the source".into());
                }
                std::fs::remove_file(&restored).unwrap();
                Outcome::NewCommitted
            }
            Err(e) => Outcome::Corrupt(format!("neither key decrypts: {e}")),
        }
    }

    fn residue(&self) -> Vec<String> {
        let mut r: Vec<String> = tree(&self.d.join("dest")).into_keys().filter(|k| k != "backup.age").collect();
        r.extend(tree(&self.d.join("tmp")).into_keys().map(|k| format!("tmp/{k}")));
        r
    }

    fn remove(&self, residue: &str) {
        let p = match residue.strip_prefix("tmp/") {
            Some(t) => self.d.join("tmp").join(t),
            None => self.d.join("dest").join(residue),
        };
        let _ = std::fs::remove_file(p);
    }
}

/// What a SIGKILL may leave with the portable paths (no `O_TMPFILE`): the
/// hidden temporary (ciphertext here) until the next run into the directory
/// removes it, and, if the kill lands between creating a disk spool and
/// unlinking it, an empty `tmp/.wm-spool-PID-N`.
fn allowed_without_o_tmpfile(residue: &str, w: &World) -> bool {
    match residue.strip_prefix("tmp/") {
        Some(spool) => {
            spool.starts_with(".wm-spool-")
                && std::fs::metadata(w.d.join("tmp").join(spool)).is_ok_and(|m| m.len() == 0)
        }
        None => is_hidden_temp(residue),
    }
}

fn uniform(rng: &mut fixture::Rng, max: Duration) -> Duration {
    Duration::from_micros(rng.below(max.as_micros().max(1) as u64))
}

/// SIGKILLs `trials` runs at random moments while an older backup exists.
fn kill_trials(name: &str, trials: usize, spawn: &dyn Fn(&World, usize) -> std::process::Child) {
    if !have("age") || !have("sqlite3") {
        return;
    }
    let w = world(if full_suite() { 40 << 20 } else { 8 << 20 });
    // How long a full run takes, to spread the kills over it.
    let started = Instant::now();
    let mut c = spawn(&w, 0);
    assert!(wait_timeout(&mut c, Duration::from_secs(120)).success(), "{name}: reference run failed");
    let full = started.elapsed();
    assert_eq!(w.judge(), Outcome::NewCommitted, "{name}: a full run commits the new backup");
    let mut rng = fixture::Rng::new(started.elapsed().as_nanos() as u64);
    let (mut old, mut new, mut corrupt, mut residue, mut plaintext) = (0u64, 0u64, 0u64, 0u64, 0u64);
    // Portable paths: what SIGKILL may leave, by name; hidden temporaries are
    // left for the next trial's run to remove.
    let (mut temps_left, mut spools_left) = (std::collections::BTreeSet::new(), 0u64);
    for i in 0..trials {
        w.reset();
        let delay = uniform(&mut rng, full.mul_f64(1.1));
        let mut child = spawn(&w, i);
        std::thread::sleep(delay);
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        let _ = wait_timeout(&mut child, Duration::from_secs(60));
        match w.judge() {
            Outcome::OldKept => old += 1,
            Outcome::NewCommitted => new += 1,
            Outcome::Corrupt(why) => {
                corrupt += 1;
                eprintln!("{name}: trial {i} (kill after {delay:?}): CORRUPT: {why}");
            }
        }
        plaintext += (files_with_sqlite_header(&w.d.join("dest")).len()
            + files_with_sqlite_header(&w.d.join("tmp")).len()) as u64;
        for k in w.residue() {
            if !LINUX_FAST_PATHS && allowed_without_o_tmpfile(&k, &w) {
                if k.starts_with("tmp/") {
                    spools_left += 1;
                    w.remove(&k);
                } else {
                    temps_left.insert(k);
                }
                continue;
            }
            eprintln!("{name}: trial {i} (kill after {delay:?}): residue {k}");
            residue += 1;
            w.remove(&k);
        }
    }
    println!("{name}: {trials} SIGKILL trials over a {full:?} run: {old} old kept, {new} new committed, {corrupt} corrupt, {residue} residue");
    let mut rows = vec![
        ("SIGKILL trials", trials as u64, None),
        ("old backup kept", old, None),
        ("new backup committed", new, None),
        ("corrupt or truncated", corrupt, Some(0)),
        ("plaintext files left", plaintext, Some(0)),
    ];
    if LINUX_FAST_PATHS {
        rows.push(("residue files (O_TMPFILE)", residue, Some(0)));
    } else {
        // One more run, not killed: it removes what the killed ones left.
        w.reset();
        let mut c = spawn(&w, trials);
        assert!(wait_timeout(&mut c, Duration::from_secs(120)).success(), "{name}: the run after the trials failed");
        let still = w.residue();
        println!(
            "{name}: portable paths: {} hidden temporaries left by SIGKILL, {still:?} after the next run",
            temps_left.len()
        );
        rows.push(("residue other than hidden temporaries (portable)", residue, Some(0)));
        rows.push(("hidden temporaries left by SIGKILL (portable)", temps_left.len() as u64, None));
        rows.push(("empty spool names left by SIGKILL (portable)", spools_left, None));
        rows.push(("left after the next complete run (portable)", still.len() as u64, Some(0)));
    }
    record_figures(&format!("crash {name}"), &rows);
    assert_eq!(old + new, trials as u64);
}

fn trials() -> usize {
    if full_suite() {
        100
    } else {
        12
    }
}

#[test]
fn workmem_backup_killed_at_any_moment_leaves_old_or_new_backup_never_a_mix() {
    kill_trials("workmem-backup", trials(), &|w, i| {
        // Spread the trials over the ways of working.
        let variant: &[&str] = match i % 3 {
            0 => &[],
            1 => &["--spool", "disk"],
            _ => &["--method", "pages"],
        };
        run(WORKMEM_BACKUP, &w.d)
            .args(["-q", "--db"])
            .args([&w.db])
            .args(["--to"])
            .args([&w.dest])
            .args(["--age-recipient", &w.keys.new_recipient])
            .args(variant)
            .env("TMPDIR", w.d.join("tmp"))
            .spawn()
    });
}

#[test]
fn wm_seal_killed_at_any_moment_leaves_old_or_new_backup_never_a_mix() {
    kill_trials("wm-seal", trials(), &|w, _| {
        let snapshot = w.d.join("snapshot.db");
        if !snapshot.exists() {
            run(WM_SNAPSHOT, &w.d).args(["--db"]).args([&w.db]).args(["--to"]).args([&snapshot]).go().ok();
        }
        run(WM_SEAL, &w.d)
            .args(["-q", "-r", &w.keys.new_recipient, "--to"])
            .args([&w.dest])
            .stdin_file(std::fs::File::open(&snapshot).unwrap())
            .env("TMPDIR", w.d.join("tmp"))
            .spawn()
    });
}

fn consistent(snap: &Path) -> Result<(), String> {
    let check = sqlite3(snap, "PRAGMA integrity_check");
    if check.trim() != "ok" {
        return Err(format!("integrity_check: {check}"));
    }
    let row = sqlite3(
        snap,
        "SELECT (SELECT count(*) FROM observations) - (SELECT count(*) FROM observation_embeddings), \
         (SELECT sum(balance) FROM ledger), (SELECT count(*) FROM memory_fts WHERE memory_fts MATCH 'backup')",
    );
    let parts: Vec<&str> = row.trim().split('|').collect();
    if parts.first() != Some(&"0") || parts.get(1) != Some(&"1000") {
        return Err(format!("invariant broken: {row}"));
    }
    Ok(())
}

#[derive(Clone, Copy, Debug)]
enum Reader {
    None,
    LongTransaction,
}

/// `n` snapshots while a writer commits as fast as it can; each must hold
/// the writer's invariants and pass integrity_check.
fn load_scenario(wal: bool, reader: Reader, n: usize) -> (u64, u64) {
    let d = Dir::new();
    let db = d.workmem_db("memory.db", 3 << 20, wal);
    let (id, recipient) = d.age_key("id.txt");
    Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE ledger(id INTEGER PRIMARY KEY, balance INTEGER); INSERT INTO ledger VALUES (1, 500), (2, 500);")
        .unwrap();
    let holder = match reader {
        Reader::LongTransaction => {
            let c = Connection::open(&db).unwrap();
            c.execute_batch("BEGIN; SELECT count(*) FROM observations;").unwrap();
            Some(c)
        }
        Reader::None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    // With a rollback journal and a reader holding its lock, writers cannot commit.
    let w = (wal || holder.is_none()).then(|| spawn_writer(&db, stop.clone()));
    let mut good = 0;
    for i in 0..n {
        let snap = d.join(&format!("snap{i}.db"));
        match i % 3 {
            0 => {
                run(WM_SNAPSHOT, &d).args(["--db", "memory.db", "--to"]).args([&snap]).go().ok();
            }
            1 => {
                run(WM_SNAPSHOT, &d).args(["--db", "memory.db", "--method", "pages", "--to"]).args([&snap]).go().ok();
            }
            _ => {
                let out = d.join(&format!("snap{i}.age"));
                run(WORKMEM_BACKUP, &d)
                    .args(["-q", "--db", "memory.db", "--age-recipient", &recipient, "--to"])
                    .args([&out])
                    .go()
                    .ok();
                std::fs::write(&snap, age_decrypt(&id, &out).expect("decrypts")).unwrap();
            }
        }
        match consistent(&snap) {
            Ok(()) => good += 1,
            Err(e) => eprintln!("snapshot {i} (wal={wal}, {reader:?}): {e}"),
        }
        let _ = std::fs::remove_file(&snap);
    }
    stop.store(true, Ordering::Relaxed);
    let commits = w.map(|w| w.join().unwrap()).unwrap_or(0);
    drop(holder);
    if wal || matches!(reader, Reader::None) {
        assert!(commits > n as u64 / 2, "the writer made progress ({commits} commits)");
    }
    (n as u64, good)
}

#[test]
fn snapshots_under_load_hold_the_writers_invariants() {
    if !have("sqlite3") || !have("age") {
        return;
    }
    let n = if full_suite() { 50 } else { 6 };
    let mut rows = Vec::new();
    let mut figures: Vec<(String, u64, Option<u64>)> = Vec::new();
    for wal in [true, false] {
        for reader in [Reader::None, Reader::LongTransaction] {
            let (taken, good) = load_scenario(wal, reader, n);
            let label = format!("{} + {:?}", if wal { "WAL" } else { "rollback" }, reader);
            rows.push(format!("{label}: {good}/{taken} consistent"));
            figures.push((format!("{label}: snapshots"), taken, None));
            figures.push((format!("{label}: consistent"), good, Some(taken)));
        }
    }
    println!("{}", rows.join("\n"));
    let refs: Vec<(&str, u64, Option<u64>)> = figures.iter().map(|(a, b, c)| (a.as_str(), *b, *c)).collect();
    record_figures("load", &refs);
}

#[test]
fn a_lock_held_past_busy_timeout_fails_cleanly_within_it() {
    let mut tried = 0;
    let mut clean = 0;
    for (wal, how) in [(false, "BEGIN EXCLUSIVE"), (true, "exclusive locking mode")] {
        let d = Dir::new();
        let db = d.workmem_db("memory.db", 500_000, wal);
        let (_, recipient) = d.age_key("id.txt");
        // Listed before the lock is taken: reading the file here would drop this
        // process's POSIX locks on it (closing any descriptor releases them all).
        let before = d.tree();
        let holder = Connection::open(&db).unwrap();
        if wal {
            holder
                .execute_batch(
                    "PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE; INSERT INTO events(label) VALUES ('held');",
                )
                .unwrap();
        } else {
            holder.execute_batch("BEGIN EXCLUSIVE; INSERT INTO events(label) VALUES ('held');").unwrap();
        }
        for (bin, extra) in [
            (WM_SNAPSHOT, vec!["--to", "snap.db"]),
            (WORKMEM_BACKUP, vec!["--to", "b.age", "--age-recipient", recipient.as_str()]),
            (WM_SNAPSHOT, vec!["--method", "pages", "--to", "snap.db"]),
        ] {
            tried += 1;
            let started = Instant::now();
            let out = run(bin, &d).args(["--db", "memory.db", "--busy-timeout", "400"]).args(&extra).go();
            let took = started.elapsed();
            let ok = out.code() == 1
                && out.stderr.contains("locked")
                && took >= Duration::from_millis(350)
                && took < Duration::from_millis(3000);
            if ok {
                clean += 1;
            } else {
                eprintln!("{how}: {bin}: exit {} after {took:?}: {}", out.code(), out.stderr);
            }
        }
        holder.execute_batch("ROLLBACK").unwrap();
        let after = d.tree();
        // The holder's own -journal/-wal may change; nothing of ours may appear.
        for k in after.keys() {
            assert!(before.contains_key(k) || k.starts_with("memory.db"), "{how}: created {k}");
        }
    }
    record_figures(
        "locks",
        &[
            ("lock held past --busy-timeout: runs", tried, None),
            ("failed cleanly within the timeout", clean, Some(tried)),
        ],
    );
}

#[test]
fn two_backups_racing_to_one_destination_leave_one_complete_backup() {
    if !have("age") || !have("sqlite3") {
        return;
    }
    let d = Dir::new();
    let db = d.workmem_db("memory.db", 4 << 20, true);
    let (id, recipient) = d.age_key("id.txt");
    d.mkdir("dest");
    let pairs = if full_suite() { 20 } else { 4 };
    let mut complete = 0;
    for i in 0..pairs {
        let spawn = |extra: &[&str]| {
            run(WORKMEM_BACKUP, &d)
                .args(["-q", "--db", "memory.db", "--to", "dest/memory.db.age", "--age-recipient", &recipient])
                .args(extra)
                .spawn()
        };
        let mut a = spawn(&[]);
        let mut b = spawn(if i % 2 == 0 { &["--method", "pages"] } else { &["--spool", "disk"] });
        let (sa, sb) = (wait_timeout(&mut a, Duration::from_secs(60)), wait_timeout(&mut b, Duration::from_secs(60)));
        let listing: Vec<String> = tree(&d.join("dest")).into_keys().collect();
        let restored = d.join("restored.db");
        let ok = sa.success()
            && sb.success()
            && listing == ["memory.db.age"]
            && age_decrypt(&id, &d.join("dest/memory.db.age")).map(|p| std::fs::write(&restored, p)).is_ok()
            && sqlite3(&restored, "PRAGMA integrity_check").trim() == "ok"
            && content_digest(&restored) == content_digest(&db);
        if ok {
            complete += 1;
        } else {
            eprintln!("pair {i}: {sa:?} {sb:?} {listing:?}");
        }
    }
    record_figures(
        "race",
        &[("concurrent pairs to one destination", pairs, None), ("one complete backup", complete, Some(pairs))],
    );
}

/// The rename syscall the binaries put a file in place with (rename,
/// renameat or renameat2, by architecture and libc), from a traced run.
fn rename_syscall(d: &Dir, args: &[&str]) -> String {
    let trace = d.join("dry.trace");
    let out = run("strace", d)
        .args(["-f", "-qq", "-o"])
        .args([&trace])
        .args(["-e", "trace=rename,renameat,renameat2", WM_SEAL])
        .args(args)
        .stdin(bytes(10_000, 1))
        .go();
    out.ok();
    let text = std::fs::read_to_string(&trace).unwrap();
    let name = text.lines().find_map(|l| l.split_whitespace().nth(1)?.split('(').next()).map(str::to_string);
    name.unwrap_or_else(|| panic!("no rename in the dry run:\n{text}"))
}

/// Issue 6, item 4: a run SIGKILLed between giving its temporary a name and
/// renaming it over the destination leaves that hidden temporary, complete;
/// the next run into the same directory removes it.
#[test]
fn a_leftover_of_a_run_killed_before_its_rename_is_removed_by_the_next_run() {
    if !have("strace") || !have("age") || !have("sqlite3") {
        return;
    }
    let d = Dir::new();
    let db = d.workmem_db("memory.db", 1 << 20, true);
    let (id, recipient) = d.age_key("id.txt");
    let want = content_digest(&db);
    d.mkdir("dest");
    let rename = rename_syscall(&d, &["-r", &recipient, "--to", "dest/dry.age"]);
    std::fs::remove_file(d.join("dest/dry.age")).unwrap();
    let mut left = 0;
    let mut removed = 0;
    let cases: [(&str, &str, &[&str]); 2] = [
        (WORKMEM_BACKUP, "memory.db.age", &["-q", "--age-recipient", &recipient]),
        // Its leftover is a plaintext copy of the database.
        (WM_SNAPSHOT, "snapshot.db", &[]),
    ];
    for (bin, dest, extra) in cases {
        let to = format!("dest/{dest}");
        let backup = || run(bin, &d).args(["--db", "memory.db", "--to", &to]).args(extra);
        backup().go().ok();
        let old = sha256_file(&d.join(&to));
        let killed = run("strace", &d)
            .args(["-f", "-qq", "-o", "/dev/null", "-e"])
            .args([format!("inject={rename}:signal=KILL"), bin.to_string()])
            .args(["--db", "memory.db", "--to", &to])
            .args(extra)
            .go();
        assert_eq!(killed.code(), 128 + 9, "{bin}: killed at its rename: {}", killed.stderr);
        let temps = hidden_temps(&d.join("dest"));
        assert_eq!(temps.len(), 1, "{bin}: the hidden temporary is left: {temps:?}");
        assert_eq!(sha256_file(&d.join(&to)), old, "{bin}: the destination still holds the old backup");
        // Complete and fsynced: the new backup, under a hidden name.
        let restored = d.join("restored.db");
        let temp = d.join("dest").join(&temps[0]);
        let plain = if bin == WM_SNAPSHOT { std::fs::read(&temp).unwrap() } else { age_decrypt(&id, &temp).unwrap() };
        std::fs::write(&restored, plain).unwrap();
        assert_integrity(&restored);
        left += 1;

        backup().go().ok();
        let listing: Vec<String> = tree(&d.join("dest")).into_keys().collect();
        let mut expected = vec![dest.to_string()];
        if bin == WM_SNAPSHOT {
            expected.insert(0, "memory.db.age".to_string());
        }
        assert_eq!(listing, expected, "{bin}: the next run removed the leftover");
        let plain = if bin == WM_SNAPSHOT { d.read(&to) } else { age_decrypt(&id, &d.join(&to)).unwrap() };
        std::fs::write(&restored, plain).unwrap();
        assert_integrity(&restored);
        assert_eq!(content_digest(&restored), want, "{bin}: the new backup is complete");
        removed += 1;
    }
    record_figures(
        "leftovers",
        &[
            ("runs killed between naming and renaming", 2, None),
            ("hidden temporaries left", left, None),
            ("removed by the next run", removed, Some(left)),
        ],
    );
}

/// The other half of item 4: a run never removes another run's live
/// temporary. Run A is held for 3 s just before its rename (strace delays
/// the syscall), its temporary named and complete; run B into the same
/// directory then sweeps it and must leave A's temporary alone, and A must
/// still put its backup in place.
#[test]
fn a_live_temporary_is_never_removed_by_a_concurrent_run() {
    if !have("strace") || !have("age") {
        return;
    }
    let d = Dir::new();
    let (id, recipient) = d.age_key("id.txt");
    d.mkdir("dest");
    let rename = rename_syscall(&d, &["-r", &recipient, "--to", "dest/dry.age"]);
    std::fs::remove_file(d.join("dest/dry.age")).unwrap();
    let input_a = bytes(300_000, 21);
    let mut a = run("strace", &d)
        .args(["-f", "-qq", "-o", "/dev/null", "-e"])
        .args([format!("inject={rename}:delay_enter=3s"), WM_SEAL.to_string()])
        .args(["-r", &recipient, "--to", "dest/memory.db.age"])
        .stdin_file(std::fs::File::open(d.write("a.bin", &input_a)).unwrap())
        .spawn();
    let started = Instant::now();
    let temp = loop {
        if let Some(t) = hidden_temps(&d.join("dest")).pop() {
            break t;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "run A never named its temporary");
        std::thread::sleep(Duration::from_millis(5));
    };
    // Without O_TMPFILE the name exists from the start: let A finish writing.
    std::thread::sleep(Duration::from_millis(300));
    for to in ["dest/memory.db.age", "dest/other.age"] {
        run(WM_SEAL, &d).args(["-r", &recipient, "--to", to]).stdin(bytes(1000, 22)).go().ok();
        assert!(d.join("dest").join(&temp).exists(), "run B to {to} removed run A's live temporary {temp}");
    }
    assert!(a.try_wait().unwrap().is_none(), "run B ran while A was held before its rename");
    let status = wait_timeout(&mut a, Duration::from_secs(30));
    assert!(status.success(), "run A: {}", stderr_of(&mut a));
    let listing: Vec<String> = tree(&d.join("dest")).into_keys().collect();
    assert_eq!(listing, ["memory.db.age", "other.age"]);
    assert_eq!(age_decrypt(&id, &d.join("dest/memory.db.age")).unwrap(), input_a, "A's rename came last");
}

#[test]
fn no_secret_key_is_ever_opened_and_every_created_file_is_private() {
    if !have("strace") || !have("age") {
        return;
    }
    let d = Dir::new();
    d.workmem_db("memory.db", 1 << 20, true);
    let (identity, recipient) = d.age_key("identity.txt");
    d.write("recipients.txt", format!("# team\n{recipient}\n"));
    let trace = d.join("trace.txt");
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            WORKMEM_BACKUP,
            vec![
                "-q".into(),
                "--db".into(),
                "memory.db".into(),
                "--to".into(),
                "a.age".into(),
                "-R".into(),
                "recipients.txt".into(),
            ],
        ),
        (
            WORKMEM_BACKUP,
            vec![
                "-q".into(),
                "--db".into(),
                "memory.db".into(),
                "--to".into(),
                "b.age".into(),
                "--age-recipient".into(),
                recipient.clone(),
                "--spool".into(),
                "disk".into(),
            ],
        ),
        (WM_SNAPSHOT, vec!["--db".into(), "memory.db".into(), "--to".into(), "snap.db".into()]),
    ];
    let mut opened_secret = 0;
    for (bin, args) in &cases {
        let status = std::process::Command::new("strace")
            .args(["-f", "-qq", "-e", "trace=open,openat,openat2", "-o"])
            .arg(&trace)
            .arg(bin)
            .args(args)
            .current_dir(&d.path)
            .env("TMPDIR", &d.path)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{bin} {args:?}");
        let t = std::fs::read_to_string(&trace).unwrap();
        if t.contains("identity.txt") {
            opened_secret += 1;
            eprintln!("{bin} opened the identity file:\n{t}");
        }
    }
    // wm-seal, fed the snapshot.
    let status = std::process::Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=open,openat,openat2", "-o"])
        .arg(&trace)
        .arg(WM_SEAL)
        .args(["-q", "-R", "recipients.txt", "--to", "c.age"])
        .current_dir(&d.path)
        .stdin(std::fs::File::open(d.join("snap.db")).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    if std::fs::read_to_string(&trace).unwrap().contains("identity.txt") {
        opened_secret += 1;
    }
    let mut not_private = 0;
    for f in ["a.age", "b.age", "snap.db", "c.age"] {
        if mode_of(&d.join(f)) != 0o600 {
            not_private += 1;
            eprintln!("{f} has mode {:o}", mode_of(&d.join(f)));
        }
    }
    for f in ["a.age", "b.age", "c.age"] {
        assert!(age_decrypt(&identity, &d.join(f)).is_ok(), "{f} decrypts");
    }
    record_figures(
        "secrets",
        &[
            ("runs traced", 4, None),
            ("secret key files opened", opened_secret, Some(0)),
            ("created files not 0600", not_private, Some(0)),
        ],
    );
}

#[test]
fn every_backup_restores_with_age_and_sqlite3() {
    if !have("age") || !have("sqlite3") {
        return;
    }
    let d = Dir::new();
    let db = d.workmem_db("memory.db", 2 << 20, true);
    let (id, recipient) = d.age_key("id.txt");
    let want = content_digest(&db);
    let mut made = 0;
    let mut restored_ok = 0;
    for (i, extra) in [
        vec![],
        vec!["--method", "pages"],
        vec!["--spool", "disk"],
        vec!["--spool", "memory", "--check"],
        vec!["--armor"],
    ]
    .iter()
    .enumerate()
    {
        let out = format!("b{i}.age");
        run(WORKMEM_BACKUP, &d)
            .args(["-q", "--db", "memory.db", "--to", &out, "--age-recipient", &recipient])
            .args(extra)
            .go()
            .ok();
        made += 1;
        let p = d.join(&format!("r{i}.db"));
        std::fs::write(&p, age_decrypt(&id, &d.join(&out)).expect("age -d")).unwrap();
        if sqlite3(&p, "PRAGMA integrity_check").trim() == "ok" && content_digest(&p) == want {
            restored_ok += 1;
        }
    }
    record_figures("restore", &[("backups made", made, None), ("restored and checked", restored_ok, Some(made))]);
}
