//! Streaming age encryption (the age v1 format, decryptable by the standard
//! `age` CLI), in constant memory, using both cores.
//!
//! The header is built from the `age` crate's recipients (`wrap_file_key`),
//! so every recipient type it supports works unchanged; the payload is the
//! age STREAM (ChaCha20-Poly1305 over 64 KiB chunks, the nonce a big-endian
//! chunk counter plus a last-chunk flag) encrypted here with `ring`, whose
//! fused ChaCha20-Poly1305 is about 1.6x faster per core than the crate's
//! (DECISION_LOG.md). Chunks are independent, so blocks of 16 chunks go to
//! worker threads while the calling thread reads input and writes output in
//! order.
//!
//! The final chunk is only ever encrypted in [`Sealer::finish`]: a sealer
//! dropped without it leaves an output that `age -d` reports as truncated.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use age::armor::{ArmoredWriter, Format};
use age_core::format::FileKey;
use ring::aead::{Aad, LessSafeKey};
use ring::rand::{SecureRandom, SystemRandom};

use super::format::{chunk_nonce, encode_header, payload_key, CHUNK, ENC_CHUNK, NONCE, TAG};
use super::recipients::{is_post_quantum, labels_mix, Recipient};
use crate::buffer::try_buffer;
use crate::run::Run;
use crate::sqlite::header::{LengthCheck, LengthError};
use crate::stop::{hint, io_cause, Failure, Hint, Knob, Stop};

const CHUNKS_PER_BLOCK: usize = 16;
const BLOCK_PLAIN: usize = CHUNK * CHUNKS_PER_BLOCK;
/// Blocks handed to workers and not yet written: bounds memory (~1 MiB each).
const MAX_IN_FLIGHT: u64 = 4;

#[derive(Debug)]
pub enum SealError {
    /// A recipient could not wrap the file key.
    Wrap(String),
    Random,
    /// Reading the input (named by the caller: "standard input", a file) failed.
    Read {
        input: String,
        source: io::Error,
    },
    /// Threads or buffers for encryption could not be had.
    Resources(io::Error),
    EmptyInput {
        input: String,
    },
    Incomplete {
        input: String,
        why: LengthError,
    },
    Output(io::Error),
    Stop(Stop),
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SealError::Wrap(e) => write!(f, "encrypt: {e}"),
            SealError::Random => f.write_str("encrypt: the system random number generator failed"),
            SealError::Read { input, source } => write!(f, "read input: {input}: {}", io_cause(source)),
            SealError::Resources(e) => write!(f, "encrypt: cannot set up: {}", io_cause(e)),
            SealError::EmptyInput { input } => write!(f, "read input: {input}: empty (0 bytes)"),
            SealError::Incomplete { input, why } => write!(f, "read input: {input}: {why}; nothing was committed"),
            SealError::Output(e) => write!(f, "write: {}", io_cause(e)),
            SealError::Stop(s) => s.fmt(f),
        }
    }
}

impl std::error::Error for SealError {}

impl Failure for SealError {
    fn hint(&self) -> Option<Hint> {
        match self {
            SealError::EmptyInput { .. } => {
                Some(hint!["pipe data in, or pass ", Knob::AllowEmpty, " to seal an empty file"])
            }
            SealError::Incomplete { .. } => Some(hint![
                "did the producer fail? run the pipeline with set -o pipefail; ",
                Knob::Raw,
                " seals bytes unchecked"
            ]),
            _ => None,
        }
    }

    fn stop(&self) -> Option<Stop> {
        match self {
            SealError::Stop(s) => Some(*s),
            SealError::Output(e) | SealError::Read { source: e, .. } => Stop::from_io(e),
            _ => None,
        }
    }
}

/// Sizes of a finished age file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SealStats {
    pub plaintext: u64,
    pub ciphertext: u64,
}

struct Block {
    /// Chunk `i` lives at `i * ENC_CHUNK`, its tag right after its plaintext.
    buf: Vec<u8>,
    filled: usize,
}

