//! A snapshot image waiting to be written out: a page stream collected in
//! memory (1 MiB buffers) or in an unnamed file, or a finished `VACUUM INTO`
//! spool, all read back the same way.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, OpenFlags};

use super::memdb::Memdb;
use super::vfs::{self, SpoolFile};
use super::{SpoolKind, IO_CHUNK};

/// A page image collected in memory (1 MiB buffers) or in an unnamed file.
pub enum PageSpool {
    Memory { chunks: Vec<Vec<u8>>, len: u64 },
    Disk { file: File, len: u64 },
}

impl PageSpool {
    pub fn new(kind: SpoolKind, tmpdir: &Path) -> io::Result<PageSpool> {
        Ok(match kind {
            SpoolKind::Memory => PageSpool::Memory { chunks: Vec::new(), len: 0 },
            SpoolKind::Disk => PageSpool::Disk { file: vfs::unnamed_file(tmpdir)?, len: 0 },
        })
    }
}

impl Write for PageSpool {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            PageSpool::Memory { chunks, len } => {
                let mut rest = buf;
                while !rest.is_empty() {
                    if chunks.last().is_none_or(|c| c.len() == c.capacity()) {
                        let mut chunk = Vec::new();
                        chunk.try_reserve_exact(IO_CHUNK).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
                        // The plaintext: left out of any core dump (see harden).
                        crate::harden::dont_dump(chunk.as_ptr(), chunk.capacity());
                        chunks.push(chunk);
                    }
                    let last = chunks.last_mut().expect("pushed above");
                    let n = rest.len().min(last.capacity() - last.len());
                    last.extend_from_slice(&rest[..n]);
                    rest = &rest[n..];
                }
                *len += buf.len() as u64;
                Ok(buf.len())
            }
            PageSpool::Disk { file, len } => {
                file.write_all_at(buf, *len)?;
                *len += buf.len() as u64;
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Any finished spool, ready to be read back.
pub enum Spool {
    Memdb(Memdb),
    Vfs(SpoolFile),
    Pages(PageSpool),
}

impl Spool {
    pub fn size(&self) -> io::Result<u64> {
        match self {
            Spool::Memdb(m) => m.file()?.size(),
            Spool::Vfs(f) => f.size(),
            Spool::Pages(PageSpool::Memory { len, .. } | PageSpool::Disk { len, .. }) => Ok(*len),
        }
    }

    /// Fills `buf` from `off`; the caller stays within [`Spool::size`].
    pub fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        match self {
            Spool::Memdb(m) => m.file()?.read_at(buf, off),
            Spool::Vfs(f) => f.file().read_exact_at(buf, off),
            Spool::Pages(PageSpool::Disk { file, .. }) => file.read_exact_at(buf, off),
            Spool::Pages(PageSpool::Memory { chunks, .. }) => {
                let mut done = 0;
                while done < buf.len() {
                    let pos = off as usize + done;
                    let chunk =
                        chunks.get(pos / IO_CHUNK).ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
                    let within = pos % IO_CHUNK;
                    let n = (buf.len() - done).min(chunk.len().saturating_sub(within));
                    if n == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    buf[done..done + n].copy_from_slice(&chunk[within..within + n]);
                    done += n;
                }
                Ok(())
            }
        }
    }

    /// A read-only connection onto a `VACUUM INTO` spool, for `quick_check`.
    pub fn open_connection(&self) -> rusqlite::Result<Option<SpoolConnection<'_>>> {
        match self {
            Spool::Memdb(m) => Ok(Some(SpoolConnection::Borrowed(m.connection()))),
            Spool::Vfs(f) => {
                let c = Connection::open_with_flags(
                    f.uri(),
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                Ok(Some(SpoolConnection::Owned(c)))
            }
            Spool::Pages(_) => Ok(None),
        }
    }
}

pub enum SpoolConnection<'a> {
    Borrowed(&'a Connection),
    Owned(Connection),
}

impl std::ops::Deref for SpoolConnection<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        match self {
            SpoolConnection::Borrowed(c) => c,
            SpoolConnection::Owned(c) => c,
        }
    }
}

/// A size probe onto a vfs spool for the progress callback.
pub fn file_probe(f: &SpoolFile) -> io::Result<impl Fn() -> u64 + Send + 'static> {
    let file: Arc<File> = Arc::new(f.file().try_clone()?);
    Ok(move || file.metadata().map(|m| m.len()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_page_spool_reads_back_across_chunks() {
        let mut s = PageSpool::new(SpoolKind::Memory, Path::new("/tmp")).unwrap();
        let data: Vec<u8> = (0..(IO_CHUNK * 2 + 1234)).map(|i| (i % 251) as u8).collect();
        for piece in data.chunks(4096) {
            s.write_all(piece).unwrap();
        }
        let s = Spool::Pages(s);
        assert_eq!(s.size().unwrap(), data.len() as u64);
        let mut back = vec![0u8; 5000];
        s.read_exact_at(&mut back, IO_CHUNK as u64 - 100).unwrap();
        assert_eq!(&back[..], &data[IO_CHUNK - 100..IO_CHUNK + 4900]);
    }

    #[test]
    fn memdb_holds_a_vacuum_and_reads_in_place() {
        let src = Connection::open_in_memory().unwrap();
        src.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (randomblob(10000));").unwrap();
        let m = Memdb::create(2 << 30).unwrap();
        src.execute("VACUUM INTO ?1", [m.uri()]).unwrap();
        let spool = Spool::Memdb(m);
        let len = spool.size().unwrap();
        assert!(len >= 10000);
        let mut head = [0u8; 16];
        spool.read_exact_at(&mut head, 0).unwrap();
        assert_eq!(&head, crate::sqlite::header::MAGIC);
    }
}
