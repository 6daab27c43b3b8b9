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
//! The database may have been made to hurt its reader (anyone with the
//! public key can make a backup), so it is opened hardened and bounded
//! ([`crate::spool::guard`]): no views, triggers or extensions, values of
//! at most 64 MiB, a heap cap above the image, and a time budget. Rows are
//! counted from b-trees only: ordinary tables by `count(*)`, which runs no
//! schema code, FTS5 tables through their own shadow tables, never through
//! their content (which may be a view).
//!
//! [`verify`] returns what it learned even when it fails, so that a report
//! (e.g. JSON) can show how far the backup got.

use std::fmt;
use std::io::{self, BufRead};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::Connection;

use crate::age::format::CHUNK;
use crate::age::open::{self, Key, OpenError, Payload};
use crate::report::{Fts5Check, TableRows, Verification};
use crate::run::Run;
use crate::spool::guard::{self, Deadline, Refusal};
use crate::spool::plain::{Opened, Plain, PlainError};
use crate::spool::{Place, MAX_ONE_ALLOCATION};
use crate::sqlite::header::{DbHeader, HeaderError, HEADER_LEN};
use crate::sqlite::source::{Source, SourceError};
use crate::stop::{hint, io_cause, Failure, Hint, Knob, Stop};

/// The plaintext is decrypted this much at a time, on both cores
/// ([`Payload::next_many_into`]): 64 chunks, 4 MiB.
const BATCH: usize = 64 * CHUNK;

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub spool: Place,
    /// The backup's size in bytes when known (a regular file): sizes a
    /// memory spool and the progress bar.
    pub size_hint: Option<u64>,
    /// How long SQLite may take to check the database; `None`:
    /// [`guard::default_budget`] of its size.
    pub time_budget: Option<Duration>,
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
    TruncatedDb {
        got: u64,
        expected: u64,
    },
    LongerDb {
        got: u64,
        expected: u64,
    },
    PartialPage {
        got: u64,
        page_size: u32,
    },
    Integrity {
        first: String,
        more: usize,
    },
    Fts5 {
        table: String,
        cause: String,
    },
    Sqlite {
        what: &'static str,
        cause: String,
    },
    /// A bound of the hardened open stopped the check.
    Refused {
        what: &'static str,
        refusal: Refusal,
    },
    /// An FTS5 table takes its rows from something other than a table.
    Fts5Content {
        table: String,
        content: String,
        view: bool,
    },
    Memory {
        bytes: u64,
    },
    Spool {
        dir: PathBuf,
        source: io::Error,
    },
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
            Refused { what, refusal } => {
                write!(f, "decrypts, but the database was refused: to {what}, {refusal}")
            }
            Fts5Content { table, content, view: true } => write!(
                f,
                "decrypts, but the database was refused: FTS5 table {table} takes its rows from view {content}, code that a check does not run"
            ),
            Fts5Content { table, content, view: false } => write!(
                f,
                "decrypts, but the database was refused: FTS5 table {table} takes its rows from {content}, which is not a table"
            ),
            Memory { bytes } if *bytes > MAX_ONE_ALLOCATION => write!(
                f,
                "cannot verify in memory: the database ({bytes} bytes) is more than SQLite can hold in one piece (2 GiB)"
            ),
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
            Refused { refusal: Refusal::Time(_), .. } => Some(hint![
                "a database made to run forever looks like this; if it is only big and the machine slow, raise ",
                Knob::TimeBudget
            ]),
            Refused { .. } | Fts5Content { .. } => {
                Some("no workmem database needs that: the backup may have been made to harm; do not restore it".into())
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
    let result =
        decrypt_whole(input, key, opts, run, &mut report).and_then(|(plain, _)| check(plain, opts, run, &mut report));
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
/// its header; [`check`] is the second.
pub fn decrypt_whole(
    input: Box<dyn BufRead + '_>,
    key: Key<'_>,
    opts: &Options,
    run: &Run,
    report: &mut Verification,
) -> Result<(Plain, DbHeader), VerifyError> {
    let (header_len, mut payload) = open_age(input, key, opts, run, report)?;
    let plain = decrypt(&mut payload, opts, run, report);
    report.ciphertext = header_len + payload.consumed();
    let (plain, db_header) = plain?;
    let mut head = [0u8; HEADER_LEN];
    plain.read_at(&mut head, 0)?;
    check_length(plain.len(), &head, &db_header, report)?;
    Ok((plain, db_header))
}

/// [`decrypt_whole`] for a caller that keeps the plaintext itself
/// (wm-restore, which writes it into the new database file and checks it
/// there): each piece goes to `sink`, in order, as soon as it is
/// decrypted, and nothing is spooled. Returns the database's header and
/// length, checked against each other. What `sink` was given is untrusted
/// when this returns an error, and unverified until [`check_opened`] says so.
pub fn decrypt_into(
    input: Box<dyn BufRead + '_>,
    key: Key<'_>,
    opts: &Options,
    run: &Run,
    report: &mut Verification,
    sink: &mut dyn FnMut(&[u8]),
) -> Result<(DbHeader, u64), VerifyError> {
    let (header_len, mut payload) = open_age(input, key, opts, run, report)?;
    let mut chunk = vec![0u8; BATCH];
    let mut pass = || {
        let (n, header) = first_piece(&mut payload, &mut chunk, run)?;
        let mut head = [0u8; HEADER_LEN];
        head.copy_from_slice(&chunk[..HEADER_LEN]);
        sink(&chunk[..n]);
        let mut len = n as u64;
        loop {
            run.check().map_err(VerifyError::Stop)?;
            let Some(n) = payload.next_many_into(&mut chunk)? else { break };
            run.progress.set(payload.consumed());
            sink(&chunk[..n]);
            len += n as u64;
        }
        check_length(len, &head, &header, report)?;
        Ok((header, len))
    };
    let result = pass();
    report.ciphertext = header_len + payload.consumed();
    result
}

/// The age file opened with `key`: its header's length and the payload to
/// decrypt; the report says who opened it and how.
fn open_age<'a>(
    input: Box<dyn BufRead + 'a>,
    key: Key<'_>,
    opts: &Options,
    run: &Run,
    report: &mut Verification,
) -> Result<(u64, Payload<'a>), VerifyError> {
    run.progress.phase("decrypt", opts.size_hint);
    let (info, payload) = open::open(input, key)?;
    report.opened_by = Some(info.opened_by);
    report.recipients = Some(info.stanzas);
    report.armored = Some(info.armored);
    Ok((info.header_len, payload))
}

