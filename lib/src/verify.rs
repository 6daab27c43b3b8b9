//! Proving that a backup restores, without writing plaintext anywhere.
//!
//! The age file is opened and authenticated chunk by chunk ([`open`]); the
//! plaintext goes into SQLite's memory or into an unnamed spool file
//! ([`crate::spool::plain`]), so no copy of the database ever has a name.
//! Then the database is checked as a restore would use it: complete (page
//! size × page count = length), `PRAGMA integrity_check`, every FTS5 table
//! answers a query for a term its own index lists, and every table's rows
//! counted; [`compare_live`] puts a live database's counts beside them.
//!
//! [`verify`] returns what it learned even when it fails, so that a report
//! (e.g. JSON) can show how far the backup got.

use std::fmt;
use std::io::{self, BufRead};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

use crate::age::format::CHUNK;
use crate::age::open::{self, Key, OpenError, Payload};
use crate::report::{Fts5Check, TableRows, Verification};
use crate::run::Run;
use crate::spool::plain::{Opened, Plain, PlainError};
use crate::spool::Place;
use crate::sqlite::header::{DbHeader, HeaderError, HEADER_LEN};
use crate::sqlite::source::{Source, SourceError};
use crate::stop::{hint, io_cause, Failure, Hint, Knob, Stop};

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub spool: Place,
    /// The backup's size in bytes when known (a regular file): sizes a
    /// memory spool and the progress bar.
    pub size_hint: Option<u64>,
}

impl Options {
    /// Fails now when the disk spool's directory is unusable.
    pub fn validate(&self) -> Result<(), VerifyError> {
        self.spool.validate().map_err(|u| VerifyError::Spool { dir: u.dir, source: u.source })
    }
}

#[derive(Debug)]
pub enum VerifyError {
    Open(OpenError),
    EmptyPlaintext,
    NotSqlite(HeaderError),
    TruncatedDb { got: u64, expected: u64 },
    LongerDb { got: u64, expected: u64 },
    PartialPage { got: u64, page_size: u32 },
    Integrity { first: String, more: usize },
    Fts5 { table: String, cause: String },
    Sqlite { what: &'static str, cause: String },
    Memory { bytes: u64 },
    Spool { dir: PathBuf, source: io::Error },
    Stop(Stop),
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use VerifyError::*;
        match self {
            Open(e) => e.fmt(f),
            EmptyPlaintext => f.write_str("decrypts to nothing (0 bytes), not a SQLite database"),
            NotSqlite(HeaderError::TooShort(n)) => {
                write!(f, "decrypts, but holds a truncated SQLite database ({n} of {HEADER_LEN} header bytes)")
            }
            NotSqlite(HeaderError::BadPageSize(n)) => {
                write!(f, "decrypts, but the SQLite header is corrupt (page size {n})")
            }
            NotSqlite(HeaderError::NotSqlite) => {
                f.write_str("decrypts, but the content is not a SQLite database (no \"SQLite format 3\" header)")
            }
            TruncatedDb { got, expected } => write!(
                f,
                "decrypts, but holds a truncated SQLite database: {got} of {expected} bytes (page size x page count)"
            ),
            LongerDb { got, expected } => write!(
                f,
                "decrypts, but the SQLite database is longer than its header says: {got} bytes, {expected} expected"
            ),
            PartialPage { got, page_size } => write!(
                f,
                "decrypts, but holds a truncated SQLite database: {got} bytes, not a whole number of {page_size}-byte pages"
            ),
            Integrity { first, more: 0 } => write!(f, "decrypts, but PRAGMA integrity_check fails: {first}"),
            Integrity { first, more } => {
                write!(f, "decrypts, but PRAGMA integrity_check fails: {first} (and {more} more problems)")
            }
            Fts5 { table, cause } => write!(f, "decrypts, but FTS5 table {table} does not answer queries: {cause}"),
            Sqlite { what, cause } => write!(f, "decrypts, but SQLite cannot {what}: {cause}"),
            Memory { bytes } => write!(f, "not enough memory to verify in memory ({bytes} bytes)"),
            Spool { dir, source } => write!(f, "spool: {}: {}", dir.display(), io_cause(source)),
            Stop(s) => s.fmt(f),
        }
    }
}

