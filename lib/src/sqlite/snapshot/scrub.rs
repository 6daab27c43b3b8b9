//! Forgetting in the page stream: which bytes of each page hold no live data,
//! so that the stream writes zeros there instead of what a deleted row left
//! behind (`secure_delete` is off by default).
//!
//! Dead, and zeroed: free-list leaf pages; a free-list trunk page past its
//! list of leaves; in b-tree pages the gap between the cell pointer array and
//! the cell content area, and each freeblock past its 4-byte link; the unused
//! tail of the last page of an overflow chain; the lock-byte page. Kept as
//! they are: everything else, the pointer-map pages, and the few 1-3 byte
//! fragments a b-tree page may count (they cannot be told from cell bytes
//! without measuring every cell).
//!
//! The pages come in page order, so a page's role must be known when it goes
//! by. Free pages are learned first by walking the free list (a few trunk
//! pages). A b-tree page describes itself. An overflow page does not: it is
//! one when a cell or the previous page of its chain points at it, and only
//! the owning cell says how much of the last page is used. When the pointer
//! comes after the page, the page has gone by: [`Scrubber::late`] lists what
//! was missed, which a spooled image patches afterwards and a direct stream
//! can only count (see docs/forgetting.md).
//!
//! Nothing here trusts the page: every offset is checked against the page
//! before use, and a page that does not parse, or a free list that is not
//! exactly what the header says, is copied as it is, never guessed at.

use std::collections::HashMap;

/// SQLite's lock-byte page holds the byte at this offset; it never holds data.
const PENDING_BYTE: u64 = 0x4000_0000;
/// Past this many pages a page's first byte no longer tells a b-tree page
/// from an overflow page (whose first four bytes are the next page number).
const TYPE_BYTE_TRUSTED_BELOW: u64 = 1 << 25;
/// Bound on the pages remembered as "overflow, owner not seen yet"
/// (16 bytes each, about 64 MiB at most).
const MAX_REMEMBERED: usize = 4 << 20;

/// What the scrubber did, for reports and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes written as zeros where the source held something else or nothing.
    pub zeroed_bytes: u64,
    /// Last overflow pages whose dead tail was not zero and went out before
    /// the cell that owns them was read (a direct stream cannot take it back).
    pub tails_copied: u64,
    /// Last overflow pages whose dead tail was found only after them (by
    /// reading ahead, or by patching the spooled image).
    pub late_tails: u64,
    /// Why nothing was zeroed, when nothing could be.
    pub off: Option<&'static str>,
}

/// A page already emitted whose bytes from `from` to the page's end are dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Late {
    pub pgno: u32,
    pub from: usize,
}

