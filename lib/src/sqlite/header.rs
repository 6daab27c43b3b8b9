//! The SQLite database header (the first 100 bytes of the file), and the
//! length check built on it: a database image is complete when its byte count
//! equals page size × page count. Used by the snapshot before it emits
//! anything and by the sealer on its input, which cannot see whether its
//! upstream process died half-way.

use std::fmt;

/// `SQLite format 3\0`: the first 16 bytes of every SQLite database.
pub const MAGIC: &[u8; 16] = b"SQLite format 3\0";
pub const HEADER_LEN: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbHeader {
    pub page_size: u32,
    /// The in-header database size, when the header vouches for it (the
    /// version-valid-for number at offset 92 equals the change counter at 24).
    pub page_count: Option<u32>,
    pub freelist_pages: u32,
    /// Bytes 18/19 are 2: the database is in WAL mode.
    pub wal: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    NotSqlite,
    TooShort(usize),
    BadPageSize(u32),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::NotSqlite => f.write_str("not a SQLite database (no \"SQLite format 3\" header)"),
            HeaderError::TooShort(n) => write!(f, "truncated SQLite header ({n} of {HEADER_LEN} bytes)"),
            HeaderError::BadPageSize(n) => write!(f, "corrupt SQLite header (page size {n})"),
        }
    }
}

impl DbHeader {
    pub fn parse(b: &[u8]) -> Result<DbHeader, HeaderError> {
        if b.len() < MAGIC.len() || &b[..MAGIC.len()] != MAGIC {
            return Err(HeaderError::NotSqlite);
        }
        if b.len() < HEADER_LEN {
            return Err(HeaderError::TooShort(b.len()));
        }
        let be32 = |at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let raw_size = u16::from_be_bytes([b[16], b[17]]) as u32;
        let page_size = if raw_size == 1 { 65536 } else { raw_size };
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(HeaderError::BadPageSize(raw_size));
        }
        let in_header = be32(28);
        let valid = be32(92) == be32(24) && in_header > 0;
        Ok(DbHeader {
            page_size,
            page_count: valid.then_some(in_header),
            freelist_pages: be32(36),
            wal: b[18] == 2 && b[19] == 2,
        })
    }

    /// The byte length the header promises, if it promises one.
    pub fn expected_len(&self) -> Option<u64> {
        self.page_count.map(|n| n as u64 * self.page_size as u64)
    }
}

/// Watches a byte stream that may be a SQLite database and says, at its end,
/// whether it is complete.
#[derive(Debug, Default)]
pub struct LengthCheck {
    head: Vec<u8>,
    seen: u64,
    decided: Option<Verdict>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    NotSqlite,
    Sqlite(DbHeader),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LengthError {
    /// The stream is longer than its header says, found as soon as it happens.
    TooLong {
        expected: u64,
    },
    /// The stream ended before the length its header promises.
    Truncated {
        expected: u64,
        got: u64,
    },
    /// A SQLite header that does not record the database size.
    SizeUnknown,
    Header(HeaderError),
}

impl fmt::Display for LengthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LengthError::TooLong { expected } => {
                write!(f, "SQLite input longer than its header says ({expected} bytes)")
            }
            LengthError::Truncated { expected, got } => {
                write!(f, "truncated SQLite input: {got} of {expected} bytes (page size x page count)")
            }
            LengthError::SizeUnknown => f.write_str("SQLite input whose header does not record its size"),
            LengthError::Header(h) => h.fmt(f),
        }
    }
}

impl LengthCheck {
    pub fn new() -> Self {
        LengthCheck::default()
    }

    /// Feeds the next bytes of the stream. Fails early when the stream has
    /// already grown past what its header promises.
    pub fn observe(&mut self, buf: &[u8]) -> Result<(), LengthError> {
        if self.decided.is_none() {
            let want = (HEADER_LEN - self.head.len()).min(buf.len());
            self.head.extend_from_slice(&buf[..want]);
            let prefix = &self.head[..self.head.len().min(MAGIC.len())];
            if !MAGIC.starts_with(prefix) {
                self.decided = Some(Verdict::NotSqlite);
            } else if self.head.len() == HEADER_LEN {
                let h = DbHeader::parse(&self.head).map_err(LengthError::Header)?;
                self.decided = Some(Verdict::Sqlite(h));
            }
        }
        self.seen += buf.len() as u64;
        if let Some(Verdict::Sqlite(h)) = self.decided {
            if let Some(expected) = h.expected_len() {
                if self.seen > expected {
                    return Err(LengthError::TooLong { expected });
                }
            }
        }
        Ok(())
    }

