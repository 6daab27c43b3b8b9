//! The page stream: `sqlite_dbpage` read in page order inside one read
//! transaction, straight to the output on a WAL source, through a spool on a
//! rollback-journal source (whose read lock blocks writers).

use std::io::{self, Write};

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
    if opts.check || !header_vouches_for_size(source)? {
        quick_check(conn, source.path())?;
    }
    let total = page_size as u64 * page_count;
    let stream_direct = journal.eq_ignore_ascii_case("wal");
    let (free_pages, spool) = if stream_direct {
        run.progress.phase("output", Some(total));
        let free = stream_pages(source, page_size, page_count, run, out, &SnapshotError::Output)?;
        drop(txn);
        (free, None)
    } else {
        let (kind, location) = spool_for(opts, total);
        let spool_err = |e: io::Error| spool_failure(kind, &location, e);
        let mut pages = PageSpool::new(kind, &opts.spool.dir()).map_err(spool_err)?;
        run.progress.phase("snapshot", Some(total));
        let free = stream_pages(source, page_size, page_count, run, &mut pages, &spool_err)?;
        // Release the shared lock before anything slow happens downstream.
        drop(txn);
        let spool = Spool::Pages(pages);
        check_complete(source, &spool, &location)?;
        emit(&spool, &location, run, out)?;
        (free, Some(kind))
    };
    Ok(Report { bytes: total, page_size, pages: page_count, free_pages, method: Method::Pages, spool })
}

/// Writes every page in order; returns the free-list length. Page 1 is
/// fixed up if its header does not vouch for the database size (legacy
/// writers), so that the image describes itself. `write_err` says what a
/// failed write to `out` means (the output, or the spool).
fn stream_pages(
    source: &Source,
    page_size: u32,
    page_count: u64,
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
            if h.page_count != Some(page_count as u32) {
                vouch_for_size(&mut first, page_count as u32);
            }
            out.write_all(&first).map_err(write_err)?;
        } else {
            out.write_all(data).map_err(write_err)?;
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

/// Whether page 1, as this read transaction sees it, records the database size.
fn header_vouches_for_size(source: &Source) -> Result<bool, SnapshotError> {
    let page1: Vec<u8> = source
        .connection()
        .query_row("SELECT data FROM sqlite_dbpage('main') WHERE pgno = 1", [], |r| r.get(0))
        .map_err(|e| source.error("snapshot", e))?;
    let h = DbHeader::parse(&page1).map_err(|why| source.not_sqlite(why))?;
    Ok(h.page_count.is_some())
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
