//! Opening a database that may have been built to hurt its reader.
//!
//! Anyone with the public key can make a valid backup, so the database in a
//! decrypted image is hostile until checked. Its schema is code: CHECK
//! constraints, generated columns, indexes on expressions, views, FTS5
//! tables whose content is a view. [`harden`] gives a connection the
//! settings under which that code can neither escape nor run long:
//! `SQLITE_DBCONFIG_DEFENSIVE`, `trusted_schema` off, no extensions, no
//! views, no triggers, and tight limits (a value's length, the SQL's
//! length, expression depth, ...). [`HeapCap`] bounds what SQLite may
//! allocate beyond the image, and [`Deadline`] the time the checks may take
//! (a progress handler, which `PRAGMA integrity_check`'s b-tree walk also
//! calls). What broke a bound is told by [`Refusal::of`].

use std::ffi::{c_int, c_void};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rusqlite::config::DbConfig;
use rusqlite::{ffi, Connection, ErrorCode};

/// What SQLite may allocate beyond the image while checking it. With the
/// process's own few MiB, the peak resident size stays within 256 MiB above
/// the image.
pub const HEAP_ABOVE_IMAGE: u64 = 192 << 20;

/// The longest string or BLOB SQLite may hold (`SQLITE_LIMIT_LENGTH`). A
/// workmem value is a memory's text or a 1.5 KiB embedding; SQLite's own
/// default is 1 GB, which lets a CHECK constraint build strings that take
/// minutes and gigabytes.
pub const LENGTH_LIMIT: u32 = 64 << 20;

/// The time budget when none is given: 2 minutes, and 2 more per GiB of
/// database. A 1 GiB workmem database takes about 5 s on one core here.
pub fn default_budget(image_len: u64) -> Duration {
    let gib = image_len as f64 / (1u64 << 30) as f64;
    Duration::from_secs(120) + Duration::from_secs_f64(120.0 * gib)
}

/// Settings for a connection onto an untrusted database, before its schema
/// is read; it can change nothing (`query_only`) but temporary tables.
pub fn harden(conn: &Connection) -> rusqlite::Result<()> {
    for (config, on) in [
        (DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true),
        (DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false),
        (DbConfig::SQLITE_DBCONFIG_ENABLE_VIEW, false),
        (DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, false),
        (DbConfig::SQLITE_DBCONFIG_ENABLE_FKEY, false),
        (DbConfig::SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, false),
        (DbConfig::SQLITE_DBCONFIG_WRITABLE_SCHEMA, false),
    ] {
        conn.set_db_config(config, on)?;
    }
    // SAFETY: a valid connection; the op takes (int, int*).
    let rc = unsafe {
        ffi::sqlite3_db_config(
            conn.handle(),
            ffi::SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION,
            0 as c_int,
            std::ptr::null_mut::<c_int>(),
        )
    };
    if rc != ffi::SQLITE_OK {
        return Err(rusqlite::Error::SqliteFailure(ffi::Error::new(rc), Some("no extensions".into())));
    }
    for (limit, value) in [
        (ffi::SQLITE_LIMIT_LENGTH, LENGTH_LIMIT as c_int),
        // A schema statement longer than this is no workmem schema.
        (ffi::SQLITE_LIMIT_SQL_LENGTH, 1 << 20),
        (ffi::SQLITE_LIMIT_ATTACHED, 0),
        (ffi::SQLITE_LIMIT_TRIGGER_DEPTH, 1),
        // LIKE and GLOB never look at the clock: a long pattern over a long
        // value is the slowest single step schema code can take.
        (ffi::SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 50),
    ] {
        // SAFETY: a valid connection and a known limit id.
        unsafe { ffi::sqlite3_limit(conn.handle(), limit, value) };
    }
    conn.execute_batch("PRAGMA trusted_schema = OFF; PRAGMA temp_store = MEMORY; PRAGMA query_only = ON")
}

/// SQLite's hard heap limit, set to what it uses now plus `above`, for as
/// long as this lives; the previous limit comes back on drop. The limit is
/// the process's, so it covers every connection of the check.
pub struct HeapCap {
    previous: i64,
    pub limit: i64,
}

impl HeapCap {
    pub fn above_now(above: u64) -> HeapCap {
        // SAFETY: plain calls into SQLite's memory statistics.
        let used = unsafe { ffi::sqlite3_memory_used() };
        let limit = used.saturating_add(above.min(i64::MAX as u64) as i64);
        // SAFETY: as above.
        let previous = unsafe { ffi::sqlite3_hard_heap_limit64(limit) };
        HeapCap { previous, limit }
    }
}