impl Block {
    /// Fails with "out of memory" instead of aborting the process.
    fn new() -> io::Result<Block> {
        Ok(Block { buf: try_buffer(CHUNKS_PER_BLOCK * ENC_CHUNK)?, filled: 0 })
    }

    fn is_full(&self) -> bool {
        self.filled == BLOCK_PLAIN
    }

    /// The free rest of the chunk being filled.
    fn space(&mut self) -> &mut [u8] {
        if self.is_full() {
            return &mut [];
        }
        let (i, within) = (self.filled / CHUNK, self.filled % CHUNK);
        &mut self.buf[i * ENC_CHUNK + within..i * ENC_CHUNK + CHUNK]
    }

    /// Every free plaintext slot: the rest of the chunk being filled, then
    /// each following chunk (the tag gaps in between are skipped).
    fn free_slots(&mut self) -> Vec<io::IoSliceMut<'_>> {
        let filled = self.filled;
        self.buf
            .chunks_mut(ENC_CHUNK)
            .enumerate()
            .filter_map(|(i, slot)| {
                let used = filled.saturating_sub(i * CHUNK).min(CHUNK);
                (used < CHUNK).then(|| io::IoSliceMut::new(&mut slot[used..CHUNK]))
            })
            .collect()
    }

    /// The buffer pieces holding plaintext bytes `from..to` of the block.
    fn pieces(&self, from: usize, to: usize) -> impl Iterator<Item = &[u8]> {
        self.buf.chunks(ENC_CHUNK).enumerate().filter_map(move |(i, slot)| {
            let (a, b) = (from.max(i * CHUNK), to.min((i + 1) * CHUNK));
            (a < b).then(|| &slot[a - i * CHUNK..b - i * CHUNK])
        })
    }

    /// Encrypts in place and returns the ciphertext length. Only the final
    /// block may be partly filled, so the ciphertext is contiguous.
    fn seal(&mut self, key: &LessSafeKey, first_counter: u64, last: bool) -> usize {
        let chunks = self.filled.div_ceil(CHUNK).max(1);
        let mut end = 0;
        for i in 0..chunks {
            let start = i * ENC_CHUNK;
            let len = (self.filled - i * CHUNK).min(CHUNK);
            let nonce = chunk_nonce(first_counter + i as u64, last && i == chunks - 1);
            let tag = key
                .seal_in_place_separate_tag(nonce, Aad::empty(), &mut self.buf[start..start + len])
                .expect("64 KiB is far below ChaCha20-Poly1305's message limit");
            self.buf[start + len..start + len + TAG].copy_from_slice(tag.as_ref());
            end = start + len + TAG;
        }
        end
    }
}

struct Job {
    seq: u64,
    counter: u64,
    last: bool,
    block: Block,
}

struct Done {
    seq: u64,
    block: Block,
    len: usize,
}

enum Out<W: Write> {
    Binary(W),
    Armored(ArmoredWriter<W>),
}

impl<W: Write> Write for Out<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Out::Binary(w) => w.write(buf),
            Out::Armored(w) => w.write(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Out::Binary(w) => w.write_all(buf),
            Out::Armored(w) => w.write_all(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Out::Binary(w) => w.flush(),
            Out::Armored(w) => w.flush(),
        }
    }
}

/// An age encryptor that is also a `Write`.
pub struct Sealer<W: Write> {
    out: Option<Out<W>>,
    current: Block,
    free: Vec<Block>,
    next_seq: u64,
    next_counter: u64,
    next_write: u64,
    jobs: Option<mpsc::Sender<Job>>,
    done: mpsc::Receiver<Done>,
    waiting: BTreeMap<u64, Done>,
    workers: Vec<JoinHandle<()>>,
    stats: SealStats,
    failed: bool,
    /// Kept for [`Sealer::finish_with_key`]: verifying the written file.
    file_key: Option<FileKey>,
}

impl<W: Write> Sealer<W> {
    /// Writes the age header to `out` and starts the workers.
    pub fn new(out: W, recipients: &[Recipient], armor: bool) -> Result<Sealer<W>, SealError> {
        let (header, key, file_key) = build_header(recipients)?;
        Sealer::start(out, header, key, file_key, armor)
    }