impl std::error::Error for VerifyError {}

impl Failure for VerifyError {
    fn hint(&self) -> Option<Hint> {
        use VerifyError::*;
        match self {
            Open(e) => e.hint(),
            EmptyPlaintext | NotSqlite(_) => Some("this backup does not hold a database: restore from another".into()),
            TruncatedDb { .. } | LongerDb { .. } | PartialPage { .. } => Some(hint![
                "the database was incomplete when it was sealed (wm-seal ",
                Knob::Raw,
                "?): take a new backup"
            ]),
            Integrity { .. } | Fts5 { .. } | Sqlite { .. } => {
                Some("the database was already damaged when it was backed up: restore from an older backup".into())
            }
            Memory { .. } => Some(hint!["use ", Knob::SpoolDisk]),
            Spool { .. } => {
                Some(hint!["use ", Knob::Tmpdir, " DIR with room for the database, or ", Knob::SpoolMemory])
            }
            Stop(_) => None,
        }
    }

    fn stop(&self) -> Option<Stop> {
        match self {
            VerifyError::Stop(s) => Some(*s),
            VerifyError::Open(e) => e.stop(),
            _ => None,
        }
    }
}

impl From<OpenError> for VerifyError {
    fn from(e: OpenError) -> VerifyError {
        VerifyError::Open(e)
    }
}

impl From<PlainError> for VerifyError {
    fn from(e: PlainError) -> VerifyError {
        match e {
            PlainError::Memory { bytes } => VerifyError::Memory { bytes },
            PlainError::Spool { dir, source } => VerifyError::Spool { dir, source },
            PlainError::Open(e) => sqlite("open the database", e),
        }
    }
}

/// Verifies the age file read from `input`. The report holds what was
/// learned, also when the result is an error.
pub fn verify(
    input: Box<dyn BufRead + '_>,
    key: Key<'_>,
    opts: &Options,
    run: &Run,
) -> (Verification, Result<(), VerifyError>) {
    let mut report = Verification::default();
    let result = decrypt_whole(input, key, opts, run, &mut report).and_then(|plain| check(plain, run, &mut report));
    (report, blame(result, run))
}

/// A failure after a signal is the signal's doing.
pub fn blame<T>(result: Result<T, VerifyError>, run: &Run) -> Result<T, VerifyError> {
    match (result, run.stopped()) {
        (Err(_), Some(stop)) => Err(VerifyError::Stop(stop)),
        (r, _) => r,
    }
}

/// The first half of [`verify`]: the age file opened, authenticated and
/// decrypted whole into a spool, and the database's length checked against
/// its header. What the caller may do with the plaintext before [`check`]
/// hands it to SQLite: write it somewhere (wm-restore).
pub fn decrypt_whole(
    input: Box<dyn BufRead + '_>,
    key: Key<'_>,
    opts: &Options,
    run: &Run,
    report: &mut Verification,
) -> Result<Plain, VerifyError> {
    run.progress.phase("decrypt", opts.size_hint);
    let (info, mut payload) = open::open(input, key)?;
    let header_len = info.header_len;
    report.opened_by = Some(info.opened_by);
    report.recipients = Some(info.stanzas);
    report.armored = Some(info.armored);
    let plain = decrypt(&mut payload, opts, run, report);
    report.ciphertext = header_len + payload.consumed();
    let (plain, db_header) = plain?;
    check_length(&plain, &db_header, report)?;
    Ok(plain)
}

/// The second half of [`verify`]: `PRAGMA integrity_check`, every table
/// counted, every FTS5 table queried.
pub fn check(plain: Plain, run: &Run, report: &mut Verification) -> Result<(), VerifyError> {
    check_opened(&plain.into_connection()?, run, report)
}

/// [`check`] of a plaintext already opened: what wm-restore runs while it
/// copies the image out.
pub fn check_opened(opened: &Opened, run: &Run, report: &mut Verification) -> Result<(), VerifyError> {
    run.progress.phase("check", None);
    let conn = &opened.conn;
    let _watch = run.cancel.watch_sqlite(conn);
    check_integrity(conn, report)?;
    run.check().map_err(VerifyError::Stop)?;
    let names = table_names(conn).map_err(|e| sqlite("list tables", e))?;
    report.tables = count_tables(conn, &names).map_err(|e| sqlite("count rows", e))?;
    check_fts5(conn, &names, report)
}

