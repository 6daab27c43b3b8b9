//! Proving that a backup restores, without writing plaintext anywhere.
//!
//! The age file is opened and authenticated chunk by chunk ([`unseal`]); the
//! plaintext goes into SQLite's memory (`sqlite3_deserialize` of a buffer
//! the chunks are decrypted straight into) or into an unnamed spool file
//! (the `wmspool` VFS), so no copy of the database ever has a name. Then the
//! database is checked as a restore would use it: complete (page size ×
//! page count = length), `PRAGMA integrity_check`, every FTS5 table answers
//! a query for a term its own index lists, and every table's rows counted,
//! beside the live database's when asked.
//!
//! [`verify`] returns what it learned even when it fails, so that a report
//! (e.g. JSON) can show how far the backup got.

use std::fmt;
use std::io::{self, BufRead};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{ffi, Connection, OpenFlags};

use crate::error::{io_cause, Stop};
use crate::header::{DbHeader, HeaderError, HEADER_LEN};
use crate::progress::Progress;
use crate::seal::CHUNK;
use crate::signals::Cancel;
use crate::snapshot::{SnapshotError, Source, SpoolMode};
use crate::spool::{auto_kind, SpoolKind};
use crate::unseal::{self, HeaderInfo, Key, Payload, UnsealError};
use crate::vfs::SpoolFile;

#[derive(Debug, Clone)]
pub struct Options {
    pub spool: SpoolMode,
    /// Directory for a disk spool; `None` means `$TMPDIR` or `/tmp`.
    pub tmpdir: Option<PathBuf>,
    /// A live database whose row counts go beside the backup's.
    pub against: Option<PathBuf>,
    pub busy_timeout: Duration,
    /// The backup's size in bytes when known (a regular file): sizes a
    /// memory spool and the progress bar.
    pub size_hint: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            spool: SpoolMode::Auto,
            tmpdir: None,
            against: None,
            busy_timeout: Duration::from_millis(5000),
            size_hint: None,
        }
    }
}

impl Options {
    fn tmpdir(&self) -> PathBuf {
        self.tmpdir.clone().unwrap_or_else(std::env::temp_dir)
    }

    /// Fails now when the disk spool's directory is unusable (see
    /// `snapshot::Options::validate`).
    pub fn validate(&self) -> Result<(), VerifyError> {
        if self.tmpdir.is_none() && self.spool != SpoolMode::Disk {
            return Ok(());
        }
        let dir = self.tmpdir();
        crate::vfs::unnamed_file(&dir).map(drop).map_err(|source| VerifyError::Spool { dir, source })
    }
}

/// The database inside the backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    pub size: u64,
    pub page_size: u32,
    pub page_count: u64,
    /// The SQLite library that last wrote it, e.g. "3.54.1".
    pub sqlite_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fts5Check {
    pub table: String,
    /// Rows a query for one of the index's own terms found.
    pub hits: Option<u64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRows {
    pub name: String,
    /// `None`: the table is not in the backup.
    pub rows: Option<u64>,
    /// `None`: no live database asked for, or the table is not in it.
    pub live_rows: Option<u64>,
}

impl TableRows {
    /// Live minus backup: how many rows the backup is behind.
    pub fn difference(&self) -> Option<i64> {
        Some(self.live_rows? as i64 - self.rows? as i64)
    }
}

/// Everything learned, however far verification got.
#[derive(Debug, Default)]
pub struct Report {
    pub header: Option<HeaderInfo>,
    /// Bytes of the (de-armored) age file read.
    pub ciphertext: u64,
    pub database: Option<Database>,
    pub spool: Option<SpoolKind>,
    /// "ok", or the first problem `PRAGMA integrity_check` reported.
    pub integrity: Option<String>,
    pub fts5: Vec<Fts5Check>,
    pub tables: Vec<TableRows>,
    pub against: Option<PathBuf>,
}

#[derive(Debug)]
pub enum VerifyError {
    Unseal(UnsealError),
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
    Live(SnapshotError),
    Stop(Stop),
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use VerifyError::*;
        match self {
            Unseal(e) => e.fmt(f),
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
            Live(e) => write!(f, "--against: {e}"),
            Stop(s) => s.fmt(f),
        }
    }
}

impl std::error::Error for VerifyError {}