    /// Writes `header` (which ends with the payload nonce) and starts the
    /// workers that seal the payload under `key`, derived from `file_key`.
    pub(crate) fn start(
        out: W,
        header: Vec<u8>,
        key: LessSafeKey,
        file_key: FileKey,
        armor: bool,
    ) -> Result<Sealer<W>, SealError> {
        let mut out = if armor {
            Out::Armored(ArmoredWriter::wrap_output(out, Format::AsciiArmor).map_err(SealError::Output)?)
        } else {
            Out::Binary(out)
        };
        out.write_all(&header).map_err(SealError::Output)?;
        let key = Arc::new(key);
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let n = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
        let workers = (0..n)
            .map(|i| {
                let (rx, tx, key) = (job_rx.clone(), done_tx.clone(), key.clone());
                std::thread::Builder::new()
                    .name(format!("seal-{i}"))
                    .spawn(move || worker(&rx, &tx, &key))
                    .map_err(SealError::Resources)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Sealer {
            out: Some(out),
            current: Block::new().map_err(SealError::Resources)?,
            free: Vec::new(),
            next_seq: 0,
            next_counter: 0,
            next_write: 0,
            jobs: Some(job_tx),
            done: done_rx,
            waiting: BTreeMap::new(),
            workers,
            stats: SealStats { plaintext: 0, ciphertext: header.len() as u64 },
            failed: false,
            file_key: Some(file_key),
        })
    }

    /// Reads once from `input` straight into the free chunk slots of the block
    /// being filled: one vectored read of up to a whole block, no intermediate
    /// copy. Each newly filled piece goes to `observe`. Returns the number of
    /// bytes read, 0 at the end of the input.
    pub fn read_from(
        &mut self,
        input: &mut dyn Read,
        name: &str,
        observe: &mut dyn FnMut(&[u8]) -> Result<(), SealError>,
    ) -> Result<usize, SealError> {
        // A full block is only dispatched once data proves it is not the last:
        // read into the next block first.
        let into_next = self.current.is_full();
        let mut next = if into_next {
            Some(match self.free.pop() {
                Some(b) => b,
                None => Block::new().map_err(SealError::Resources)?,
            })
        } else {
            None
        };
        let block = next.as_mut().unwrap_or(&mut self.current);
        let start = block.filled;
        let n = loop {
            let mut slots = block.free_slots();
            match input.read_vectored(&mut slots) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(SealError::Read { input: name.to_string(), source: e }),
                Ok(n) => break n,
            }
        };
        block.filled += n;
        for piece in block.pieces(start, start + n) {
            observe(piece)?;
        }
        self.stats.plaintext += n as u64;
        if let Some(next) = next {
            if n == 0 {
                self.free.push(next);
            } else {
                let full = std::mem::replace(&mut self.current, next);
                self.dispatch(full, false).map_err(SealError::Output)?;
            }
        }
        Ok(n)
    }

    /// Encrypts the final chunk, writes everything out and returns the output.
    pub fn finish(self) -> Result<(W, SealStats), SealError> {
        self.finish_with_key().map(|(w, stats, _)| (w, stats))
    }

    /// [`Sealer::finish`], also handing back the file key, with which the
    /// written file can be read back and verified without any identity.
    pub fn finish_with_key(mut self) -> Result<(W, SealStats, FileKey), SealError> {
        if self.failed {
            return Err(SealError::Output(io::Error::other("output failed earlier")));
        }
        let last = std::mem::replace(&mut self.current, Block { buf: Vec::new(), filled: 0 });
        self.dispatch(last, true).map_err(SealError::Output)?;
        while self.next_write < self.next_seq {
            self.collect_one().map_err(SealError::Output)?;
        }
        self.stop_workers();
        let out = match self.out.take() {
            Some(Out::Binary(mut w)) => {
                w.flush().map_err(SealError::Output)?;
                w
            }
            Some(Out::Armored(w)) => {
                let mut w = w.finish().map_err(SealError::Output)?;
                w.flush().map_err(SealError::Output)?;
                w
            }
            None => return Err(SealError::Output(io::Error::other("sealer already finished"))),
        };
        let key = self.file_key.take().ok_or_else(|| SealError::Output(io::Error::other("sealer already finished")))?;
        Ok((out, self.stats, key))
    }