impl Drop for HeapCap {
    fn drop(&mut self) {
        // SAFETY: restores the limit found on creation.
        unsafe { ffi::sqlite3_hard_heap_limit64(self.previous) };
    }
}

/// A time budget shared by the connections of one check: each gets a
/// progress handler that interrupts its statement once the budget is spent.
pub struct Deadline {
    at: Instant,
    budget: Duration,
    spent: AtomicBool,
}

/// How often (in virtual machine steps) the clock is read: often, because
/// one step of schema code may build a 64 MiB string.
const STEPS: c_int = 64;

impl Deadline {
    pub fn start(budget: Duration) -> Deadline {
        Deadline { at: Instant::now() + budget, budget, spent: AtomicBool::new(false) }
    }

    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// Whether the budget ran out (and interrupted something).
    pub fn spent(&self) -> bool {
        self.spent.load(Ordering::Relaxed)
    }

    /// Installs the handler on `conn` until the returned guard drops; the
    /// guard must drop before `self` (it borrows it).
    pub fn watch<'a>(&'a self, conn: &'a Connection) -> Watch<'a> {
        // SAFETY: the handler's argument is `self`, which outlives the guard
        // that removes the handler.
        unsafe {
            ffi::sqlite3_progress_handler(
                conn.handle(),
                STEPS,
                Some(on_progress),
                (self as *const Deadline).cast_mut().cast::<c_void>(),
            )
        };
        Watch { conn, _deadline: self }
    }
}

unsafe extern "C" fn on_progress(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the Deadline that Deadline::watch registered, alive
    // while the handler is installed.
    let d = unsafe { &*arg.cast::<Deadline>() };
    if Instant::now() >= d.at {
        d.spent.store(true, Ordering::Relaxed);
        return 1;
    }
    0
}

/// A progress handler installed by [`Deadline::watch`].
pub struct Watch<'a> {
    conn: &'a Connection,
    _deadline: &'a Deadline,
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        // SAFETY: removes the handler from a connection that is still open.
        unsafe { ffi::sqlite3_progress_handler(self.conn.handle(), 0, None, std::ptr::null_mut()) };
    }
}

/// A bound the database's code ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The time budget ran out.
    Time(Duration),
    /// SQLite needed more memory than the cap allows.
    Memory(u64),
    /// A string or BLOB longer than [`LENGTH_LIMIT`] was made or read.
    Length(u32),
}

impl Refusal {
    /// The bound behind `e`, if it is one: an interrupt counts only when the
    /// deadline fired (a signal interrupts too).
    pub fn of(e: &rusqlite::Error, deadline: Option<&Deadline>) -> Option<Refusal> {
        let code = match e {
            rusqlite::Error::SqliteFailure(f, _) => f.code,
            _ => return None,
        };
        match code {
            ErrorCode::OperationInterrupted => deadline.filter(|d| d.spent()).map(|d| Refusal::Time(d.budget())),
            ErrorCode::OutOfMemory => Some(Refusal::Memory(HEAP_ABOVE_IMAGE)),
            ErrorCode::TooBig => Some(Refusal::Length(LENGTH_LIMIT)),
            _ => None,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Time(d) => write!(f, "it took longer than the time budget ({} s)", d.as_secs_f64().ceil() as u64),
            Refusal::Memory(n) => write!(f, "it needed more than {} MiB of memory beyond the database", n >> 20),
            Refusal::Length(n) => write!(f, "it made or held a value longer than {} MiB", n >> 20),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hardened() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        harden(&c).unwrap();
        c
    }

    #[test]
    fn a_long_value_is_refused_as_too_big() {
        let c = hardened();
        let e = c.query_row("SELECT length(printf('%.*c', 100000000, 'x'))", [], |r| r.get::<_, i64>(0)).unwrap_err();
        assert_eq!(Refusal::of(&e, None), Some(Refusal::Length(LENGTH_LIMIT)));
    }

    #[test]
    fn an_endless_query_stops_at_the_deadline() {
        let c = hardened();
        let d = Deadline::start(Duration::from_millis(200));
        let started = Instant::now();
        let e = {
            let _w = d.watch(&c);
            c.query_row(
                "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap_err()
        };
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(Refusal::of(&e, Some(&d)), Some(Refusal::Time(Duration::from_millis(200))));
    }

    #[test]
    fn views_triggers_and_extensions_are_off() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t(x); CREATE VIEW v AS SELECT * FROM t;").unwrap();
        harden(&c).unwrap();
        assert!(c.query_row("SELECT count(*) FROM v", [], |r| r.get::<_, i64>(0)).is_err());
        assert!(c.execute_batch("SELECT load_extension('x')").is_err());
        assert!(!c.db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA).unwrap());
        assert!(c.db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE).unwrap());
    }
}