impl VerifyError {
    pub fn hint(&self) -> Option<String> {
        use VerifyError::*;
        match self {
            Unseal(e) => e.hint(),
            EmptyPlaintext | NotSqlite(_) => Some("this backup does not hold a database: restore from another".into()),
            TruncatedDb { .. } | LongerDb { .. } | PartialPage { .. } => {
                Some("the database was incomplete when it was sealed (wm-seal --raw?): take a new backup".into())
            }
            Integrity { .. } | Fts5 { .. } | Sqlite { .. } => {
                Some("the database was already damaged when it was backed up: restore from an older backup".into())
            }
            Memory { .. } => Some("use --spool disk".into()),
            Spool { .. } => Some("use --tmpdir DIR with room for the database, or --spool memory".into()),
            Live(SnapshotError::Missing { .. }) => Some("check the --against path".into()),
            Live(e) => e.hint(),
            Stop(_) => None,
        }
    }

    pub fn stop(&self) -> Option<Stop> {
        match self {
            VerifyError::Stop(s) => Some(*s),
            VerifyError::Unseal(e) => e.stop(),
            VerifyError::Live(e) => e.stop(),
            _ => None,
        }
    }
}

impl From<UnsealError> for VerifyError {
    fn from(e: UnsealError) -> VerifyError {
        match e.stop() {
            Some(s) => VerifyError::Stop(s),
            None => VerifyError::Unseal(e),
        }
    }
}

/// Verifies the age file read from `input`. The report holds what was
/// learned, also when the result is an error.
pub fn verify(
    input: Box<dyn BufRead + '_>,
    key: Key<'_>,
    opts: &Options,
    cancel: &Cancel,
    progress: &Progress,
) -> (Report, Result<(), VerifyError>) {
    let mut report = Report { against: opts.against.clone(), ..Report::default() };
    let result = run(input, key, opts, cancel, progress, &mut report);
    let result = match (result, cancel.fired()) {
        (Err(_), Some(sig)) => Err(VerifyError::Stop(Stop::Interrupted(sig))),
        (r, _) => r,
    };
    (report, result)
}

fn run(
    input: Box<dyn BufRead + '_>,
    key: Key<'_>,
    opts: &Options,
    cancel: &Cancel,
    progress: &Progress,
    report: &mut Report,
) -> Result<(), VerifyError> {
    progress.phase("decrypt", opts.size_hint);
    let (info, mut payload) = unseal::open(input, key)?;
    let header_len = info.header_len;
    report.header = Some(info);
    let plain = decrypt(&mut payload, opts, cancel, progress, report);
    report.ciphertext = header_len + payload.consumed();
    let (plain, db_header) = plain?;

    let db = check_length(&plain, &db_header)?;
    report.database = Some(db);
    progress.phase("check", None);
    let opened = plain.into_connection()?;
    let conn = &opened.conn;
    let _watch = cancel.watch_sqlite(conn);
    check_integrity(conn, report)?;
    cancel.check().map_err(VerifyError::Stop)?;
    let names = table_names(conn).map_err(|e| sqlite("list tables", e))?;
    report.tables = count_tables(conn, &names).map_err(|e| sqlite("count rows", e))?;
    check_fts5(conn, &names, report)?;
    if let Some(live) = &opts.against {
        compare_live(live, opts.busy_timeout, cancel, &mut report.tables)?;
    }
    Ok(())
}