    fn dispatch(&mut self, block: Block, last: bool) -> io::Result<()> {
        while self.next_seq - self.next_write >= MAX_IN_FLIGHT {
            self.collect_one()?;
        }
        let chunks = block.filled.div_ceil(CHUNK).max(1) as u64;
        let job = Job { seq: self.next_seq, counter: self.next_counter, last, block };
        self.jobs
            .as_ref()
            .and_then(|tx| tx.send(job).ok())
            .ok_or_else(|| io::Error::other("encryption worker stopped"))?;
        self.next_seq += 1;
        self.next_counter += chunks;
        Ok(())
    }

    /// Waits for one encrypted block and writes out whatever is now in order.
    fn collect_one(&mut self) -> io::Result<()> {
        let d = self.done.recv().map_err(|_| io::Error::other("encryption worker stopped"))?;
        self.waiting.insert(d.seq, d);
        while let Some(d) = self.waiting.remove(&self.next_write) {
            let out = self.out.as_mut().ok_or_else(|| io::Error::other("sealer already finished"))?;
            if let Err(e) = out.write_all(&d.block.buf[..d.len]) {
                self.failed = true;
                return Err(e);
            }
            self.stats.ciphertext += d.len as u64;
            self.next_write += 1;
            let mut b = d.block;
            b.filled = 0;
            self.free.push(b);
        }
        Ok(())
    }

    fn stop_workers(&mut self) {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl<W: Write> Write for Sealer<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other("output failed earlier"));
        }
        if data.is_empty() {
            return Ok(0);
        }
        if self.current.is_full() {
            let next = match self.free.pop() {
                Some(b) => b,
                None => Block::new()?,
            };
            let full = std::mem::replace(&mut self.current, next);
            self.dispatch(full, false)?;
        }
        let space = self.current.space();
        let n = space.len().min(data.len());
        space[..n].copy_from_slice(&data[..n]);
        self.current.filled += n;
        self.stats.plaintext += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for Sealer<W> {
    fn drop(&mut self) {
        // Without finish(): the final chunk is never written.
        self.stop_workers();
    }
}

fn worker(jobs: &Mutex<mpsc::Receiver<Job>>, done: &mpsc::Sender<Done>, key: &LessSafeKey) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(mut job) = job else { return };
        let len = job.block.seal(key, job.counter, job.last);
        if done.send(Done { seq: job.seq, block: job.block, len }).is_err() {
            return;
        }
    }
}

/// The age v1 header (stanzas, MAC) followed by the payload nonce, the
/// payload key, and the fresh file key both derive from.
fn build_header(recipients: &[Recipient]) -> Result<(Vec<u8>, LessSafeKey, FileKey), SealError> {
    let rng = SystemRandom::new();
    let file_key = FileKey::try_init_with_mut(|k| rng.fill(k)).map_err(|_| SealError::Random)?;
    let mut stanzas = Vec::new();
    let mut labels = None;
    for r in recipients {
        let (s, l) = age::Recipient::wrap_file_key(r, &file_key).map_err(|e| SealError::Wrap(e.to_string()))?;
        match &labels {
            None => labels = Some(l),
            Some(first) if labels_mix(first, &l) => {}
            Some(first) if is_post_quantum(first) || is_post_quantum(&l) => {
                return Err(SealError::Wrap(
                    "post-quantum and classic recipients cannot be mixed in one file (a plugin said which it is)"
                        .into(),
                ))
            }
            Some(_) => return Err(SealError::Wrap("these recipients cannot be mixed in one file".into())),
        }
        stanzas.extend(s);
    }
    if stanzas.is_empty() {
        return Err(SealError::Wrap("no recipients".into()));
    }
    let mut h = encode_header(&stanzas, &file_key);
    let mut nonce = [0u8; NONCE];
    rng.fill(&mut nonce).map_err(|_| SealError::Random)?;
    h.extend_from_slice(&nonce);
    let key = payload_key(&file_key, &nonce);
    Ok((h, key, file_key))
}