/// The second half of [`verify`]: `PRAGMA integrity_check`, every table
/// counted, every FTS5 table queried.
pub fn check(plain: Plain, opts: &Options, run: &Run, report: &mut Verification) -> Result<(), VerifyError> {
    check_opened(&plain.into_connection()?, opts, run, report)
}

/// [`check`] of a plaintext already opened: what wm-restore runs while it
/// copies the image out. The time budget starts here.
///
/// The work is split over two connections onto the one image, on two
/// threads, which take the next piece as they come free: `PRAGMA
/// quick_check` of the whole database (every b-tree walked, every page
/// accounted for, every row's NOT NULL, CHECK and type, every virtual
/// table's own check), `PRAGMA integrity_check(T)` of each table with an
/// index or WITHOUT ROWID (what quick_check leaves out: each index against
/// its table, UNIQUE, key order), and each table's rows counted. Together they check what one `PRAGMA
/// integrity_check` does, in about 60% of its time on two cores.
pub fn check_opened(opened: &Opened, opts: &Options, run: &Run, report: &mut Verification) -> Result<(), VerifyError> {
    run.progress.phase("check", None);
    let conn = &opened.conn;
    let _watch = run.cancel.watch_sqlite(conn);
    let deadline = Deadline::start(opts.time_budget.unwrap_or_else(|| guard::default_budget(opened.len())));
    let _budget = deadline.watch(conn);
    let d = &deadline;
    let fail = |what: &'static str| move |e: rusqlite::Error| bounded(what, e, d);
    let names = table_names(conn).map_err(fail("list tables"))?;
    for (name, _) in names.iter().filter(|(_, fts5)| *fts5) {
        fts5_content_is_a_table(conn, name).map_err(|e| match e {
            Fts5ContentError::Sqlite(e) => fail("list tables")(e),
            Fts5ContentError::Refused(e) => e,
        })?;
    }
    let btrees = btree_tables(conn).map_err(fail("list tables"))?;
    let mut jobs = vec![Job::Quick];
    jobs.extend(btrees.iter().map(|t| Job::Integrity(t)));
    jobs.extend(names.iter().map(|(t, fts5)| Job::Count(t, *fts5)));
    let second = opened.connect()?;
    let done = run_jobs(conn, second, &jobs, &deadline, run);
    run.check().map_err(VerifyError::Stop)?;
    // Integrity first, then the counts, each in its order.
    let mut problems: Vec<String> = Vec::new();
    for (job, result) in jobs.iter().zip(&done) {
        match (job, result) {
            (Job::Quick | Job::Integrity(_), Some(Ok(Done::Lines(lines)))) => {
                for line in lines.iter().filter(|l| l.as_str() != "ok") {
                    // SQLite's messages may span lines; a report line must not.
                    let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
                    if !problems.contains(&line) {
                        problems.push(line);
                    }
                }
            }
            (Job::Quick | Job::Integrity(_), Some(Err(e))) => return Err(bounded_ref("check integrity", e, d)),
            _ => {}
        }
    }
    if let Some(first) = problems.first() {
        report.integrity_check = Some(first.clone());
        return Err(VerifyError::Integrity { first: first.clone(), more: problems.len() - 1 });
    }
    if done.iter().take(1 + btrees.len()).any(Option::is_none) {
        return Err(VerifyError::Sqlite { what: "check integrity", cause: "the check did not finish".into() });
    }
    report.integrity_check = Some("ok".into());
    let mut tables = Vec::with_capacity(names.len());
    for ((name, _), result) in names.iter().zip(&done[1 + btrees.len()..]) {
        match result {
            Some(Ok(Done::Rows(n))) => tables.push(TableRows::new(name.clone(), Some(*n), None)),
            Some(Err(e)) => return Err(bounded_ref("count rows", e, d)),
            _ => return Err(VerifyError::Sqlite { what: "count rows", cause: "the count did not finish".into() }),
        }
    }
    report.tables = tables;
    check_fts5(conn, &names, report, &deadline)
}

