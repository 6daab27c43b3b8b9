//! A database over 2 GiB under the default spool (`make reliability` only:
//! it writes about 9 GB). SQLite holds no allocation over
//! `SQLITE_MAX_ALLOCATION_SIZE` (about 2 GiB), so such an image can never
//! be a memory spool: `auto` must take the disk whatever the free memory,
//! and `workmem-backup --verify`, `wm-verify` and `wm-restore` must all
//! succeed without `--spool disk`.

use rusqlite::Connection;

use crate::harness::*;

/// Above 2 GiB (2,147,483,648 bytes) by a margin no rounding eats.
const TARGET_BYTES: u64 = 2_200_000_000;

fn rows(db: &std::path::Path, table: &str) -> i64 {
    Connection::open(db).unwrap().query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap()
}

#[test]
fn a_database_over_2_gib_backs_up_verifies_and_restores_under_the_default_spool() {
    if !full_suite() {
        // Minutes and 9 GB of disk: make reliability runs it.
        return;
    }
    let d = Dir::new();
    let db = d.workmem_db("memory.db", 8 << 20, true);
    {
        let c = Connection::open(&db).unwrap();
        // Incompressible 1 MiB rows (overflow chains) up to the target size.
        let have = std::fs::metadata(&db).unwrap().len();
        let n = (TARGET_BYTES - have).div_ceil(1 << 20) + 8;
        c.execute_batch(&format!(
            "CREATE TABLE bulk(id INTEGER PRIMARY KEY, b BLOB NOT NULL);
             WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r LIMIT {n})
             INSERT INTO bulk(b) SELECT randomblob(1048576) FROM r;
             PRAGMA wal_checkpoint(TRUNCATE);"
        ))
        .unwrap();
    }
    let bytes = std::fs::metadata(&db).unwrap().len();
    assert!(bytes > TARGET_BYTES, "{bytes} bytes");
    let bulk = rows(&db, "bulk");
    let (_, r) = d.age_key("id.txt");

    let backup =
        run(WORKMEM_BACKUP, &d).args(["--db", "memory.db", "--to", "big.age", "-r", &r, "--verify", "--json"]).go();
    backup.ok();
    let (report, _) = json_on_stdout(&backup);
    assert_eq!(report["spool"], "disk", "auto chose the disk for the snapshot: {report}");

    let verify = run(WM_VERIFY, &d).args(["-i", "id.txt", "--json", "big.age"]).go();
    verify.ok();
    let v: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(v["spool"], "disk", "auto chose the disk for the check: {v}");
    assert!(v["size"].as_u64().unwrap() > 1 << 31, "the image is over 2 GiB: {v}");
    let counted = v["tables"].as_array().unwrap().iter().find(|t| t["name"] == "bulk").unwrap()["rows"].as_i64();
    assert_eq!(counted, Some(bulk));

    let restored = d.join("restored.db");
    run(WM_RESTORE, &d).args(["-q", "-i", "id.txt", "--db"]).args([&restored]).args(["big.age"]).go().ok();
    assert_eq!(rows(&restored, "bulk"), bulk);
    assert_integrity(&restored);

    record_figures(
        "large",
        &[
            ("database over 2 GiB: bytes", bytes, None),
            ("workmem-backup --verify, wm-verify, wm-restore that succeeded (default spool)", 3, Some(3)),
        ],
    );
}
