//! Restore copies as a series: wm-restore says how many copies of the
//! database it replaced are kept beside it and what they weigh, and wm-prune
//! prunes them as sets (the copy with its -wal and -shm).

use crate::harness::*;

/// A WAL database with a few rows, its backup, and three earlier restore
/// copies (each a set: the copy, its -wal and -shm) as wm-restore leaves them.
fn world() -> (Dir, String) {
    let d = Dir::new();
    d.workmem_db("memory.db", 32 << 10, true);
    let (_, key) = d.age_key("key.txt");
    run(WORKMEM_BACKUP, &d).args(["-q", "--db", "memory.db", "--to", "memory.db.age", "-r", &key]).go().ok();
    for day in 1..=3 {
        let copy = format!("memory.db.pre-restore-202611{day:02}T120000Z");
        d.write(&copy, vec![b'c'; 1000]);
        d.write(&format!("{copy}-wal"), vec![b'w'; 100]);
        d.write(&format!("{copy}-shm"), vec![b's'; 10]);
    }
    (d, key)
}

#[test]
fn restore_reports_the_copies_beside_the_database_and_their_size() {
    let (d, _) = world();
    let out = run(WM_RESTORE, &d).args(["-i", "key.txt", "--db", "memory.db", "--json", "memory.db.age"]).go();
    out.ok();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["copies"]["count"], 4, "three earlier copies and the one just made: {v}");
    let new_copy = v["kept"]["bytes"].as_u64().unwrap();
    assert_eq!(v["copies"]["bytes"].as_u64().unwrap(), 3 * 1110 + new_copy, "{v}");
    // The human report says it in one line.
    let out = run(WM_RESTORE, &d).args(["-i", "key.txt", "--db", "memory.db", "memory.db.age"]).go();
    if out.code() == 1 && out.stderr.contains("wait a second") {
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let again = run(WM_RESTORE, &d).args(["-i", "key.txt", "--db", "memory.db", "memory.db.age"]).go();
        again.ok();
        assert!(again.stderr.contains("\n  copies     5 restore copies beside it, "), "{}", again.stderr);
    } else {
        out.ok();
        assert!(out.stderr.contains("\n  copies     5 restore copies beside it, "), "{}", out.stderr);
    }
}

#[test]
fn keeping_the_last_two_restore_copies_removes_the_older_sets_whole() {
    let (d, _) = world();
    let before: Vec<String> =
        std::fs::read_dir(&d.path).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    let out = run(WM_PRUNE, &d).args(["--keep-last", "2", "--delete", "."]).go();
    out.ok();
    let deleted: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect();
    assert_eq!(
        deleted,
        [
            "memory.db.pre-restore-20261101T120000Z",
            "memory.db.pre-restore-20261101T120000Z-shm",
            "memory.db.pre-restore-20261101T120000Z-wal",
        ]
    );
    let mut left: Vec<String> =
        std::fs::read_dir(&d.path).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    left.sort();
    let mut want: Vec<String> = before.into_iter().filter(|n| !n.contains("20261101")).collect();
    want.sort();
    assert_eq!(left, want, "the database, its backup and the two newest copy sets are untouched");
    assert_integrity(&d.join("memory.db"));
}