/// An overflow page that went by before anything pointed at it.
#[derive(Clone, Copy)]
struct Unowned {
    next: u32,
    /// One past the last non-zero byte of the page.
    used_at_most: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scout {
    /// The image is spooled: what went by is patched afterwards.
    Never,
    Allowed,
    /// A page waits for the caller to read ahead ([`Scrubber::wants_scout`]).
    Wanted,
    Done,
}

pub struct Scrubber {
    page_size: usize,
    page_count: u32,
    lock_page: u64,
    /// Pages per pointer-map page, when the database has pointer maps.
    ptrmap_stride: Option<u64>,
    type_byte_trusted: bool,
    /// Free-list trunk pages (page, leaf count) and leaf pages, sorted;
    /// walked with a cursor as the pages go by in order.
    trunks: Vec<(u32, u32)>,
    leaves: Vec<u32>,
    next_trunk: usize,
    next_leaf: usize,
    /// Overflow pages not reached yet, with the payload bytes their chain
    /// still carries from that page on.
    expect: HashMap<u32, u64>,
    unowned: HashMap<u32, Unowned>,
    late: Vec<Late>,
    /// A direct stream reads ahead once, when a page needs an owner it has
    /// not seen: `Scout` says whether that may and has happened.
    scout: Scout,
    /// Last overflow pages ahead and where their dead tail starts, learned by
    /// reading ahead.
    tails: HashMap<u32, usize>,
    ranges: Vec<(usize, usize)>,
    cells: Vec<(u32, u64)>,
    scouted_cells: Vec<(u32, u64)>,
    stats: Stats,
}

impl Scrubber {
    /// A scrubber for an image of `page_count` pages whose first page is
    /// `page1`. `read_page` fetches one page of the same image (the free-list
    /// trunks); its errors are the caller's. A damaged free list, reserved
    /// bytes, or a header that does not parse turn zeroing off (nothing is
    /// ever zeroed on a guess).
    pub fn new<E>(
        page1: &[u8],
        page_count: u64,
        mut read_page: impl FnMut(u32) -> Result<Vec<u8>, E>,
    ) -> Result<Scrubber, E> {
        let mut s = Scrubber {
            page_size: page1.len(),
            page_count: page_count.min(u32::MAX as u64) as u32,
            lock_page: 0,
            ptrmap_stride: None,
            type_byte_trusted: page_count < TYPE_BYTE_TRUSTED_BELOW,
            trunks: Vec::new(),
            leaves: Vec::new(),
            next_trunk: 0,
            next_leaf: 0,
            expect: HashMap::new(),
            unowned: HashMap::new(),
            late: Vec::new(),
            scout: Scout::Never,
            tails: HashMap::new(),
            ranges: Vec::new(),
            cells: Vec::new(),
            scouted_cells: Vec::new(),
            stats: Stats::default(),
        };
        let Ok(h) = crate::sqlite::header::DbHeader::parse(page1) else {
            s.stats.off = Some("page 1 is not a SQLite header");
            return Ok(s);
        };
        if h.page_size as usize != page1.len() || page_count > u32::MAX as u64 {
            s.stats.off = Some("page size or count out of range");
            return Ok(s);
        }
        // Reserved bytes belong to whatever keeps them (a checksum VFS, say),
        // and usually depend on the page's bytes: leave such pages alone.
        if page1[20] != 0 {
            s.stats.off = Some("pages reserve bytes at their end");
            return Ok(s);
        }
        s.lock_page = PENDING_BYTE / s.page_size as u64 + 1;
        if be32(page1, 52) != 0 {
            s.ptrmap_stride = Some(s.page_size as u64 / 5 + 1);
        }
        match walk_freelist(&s, be32(page1, 32), be32(page1, 36), &mut read_page)? {
            Ok((trunks, leaves)) => {
                s.trunks = trunks;
                s.leaves = leaves;
            }
            Err(why) => s.stats.off = Some(why),
        }
        Ok(s)
    }

    /// For a stream that cannot be patched afterwards: when a last overflow
    /// page comes before its owner, [`Scrubber::wants_scout`] asks (once) for
    /// the rest of the image to be read ahead through [`Scrubber::scout`].
    pub fn direct(&mut self) {
        self.scout = Scout::Allowed;
    }

    /// The page just planned needs what comes after it: feed every later
    /// page to [`Scrubber::scout`], call [`Scrubber::scouted`], then plan the
    /// same page again.
    pub fn wants_scout(&self) -> bool {
        self.scout == Scout::Wanted
    }

    /// Reads ahead: page `pgno` (after the one waiting) as it will come.
    pub fn scout(&mut self, pgno: u32, page: &[u8]) {
        if page.len() != self.page_size || pgno as u64 == self.lock_page || self.is_ptrmap(pgno) {
            return;
        }
        if self.trunks.binary_search_by_key(&pgno, |t| t.0).is_ok() || self.leaves.binary_search(&pgno).is_ok() {
            return;
        }
        if self.type_byte_trusted && matches!(page[0], 2 | 5 | 10 | 13) {
            let mut ranges = Vec::new();
            let mut found = Vec::new();
            let content = match be16(page, 5) {
                0 => 65536,
                n => n,
            };
            let header_len = if matches!(page[0], 2 | 5) { 12 } else { 8 };
            if self.cells_and_freeblocks(page, page[0], header_len, be16(page, 3), content, 0, &mut ranges, &mut found)
            {
                self.scouted_cells.extend(found);
            }
        } else {
            self.remember(pgno, page);
        }
    }