/// One piece of the check.
enum Job<'a> {
    /// `PRAGMA quick_check` of the whole database.
    Quick,
    /// `PRAGMA integrity_check(T)`: T's indexes against T.
    Integrity(&'a str),
    /// T's rows (an FTS5 table when flagged).
    Count(&'a str, bool),
}

enum Done {
    Lines(Vec<String>),
    Rows(u64),
}

impl Job<'_> {
    fn run(&self, conn: &Connection) -> rusqlite::Result<Done> {
        let lines = |sql: &str| -> rusqlite::Result<Done> {
            let mut stmt = conn.prepare(sql)?;
            let lines = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Done::Lines(lines))
        };
        match self {
            Job::Quick => lines("PRAGMA main.quick_check"),
            Job::Integrity(t) => lines(&format!("PRAGMA main.integrity_check({})", ident(t))),
            Job::Count(t, fts5) => count_rows(conn, t, *fts5).map(Done::Rows),
        }
    }

    /// Whether its outcome settles the verdict (a problem found): the rest
    /// need not run.
    fn decisive(done: &rusqlite::Result<Done>) -> bool {
        match done {
            Ok(Done::Lines(lines)) => lines.len() != 1 || lines[0] != "ok",
            Ok(Done::Rows(_)) => false,
            Err(_) => true,
        }
    }
}

