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
    /// Every restore copy of the target now beside it (this one included),
    /// the series `wm-prune` prunes as sets; null if the directory could
    /// not be listed.
    pub copies: Option<Copies>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Copies {
    pub count: u64,
    /// All their files, journals included.
    pub bytes: u64,
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
    /// "wal" or "delete": the mode the restored database was given (WAL
    /// when the database it replaced was in WAL mode, else the backup's).
    pub journal_mode: String,
    /// "wal" or "delete": the image's own, as the backup holds it.
    pub journal_mode_backup: String,
    /// The owner, group and mode the restored database was given, e.g.
    /// `workmem (uid 998)`, `workmem (gid 998)`, `0640`.
    pub owner: String,
    pub group: String,
    pub mode: String,
}

/// What every report of a run ends with: how it ended. A failure before
/// there is anything to report is [`Failed`] alone.
pub trait Outcome: Serialize {
    fn set_outcome(&mut self, exit: u8, error: Option<String>);
}

/// A report's `seconds`: the time since `started`, to the millisecond.
pub fn seconds_since(started: std::time::Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0
}

/// The reports that end with `exit` and `error`.
macro_rules! outcome {
    ($($report:ty),*) => {$(
        impl Outcome for $report {
            fn set_outcome(&mut self, exit: u8, error: Option<String>) {
                self.exit = exit;
                self.error = error;
            }
        }
    )*};
}
outcome!(Failed, Backup, Prune);

/// `--json` of a run that failed before it made anything: the tool, its
/// exit status and the one-line error (usage errors included).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Failed {
    pub tool: String,
    pub version: String,
    pub exit: u8,
    pub error: Option<String>,
}

/// `--json` of workmem-backup, wm-seal and wm-snapshot: one backup written.
/// What a tool does not do is null or empty: wm-seal has no source nor
/// method, wm-snapshot no ciphertext nor recipients.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Backup {
    pub tool: String,
    pub version: String,
    /// 0, or the exit status of a run that made the backup and then failed
    /// (pruning, the metrics file); `error` says why.
    pub exit: u8,
    pub error: Option<String>,
    /// RFC 3339, UTC.
    pub started: String,
    pub finished: String,
    pub seconds: f64,
    pub source: Option<SourceInfo>,
    /// "vacuum" or "pages".
    pub method: Option<String>,
    /// "memory" or "disk"; null when streamed without a spool.
    pub spool: Option<String>,
    /// The plaintext: the snapshot (wm-seal: the bytes it read).
    pub snapshot_bytes: u64,
    pub ciphertext_bytes: Option<u64>,
    /// Hex SHA-256 of the bytes as written to the destination (for
    /// wm-snapshot, the database image): what `sha256sum` of the file says.
    pub sha256: String,
    /// The file written, or "standard output".
    pub destination: String,
    pub recipients: Vec<RecipientInfo>,
    pub armored: bool,
    /// `--verify` read the backup back from disk and it restores.
    pub verified: bool,
    /// Older backups deleted by `--keep-*`.
    pub pruned: Vec<String>,
    pub warnings: Vec<String>,
}

/// The live database a snapshot was taken of, as it was when opened.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SourceInfo {
    pub path: String,
    pub page_size: u64,
    pub page_count: u64,
    /// "wal" or "rollback".
    pub journal_mode: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecipientInfo {
    /// "X25519", "ssh-ed25519", "mlkem768x25519", …
    #[serde(rename = "type")]
    pub kind: String,
    /// The first 8 hex digits of the SHA-256 of the public key as written.
    pub fingerprint: String,
}

/// `wm-prune --json`: what a retention policy kept and dropped.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Prune {
    pub tool: String,
    pub version: String,
    pub exit: u8,
    pub error: Option<String>,
    /// RFC 3339, UTC.
    pub started: String,
    pub finished: String,
    pub seconds: f64,
    /// The directory, or "standard input".
    pub input: String,
    /// `--delete` was given.
    pub delete: bool,
    pub policy: PolicyInfo,
    /// Backups counted.
    pub backups: u64,
    /// Newest first within each series, with the rules that keep each.
    pub kept: Vec<KeptInfo>,
    /// What the policy drops, oldest first.
    pub dropped: Vec<String>,
    /// What was deleted (only with `--delete`).
    pub deleted: Vec<String>,
    /// Names shaped like a backup's that were not counted, and why.
    pub skipped: Vec<SkippedInfo>,
    /// Uploads never committed (`NAME.partial`): never counted; `stale`
    /// ones (older than `--partial-age`) are printed, or deleted with
    /// `--delete`, with the dropped backups.
    pub partial: Vec<PartialInfo>,
}

/// Counts are restic's: -1 keeps every period; null is a rule not given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PolicyInfo {
    pub last: Option<i64>,
    pub hourly: Option<i64>,
    pub daily: Option<i64>,
    pub weekly: Option<i64>,
    pub monthly: Option<i64>,
    pub yearly: Option<i64>,
    /// As given, e.g. "30d".
    pub within: Option<String>,
    pub within_hourly: Option<String>,
    pub within_daily: Option<String>,
    pub within_weekly: Option<String>,
    pub within_monthly: Option<String>,
    pub within_yearly: Option<String>,
    /// `--partial-age`, e.g. "1d".
    pub partial_age: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PartialInfo {
    pub name: String,
    /// The time in its name, RFC 3339; null if it has none (then its age
    /// is unknown and it is never deleted).
    pub time: Option<String>,
    /// Older than `--partial-age`: an upload that will never finish.
    pub stale: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KeptInfo {
    pub name: String,
    /// The time in the name, RFC 3339.
    pub time: String,
    /// restic's reasons: "last snapshot", "daily snapshot", "oldest daily
    /// snapshot", "within 30d", "daily within 30d", "oldest daily within
    /// 30d", …; then "new" (the backup just made) or "newest" (never
    /// dropped).
    pub rules: Vec<String>,
    /// The entry is a symbolic link (counted by name, never followed).
    pub symlink: bool,
    /// Files that belong to it and go with it: a restore copy's `-wal`
    /// and `-shm`.
    pub companions: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SkippedInfo {
    pub name: String,
    pub why: String,
}

#[cfg(test)]
mod history_tests {
    use super::*;

    #[test]
    fn a_backup_report_names_the_recipient_type_as_type_and_keeps_every_key() {
        let mut b = Backup {
            tool: "workmem-backup".into(),
            recipients: vec![RecipientInfo { kind: "X25519".into(), fingerprint: "0123abcd".into() }],
            ..Backup::default()
        };
        b.set_outcome(1, Some("prune: x".into()));
        let j = serde_json::to_string(&b).unwrap();
        assert!(j.starts_with(r#"{"tool":"workmem-backup","version":"","exit":1,"error":"prune: x","started""#), "{j}");
        assert!(j.contains(r#""recipients":[{"type":"X25519","fingerprint":"0123abcd"}]"#), "{j}");
        assert!(j.contains(r#""source":null,"method":null"#), "{j}");
    }
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