/// How [`seal_stream`] treats its input.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamOptions {
    pub armor: bool,
    /// Seal whatever comes, without the SQLite length check.
    pub raw: bool,
    pub allow_empty: bool,
}

/// Seals all of `input` into `out`. Input that starts like a SQLite database
/// must be complete (page size × page count), unless `raw`; otherwise the
/// final chunk is withheld and nothing is returned to commit.
pub fn seal_stream<W: Write>(
    input: &mut dyn Read,
    name: &str,
    out: W,
    recipients: &[Recipient],
    opts: StreamOptions,
    run: &Run,
) -> Result<(W, SealStats), SealError> {
    let incomplete = |why| SealError::Incomplete { input: name.to_string(), why };
    // Look before writing anything: empty input must leave no output at all.
    let mut first = vec![0u8; 4096];
    let n = loop {
        match input.read(&mut first) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SealError::Read { input: name.to_string(), source: e }),
            Ok(n) => break n,
        }
    };
    if n == 0 && !opts.allow_empty {
        return Err(SealError::EmptyInput { input: name.to_string() });
    }
    let mut check = (!opts.raw).then(LengthCheck::new);
    let mut sealer = Sealer::new(out, recipients, opts.armor)?;
    run.progress.phase("encrypt", None);
    let observe = |check: &mut Option<LengthCheck>, bytes: &[u8]| match check {
        Some(c) => c.observe(bytes).map_err(incomplete),
        None => Ok(()),
    };
    observe(&mut check, &first[..n])?;
    sealer.write_all(&first[..n]).map_err(SealError::Output)?;
    run.progress.add(n as u64);
    if n > 0 {
        loop {
            run.check().map_err(SealError::Stop)?;
            let got = sealer.read_from(input, name, &mut |piece| observe(&mut check, piece))?;
            if got == 0 {
                break;
            }
            run.progress.add(got as u64);
        }
    }
    if let Some(c) = &check {
        c.finish().map_err(incomplete)?;
    }
    run.check().map_err(SealError::Stop)?;
    sealer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn key() -> (age::x25519::Identity, Vec<Recipient>) {
        let id = age::x25519::Identity::generate();
        let r = Recipient::new(Box::new(id.to_public()), crate::age::recipients::Kind::X25519);
        (id, vec![r])
    }

    fn decrypt(id: &age::x25519::Identity, data: &[u8]) -> io::Result<Vec<u8>> {
        let d = age::Decryptor::new(data).map_err(io::Error::other)?;
        let mut r = d.decrypt(std::iter::once(id as &dyn age::Identity)).map_err(io::Error::other)?;
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn round_trips_every_size_around_chunk_and_block_edges() {
        let (id, rs) = key();
        for len in
            [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, BLOCK_PLAIN - 1, BLOCK_PLAIN, BLOCK_PLAIN + 1, 3 * BLOCK_PLAIN + 77]
        {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
            let mut s = Sealer::new(Vec::new(), &rs, false).unwrap();
            for piece in data.chunks(10_000) {
                s.write_all(piece).unwrap();
            }
            let (out, stats) = s.finish().unwrap();
            assert_eq!(stats.ciphertext, out.len() as u64);
            assert_eq!(decrypt(&id, &out).unwrap(), data, "len {len}");
        }
    }

    #[test]
    fn read_from_never_ends_with_an_empty_chunk() {
        let (id, rs) = key();
        let data = vec![5u8; BLOCK_PLAIN * 2];
        let mut input = &data[..];
        let opts = StreamOptions { raw: true, ..Default::default() };
        let (out, _) = seal_stream(&mut input, "input", Vec::new(), &rs, opts, &Run::manual().unwrap()).unwrap();
        assert_eq!(decrypt(&id, &out).unwrap(), data);
    }

    #[test]
    fn vectored_reads_across_chunk_gaps_see_every_byte_once() {
        let (id, rs) = key();
        // A "database" of 641 pages of 4 KiB: 2.5 MiB, spanning blocks and chunks.
        let pages = 641u32;
        let mut db: Vec<u8> = (0..pages as usize * 4096).map(|i| (i * 31 % 251) as u8).collect();
        db[..16].copy_from_slice(crate::sqlite::header::MAGIC);
        db[16..18].copy_from_slice(&4096u16.to_be_bytes());
        db[24..28].copy_from_slice(&3u32.to_be_bytes());
        db[28..32].copy_from_slice(&pages.to_be_bytes());
        db[92..96].copy_from_slice(&3u32.to_be_bytes());
        let run = Run::manual().unwrap();
        let (out, stats) = seal_stream(&mut &db[..], "input", Vec::new(), &rs, StreamOptions::default(), &run).unwrap();
        assert_eq!(stats.plaintext, db.len() as u64);
        assert_eq!(decrypt(&id, &out).unwrap(), db);
    }

    #[test]
    fn dropping_without_finish_leaves_a_truncated_file() {
        let (id, rs) = key();
        let mut s = Sealer::new(Vec::new(), &rs, false).unwrap();
        s.write_all(&vec![1u8; BLOCK_PLAIN * 2 + 5]).unwrap();
        // Collect what was written so far by finishing a clone of the process: simulate by
        // forcing everything dispatched except the final block.
        while s.next_write < s.next_seq {
            s.collect_one().unwrap();
        }
        let partial = match s.out.as_ref() {
            Some(Out::Binary(v)) => v.clone(),
            _ => unreachable!(),
        };
        drop(s);
        assert!(!partial.is_empty());
        assert!(decrypt(&id, &partial).is_err(), "no final chunk: must not decrypt cleanly");
    }

    #[test]
    fn truncated_sqlite_input_is_refused_and_empty_needs_allow_empty() {
        let (_, rs) = key();
        let mut db = vec![0u8; 100];
        db[..16].copy_from_slice(crate::sqlite::header::MAGIC);
        db[16..18].copy_from_slice(&512u16.to_be_bytes());
        db[24..28].copy_from_slice(&1u32.to_be_bytes());
        db[28..32].copy_from_slice(&4u32.to_be_bytes());
        db[92..96].copy_from_slice(&1u32.to_be_bytes());
        db.resize(512 * 3, 0);
        let run = Run::manual().unwrap();
        let r = seal_stream(&mut &db[..], "in", Vec::new(), &rs, StreamOptions::default(), &run);
        assert!(matches!(
            r,
            Err(SealError::Incomplete { why: LengthError::Truncated { expected: 2048, got: 1536 }, .. })
        ));
        let raw = StreamOptions { raw: true, ..Default::default() };
        assert!(seal_stream(&mut &db[..], "in", Vec::new(), &rs, raw, &run).is_ok());
        let r = seal_stream(&mut &b""[..], "in", Vec::new(), &rs, StreamOptions::default(), &run);
        assert!(matches!(r, Err(SealError::EmptyInput { .. })));
        let empty_ok = StreamOptions { allow_empty: true, ..Default::default() };
        assert!(seal_stream(&mut &b""[..], "in", Vec::new(), &rs, empty_ok, &run).is_ok());
    }

    #[test]
    fn armored_output_decrypts() {
        let (id, rs) = key();
        let mut s = Sealer::new(Vec::new(), &rs, true).unwrap();
        s.write_all(b"hello armor").unwrap();
        let (out, _) = s.finish().unwrap();
        assert!(out.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"));
        let d = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(&out[..])).unwrap();
        let mut r = d.decrypt(std::iter::once(&id as &dyn age::Identity)).unwrap();
        let mut back = Vec::new();
        r.read_to_end(&mut back).unwrap();
        assert_eq!(back, b"hello armor");
        let _ =
            age::x25519::Recipient::from_str("age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p").unwrap();
    }
}