/// Runs `jobs` on `conn` (this thread) and `second` (another), each taking
/// the next job as it comes free, under the deadline and the run's
/// cancellation; stops handing out jobs once one settles the verdict. The
/// outcomes in job order (`None`: not run).
fn run_jobs(
    conn: &Connection,
    second: Connection,
    jobs: &[Job<'_>],
    deadline: &Deadline,
    run: &Run,
) -> Vec<Option<rusqlite::Result<Done>>> {
    let next = AtomicUsize::new(0);
    let settled = AtomicBool::new(false);
    let results: Mutex<Vec<Option<rusqlite::Result<Done>>>> = Mutex::new(jobs.iter().map(|_| None).collect());
    let work = |conn: &Connection| {
        while !settled.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(job) = jobs.get(i) else { break };
            let done = job.run(conn);
            if Job::decisive(&done) {
                settled.store(true, Ordering::Relaxed);
            }
            results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(done);
        }
    };
    let cancel = &run.cancel;
    std::thread::scope(|s| {
        let helper = s.spawn(|| {
            let conn = second;
            let _watch = cancel.watch_sqlite(&conn);
            let _budget = deadline.watch(&conn);
            work(&conn);
        });
        work(conn);
        if let Err(panic) = helper.join() {
            std::panic::resume_unwind(panic);
        }
    });
    results.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// The tables of `main` (ordinary tables, FTS5's shadow tables, SQLite's
/// own) for which `integrity_check(T)` checks more than `quick_check`: those
/// with an index, or WITHOUT ROWID (key order). For a rowid table without
/// indexes it would only repeat quick_check's work (and its CHECK
/// constraints).
fn btree_tables(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT t.name FROM pragma_table_list AS t WHERE t.schema = 'main' AND t.type IN ('table', 'shadow') \
         AND t.name NOT IN ('sqlite_schema', 'sqlite_temp_schema') \
         AND (t.wr OR EXISTS (SELECT 1 FROM pragma_index_list(t.name))) ORDER BY t.name",
    )?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    rows.collect()
}

/// A failure of SQLite: a bound of the hardened open when it was one.
fn bounded(what: &'static str, e: rusqlite::Error, deadline: &Deadline) -> VerifyError {
    bounded_ref(what, &e, deadline)
}

fn bounded_ref(what: &'static str, e: &rusqlite::Error, deadline: &Deadline) -> VerifyError {
    match Refusal::of(e, Some(deadline)) {
        Some(refusal) => VerifyError::Refused { what, refusal },
        None => VerifyError::Sqlite { what, cause: e.to_string() },
    }
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
    let mut chunk = vec![0u8; BATCH];
    let (n, header) = first_piece(payload, &mut chunk, run)?;
    // What the plaintext will weigh: the header's promise, but never more than
    // the file (a header may lie; the file's size does not).
    let estimate = match (header.expected_len(), opts.size_hint) {
        (Some(promised), Some(file)) => Some(promised.min(file)),
        (promised, file) => promised.or(file),
    };
    let kind = opts.spool.choose(estimate);
    report.spool = Some(kind.to_string());
    let mut plain = Plain::new(kind, estimate.unwrap_or(0), BATCH, &opts.spool.dir())?;
    plain.append(&chunk[..n])?;
    loop {
        run.check().map_err(VerifyError::Stop)?;
        let got = plain.append_with(&mut chunk, |out| payload.next_many_into(out).map_err(VerifyError::from))?;
        run.progress.set(payload.consumed());
        if got.is_none() {
            break;
        }
    }
    Ok((plain, header))
}

