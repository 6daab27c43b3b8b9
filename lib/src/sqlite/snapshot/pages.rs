//! The page stream: `sqlite_dbpage` read in page order inside one read
//! transaction, straight to the output on a WAL source, through a spool on a
//! rollback-journal source (whose read lock blocks writers).

use std::io::{self, Write};
use std::os::unix::fs::FileExt;

use super::scrub::{self, Late, Scrubber};
use super::{check_complete, emit, quick_check, spool_failure, spool_for, Method, Options, Report, SnapshotError};
use crate::run::Run;
use crate::spool::image::{PageSpool, Spool};
use crate::spool::IO_CHUNK;
use crate::sqlite::header::DbHeader;
use crate::sqlite::source::{ReadTxn, Source};

pub(super) fn snapshot(
    source: &mut Source,
    opts: &Options,
    run: &Run,
    out: &mut dyn Write,
) -> Result<Report, SnapshotError> {
    let conn = source.connection();
    let txn = ReadTxn::begin(conn).map_err(|e| source.error("snapshot", e))?;
    // Inside the transaction: these describe exactly the image we stream.
    let (page_size, page_count, journal): (i64, i64, String) = conn
        .query_row(
            "SELECT page_size, page_count, journal_mode FROM pragma_page_size, pragma_page_count, pragma_journal_mode",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(|e| source.error("snapshot", e))?;
    let (page_size, page_count) = (page_size as u32, page_count as u64);
    // A header that does not record the size (legacy writers) cannot tell a
    // truncated file from a whole one, and streamed pages are never walked
    // as VACUUM walks them: prove the structure first in that case.
    let page1 = read_page(source, 1)?;
    let h = DbHeader::parse(&page1).map_err(|why| source.not_sqlite(why))?;
    if opts.check || h.page_count.is_none() {
        quick_check(conn, source.path())?;
    }
    let mut scrub = Scrubber::new(&page1, page_count, |p| read_page(source, p))?;
    let total = page_size as u64 * page_count;
    let stream_direct = journal.eq_ignore_ascii_case("wal");
    let (free_pages, spool) = if stream_direct {
        run.progress.phase("output", Some(total));
        scrub.direct();
        let free = stream_pages(source, page_size, page_count, &mut scrub, run, out, &SnapshotError::Output)?;
        drop(txn);
        // Gone out already: only counted (docs/forgetting.md).
        scrub.count_unpatched();
        (free, None)
    } else {
        let (kind, location) = spool_for(opts, total);
        let spool_err = |e: io::Error| spool_failure(kind, &location, e);
        let mut pages = PageSpool::new(kind, &opts.spool.dir()).map_err(spool_err)?;
        run.progress.phase("snapshot", Some(total));
        let free = stream_pages(source, page_size, page_count, &mut scrub, run, &mut pages, &spool_err)?;
        // Release the shared lock before anything slow happens downstream.
        drop(txn);
        patch_late(&mut pages, page_size, scrub.late()).map_err(spool_err)?;
        scrub.count_patched();
        let spool = Spool::Pages(pages);
        check_complete(source, &spool, &location)?;
        emit(&spool, &location, false, run, out)?;
        (free, Some(kind))
    };
    Ok(Report {
        bytes: total,
        page_size,
        pages: page_count,
        free_pages,
        method: Method::Pages,
        spool,
        forget: Some(scrub.stats()),
    })
}

/// Writes every page in order; returns the free-list length. Page 1 is
/// fixed up if its header does not vouch for the database size (legacy
/// writers), so that the image describes itself. `write_err` says what a
/// failed write to `out` means (the output, or the spool).
fn stream_pages(
    source: &Source,
    page_size: u32,
    page_count: u64,
    scrub: &mut Scrubber,
    run: &Run,
    out: &mut dyn Write,
    write_err: &dyn Fn(io::Error) -> SnapshotError,
) -> Result<u32, SnapshotError> {
    let sql_err = |e| SnapshotError::from(source.error("snapshot", e));
    let incomplete = |pages_read: u64| SnapshotError::Incomplete {
        path: source.path().to_path_buf(),
        expected: page_count * page_size as u64,
        got: pages_read * page_size as u64,
    };
    let mut stmt =
        source.connection().prepare("SELECT pgno, data FROM sqlite_dbpage('main') ORDER BY pgno").map_err(sql_err)?;
    let mut rows = stmt.query([]).map_err(sql_err)?;
    let mut expect: u64 = 1;
    let mut free_pages = 0;
    let mut pending = 0u64;
    while let Some(row) = rows.next().map_err(sql_err)? {
        let pgno: i64 = row.get(0).map_err(sql_err)?;
        let data = row.get_ref(1).and_then(|v| Ok(v.as_blob()?)).map_err(sql_err)?;
        if pgno as u64 != expect || data.len() != page_size as usize {
            return Err(incomplete(expect - 1));
        }
        if pgno == 1 {
            let mut first = data.to_vec();
            let h = DbHeader::parse(&first).map_err(|why| source.not_sqlite(why))?;
            free_pages = h.freelist_pages;
            scrub::apply(&mut first, scrub.plan(1, data));
            if h.page_count != Some(page_count as u32) {
                vouch_for_size(&mut first, page_count as u32);
            }
            out.write_all(&first).map_err(write_err)?;
        } else {
            let p = pgno as u32;
            scrub.plan(p, data);
            if scrub.wants_scout() {
                // A last overflow page before its owner, on a stream that
                // cannot be patched: read the rest once to learn its tail.
                for q in p + 1..=page_count as u32 {
                    scrub.scout(q, &read_page(source, q)?);
                    if q % 4096 == 0 {
                        run.check()?;
                    }
                }
                scrub.scouted(p);
                scrub.plan(p, data);
            }
            scrub::write_scrubbed(out, data, scrub.ranges()).map_err(write_err)?;
        }
        expect += 1;
        pending += page_size as u64;
        if pending >= IO_CHUNK as u64 {
            run.progress.add(pending);
            pending = 0;
            run.check()?;
        }
    }
    run.progress.add(pending);
    run.check()?;
    if expect - 1 != page_count {
        return Err(incomplete(expect - 1));
    }
    Ok(free_pages)
}

/// One page as this read transaction sees it.
fn read_page(source: &Source, pgno: u32) -> Result<Vec<u8>, SnapshotError> {
    let mut stmt = source
        .connection()
        .prepare_cached("SELECT data FROM sqlite_dbpage('main') WHERE pgno = ?1")
        .map_err(|e| source.error("snapshot", e))?;
    stmt.query_row([pgno], |r| r.get(0)).map_err(|e| source.error("snapshot", e).into())
}

/// Zeroes, in a spooled image, the dead tails of overflow pages that went by
/// before the cell that owns them.
fn patch_late(pages: &mut PageSpool, page_size: u32, late: &[Late]) -> io::Result<()> {
    static ZEROS: [u8; 65536] = [0; 65536];
    for l in late {
        let start = (l.pgno as u64 - 1) * page_size as u64 + l.from as u64;
        let len = page_size as usize - l.from;
        match pages {
            PageSpool::Disk { file, .. } => file.write_all_at(&ZEROS[..len], start)?,
            PageSpool::Memory { chunks, .. } => {
                let (mut at, end) = (start as usize, start as usize + len);
                while at < end {
                    let chunk = chunks.get_mut(at / IO_CHUNK).ok_or(io::ErrorKind::UnexpectedEof)?;
                    let within = at % IO_CHUNK;
                    let n = (end - at).min(chunk.len().saturating_sub(within));
                    if n == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    chunk[within..within + n].fill(0);
                    at += n;
                }
            }
        }
    }
    Ok(())
}

/// Sets the in-header database size (offset 28) and marks it valid by
/// copying the change counter (24) into version-valid-for (92).
fn vouch_for_size(page1: &mut [u8], pages: u32) {
    page1[28..32].copy_from_slice(&pages.to_be_bytes());
    let counter = [page1[24], page1[25], page1[26], page1[27]];
    page1[92..96].copy_from_slice(&counter);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::{Place, SpoolMode};
    use crate::stop::Knob;
    use rusqlite::Connection;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    const SECRET: &str = "SECRET-MEMORY-7f3a9c";

    /// A database that held SECRET in each place a deleted row leaves its
    /// bytes with secure_delete off: freeblocks and the gap in table and index
    /// pages, whole free pages, and the tail of an overflow page reused in
    /// the same transaction by a chain whose owner comes after it.
    fn planted(dir: &Path, wal: bool) -> PathBuf {
        planted_with(dir, wal, "")
    }

    /// `planted`, with `setup` (pragmas: page size, auto_vacuum) run first.
    fn planted_with(dir: &Path, wal: bool, setup: &str) -> PathBuf {
        let p = dir.join("planted.db");
        let c = Connection::open(&p).unwrap();
        c.execute_batch(setup).unwrap();
        c.query_row(&format!("PRAGMA journal_mode={}", if wal { "WAL" } else { "DELETE" }), [], |_| Ok(())).unwrap();
        c.execute_batch(&format!(
            "PRAGMA secure_delete=OFF;
             CREATE TABLE keep(id INTEGER PRIMARY KEY, x TEXT);
             CREATE INDEX keep_x ON keep(x);
             CREATE TABLE a(x TEXT);
             CREATE TABLE gone(x TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<300)
               INSERT INTO keep(x) SELECT CASE WHEN i%50=0 THEN '{SECRET}-row-'||i ELSE 'keep-'||i END FROM n;
             INSERT INTO a VALUES (replace(hex(zeroblob(600)), '00', '{SECRET}|'));
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<200)
               INSERT INTO gone SELECT '{SECRET}-page-'||i||printf('%.300c', 'x') FROM n;
             CREATE TABLE b(x TEXT);
             DELETE FROM keep WHERE x LIKE '{SECRET}%';
             BEGIN; DELETE FROM a; INSERT INTO b VALUES (printf('%.8381c', 'y')); COMMIT;
             DELETE FROM gone;
             PRAGMA wal_checkpoint(TRUNCATE);"
        ))
        .unwrap();
        p
    }

    /// Other layouts: small and big pages, pointer-map pages (auto_vacuum).
    #[test]
    fn zeroing_keeps_every_page_layout_valid() {
        let layouts = [
            "PRAGMA page_size=512;",
            "PRAGMA page_size=65536;",
            "PRAGMA page_size=1024; PRAGMA auto_vacuum=INCREMENTAL;",
            "PRAGMA auto_vacuum=FULL;",
        ];
        for setup in layouts {
            for wal in [true, false] {
                let d = tempfile::tempdir().unwrap();
                let p = planted_with(d.path(), wal, setup);
                let source_bytes = std::fs::read(&p).unwrap();
                let mut src = Source::open(&p, Duration::from_secs(1), Knob::Database).unwrap();
                let mut image = Vec::new();
                let opts = Options { method: Method::Pages, spool: Place::default(), check: false };
                let r = super::super::snapshot(&mut src, &opts, &Run::manual().unwrap(), &mut image).unwrap();
                let stats = r.forget.unwrap();
                assert_eq!((stats.off, stats.tails_copied), (None, 0), "{setup} wal={wal}");
                assert!(!contains(&image, SECRET), "{setup} wal={wal}: {stats:?}");
                assert!((0..image.len()).all(|i| image[i] == source_bytes[i] || image[i] == 0), "{setup}");
                let out = d.path().join("out.db");
                std::fs::write(&out, &image).unwrap();
                let c = Connection::open(&out).unwrap();
                let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
                assert_eq!(ok, "ok", "{setup} wal={wal}");
                let n: i64 = c.query_row("SELECT count(*) FROM keep", [], |r| r.get(0)).unwrap();
                assert_eq!(n, 294);
            }
        }
    }

    fn contains(hay: &[u8], needle: &str) -> bool {
        hay.windows(needle.len()).any(|w| w == needle.as_bytes())
    }

    #[test]
    fn the_page_stream_forgets_deleted_rows_and_changes_nothing_else() {
        for wal in [true, false] {
            for mode in [SpoolMode::Memory, SpoolMode::Disk] {
                let d = tempfile::tempdir().unwrap();
                let p = planted(d.path(), wal);
                let source_bytes = std::fs::read(&p).unwrap();
                assert!(contains(&source_bytes, SECRET), "the source still holds the deleted rows");
                let spool = Place { mode, tmpdir: Some(d.path().into()) };
                let mut src = Source::open(&p, Duration::from_secs(1), Knob::Database).unwrap();
                let mut image = Vec::new();
                let opts = Options { method: Method::Pages, spool, check: false };
                let r = super::super::snapshot(&mut src, &opts, &Run::manual().unwrap(), &mut image).unwrap();
                let stats = r.forget.unwrap();
                assert_eq!(stats.off, None);
                assert_eq!(stats.tails_copied, 0, "wal={wal} {mode:?}");
                assert!(!contains(&image, SECRET), "wal={wal} {mode:?}: {stats:?}");
                assert_eq!(image.len(), source_bytes.len());
                let changed: Vec<usize> = (0..image.len()).filter(|&i| image[i] != source_bytes[i]).collect();
                assert!(changed.iter().all(|&i| image[i] == 0), "only zeros written where bytes differ");
                assert!(changed.len() as u64 <= stats.zeroed_bytes);
                assert!(stats.late_tails >= 1, "the overflow tail whose owner comes later was seen: {stats:?}");
                let out = d.path().join("out.db");
                std::fs::write(&out, &image).unwrap();
                let c = Connection::open(&out).unwrap();
                let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
                assert_eq!(ok, "ok");
                let n: i64 = c.query_row("SELECT count(*) FROM keep", [], |r| r.get(0)).unwrap();
                assert_eq!(n, 294);
                let y: i64 = c.query_row("SELECT length(x) FROM b", [], |r| r.get(0)).unwrap();
                assert_eq!(y, 8381);
            }
        }
    }

    #[test]
    fn page_one_gets_a_valid_size_when_the_header_lacks_one() {
        let mut page = vec![0u8; 512];
        page[..16].copy_from_slice(crate::sqlite::header::MAGIC);
        page[16..18].copy_from_slice(&512u16.to_be_bytes());
        page[24..28].copy_from_slice(&9u32.to_be_bytes());
        vouch_for_size(&mut page, 42);
        assert_eq!(DbHeader::parse(&page).unwrap().page_count, Some(42));
    }
}