/// Decrypts the whole payload into a spool chosen by the first chunk: a
/// SQLite header tells the size; anything else is decrypted to nowhere, so
/// that the file is still authenticated before the verdict.
fn decrypt(
    payload: &mut Payload<'_>,
    opts: &Options,
    run: &Run,
    report: &mut Verification,
) -> Result<(Plain, DbHeader), VerifyError> {
    let mut chunk = vec![0u8; CHUNK];
    let n = payload.next_into(&mut chunk)?.unwrap_or(0);
    run.progress.set(payload.consumed());
    let header = match DbHeader::parse(&chunk[..n]) {
        Ok(h) => h,
        Err(e) => {
            while payload.next_into(&mut chunk)?.is_some() {
                run.check().map_err(VerifyError::Stop)?;
                run.progress.set(payload.consumed());
            }
            return Err(if n == 0 { VerifyError::EmptyPlaintext } else { VerifyError::NotSqlite(e) });
        }
    };
    if let Some(len) = header.expected_len() {
        payload.expect_plaintext(len);
    }
    // What the plaintext will weigh: the header's promise, but never more than
    // the file (a header may lie; the file's size does not).
    let estimate = match (header.expected_len(), opts.size_hint) {
        (Some(promised), Some(file)) => Some(promised.min(file)),
        (promised, file) => promised.or(file),
    };
    let kind = opts.spool.choose(estimate);
    report.spool = Some(kind.to_string());
    let mut plain = Plain::new(kind, estimate.unwrap_or(0), CHUNK, &opts.spool.dir())?;
    plain.append(&chunk[..n])?;
    loop {
        run.check().map_err(VerifyError::Stop)?;
        let got = plain.append_with(&mut chunk, |out| payload.next_into(out).map_err(VerifyError::from))?;
        run.progress.set(payload.consumed());
        if got.is_none() {
            return Ok((plain, header));
        }
    }
}

/// Length against the header's promise; the database's particulars.
fn check_length(plain: &Plain, h: &DbHeader, report: &mut Verification) -> Result<(), VerifyError> {
    let got = plain.len();
    match h.expected_len() {
        Some(expected) if got < expected => return Err(VerifyError::TruncatedDb { got, expected }),
        Some(expected) if got > expected => return Err(VerifyError::LongerDb { got, expected }),
        None if !got.is_multiple_of(h.page_size as u64) => {
            return Err(VerifyError::PartialPage { got, page_size: h.page_size })
        }
        _ => {}
    }
    let mut head = [0u8; HEADER_LEN];
    plain.read_at(&mut head, 0)?;
    let v = u32::from_be_bytes([head[96], head[97], head[98], head[99]]);
    report.size = Some(got);
    report.page_size = Some(h.page_size as u64);
    report.page_count = Some(got / h.page_size as u64);
    report.sqlite_version = Some(format!("{}.{}.{}", v / 1_000_000, v / 1000 % 1000, v % 1000));
    Ok(())
}

fn sqlite(what: &'static str, e: rusqlite::Error) -> VerifyError {
    VerifyError::Sqlite { what, cause: e.to_string() }
}

fn check_integrity(conn: &Connection, report: &mut Verification) -> Result<(), VerifyError> {
    let mut stmt = conn.prepare("PRAGMA integrity_check").map_err(|e| sqlite("check integrity", e))?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| sqlite("check integrity", e))?;
    let first = lines.first().cloned().unwrap_or_default();
    // SQLite's messages may span lines; a report line must not.
    let first = first.split_whitespace().collect::<Vec<_>>().join(" ");
    report.integrity_check = Some(first.clone());
    if lines.len() == 1 && first == "ok" {
        return Ok(());
    }
    Err(VerifyError::Integrity { first, more: lines.len().saturating_sub(1) })
}