/// The plaintext's first piece, into `chunk`, and the SQLite header it
/// starts with, whose promised length the payload then holds it to. A
/// plaintext that is no database is still decrypted to its end (every
/// chunk authenticated) before it is refused.
fn first_piece(payload: &mut Payload<'_>, chunk: &mut [u8], run: &Run) -> Result<(usize, DbHeader), VerifyError> {
    let n = payload.next_into(chunk)?.unwrap_or(0);
    run.progress.set(payload.consumed());
    match DbHeader::parse(&chunk[..n]) {
        Ok(header) => {
            if let Some(len) = header.expected_len() {
                payload.expect_plaintext(len);
            }
            Ok((n, header))
        }
        Err(e) => {
            while payload.next_into(chunk)?.is_some() {
                run.check().map_err(VerifyError::Stop)?;
                run.progress.set(payload.consumed());
            }
            Err(if n == 0 { VerifyError::EmptyPlaintext } else { VerifyError::NotSqlite(e) })
        }
    }
}

/// Length against the header's promise; the database's particulars from
/// its first bytes, `head`.
fn check_length(got: u64, head: &[u8; HEADER_LEN], h: &DbHeader, report: &mut Verification) -> Result<(), VerifyError> {
    match h.expected_len() {
        Some(expected) if got < expected => return Err(VerifyError::TruncatedDb { got, expected }),
        Some(expected) if got > expected => return Err(VerifyError::LongerDb { got, expected }),
        None if !got.is_multiple_of(h.page_size as u64) => {
            return Err(VerifyError::PartialPage { got, page_size: h.page_size })
        }
        _ => {}
    }
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

enum Fts5ContentError {
    Sqlite(rusqlite::Error),
    Refused(VerifyError),
}

/// An FTS5 table's external content (`content=NAME`) must be a table: a
/// view is code, and FTS5's own check of its index against its content
/// would run it.
fn fts5_content_is_a_table(conn: &Connection, table: &str) -> Result<(), Fts5ContentError> {
    let sql: String = conn
        .query_row("SELECT sql FROM main.sqlite_schema WHERE name = ?1", [table], |r| r.get(0))
        .map_err(Fts5ContentError::Sqlite)?;
    let content = match fts5_option(&sql, "content") {
        Some(c) if !c.is_empty() => c,
        _ => return Ok(()),
    };
    let kind: Option<String> = conn
        .query_row(
            "SELECT type FROM main.sqlite_schema WHERE name = ?1 COLLATE NOCASE AND type IN ('table', 'view')",
            [&content],
            |r| r.get(0),
        )
        .map(Some)
        .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(None) } else { Err(e) })
        .map_err(Fts5ContentError::Sqlite)?;
    match kind.as_deref() {
        Some("table") => Ok(()),
        other => Err(Fts5ContentError::Refused(VerifyError::Fts5Content {
            table: table.to_string(),
            content,
            view: other == Some("view"),
        })),
    }
}

/// The value of option `key` in `CREATE VIRTUAL TABLE … USING fts5(…)`,
/// dequoted as FTS5 does ('…', "…", `…`, […]).
fn fts5_option(sql: &str, key: &str) -> Option<String> {
    let open = sql.find('(')?;
    let close = sql.rfind(')')?;
    let body = sql.get(open + 1..close)?;
    let mut args = Vec::new();
    let (mut start, mut quote, mut depth) = (0, None::<char>, 0i32);
    for (i, c) in body.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, '[') => quote = Some(']'),
            (None, '(') => depth += 1,
            (None, ')') => depth -= 1,
            (None, ',') if depth == 0 => {
                args.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    args.push(&body[start..]);
    args.iter().find_map(|arg| {
        let (k, v) = arg.split_once('=')?;
        (dequote(k.trim()).eq_ignore_ascii_case(key)).then(|| dequote(v.trim()))
    })
}

fn dequote(s: &str) -> String {
    let b = s.as_bytes();
    if b.len() >= 2 {
        let (first, last) = (b[0], b[b.len() - 1]);
        let close = if first == b'[' { b']' } else { first };
        if matches!(first, b'\'' | b'"' | b'`' | b'[') && last == close {
            let inner = &s[1..s.len() - 1];
            return if first == b'[' {
                inner.to_string()
            } else {
                inner.replace(&format!("{0}{0}", first as char), &(first as char).to_string())
            };
        }
    }
    s.to_string()
}