/// Decrypts the whole payload into a spool chosen by the first chunk: a
/// SQLite header tells the size; anything else is decrypted to nowhere, so
/// that the file is still authenticated before the verdict.
fn decrypt(
    payload: &mut Payload<'_>,
    opts: &Options,
    cancel: &Cancel,
    progress: &Progress,
    report: &mut Report,
) -> Result<(Plain, DbHeader), VerifyError> {
    let mut chunk = vec![0u8; CHUNK];
    let n = payload.next_into(&mut chunk)?.unwrap_or(0);
    progress.set(payload.consumed());
    let header = match DbHeader::parse(&chunk[..n]) {
        Ok(h) => h,
        Err(e) => {
            while payload.next_into(&mut chunk)?.is_some() {
                cancel.check().map_err(VerifyError::Stop)?;
                progress.set(payload.consumed());
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
        (Some(promised), Some(file)) => promised.min(file),
        (promised, file) => promised.or(file).unwrap_or(0),
    };
    let kind = match opts.spool {
        SpoolMode::Memory => SpoolKind::Memory,
        SpoolMode::Disk => SpoolKind::Disk,
        SpoolMode::Auto if estimate == 0 => SpoolKind::Disk,
        SpoolMode::Auto => auto_kind(estimate),
    };
    report.spool = Some(kind);
    let mut plain = Plain::new(kind, estimate, &opts.tmpdir())?;
    plain.append(&chunk[..n])?;
    loop {
        cancel.check().map_err(VerifyError::Stop)?;
        let got = match &mut plain {
            Plain::Memory(buf) => {
                let got = payload.next_into(buf.spare(CHUNK)?)?;
                buf.len += got.unwrap_or(0);
                got
            }
            Plain::Disk { .. } => {
                let got = payload.next_into(&mut chunk)?;
                plain.append(&chunk[..got.unwrap_or(0)])?;
                got
            }
        };
        progress.set(payload.consumed());
        if got.is_none() {
            return Ok((plain, header));
        }
    }
}

/// Length against the header's promise; the database's particulars.
fn check_length(plain: &Plain, h: &DbHeader) -> Result<Database, VerifyError> {
    let got = plain.len();
    match h.expected_len() {
        Some(expected) if got < expected => return Err(VerifyError::TruncatedDb { got, expected }),
        Some(expected) if got > expected => return Err(VerifyError::LongerDb { got, expected }),
        None if got % h.page_size as u64 != 0 => return Err(VerifyError::PartialPage { got, page_size: h.page_size }),
        _ => {}
    }
    let mut head = [0u8; HEADER_LEN];
    plain.read_at(&mut head, 0)?;
    let v = u32::from_be_bytes([head[96], head[97], head[98], head[99]]);
    Ok(Database {
        size: got,
        page_size: h.page_size,
        page_count: got / h.page_size as u64,
        sqlite_version: format!("{}.{}.{}", v / 1_000_000, v / 1000 % 1000, v % 1000),
    })
}

fn sqlite(what: &'static str, e: rusqlite::Error) -> VerifyError {
    VerifyError::Sqlite { what, cause: e.to_string() }
}

fn check_integrity(conn: &Connection, report: &mut Report) -> Result<(), VerifyError> {
    let mut stmt = conn.prepare("PRAGMA integrity_check").map_err(|e| sqlite("check integrity", e))?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| sqlite("check integrity", e))?;
    let first = lines.first().cloned().unwrap_or_default();
    // SQLite's messages may span lines; a report line must not.
    let first = first.split_whitespace().collect::<Vec<_>>().join(" ");
    report.integrity = Some(first.clone());
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
    names
        .iter()
        .map(|(name, _)| Ok(TableRows { rows: Some(count_rows(conn, name)?), name: name.clone(), live_rows: None }))
        .collect()
}

/// Each FTS5 table (the flagged `names`) must find rows for a term its own index lists.
fn check_fts5(conn: &Connection, names: &[(String, bool)], report: &mut Report) -> Result<(), VerifyError> {
    for (name, _) in names.iter().filter(|(_, fts5)| *fts5) {
        let result = fts5_query(conn, name);
        let failed = result.as_ref().err().cloned();
        report.fts5.push(Fts5Check { table: name.clone(), hits: result.as_ref().ok().copied(), error: failed.clone() });
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

/// Row counts of the live database, in one read transaction, beside the backup's.
fn compare_live(path: &Path, busy: Duration, cancel: &Cancel, tables: &mut Vec<TableRows>) -> Result<(), VerifyError> {
    let source = Source::open(path, busy).map_err(VerifyError::Live)?;
    let live = source
        .read("count rows", cancel, |conn| {
            let names = table_names(conn)?;
            names
                .into_iter()
                .map(|(name, _)| Ok((count_rows(conn, &name)?, name)))
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(VerifyError::Live)?;
    for (n, name) in live {
        match tables.iter_mut().find(|t| t.name == name) {
            Some(t) => t.live_rows = Some(n),
            None => tables.push(TableRows { name, rows: None, live_rows: Some(n) }),
        }
    }
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(())
}

/// Where the plaintext waits: SQLite-owned memory, or an unnamed file.
enum Plain {
    Memory(SqliteBuf),
    Disk { file: SpoolFile, len: u64, dir: PathBuf },
}

impl Plain {
    fn new(kind: SpoolKind, estimate: u64, tmpdir: &Path) -> Result<Plain, VerifyError> {
        match kind {
            SpoolKind::Memory => {
                let cap = estimate.max(CHUNK as u64) + CHUNK as u64;
                Ok(Plain::Memory(SqliteBuf::with_capacity(cap)?))
            }
            SpoolKind::Disk => {
                let file = SpoolFile::create(tmpdir)
                    .map_err(|source| VerifyError::Spool { dir: tmpdir.to_path_buf(), source })?;
                Ok(Plain::Disk { file, len: 0, dir: tmpdir.to_path_buf() })
            }
        }
    }

    fn len(&self) -> u64 {
        match self {
            Plain::Memory(b) => b.len as u64,
            Plain::Disk { len, .. } => *len,
        }
    }

    fn append(&mut self, data: &[u8]) -> Result<(), VerifyError> {
        match self {
            Plain::Memory(b) => {
                b.spare(data.len())?[..data.len()].copy_from_slice(data);
                b.len += data.len();
            }
            Plain::Disk { file, len, dir } => {
                file.file()
                    .write_all_at(data, *len)
                    .map_err(|source| VerifyError::Spool { dir: dir.clone(), source })?;
                *len += data.len() as u64;
            }
        }
        Ok(())
    }

    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<(), VerifyError> {
        match self {
            Plain::Memory(b) => {
                buf.copy_from_slice(&b.as_slice()[off as usize..off as usize + buf.len()]);
                Ok(())
            }
            Plain::Disk { file, dir, .. } => {
                file.file().read_exact_at(buf, off).map_err(|source| VerifyError::Spool { dir: dir.clone(), source })
            }
        }
    }

    /// A read-only connection onto the plaintext, as `sqlite3` would open a
    /// restored file. A WAL-mode image is marked rollback in this private
    /// copy: memdb has no WAL, and without a `-wal` file the content is the same.
    fn into_connection(mut self) -> Result<Opened, VerifyError> {
        let mut mode = [0u8; 2];
        self.read_at(&mut mode, 18)?;
        if mode == [2, 2] {
            match &mut self {
                Plain::Memory(b) => b.as_mut_slice()[18..20].copy_from_slice(&[1, 1]),
                Plain::Disk { file, dir, .. } => file
                    .file()
                    .write_all_at(&[1, 1], 18)
                    .map_err(|source| VerifyError::Spool { dir: dir.clone(), source })?,
            }
        }
        let opened = match self {
            Plain::Memory(b) => {
                Opened { conn: b.into_connection().map_err(|e| sqlite("open the database", e))?, _spool: None }
            }
            Plain::Disk { file, .. } => {
                let conn = Connection::open_with_flags(
                    file.uri(),
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(|e| sqlite("open the database", e))?;
                Opened { conn, _spool: Some(file) }
            }
        };
        // Nothing of the check may land in a temporary file.
        opened.conn.execute_batch("PRAGMA temp_store = MEMORY").map_err(|e| sqlite("open the database", e))?;
        Ok(opened)
    }
}

/// A connection onto the plaintext; a disk spool outlives it (fields drop in order).
struct Opened {
    conn: Connection,
    _spool: Option<SpoolFile>,
}

/// A buffer from `sqlite3_malloc64`, so that `sqlite3_deserialize` can take
/// it over without a copy.
struct SqliteBuf {
    ptr: *mut u8,
    len: usize,
    cap: usize,
}

impl SqliteBuf {
    fn with_capacity(cap: u64) -> Result<SqliteBuf, VerifyError> {
        // SAFETY: plain allocation; NULL is checked.
        let ptr = unsafe { ffi::sqlite3_malloc64(cap) }.cast::<u8>();
        if ptr.is_null() {
            return Err(VerifyError::Memory { bytes: cap });
        }
        Ok(SqliteBuf { ptr, len: 0, cap: cap as usize })
    }

    /// `n` zeroed bytes after the data, growing the buffer if need be.
    fn spare(&mut self, n: usize) -> Result<&mut [u8], VerifyError> {
        if self.len + n > self.cap {
            let want = (self.cap * 2).max(self.len + n);
            // SAFETY: ptr came from sqlite3_malloc64/realloc64; on failure it stays valid.
            let p = unsafe { ffi::sqlite3_realloc64(self.ptr.cast(), want as u64) }.cast::<u8>();
            if p.is_null() {
                return Err(VerifyError::Memory { bytes: want as u64 });
            }
            self.ptr = p;
            self.cap = want;
        }
        // SAFETY: len + n <= cap; the bytes are initialised before the slice is made.
        unsafe {
            std::ptr::write_bytes(self.ptr.add(self.len), 0, n);
            Ok(std::slice::from_raw_parts_mut(self.ptr.add(self.len), n))
        }
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: the first len bytes are initialised.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the first len bytes are initialised.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    /// Hands the buffer to a new in-memory connection, read-only.
    fn into_connection(self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_in_memory()?;
        let (ptr, len, cap) = (self.ptr, self.len, self.cap);
        std::mem::forget(self);
        // SAFETY: the buffer is SQLite's to free from here on (FREEONCLOSE
        // applies on failure too); len <= cap.
        let rc = unsafe {
            ffi::sqlite3_deserialize(
                conn.handle(),
                c"main".as_ptr(),
                ptr,
                len as i64,
                cap as i64,
                ffi::SQLITE_DESERIALIZE_FREEONCLOSE | ffi::SQLITE_DESERIALIZE_READONLY,
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(rusqlite::Error::SqliteFailure(ffi::Error::new(rc), Some("deserialize".into())));
        }
        Ok(conn)
    }
}

impl Drop for SqliteBuf {
    fn drop(&mut self) {
        // SAFETY: allocated by sqlite3_malloc64 and not handed over.
        unsafe { ffi::sqlite3_free(self.ptr.cast()) }
    }
}