    /// Called at the end of the stream: `Ok(true)` when it was a complete
    /// SQLite database, `Ok(false)` when it was not SQLite at all.
    pub fn finish(&self) -> Result<bool, LengthError> {
        match self.decided {
            Some(Verdict::NotSqlite) => Ok(false),
            Some(Verdict::Sqlite(h)) => {
                let expected = h.expected_len().ok_or(LengthError::SizeUnknown)?;
                if self.seen == expected {
                    Ok(true)
                } else {
                    Err(LengthError::Truncated { expected, got: self.seen })
                }
            }
            // Ended after the 16-byte magic but inside the 100-byte header: a
            // cut-off snapshot, never something to seal as data. Shorter input
            // does not start with the header at all.
            None if self.head.len() >= MAGIC.len() => Err(LengthError::Header(HeaderError::TooShort(self.head.len()))),
            None => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn header(page_size: u16, pages: u32, valid: bool) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_LEN];
        h[..16].copy_from_slice(MAGIC);
        h[16..18].copy_from_slice(&page_size.to_be_bytes());
        h[18] = 1;
        h[19] = 1;
        h[24..28].copy_from_slice(&7u32.to_be_bytes());
        h[28..32].copy_from_slice(&pages.to_be_bytes());
        h[92..96].copy_from_slice(&(if valid { 7u32 } else { 6 }).to_be_bytes());
        h
    }

    #[test]
    fn parses_page_size_and_count() {
        let h = DbHeader::parse(&header(4096, 3, true)).unwrap();
        assert_eq!(h.page_size, 4096);
        assert_eq!(h.expected_len(), Some(3 * 4096));
        let h = DbHeader::parse(&header(1, 2, true)).unwrap();
        assert_eq!(h.page_size, 65536);
        assert_eq!(DbHeader::parse(&header(4096, 3, false)).unwrap().page_count, None);
        assert_eq!(DbHeader::parse(&header(1000, 3, true)), Err(HeaderError::BadPageSize(1000)));
        assert_eq!(DbHeader::parse(b"hello"), Err(HeaderError::NotSqlite));
    }

    #[test]
    fn length_check_accepts_exact_and_rejects_short_or_long() {
        let mut db = header(512, 2, true);
        db.resize(1024, 0);
        let mut c = LengthCheck::new();
        for piece in db.chunks(7) {
            c.observe(piece).unwrap();
        }
        assert_eq!(c.finish(), Ok(true));

        let mut c = LengthCheck::new();
        c.observe(&db[..1000]).unwrap();
        assert_eq!(c.finish(), Err(LengthError::Truncated { expected: 1024, got: 1000 }));

        let mut c = LengthCheck::new();
        c.observe(&db).unwrap();
        assert_eq!(c.observe(b"x"), Err(LengthError::TooLong { expected: 1024 }));
    }

    #[test]
    fn length_check_on_other_data() {
        let mut c = LengthCheck::new();
        c.observe(b"just some text that is not a database").unwrap();
        assert_eq!(c.finish(), Ok(false));
        let mut c = LengthCheck::new();
        c.observe(b"Sx").unwrap();
        assert_eq!(c.finish(), Ok(false), "short input that is not the magic");
        let mut c = LengthCheck::new();
        c.observe(b"SQLite").unwrap();
        assert_eq!(c.finish(), Ok(false), "input shorter than the magic does not start with the header");
        assert_eq!(LengthCheck::new().finish(), Ok(false), "empty input is not SQLite");
        let mut c = LengthCheck::new();
        c.observe(&MAGIC[..]).unwrap();
        c.observe(b"abc").unwrap();
        assert!(matches!(c.finish(), Err(LengthError::Header(HeaderError::TooShort(19)))));
        let mut c = LengthCheck::new();
        c.observe(&header(4096, 3, false)).unwrap();
        assert_eq!(c.finish(), Err(LengthError::SizeUnknown));
    }
}