/// The rows of table `name` from b-trees alone: `count(*)` of an ordinary
/// table runs no schema code; an FTS5 table is counted through its own
/// shadow tables (`_docsize`, else the row total FTS5 keeps in `_data`),
/// never through its content, which may be anything (a view, another table).
fn count_rows(conn: &Connection, name: &str, fts5: bool) -> rusqlite::Result<u64> {
    if !fts5 {
        return count_btree(conn, name);
    }
    let docsize = format!("{name}_docsize");
    let has_docsize: bool = conn.query_row(
        "SELECT count(*) FROM main.sqlite_schema WHERE type = 'table' AND name = ?1",
        [&docsize],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if has_docsize {
        return count_btree(conn, &docsize);
    }
    // The "averages" record (id 1): the row total as the first varint.
    let block: Option<Vec<u8>> = conn
        .query_row(&format!("SELECT block FROM main.{} WHERE id = 1", ident(&format!("{name}_data"))), [], |r| r.get(0))
        .map(Some)
        .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(None) } else { Err(e) })?;
    Ok(block.map_or(0, |b| varint(&b)))
}

fn count_btree(conn: &Connection, name: &str) -> rusqlite::Result<u64> {
    conn.query_row(&format!("SELECT count(*) FROM main.{}", ident(name)), [], |r| r.get::<_, i64>(0))
        .map(|n| n.max(0) as u64)
}

/// SQLite's (and FTS5's) big-endian varint at the start of `b`; 0 when empty.
fn varint(b: &[u8]) -> u64 {
    let mut v = 0u64;
    for (i, &byte) in b.iter().take(9).enumerate() {
        if i == 8 {
            return (v << 8) | byte as u64;
        }
        v = (v << 7) | (byte & 0x7f) as u64;
        if byte & 0x80 == 0 {
            break;
        }
    }
    v
}

/// Each FTS5 table (the flagged `names`) must find rows for a term its own index lists.
fn check_fts5(
    conn: &Connection,
    names: &[(String, bool)],
    report: &mut Verification,
    deadline: &Deadline,
) -> Result<(), VerifyError> {
    for (name, _) in names.iter().filter(|(_, fts5)| *fts5) {
        let result = fts5_query(conn, name).map_err(|e| match e {
            FtsFailure::Sqlite(e) => match Refusal::of(&e, Some(deadline)) {
                Some(refusal) => Err(VerifyError::Refused { what: "query FTS5", refusal }),
                None => Ok(e.to_string()),
            },
            FtsFailure::Unanswered => Ok("its index lists a term that no query finds".to_string()),
        });
        let result = match result {
            Err(Err(refused)) => return Err(refused),
            Err(Ok(cause)) => Err(cause),
            Ok(hits) => Ok(hits),
        };
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

/// Why an FTS5 table did not answer.
enum FtsFailure {
    Sqlite(rusqlite::Error),
    /// Its index lists a term that no query finds.
    Unanswered,
}

impl From<rusqlite::Error> for FtsFailure {
    fn from(e: rusqlite::Error) -> FtsFailure {
        FtsFailure::Sqlite(e)
    }
}

/// Runs `sql`, which changes only the temp schema, on a connection that is
/// otherwise query_only (and is again afterwards, whatever happened). No
/// code of the database's runs meanwhile.
fn in_temp(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.execute_batch("PRAGMA query_only = OFF")?;
    let done = conn.execute_batch(sql);
    conn.execute_batch("PRAGMA query_only = ON").and(done)
}

fn fts5_query(conn: &Connection, table: &str) -> Result<u64, FtsFailure> {
    let vocab = "wm_verify_vocab";
    let sql =
        format!("CREATE VIRTUAL TABLE temp.{vocab} USING fts5vocab(main, '{}', 'row')", table.replace('\'', "''"));
    in_temp(conn, &sql)?;
    let term: rusqlite::Result<Option<String>> = conn
        .query_row(&format!("SELECT term FROM temp.{vocab} LIMIT 1"), [], |r| r.get(0))
        .map(Some)
        .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(None) } else { Err(e) });
    let dropped = in_temp(conn, &format!("DROP TABLE temp.{vocab}"));
    let term = term?;
    dropped?;
    // An empty index still has to answer; any term will do.
    let phrase = format!("\"{}\"", term.as_deref().unwrap_or("wm").replace('"', "\"\""));
    let t = ident(table);
    let hits: i64 =
        conn.query_row(&format!("SELECT count(*) FROM main.{t} WHERE {t} MATCH ?1"), [&phrase], |r| r.get(0))?;
    if term.is_some() && hits == 0 {
        return Err(FtsFailure::Unanswered);
    }
    Ok(hits.max(0) as u64)
}

