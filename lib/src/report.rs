//! What the tools report, as data: the `--json` schema lives here, and the
//! human summaries read the same values. Plain types only (strings,
//! numbers), so that every stage can fill them and nothing here depends on
//! a stage.

use serde::Serialize;

/// `wm-verify --json`: one object, also when the backup does not verify.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// The backup as the user named it ("standard input" for a pipe).
    pub backup: String,
    pub restorable: bool,
    /// The one-line reason when not restorable.
    pub error: Option<String>,
    /// "X25519 identity from key.txt", or "the file key".
    pub opened_by: Option<String>,
    /// The recipient stanza types in the header, in order.
    pub recipients: Option<Vec<String>>,
    pub armored: Option<bool>,
    /// Bytes of the (de-armored) age file read.
    pub ciphertext: u64,
    /// The database inside: its size, page size and count, and the SQLite
    /// version that last wrote it.
    pub size: Option<u64>,
    pub page_size: Option<u64>,
    pub page_count: Option<u64>,
    pub sqlite_version: Option<String>,
    /// "memory" or "disk": where the plaintext waited.
    pub spool: Option<String>,
    /// "ok", or the first problem `PRAGMA integrity_check` reported.
    pub integrity_check: Option<String>,
    pub fts5: Vec<Fts5Check>,
    /// The live database compared with, if any.
    pub against: Option<String>,
    pub tables: Vec<TableRows>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fts5Check {
    pub table: String,
    pub ok: bool,
    /// Rows a query for one of the index's own terms found.
    pub hits: Option<u64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableRows {
    pub name: String,
    /// `None`: the table is not in the backup.
    pub rows: Option<u64>,
    /// `None`: no live database asked for, or the table is not in it.
    pub live_rows: Option<u64>,
    /// Live minus backup: how many rows the backup is behind.
    pub difference: Option<i64>,
}

impl TableRows {
    pub fn new(name: String, rows: Option<u64>, live_rows: Option<u64>) -> TableRows {
        let difference = match (rows, live_rows) {
            (Some(b), Some(l)) => Some(l as i64 - b as i64),
            _ => None,
        };
        TableRows { name, rows, live_rows, difference }
    }
}

/// `wm-restore --json`: what was (or, with `--dry-run`, would be) kept,
/// taken away and written; also when the restore fails.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Restoration {
    /// The backup as the user named it.
    pub backup: String,
    /// The database put back.
    pub target: String,
    pub dry_run: bool,
    pub restored: bool,
    pub error: Option<String>,
    /// The database that was there, under its new name.
    pub kept: Option<Kept>,
    /// Journal files taken away from beside the target (they are in `kept`).
    pub removed: Vec<String>,
    /// Names an interrupted restore had left, removed (their files live on
    /// under the target's names).
    pub cleaned: Vec<String>,
    pub written: Option<Written>,
    /// The backup's verification, as `wm-verify --json` reports it.
    pub verification: Verification,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Kept {
    /// `NAME.pre-restore-YYYYMMDDTHHMMSSZ`: open it with sqlite3 as it was.
    pub name: String,
    /// Every file of the kept set (the database and its journals).
    pub files: Vec<String>,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Written {
    pub path: String,
    pub bytes: u64,
    pub page_size: u64,
    pub page_count: u64,
    /// "wal" or "delete": the image's own, as the backup holds it.
    pub journal_mode: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_verification_is_still_one_object_in_schema_order() {
        let v = Verification {
            backup: "x.age".into(),
            error: Some("x.age: truncated".into()),
            tables: vec![TableRows::new("t".into(), Some(2), Some(5))],
            ..Verification::default()
        };
        let j = serde_json::to_string(&v).unwrap();
        assert!(
            j.starts_with(r#"{"backup":"x.age","restorable":false,"error":"x.age: truncated","opened_by":null"#),
            "{j}"
        );
        assert!(j.ends_with(r#""against":null,"tables":[{"name":"t","rows":2,"live_rows":5,"difference":3}]}"#), "{j}");
    }
}