    /// After the last page was scouted: where each chain's last page ahead
    /// of `now` ends.
    pub fn scouted(&mut self, now: u32) {
        let room = (self.page_size - 4) as u64;
        // Chains found ahead, and chains already expected ahead whose links
        // may lead back to the waiting page.
        let mut starts = std::mem::take(&mut self.scouted_cells);
        starts.extend(self.expect.iter().map(|(&p, &r)| (p, r)));
        for (mut pgno, mut rem) in starts {
            for _ in 0..=self.unowned.len() {
                let Some(u) = self.unowned.get(&pgno).copied() else { break };
                if rem <= room {
                    if u.next == 0 && pgno >= now {
                        self.tails.insert(pgno, 4 + rem as usize);
                    }
                    break;
                }
                if u.next == 0 {
                    break;
                }
                rem -= room;
                pgno = u.next;
            }
        }
        self.scout = Scout::Done;
    }

    fn remember(&mut self, pgno: u32, page: &[u8]) {
        if self.unowned.len() < MAX_REMEMBERED {
            let used_at_most = page.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            self.unowned.insert(pgno, Unowned { next: be32(page, 0), used_at_most });
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The ranges of the page last planned.
    pub fn ranges(&self) -> &[(usize, usize)] {
        &self.ranges
    }

    /// Pages already emitted whose dead tails only became known later.
    pub fn late(&self) -> &[Late] {
        &self.late
    }

    /// After the last page: the tails that went out unzeroed, for a caller
    /// that cannot patch them.
    pub fn count_unpatched(&mut self) {
        self.stats.tails_copied = self.late.len() as u64;
    }

    /// After the caller zeroed [`Scrubber::late`] in its spooled image.
    pub fn count_patched(&mut self) {
        self.stats.late_tails += self.late.len() as u64;
        self.stats.zeroed_bytes += self.late.iter().map(|l| (self.page_size - l.from) as u64).sum::<u64>();
    }

    /// The byte ranges of page `pgno` (its bytes `page`) to write as zeros:
    /// sorted, disjoint, within the page.
    pub fn plan(&mut self, pgno: u32, page: &[u8]) -> &[(usize, usize)] {
        self.ranges.clear();
        if self.stats.off.is_some() || page.len() != self.page_size || pgno == 0 {
            return &self.ranges;
        }
        let size = self.page_size;
        if pgno as u64 == self.lock_page {
            self.zero(0, size);
        } else if self.is_ptrmap(pgno) {
        } else if let Some(leaves) = self.take_trunk(pgno) {
            // next trunk (4), count (4), then the leaf numbers: all live.
            self.zero(8 + 4 * leaves as usize, size);
        } else if self.take_leaf(pgno) {
            self.zero(0, size);
        } else if let Some(rem) = self.expect.remove(&pgno) {
            self.overflow(pgno, page, rem);
        } else if let Some(&from) = self.tails.get(&pgno) {
            self.zero(from, size);
            self.stats.late_tails += 1;
        } else if pgno == 1 || (self.type_byte_trusted && matches!(page[0], 2 | 5 | 10 | 13)) {
            self.btree(pgno, page);
        } else if self.scout != Scout::Done || !self.unowned.contains_key(&pgno) {
            // An overflow page whose owner comes later (or a damaged page).
            self.remember(pgno, page);
            if self.scout == Scout::Allowed && be32(page, 0) == 0 && pgno < self.page_count {
                self.scout = Scout::Wanted;
            }
        }
        let zeroed: usize = self.ranges.iter().map(|(a, b)| b - a).sum();
        self.stats.zeroed_bytes += zeroed as u64;
        &self.ranges
    }

    fn zero(&mut self, from: usize, to: usize) {
        if from < to && to <= self.page_size {
            self.ranges.push((from, to));
        }
    }

    fn is_ptrmap(&self, pgno: u32) -> bool {
        let Some(stride) = self.ptrmap_stride else { return false };
        let p = pgno as u64;
        if p < 2 {
            return false;
        }
        let mut at = (p - 2) / stride * stride + 2;
        if at == self.lock_page {
            at += 1;
        }
        at == p
    }

    fn take_trunk(&mut self, pgno: u32) -> Option<u32> {
        while self.trunks.get(self.next_trunk).is_some_and(|t| t.0 < pgno) {
            self.next_trunk += 1;
        }
        let t = self.trunks.get(self.next_trunk).filter(|t| t.0 == pgno)?;
        Some(t.1)
    }

    fn take_leaf(&mut self, pgno: u32) -> bool {
        while self.leaves.get(self.next_leaf).is_some_and(|&l| l < pgno) {
            self.next_leaf += 1;
        }
        self.leaves.get(self.next_leaf) == Some(&pgno)
    }

    /// An overflow page that carries `rem` more payload bytes of its chain.
    fn overflow(&mut self, pgno: u32, page: &[u8], rem: u64) {
        // A page that looks like a b-tree page cannot be an overflow page
        // (its first byte would be a page number past the end): a damaged
        // pointer, and nothing of that page is zeroed on its word.
        if self.type_byte_trusted && matches!(page[0], 2 | 5 | 10 | 13) {
            self.btree(pgno, page);
            return;
        }
        let room = (self.page_size - 4) as u64;
        let next = be32(page, 0);
        if rem <= room {
            if next == 0 {
                self.zero(4 + rem as usize, self.page_size);
            }
        } else if next != 0 {
            self.follow(next, rem - room, pgno);
        }
    }

    /// A chain continues at `pgno` with `rem` payload bytes; `now` is the
    /// page being read. Ahead: expect it. Behind: walk what was remembered of
    /// the pages that went by, and note a dead tail that went out.
    fn follow(&mut self, mut pgno: u32, mut rem: u64, now: u32) {
        let room = (self.page_size - 4) as u64;
        for _ in 0..=self.unowned.len() {
            if pgno == 0 || pgno > self.page_count || pgno == now {
                return;
            }
            if pgno > now {
                if self.expect.len() < MAX_REMEMBERED {
                    self.expect.insert(pgno, rem);
                }
                return;
            }
            let Some(u) = self.unowned.get(&pgno).copied() else { return };
            if rem <= room {
                let from = 4 + rem as usize;
                if u.next == 0 && u.used_at_most > from && !self.tails.contains_key(&pgno) {
                    self.late.push(Late { pgno, from });
                }
                return;
            }
            if u.next == 0 {
                return;
            }
            rem -= room;
            pgno = u.next;
        }
    }

    /// A b-tree page: zero the gap and the freeblocks' bodies, and learn
    /// where its cells' overflow chains start. Any inconsistency: leave it.
    fn btree(&mut self, pgno: u32, page: &[u8]) {
        let size = self.page_size;
        let h = if pgno == 1 { 100 } else { 0 };
        let Some(&kind) = page.get(h) else { return };
        let header_len = match kind {
            2 | 5 => 12,
            10 | 13 => 8,
            _ => return,
        };
        if h + header_len > size {
            return;
        }
        let first_free = be16(page, h + 1);
        let cells = be16(page, h + 3);
        let content = match be16(page, h + 5) {
            0 => 65536,
            n => n,
        };
        let pointers_end = h + header_len + 2 * cells;
        if pointers_end > content || content > size {
            return;
        }
        let mut ranges = std::mem::take(&mut self.ranges);
        let mut found = std::mem::take(&mut self.cells);
        found.clear();
        let ok =
            self.cells_and_freeblocks(page, kind, h + header_len, cells, content, first_free, &mut ranges, &mut found);
        self.ranges = ranges;
        self.cells = found;
        if !ok {
            self.ranges.clear();
            return;
        }
        if pointers_end < content {
            self.ranges.insert(0, (pointers_end, content));
        }
        for i in 0..self.cells.len() {
            let (first, rem) = self.cells[i];
            self.follow(first, rem, pgno);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn cells_and_freeblocks(
        &self,
        page: &[u8],
        kind: u8,
        pointers: usize,
        cells: usize,
        content: usize,
        first_free: usize,
        ranges: &mut Vec<(usize, usize)>,
        found: &mut Vec<(u32, u64)>,
    ) -> bool {
        let size = self.page_size;
        let usable = size as u64;
        // SQLite's local-payload limits (fileformat2.html, "B-tree Pages").
        let max_local = if kind == 13 { usable - 35 } else { (usable - 12) * 64 / 255 - 23 };
        let min_local = (usable - 12) * 32 / 255 - 23;
        for i in 0..cells {
            let cell = be16(page, pointers + 2 * i);
            if cell < content || cell >= size {
                return false;
            }
            if kind == 5 {
                continue;
            }
            let mut at = cell + if kind == 2 { 4 } else { 0 };
            let Some((payload, n)) = varint(page.get(at..size).unwrap_or(&[])) else { return false };
            at += n;
            if kind == 13 {
                let Some((_, n)) = varint(page.get(at..size).unwrap_or(&[])) else { return false };
                at += n;
            }
            if payload <= max_local {
                continue;
            }
            let k = min_local + (payload - min_local) % (usable - 4);
            let local = if k <= max_local { k } else { min_local };
            let ptr = at + local as usize;
            if ptr + 4 > size {
                return false;
            }
            found.push((be32(page, ptr), payload - local));
        }
        let mut at = first_free;
        let mut floor = content;
        for _ in 0..=size / 4 {
            if at == 0 {
                return true;
            }
            if at < floor || at + 4 > size {
                return false;
            }
            let next = be16(page, at);
            let len = be16(page, at + 2);
            if len < 4 || at + len > size {
                return false;
            }
            if len > 4 {
                ranges.push((at + 4, at + len));
            }
            floor = at + len;
            at = next;
        }
        false
    }
}

/// The free list as the header describes it: trunk pages with their leaf
/// counts and the leaf pages, sorted, or why it cannot be trusted.
#[allow(clippy::type_complexity)]
fn walk_freelist<E>(
    s: &Scrubber,
    first: u32,
    count: u32,
    read_page: &mut impl FnMut(u32) -> Result<Vec<u8>, E>,
) -> Result<Result<(Vec<(u32, u32)>, Vec<u32>), &'static str>, E> {
    const BAD: &str = "the free list does not match its header";
    let per_trunk = (s.page_size / 4 - 2) as u32;
    let valid = |p: u32| p >= 2 && p <= s.page_count && p as u64 != s.lock_page && !s.is_ptrmap(p);
    let (mut trunks, mut leaves) = (Vec::new(), Vec::new());
    let mut total: u64 = 0;
    let mut seen = std::collections::HashSet::new();
    let mut at = first;
    while at != 0 {
        // A cycle of empty trunks would never reach the count: stop at a repeat.
        if !valid(at) || total >= count as u64 || !seen.insert(at) {
            return Ok(Err(BAD));
        }
        let page = read_page(at)?;
        if page.len() != s.page_size {
            return Ok(Err(BAD));
        }
        let n = be32(&page, 4);
        if n > per_trunk {
            return Ok(Err(BAD));
        }
        total += 1 + n as u64;
        if total > count as u64 {
            return Ok(Err(BAD));
        }
        trunks.push((at, n));
        for i in 0..n as usize {
            let leaf = be32(&page, 8 + 4 * i);
            if !valid(leaf) {
                return Ok(Err(BAD));
            }
            leaves.push(leaf);
        }
        at = be32(&page, 0);
    }
    if total != count as u64 {
        return Ok(Err(BAD));
    }
    trunks.sort_unstable();
    leaves.sort_unstable();
    let mut all: Vec<u32> = trunks.iter().map(|t| t.0).chain(leaves.iter().copied()).collect();
    all.sort_unstable();
    if all.windows(2).any(|w| w[0] == w[1]) {
        return Ok(Err(BAD));
    }
    Ok(Ok((trunks, leaves)))
}

/// Big-endian u16 at `at`, 0 past the end (callers bound-check first).
fn be16(b: &[u8], at: usize) -> usize {
    match b.get(at..at + 2) {
        Some(x) => u16::from_be_bytes([x[0], x[1]]) as usize,
        None => 0,
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(x) => u32::from_be_bytes([x[0], x[1], x[2], x[3]]),
        None => 0,
    }
}

/// SQLite's varint (1-9 bytes, big-endian, 7 bits a byte, 8 in the ninth):
/// the value and its length, or `None` when `b` ends first.
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for i in 0..9 {
        let byte = *b.get(i)?;
        if i == 8 {
            return Some(((v << 8) | byte as u64, 9));
        }
        v = (v << 7) | (byte & 0x7f) as u64;
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// Writes `page` with `ranges` (sorted, disjoint) written as zeros.
pub fn write_scrubbed(out: &mut dyn std::io::Write, page: &[u8], ranges: &[(usize, usize)]) -> std::io::Result<()> {
    static ZEROS: [u8; 65536] = [0; 65536];
    let mut at = 0;
    for &(a, b) in ranges {
        out.write_all(&page[at..a])?;
        out.write_all(&ZEROS[..b - a])?;
        at = b;
    }
    out.write_all(&page[at..])
}

/// Zeroes `ranges` in a page held in memory.
pub fn apply(page: &mut [u8], ranges: &[(usize, usize)]) {
    for &(a, b) in ranges {
        page[a..b].fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn header(page_size: usize, pages: u32, first_trunk: u32, free: u32) -> Vec<u8> {
        let mut p = vec![0u8; page_size];
        p[..16].copy_from_slice(crate::sqlite::header::MAGIC);
        let raw = if page_size == 65536 { 1u16 } else { page_size as u16 };
        p[16..18].copy_from_slice(&raw.to_be_bytes());
        p[18] = 1;
        p[19] = 1;
        p[28..32].copy_from_slice(&pages.to_be_bytes());
        p[32..36].copy_from_slice(&first_trunk.to_be_bytes());
        p[36..40].copy_from_slice(&free.to_be_bytes());
        // An empty table leaf as the schema root.
        p[100] = 13;
        p[105..107].copy_from_slice(&(page_size as u32 as u16).to_be_bytes());
        p
    }

    fn check(ranges: &[(usize, usize)], len: usize) {
        let mut at = 0;
        for &(a, b) in ranges {
            assert!(at <= a && a < b && b <= len, "{ranges:?} within {len}");
            at = b;
        }
    }

    /// Hostile pages: random bytes, random b-tree headers with random cell
    /// pointers and freeblock chains, random free lists. Nothing may panic,
    /// and every plan stays sorted, disjoint and inside the page.
    #[test]
    fn random_pages_never_panic_or_leave_the_page() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(25);
        for round in 0..2000 {
            let page_size = if round % 100 == 0 { 65536 } else { [512usize, 1024, 4096][round % 3] };
            let pages: u32 = rng.gen_range(1..16);
            let mut image: Vec<Vec<u8>> = (0..pages)
                .map(|_| {
                    let mut p = vec![0u8; page_size];
                    match rng.gen_range(0..4) {
                        0 => rng.fill(&mut p[..]),
                        1 => {
                            // A b-tree-looking header with wild fields.
                            p[0] = [2, 5, 10, 13][rng.gen_range(0..4)];
                            for b in p.iter_mut().take(12).skip(1) {
                                *b = rng.gen();
                            }
                            for b in p.iter_mut().take(200).skip(12) {
                                *b = if rng.gen_bool(0.5) { rng.gen() } else { rng.gen_range(0..8) };
                            }
                        }
                        2 => {
                            // A trunk-looking page.
                            let n: u32 = rng.gen_range(0..8);
                            p[4..8].copy_from_slice(&n.to_be_bytes());
                            for i in 0..n as usize {
                                let v = rng.gen_range(0..pages + 3);
                                p[8 + 4 * i..12 + 4 * i].copy_from_slice(&v.to_be_bytes());
                            }
                        }
                        _ => {
                            let next: u32 = rng.gen_range(0..pages + 2);
                            p[..4].copy_from_slice(&next.to_be_bytes());
                            rng.fill(&mut p[4..]);
                        }
                    }
                    p
                })
                .collect();
            let mut first = header(page_size, pages, rng.gen_range(0..pages + 2), rng.gen_range(0..10));
            if rng.gen_bool(0.3) {
                rng.fill(&mut first[100..]);
            }
            if rng.gen_bool(0.1) {
                first[52] = 1;
            }
            image[0] = first;
            let read = |p: u32| -> Result<Vec<u8>, ()> { Ok(image.get(p as usize - 1).cloned().unwrap_or_default()) };
            let mut s = Scrubber::new(&image[0], pages as u64, read).unwrap();
            for (i, page) in image.iter().enumerate() {
                let r = s.plan(i as u32 + 1, page).to_vec();
                check(&r, page_size);
            }
            for l in s.late() {
                assert!(l.pgno >= 1 && l.pgno <= pages && l.from < page_size, "{l:?}");
            }
        }
    }

    /// A chain whose owner comes first but whose last page comes before its
    /// first: 1 (owner) -> 3 -> 2. A direct stream reads ahead at page 2.
    #[test]
    fn a_last_overflow_page_before_its_chain_is_found_by_reading_ahead() {
        let ps = 512;
        let mut p1 = header(ps, 3, 0, 0);
        // One table-leaf cell at 400: payload 997 (varint 0x87 0x65), rowid 1,
        // 39 bytes local, then the first overflow page, 3.
        p1[103..105].copy_from_slice(&1u16.to_be_bytes());
        p1[105..107].copy_from_slice(&400u16.to_be_bytes());
        p1[108..110].copy_from_slice(&400u16.to_be_bytes());
        p1[400..403].copy_from_slice(&[0x87, 0x65, 0x01]);
        p1[442..446].copy_from_slice(&3u32.to_be_bytes());
        let mut last = vec![0xAAu8; ps];
        last[..4].copy_from_slice(&0u32.to_be_bytes());
        let mut first = vec![0xBBu8; ps];
        first[..4].copy_from_slice(&2u32.to_be_bytes());
        let image = [p1, last, first];
        let mut s = Scrubber::new(&image[0], 3, |p| Ok::<_, ()>(image[p as usize - 1].clone())).unwrap();
        s.direct();
        s.plan(1, &image[0]);
        assert!(s.plan(2, &image[1]).is_empty());
        assert!(s.wants_scout());
        s.scout(3, &image[2]);
        s.scouted(2);
        // 958 bytes overflow: 508 on page 3, 450 on page 2 after its 4-byte link.
        assert_eq!(s.plan(2, &image[1]), &[(454, ps)]);
        assert!(s.plan(3, &image[2]).is_empty(), "a full middle page keeps every byte");
        s.count_unpatched();
        assert_eq!(s.stats().tails_copied, 0);
        assert_eq!(s.stats().late_tails, 1);
    }

    #[test]
    fn varints_decode_as_sqlite_writes_them() {
        assert_eq!(varint(&[0x05]), Some((5, 1)));
        assert_eq!(varint(&[0x81, 0x00]), Some((128, 2)));
        assert_eq!(varint(&[0xff; 9]), Some((u64::MAX, 9)));
        assert_eq!(varint(&[0x81]), None);
        assert_eq!(varint(&[]), None);
    }

    #[test]
    fn a_free_list_that_disagrees_with_its_header_turns_zeroing_off() {
        let ps = 512;
        // The header promises 3 free pages; the one trunk lists one leaf.
        let mut trunk = vec![0u8; ps];
        trunk[4..8].copy_from_slice(&1u32.to_be_bytes());
        trunk[8..12].copy_from_slice(&3u32.to_be_bytes());
        let image = [header(ps, 3, 2, 3), trunk, vec![7u8; ps]];
        let mut s = Scrubber::new(&image[0], 3, |p| Ok::<_, ()>(image[p as usize - 1].clone())).unwrap();
        assert!(s.stats().off.is_some());
        assert!(s.plan(3, &image[2]).is_empty(), "a page of a damaged list is copied as it is");
        // The same list with the right count: the trunk keeps its list, the leaf goes.
        let image = [header(ps, 3, 2, 2), image[1].clone(), image[2].clone()];
        let mut s = Scrubber::new(&image[0], 3, |p| Ok::<_, ()>(image[p as usize - 1].clone())).unwrap();
        assert_eq!(s.stats().off, None);
        assert_eq!(s.plan(2, &image[1]), &[(12, ps)]);
        assert_eq!(s.plan(3, &image[2]), &[(0, ps)]);
        // A trunk that names itself as the next one, under a huge count:
        // found at the repeat, not after four billion reads.
        let mut looped = vec![0u8; ps];
        looped[..4].copy_from_slice(&2u32.to_be_bytes());
        let image = [header(ps, 2, 2, u32::MAX), looped];
        let mut reads = 0;
        let s = Scrubber::new(&image[0], 2, |p| {
            reads += 1;
            Ok::<_, ()>(image[p as usize - 1].clone())
        })
        .unwrap();
        assert!(s.stats().off.is_some());
        assert_eq!(reads, 1);
    }
}