/// Puts the row counts of the live database at `path`, read in one read
/// transaction, beside the backup's in `report` (the caller records `against`).
pub fn compare_live(path: &Path, busy: Duration, run: &Run, report: &mut Verification) -> Result<(), SourceError> {
    let source = Source::open(path, busy, Knob::Against)?;
    let live = source.read("count rows", &run.cancel, |conn| {
        let names = table_names(conn)?;
        names
            .into_iter()
            .map(|(name, fts5)| Ok((count_rows(conn, &name, fts5)?, name)))
            .collect::<rusqlite::Result<Vec<_>>>()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fts5_options_are_found_and_dequoted() {
        let sql = "CREATE VIRTUAL TABLE f USING fts5(body, x, content='end''less', content_rowid='id')";
        assert_eq!(fts5_option(sql, "content").as_deref(), Some("end'less"));
        assert_eq!(fts5_option(sql, "content_rowid").as_deref(), Some("id"));
        assert_eq!(
            fts5_option("CREATE VIRTUAL TABLE f USING fts5(a, CONTENT = [v w])", "content").as_deref(),
            Some("v w")
        );
        assert_eq!(fts5_option("CREATE VIRTUAL TABLE f USING fts5(a, content='')", "content").as_deref(), Some(""));
        assert_eq!(fts5_option("CREATE VIRTUAL TABLE f USING fts5(a, tokenize='porter ascii')", "content"), None);
        assert_eq!(fts5_option("CREATE VIRTUAL TABLE f USING fts5(\"a,content=x\")", "content"), None);
    }

    use crate::spool::SpoolKind;

    /// A database made by `sql`, then with `rewrite` (name, schema text) put
    /// in place behind SQLite's back; its bytes.
    fn database(sql: &str, rewrite: &[(&str, &str)]) -> Vec<u8> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.db");
        let c = Connection::open(&p).unwrap();
        c.execute_batch(sql).unwrap();
        c.execute_batch("PRAGMA writable_schema = ON").unwrap();
        for (name, text) in rewrite {
            assert_eq!(c.execute("UPDATE sqlite_schema SET sql = ?1 WHERE name = ?2", [text, name]).unwrap(), 1);
        }
        drop(c);
        std::fs::read(&p).unwrap()
    }

    /// `check` of `bytes` in a spool of `kind`.
    fn checked(bytes: &[u8], kind: SpoolKind) -> (Verification, Result<(), VerifyError>) {
        let dir = tempfile::tempdir().unwrap();
        let mut plain = Plain::new(kind, bytes.len() as u64, CHUNK, dir.path()).unwrap();
        plain.append(bytes).unwrap();
        let run = Run::manual().unwrap();
        let mut report = Verification::default();
        let result = check(plain, &Options::default(), &run, &mut report);
        (report, result)
    }

    const TABLE: &str = "CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT NOT NULL, y TEXT);
        CREATE INDEX ix ON t(x);
        WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r LIMIT 2000)
        INSERT INTO t(x, y) SELECT 'x' || i, 'y' || (i * 7 % 13) FROM r;";

    #[test]
    fn a_good_database_checks_ok_on_both_spools_with_its_rows_counted() {
        let bytes = database(TABLE, &[]);
        for kind in [SpoolKind::Memory, SpoolKind::Disk] {
            let (report, result) = checked(&bytes, kind);
            result.unwrap();
            assert_eq!(report.integrity_check.as_deref(), Some("ok"));
            assert_eq!(report.tables.len(), 1);
            assert_eq!(report.tables[0].rows, Some(2000));
        }
    }

    /// An index whose entries do not match its table: only the per-table
    /// `integrity_check(T)` sees it (quick_check does not compare indexes).
    #[test]
    fn an_index_out_of_step_with_its_table_fails_the_check() {
        let bytes = database(TABLE, &[("ix", "CREATE INDEX ix ON t(y)")]);
        for kind in [SpoolKind::Memory, SpoolKind::Disk] {
            let (_, result) = checked(&bytes, kind);
            match result {
                Err(VerifyError::Integrity { first, .. }) => assert!(first.contains("ix"), "{first}"),
                other => panic!("{kind}: {other:?}"),
            }
        }
    }

    /// A page that no b-tree and no freelist accounts for: only the walk of
    /// every b-tree at once (quick_check's) sees it.
    #[test]
    fn a_page_that_nothing_uses_fails_the_check() {
        let mut bytes = database(TABLE, &[]);
        // One more page, counted in the header, used by nothing.
        let page = u16::from_be_bytes([bytes[16], bytes[17]]) as usize;
        let count = u32::from_be_bytes([bytes[28], bytes[29], bytes[30], bytes[31]]) + 1;
        bytes[28..32].copy_from_slice(&count.to_be_bytes());
        bytes.resize(bytes.len() + page, 0);
        for kind in [SpoolKind::Memory, SpoolKind::Disk] {
            let (_, result) = checked(&bytes, kind);
            match result {
                Err(VerifyError::Integrity { first, .. }) => assert!(first.contains("never used"), "{first}"),
                other => panic!("{kind}: {other:?}"),
            }
        }
    }

    /// FTS5 tables are counted through their own tables, with the figure
    /// `count(*)` gives: external content in a table, contentless, and
    /// without a `_docsize` table (columnsize=0).
    #[test]
    fn fts5_rows_are_counted_from_their_own_tables_as_count_star_counts_them() {
        let sql = "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);
            WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r LIMIT 300)
            INSERT INTO notes SELECT i, 'word' || (i % 17) || ' other' FROM r;
            CREATE VIRTUAL TABLE ext USING fts5(body, content='notes', content_rowid='id');
            INSERT INTO ext(ext) VALUES ('rebuild');
            CREATE VIRTUAL TABLE bare USING fts5(body, content='');
            INSERT INTO bare(rowid, body) SELECT id, body FROM notes WHERE id <= 120;
            CREATE VIRTUAL TABLE slim USING fts5(body, columnsize=0);
            INSERT INTO slim(body) SELECT body FROM notes WHERE id <= 77;";
        let bytes = database(sql, &[]);
        for kind in [SpoolKind::Memory, SpoolKind::Disk] {
            let (report, result) = checked(&bytes, kind);
            result.unwrap();
            let rows = |t: &str| report.tables.iter().find(|r| r.name == t).and_then(|r| r.rows);
            assert_eq!(
                (rows("ext"), rows("bare"), rows("slim"), rows("notes")),
                (Some(300), Some(120), Some(77), Some(300))
            );
            assert_eq!(report.fts5.len(), 3);
            assert!(report.fts5.iter().all(|f| f.ok), "{:?}", report.fts5);
        }
    }

    #[test]
    fn varints_read_as_sqlite_writes_them() {
        assert_eq!(varint(&[]), 0);
        assert_eq!(varint(&[0x05, 0xff]), 5);
        assert_eq!(varint(&[0x81, 0x00]), 128);
        assert_eq!(varint(&[0xff; 9]), u64::MAX);
    }
}
