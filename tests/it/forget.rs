//! Forgetting (docs/forgetting.md): a memory deleted from the database, with
//! SQLite's `secure_delete` off as the workmem server leaves it, is in no
//! backup taken after the delete was checkpointed: every method, every spool,
//! `workmem-backup` and `wm-snapshot --to`. FTS5 keeps a deleted memory's
//! terms in its index segments until they merge: with the index's own
//! `secure-delete` option on they are gone at once, and the test holds both
//! halves of what the document says.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::harness::*;
use rusqlite::{params, Connection};

/// In the row text only (the tokenizer splits it into "secret", "memory", ...).
const SECRET: &str = "SECRET-MEMORY-51ab7e";
/// One token, as FTS5 stores it in its index.
const TERM: &str = "xyzzyforgetme";
const WAYS: [(&str, &str); 4] = [("vacuum", "memory"), ("vacuum", "disk"), ("pages", "memory"), ("pages", "disk")];

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// A workmem database that held two memories carrying SECRET and TERM (one
/// small, one long enough to spill onto overflow pages), deleted the way the
/// server deletes them and checkpointed.
fn planted(d: &Dir, wal: bool, fts_secure_delete: bool) -> PathBuf {
    let db = d.workmem_db("memory.db", 300_000, wal);
    let c = Connection::open(&db).unwrap();
    c.execute_batch("PRAGMA secure_delete=OFF").unwrap();
    if fts_secure_delete {
        c.execute("INSERT INTO memory_fts(memory_fts, rank) VALUES('secure-delete', 1)", []).unwrap();
    }
    let long = format!("{TERM} {}", format!("{SECRET} ").repeat(600));
    let mut ids = Vec::new();
    for content in [format!("alice said {SECRET} {TERM} about the budget"), long] {
        c.execute("INSERT INTO observations(entity_id, content) VALUES (1, ?1)", [&content]).unwrap();
        let id = c.last_insert_rowid();
        c.execute(
            "INSERT INTO observation_embeddings(observation_id, model, dim, vector) VALUES (?1, 'minilm', 384, zeroblob(1536))",
            [id],
        )
        .unwrap();
        c.execute(
            "INSERT INTO memory_fts(rowid, content, entity_name) VALUES (?1, ?2, 'entity-1')",
            params![id, content],
        )
        .unwrap();
        ids.push((id, content));
    }
    for (id, content) in &ids {
        c.execute(
            "INSERT INTO memory_fts(memory_fts, rowid, content, entity_name) VALUES('delete', ?1, ?2, 'entity-1')",
            params![id, content],
        )
        .unwrap();
        c.execute("DELETE FROM observation_embeddings WHERE observation_id = ?1", [id]).unwrap();
        c.execute("DELETE FROM observations WHERE id = ?1", [id]).unwrap();
    }
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
    drop(c);
    let bytes = std::fs::read(&db).unwrap();
    assert!(contains(&bytes, SECRET), "the source file still holds the deleted rows' bytes");
    db
}

fn decrypt(identity: &Path, file: &Path) -> Vec<u8> {
    let id: age::x25519::Identity = secret_of(identity).parse().unwrap();
    let data = std::fs::read(file).unwrap();
    let mut r = age::Decryptor::new(&data[..]).unwrap().decrypt(std::iter::once(&id as &dyn age::Identity)).unwrap();
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    out
}

/// Every way out of the tools for `db`: (what, plaintext image).
fn every_output(d: &Dir, db: &Path, identity: &Path, key: &str) -> Vec<(String, Vec<u8>)> {
    let mut outs = Vec::new();
    for (method, spool) in WAYS {
        let name = format!("out-{method}-{spool}");
        run(WORKMEM_BACKUP, d)
            .args(["--db", &db.display().to_string(), "--age-recipient", key, "--method", method])
            .args(["--spool", spool, "--to", &format!("{name}.age")])
            .go()
            .ok();
        outs.push((format!("workmem-backup {method} {spool}"), decrypt(identity, &d.join(&format!("{name}.age")))));
        run(WM_SNAPSHOT, d)
            .args(["--db", &db.display().to_string(), "--method", method, "--spool", spool])
            .args(["--to", &format!("{name}.db")])
            .go()
            .ok();
        outs.push((format!("wm-snapshot --to {method} {spool}"), d.read(&format!("{name}.db"))));
        let piped =
            run(WM_SNAPSHOT, d).args(["--db", &db.display().to_string(), "--method", method, "--spool", spool]).go();
        piped.ok();
        outs.push((format!("wm-snapshot | {method} {spool}"), piped.stdout.clone()));
    }
    outs
}

#[test]
fn no_backup_holds_a_deleted_memory() {
    let check = have("sqlite3");
    for wal in [true, false] {
        let d = Dir::new();
        let db = planted(&d, wal, true);
        let (identity, key) = d.age_key("key.txt");
        for (what, image) in every_output(&d, &db, &identity, &key) {
            assert!(!contains(&image, SECRET), "{what} (wal={wal}) holds the deleted row");
            assert!(!contains(&image, TERM), "{what} (wal={wal}) holds the deleted FTS5 term");
            assert_eq!(&image[18..20], if wal { [2, 2] } else { [1, 1] }, "{what}: journal mode bytes");
            if check {
                let p = d.write("check.db", &image);
                assert_integrity(&p);
                let mode = sqlite3(&p, "PRAGMA journal_mode").trim().to_string();
                assert_eq!(mode, if wal { "wal" } else { "delete" }, "{what}: opens in the source's journal mode");
                // FTS5's secure-delete writes index format 5, which SQLite
                // before 3.42 (this system's sqlite3, maybe) refuses to query.
                let c = Connection::open(&p).unwrap();
                let q = format!("SELECT count(*) FROM memory_fts WHERE memory_fts MATCH '{TERM}'");
                assert_eq!(c.query_row(&q, [], |r| r.get::<_, i64>(0)).unwrap(), 0, "{what}");
                c.execute("INSERT INTO memory_fts(memory_fts) VALUES('integrity-check')", []).unwrap();
                drop(c);
                for f in ["check.db", "check.db-wal", "check.db-shm"] {
                    let _ = std::fs::remove_file(d.join(f));
                }
            }
        }
    }
}

/// What docs/forgetting.md says of FTS5 without its `secure-delete`: the row
/// is gone, its terms stay in the index (in the source and so in every
/// backup) until FTS5 merges the segments that hold them.
#[test]
fn without_fts5_secure_delete_the_terms_stay_until_a_merge() {
    let d = Dir::new();
    let db = planted(&d, true, false);
    let (identity, key) = d.age_key("key.txt");
    for (what, image) in every_output(&d, &db, &identity, &key) {
        assert!(!contains(&image, SECRET), "{what} holds the deleted row");
        assert!(contains(&image, TERM), "{what}: the documented FTS5 behaviour changed: update docs/forgetting.md");
    }
    // A merge of everything (what the server can run) drops them, and the
    // page stream does not bring them back from the freed pages.
    let c = Connection::open(&db).unwrap();
    c.execute("INSERT INTO memory_fts(memory_fts) VALUES('optimize')", []).unwrap();
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
    drop(c);
    for (what, image) in every_output(&d, &db, &identity, &key) {
        assert!(!contains(&image, TERM), "{what} holds the term after 'optimize'");
    }
}