/// Quotes an SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Ordinary tables and FTS5 tables (flagged), by name; the internal
/// `sqlite_*` and FTS5's shadow tables left out.
fn table_names(conn: &Connection) -> rusqlite::Result<Vec<(String, bool)>> {
    let mut stmt = conn.prepare(
        "SELECT t.name, t.type = 'virtual' FROM pragma_table_list AS t JOIN sqlite_schema AS s ON s.name = t.name \
         WHERE t.schema = 'main' AND t.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
           AND (t.type = 'table' OR (t.type = 'virtual' AND lower(s.sql) GLOB '*using*fts5*')) \
         ORDER BY t.name",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

fn count_rows(conn: &Connection, name: &str) -> rusqlite::Result<u64> {
    conn.query_row(&format!("SELECT count(*) FROM main.{}", ident(name)), [], |r| r.get::<_, i64>(0))
        .map(|n| n.max(0) as u64)
}

/// Every table's row count, in the order of `names`.
fn count_tables(conn: &Connection, names: &[(String, bool)]) -> rusqlite::Result<Vec<TableRows>> {
    names.iter().map(|(name, _)| Ok(TableRows::new(name.clone(), Some(count_rows(conn, name)?), None))).collect()
}

/// Each FTS5 table (the flagged `names`) must find rows for a term its own index lists.
fn check_fts5(conn: &Connection, names: &[(String, bool)], report: &mut Verification) -> Result<(), VerifyError> {
    for (name, _) in names.iter().filter(|(_, fts5)| *fts5) {
        let result = fts5_query(conn, name);
        let failed = result.as_ref().err().cloned();
        report.fts5.push(Fts5Check {
            table: name.clone(),
            ok: failed.is_none(),
            hits: result.as_ref().ok().copied(),
            error: failed.clone(),
        });
        if let Some(cause) = failed {
            return Err(VerifyError::Fts5 { table: name.clone(), cause });
        }
    }
    Ok(())
}

fn fts5_query(conn: &Connection, table: &str) -> Result<u64, String> {
    let vocab = "wm_verify_vocab";
    let sql =
        format!("CREATE VIRTUAL TABLE temp.{vocab} USING fts5vocab(main, '{}', 'row')", table.replace('\'', "''"));
    conn.execute_batch(&sql).map_err(|e| e.to_string())?;
    let term: Result<Option<String>, String> = conn
        .query_row(&format!("SELECT term FROM temp.{vocab} LIMIT 1"), [], |r| r.get(0))
        .map(Some)
        .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(None) } else { Err(e.to_string()) });
    let dropped = conn.execute_batch(&format!("DROP TABLE temp.{vocab}")).map_err(|e| e.to_string());
    let term = term?;
    dropped?;
    // An empty index still has to answer; any term will do.
    let phrase = format!("\"{}\"", term.as_deref().unwrap_or("wm").replace('"', "\"\""));
    let t = ident(table);
    let hits: i64 = conn
        .query_row(&format!("SELECT count(*) FROM main.{t} WHERE {t} MATCH ?1"), [&phrase], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if term.is_some() && hits == 0 {
        return Err("its index lists a term that no query finds".into());
    }
    Ok(hits.max(0) as u64)
}

/// Puts the row counts of the live database at `path`, read in one read
/// transaction, beside the backup's in `report` (the caller records `against`).
pub fn compare_live(path: &Path, busy: Duration, run: &Run, report: &mut Verification) -> Result<(), SourceError> {
    let source = Source::open(path, busy, Knob::Against)?;
    let live = source.read("count rows", &run.cancel, |conn| {
        let names = table_names(conn)?;
        names.into_iter().map(|(name, _)| Ok((count_rows(conn, &name)?, name))).collect::<rusqlite::Result<Vec<_>>>()
    });
    let live = match (live, run.stopped()) {
        (Err(_), Some(stop)) => return Err(SourceError::Stop(stop)),
        (r, _) => r?,
    };
    let tables = &mut report.tables;
    for (n, name) in live {
        match tables.iter_mut().find(|t| t.name == name) {
            Some(t) => *t = TableRows::new(name, t.rows, Some(n)),
            None => tables.push(TableRows::new(name, None, Some(n))),
        }
    }
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(())
}
