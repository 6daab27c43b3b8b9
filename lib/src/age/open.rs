//! Reading an age v1 file back, telling exactly what is wrong with a bad one.
//!
//! The `age` crate's decryptor says "decryption failed" for a cut file and a
//! changed one alike. Here the header is read by hand and its stanzas parsed
//! once with the age crates' own grammar ([`format::read_header`]), then
//! authenticated (the crate's identities still unwrap the file key, so every
//! identity type it supports works), and the STREAM payload is opened chunk by chunk with
//! `ring`, so that a failure can be placed: inside the header, at a chunk
//! boundary, mid-chunk, in chunk N, after the final chunk.
//!
//! Where the cryptography alone cannot tell a cut from a change (the last
//! piece of the file does not authenticate), the expected length helps: the
//! caller may learn it from the authenticated first chunk
//! ([`Payload::expect_plaintext`]), e.g. a SQLite header's page size × count.

use std::fmt;
use std::io::{self, BufRead, Read};

pub use age_core::format::FileKey;
use age_core::format::Stanza;
use ring::aead::{Aad, LessSafeKey, Tag};
use ring::hmac;

use super::format::{self, chunk_nonce, header_mac_key, payload_key, ParseError, CHUNK, ENC_CHUNK, NONCE, TAG};
use super::identity::Identity;
use crate::stop::{io_cause, Failure, Hint, Stop};

/// What is wrong with an age file. The messages say what the file is, not
/// where it is: the caller prefixes the path.
#[derive(Debug)]
pub enum OpenError {
    /// The header's text is wrong: empty, not age, another version, cut, malformed.
    Header(ParseError),
    Passphrase,
    /// No identity unwrapped the file key; the stanza types found.
    NoIdentity(Vec<String>),
    /// An identity recognised its stanza but could not use it.
    Stanza(String),
    /// A plugin asked its user for something (a PIN, a touch), and there is no terminal.
    PluginInput {
        what: String,
    },
    HeaderMac,
    /// The file ends inside the 16-byte nonce, or right after it.
    NoPayload {
        within_nonce: bool,
    },
    /// Every chunk there authenticates, but the final one is missing.
    ChunkBoundary {
        chunks: u64,
        bytes: u64,
    },
    MidChunk {
        got: u64,
        expected: Option<u64>,
    },
    Altered {
        chunk: u64,
        from: u64,
        to: u64,
    },
    /// The last piece fails and nothing tells whether it was cut or changed.
    LastChunk {
        chunk: u64,
    },
    Trailing,
    EmptyLastChunk,
    /// ASCII armor that does not decode: cut short (no END line) or changed.
    Armor(String),
    Read(io::Error),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use OpenError::*;
        match self {
            Header(e) => e.fmt(f),
            Passphrase => f.write_str("encrypted with a passphrase (scrypt), not to recipients"),
            NoIdentity(types) => write!(
                f,
                "no identity given opens it: it is encrypted to other recipients ({}), or its header was altered",
                types.join(", ")
            ),
            Stanza(e) => write!(f, "age header: {e}"),
            PluginInput { what } => {
                write!(f, "the identity's plugin asked for {what:?}, which cannot be answered without a terminal")
            }
            HeaderMac => f.write_str("altered: the age header does not match its MAC"),
            NoPayload { .. } => f.write_str("truncated right after the age header: no payload"),
            ChunkBoundary { chunks, bytes } => write!(
                f,
                "truncated at a chunk boundary: {chunks} chunk(s) ({bytes} bytes of payload) authenticate, \
                 but the final chunk is missing"
            ),
            MidChunk { got, expected: Some(e) } => {
                write!(f, "truncated mid-chunk: {got} of {e} bytes of payload")
            }
            MidChunk { got, expected: None } => write!(f, "truncated mid-chunk after {got} bytes of payload"),
            Altered { chunk, from, to } => {
                write!(f, "altered: payload chunk {chunk} (bytes {from}-{to} of the payload) fails authentication")
            }
            LastChunk { chunk } => write!(
                f,
                "truncated or altered: the last payload chunk ({chunk}) fails authentication \
                 (the file was cut mid-chunk, or changed)"
            ),
            Trailing => f.write_str("altered: data after the final chunk"),
            EmptyLastChunk => f.write_str("malformed: an empty final chunk, which age refuses"),
            Armor(e) => write!(f, "truncated or altered ASCII armor ({e})"),
            Read(e) => write!(f, "read: {}", io_cause(e)),
        }
    }
}

impl std::error::Error for OpenError {}

impl Failure for OpenError {
    fn hint(&self) -> Option<Hint> {
        use OpenError::*;
        match self {
            NoIdentity(_) => {
                Some("pass the identity the backup was encrypted to (age-keygen -y KEYFILE shows its recipient)".into())
            }
            Passphrase => Some("decrypt it with age -d; wm-verify checks files encrypted to recipients".into()),
            PluginInput { .. } => {
                Some("use an identity its plugin opens without asking, or restore with age -d, which can ask".into())
            }
            Header(ParseError::Truncated) | NoPayload { .. } | ChunkBoundary { .. } | MidChunk { .. } => {
                Some("the copy is incomplete: copy it again, or take a new backup".into())
            }
            HeaderMac | Altered { .. } | Trailing | Header(ParseError::Malformed(_)) => {
                Some("the file changed after it was written: restore from another copy".into())
            }
            LastChunk { .. } | Armor(_) => {
                Some("copy it again from where it came, or restore from another copy".into())
            }
            _ => None,
        }
    }

    fn stop(&self) -> Option<Stop> {
        match self {
            OpenError::Read(e) => Stop::from_io(e),
            _ => None,
        }
    }
}

impl OpenError {
    /// A read failure: the armor decoder's complaints about the text (not an
    /// I/O error of the system) are a damaged file.
    fn read(e: io::Error) -> OpenError {
        if e.kind() == io::ErrorKind::InvalidData && e.raw_os_error().is_none() {
            return OpenError::Armor(e.to_string());
        }
        OpenError::Read(e)
    }

    fn header(e: format::ReadError) -> OpenError {
        match e {
            format::ReadError::Io(io) => OpenError::read(io),
            format::ReadError::Parse(p) => OpenError::Header(p),
        }
    }
}

/// What opens the file: identities, or the file key itself (a file this
/// process just wrote).
#[derive(Clone, Copy)]
pub enum Key<'a> {
    Identities(&'a [Identity]),
    FileKey(&'a FileKey),
}

/// What the header said.
#[derive(Debug, Clone, Default)]
pub struct HeaderInfo {
    /// Stanza types, in order ("X25519", "ssh-ed25519", …).
    pub stanzas: Vec<String>,
    /// "X25519 identity from key.txt", or "the file key" for [`Key::FileKey`].
    pub opened_by: String,
    /// Header plus nonce, in bytes of the (de-armored) file.
    pub header_len: u64,
    pub armored: bool,
}

/// Reads the header from `input` (binary or ASCII-armored), authenticates it
/// with `key`, and returns the payload reader.
pub fn open<'r>(input: Box<dyn BufRead + 'r>, key: Key<'_>) -> Result<(HeaderInfo, Payload<'r>), OpenError> {
    let (armored, input) = format::sniff_armor(input).map_err(OpenError::read)?;
    let mut input: Box<dyn BufRead + 'r> =
        if armored { Box::new(io::BufReader::new(format::Dearmor::new(input))) } else { input };
    let header = format::read_header(&mut input).map_err(OpenError::header)?;
    let types: Vec<String> = header.stanzas.iter().map(|s| s.tag.clone()).collect();
    if types.iter().any(|t| t == "scrypt") {
        if types.len() > 1 {
            return Err(OpenError::Header(ParseError::Malformed("a passphrase stanza must be the only one")));
        }
        if matches!(key, Key::Identities(_)) {
            return Err(OpenError::Passphrase);
        }
    }
    let (file_key, opened_by) = unwrap(&header.stanzas, &types, key)?;
    hmac::verify(&header_mac_key(&file_key), header.authenticated(), &header.mac).map_err(|_| OpenError::HeaderMac)?;
    let mut nonce = [0u8; NONCE];
    let got = fill(&mut input, &mut nonce)?;
    if got < NONCE {
        return Err(OpenError::NoPayload { within_nonce: true });
    }
    let info = HeaderInfo { stanzas: types, opened_by, header_len: (header.bytes.len() + NONCE) as u64, armored };
    Ok((info, Payload::new(input, payload_key(&file_key, &nonce))))
}

fn unwrap(stanzas: &[Stanza], types: &[String], key: Key<'_>) -> Result<(FileKey, String), OpenError> {
    let ids = match key {
        Key::FileKey(k) => {
            use age::secrecy::ExposeSecret;
            return Ok((FileKey::new(Box::new(*k.expose_secret())), "the file key".into()));
        }
        Key::Identities(ids) => ids,
    };
    // As age does: native identities (X25519, post-quantum) first, then SSH
    // and plugin ones, each group in the order given; the first identity that
    // fails on a stanza (malformed, or a plugin that could not finish) ends
    // the search.
    let ordered = ids.iter().filter(|id| id.is_native()).chain(ids.iter().filter(|id| !id.is_native()));
    for id in ordered {
        match unwrap_with(id, stanzas) {
            Some(Ok(k)) => return Ok((k, format!("{} identity from {}", id.kind, id.file.display()))),
            Some(Err(e)) => {
                return Err(match (&id.asked, id.refusal()) {
                    (Some(_), Some(what)) => OpenError::PluginInput { what },
                    (None, Some(why)) => OpenError::Stanza(why),
                    (_, None) => OpenError::Stanza(e.to_string()),
                })
            }
            None => {}
        }
    }
    let mut t = types.to_vec();
    t.dedup();
    Err(OpenError::NoIdentity(t))
}

/// What `id` makes of `stanzas`, as `unwrap_stanzas` says it: the first
/// stanza (in order) that it recognises decides. A native identity pays a key
/// agreement for every stanza of its type, and a hostile header within the
/// 1 MiB limit holds 10,700 X25519 stanzas: from 256 stanzas on, the two
/// halves are tried at once, on two threads, and the first half's answer, if
/// any, wins. SSH and plugin identities (which keep state) run alone.
fn unwrap_with(id: &Identity, stanzas: &[Stanza]) -> Option<Result<FileKey, age::DecryptError>> {
    const TWO_THREADS_FROM: usize = 256;
    if !id.is_native() || stanzas.len() < TWO_THREADS_FROM || one_thread() {
        return id.key.unwrap_stanzas(stanzas);
    }
    let (first, second) = stanzas.split_at(stanzas.len() / 2);
    std::thread::scope(|s| {
        let later = std::thread::Builder::new().spawn_scoped(s, || id.key.unwrap_stanzas(second));
        let Ok(later) = later else {
            // No thread to be had: one after the other, as age does.
            return id.key.unwrap_stanzas(stanzas);
        };
        let got = id.key.unwrap_stanzas(first);
        let rest = later.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        got.or(rest)
    })
}

#[cfg(test)]
thread_local! {
    /// Tests that count the CPU time of the work on one thread set this.
    pub(crate) static ONE_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn one_thread() -> bool {
    #[cfg(test)]
    return ONE_THREAD.with(|c| c.get());
    #[cfg(not(test))]
    false
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn fill(input: &mut dyn Read, buf: &mut [u8]) -> Result<usize, OpenError> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(OpenError::read(e)),
        }
    }
    Ok(n)
}

/// The STREAM payload, opened one 64 KiB chunk at a time.
pub struct Payload<'r> {
    input: Box<dyn BufRead + 'r>,
    key: LessSafeKey,
    /// One encrypted chunk plus one byte of look-ahead: whether more follows
    /// decides which nonce (last or not) the chunk must authenticate under.
    buf: Vec<u8>,
    have: usize,
    chunk: u64,
    /// Payload bytes consumed (ciphertext, after the nonce).
    consumed: u64,
    done: bool,
    expected: Option<u64>,
    /// A chunk failed in [`Payload::next_many_into`]: one at a time from here.
    serial: bool,
}

/// Opens the whole chunks of `enc` (chunk numbers from `first`, none the
/// last) into `out`, split over up to four threads; false when any fails.
fn open_middle_chunks(key: &LessSafeKey, enc: &[u8], first: u64, out: &mut [u8]) -> bool {
    let chunks = enc.len() / ENC_CHUNK;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4).min(chunks);
    let per = chunks.div_ceil(threads);
    let open = |enc: &[u8], first: u64, out: &mut [u8]| {
        enc.chunks(ENC_CHUNK).zip(out.chunks_mut(CHUNK)).enumerate().all(|(i, (c, o))| {
            let Ok(tag) = Tag::try_from(&c[CHUNK..]) else { return false };
            o.copy_from_slice(&c[..CHUNK]);
            let nonce = chunk_nonce(first + i as u64, false);
            key.open_in_place_separate_tag(nonce, Aad::empty(), tag, o, 0..).is_ok()
        })
    };
    std::thread::scope(|s| {
        let mut parts = enc.chunks(per * ENC_CHUNK).zip(out.chunks_mut(per * CHUNK)).enumerate();
        let Some((_, (mine, my_out))) = parts.next() else { return true };
        let helpers: Vec<_> = parts.map(|(p, (e, o))| s.spawn(move || open(e, first + (p * per) as u64, o))).collect();
        let ok = open(mine, first, my_out);
        helpers.into_iter().fold(ok, |all, h| h.join().unwrap_or(false) && all)
    })
}

impl<'r> Payload<'r> {
    fn new(input: Box<dyn BufRead + 'r>, key: LessSafeKey) -> Payload<'r> {
        Payload {
            input,
            key,
            buf: vec![0u8; ENC_CHUNK + 1],
            have: 0,
            chunk: 0,
            consumed: 0,
            done: false,
            expected: None,
            serial: false,
        }
    }

    /// The plaintext is expected to be `len` bytes: a failing last piece is
    /// then called truncated when short of it, altered when not.
    pub fn expect_plaintext(&mut self, len: u64) {
        let chunks = len.div_ceil(CHUNK as u64).max(1);
        self.expected = Some(len + chunks * TAG as u64);
    }

    /// Payload bytes read so far (ciphertext).
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Decrypts the next chunk into `out` (at least 64 KiB) and returns its
    /// length; `None` once the final chunk has been returned.
    pub fn next_into(&mut self, out: &mut [u8]) -> Result<Option<usize>, OpenError> {
        if self.done {
            return Ok(None);
        }
        if self.have <= ENC_CHUNK {
            self.have += fill(&mut self.input, &mut self.buf[self.have..=ENC_CHUNK])?;
        }
        let at_eof = self.have <= ENC_CHUNK;
        let len = self.have.min(ENC_CHUNK);
        let (i, start) = (self.chunk, self.consumed);
        if len == 0 {
            return Err(OpenError::NoPayload { within_nonce: false });
        }
        if len < TAG {
            return Err(OpenError::MidChunk { got: start + len as u64, expected: self.expected });
        }
        let n = if !at_eof {
            match self.open(len, false, out) {
                Some(n) => n,
                None if self.open(len, true, out).is_some() => return Err(OpenError::Trailing),
                None => return Err(self.failure(len, false, out)),
            }
        } else if let Some(n) = self.open(len, true, out) {
            if n == 0 && i > 0 {
                return Err(OpenError::EmptyLastChunk);
            }
            self.done = true;
            n
        } else if len == ENC_CHUNK && self.open(len, false, out).is_some() {
            return Err(OpenError::ChunkBoundary { chunks: i + 1, bytes: start + len as u64 });
        } else {
            return Err(self.failure(len, true, out));
        };
        self.buf.copy_within(len..self.have, 0);
        self.have -= len;
        self.chunk += 1;
        self.consumed += len as u64;
        Ok(Some(n))
    }

    /// Decrypts as many chunks as fit in `out` at once, on up to four
    /// threads, when more of the payload follows them (none of them can be
    /// the last chunk, so each must authenticate as a middle one); returns
    /// the plaintext's length, always whole chunks. Near the end, and from
    /// the first chunk that fails on, it is [`Payload::next_into`], one chunk
    /// at a time, so that every error is the same as there.
    pub fn next_many_into(&mut self, out: &mut [u8]) -> Result<Option<usize>, OpenError> {
        let most = out.len() / CHUNK;
        if self.done || self.serial || most < 2 {
            return self.next_into(out);
        }
        let want = most * ENC_CHUNK + 1;
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        if self.have < want {
            self.have += fill(&mut self.input, &mut self.buf[self.have..want])?;
        }
        // Chunks with at least one byte after them.
        let k = self.have.saturating_sub(1) / ENC_CHUNK;
        if k == 0 {
            return self.next_into(out);
        }
        if !open_middle_chunks(&self.key, &self.buf[..k * ENC_CHUNK], self.chunk, &mut out[..k * CHUNK]) {
            self.serial = true;
            return self.next_into(out);
        }
        self.buf.copy_within(k * ENC_CHUNK..self.have, 0);
        self.have -= k * ENC_CHUNK;
        self.chunk += k as u64;
        self.consumed += (k * ENC_CHUNK) as u64;
        Ok(Some(k * CHUNK))
    }

    /// Opens `buf[..len]` as chunk `self.chunk` into `out`, leaving the
    /// ciphertext intact for another try.
    fn open(&self, len: usize, last: bool, out: &mut [u8]) -> Option<usize> {
        let n = len - TAG;
        let tag = Tag::try_from(&self.buf[n..len]).ok()?;
        out[..n].copy_from_slice(&self.buf[..n]);
        let nonce = chunk_nonce(self.chunk, last);
        self.key.open_in_place_separate_tag(nonce, Aad::empty(), tag, &mut out[..n], 0..).ok().map(|p| p.len())
    }

    fn altered(&self, len: usize) -> OpenError {
        OpenError::Altered { chunk: self.chunk, from: self.consumed, to: self.consumed + len as u64 }
    }

    /// The piece `buf[..len]` authenticates under neither nonce: cut short,
    /// changed, or followed by extra bytes. The expected length, when known,
    /// says which; a full-size piece cannot be a cut one.
    fn failure(&self, len: usize, at_eof: bool, out: &mut [u8]) -> OpenError {
        let end = self.consumed + len as u64;
        match self.expected {
            Some(e) => {
                let want = e.saturating_sub(self.consumed);
                if e < end && want >= TAG as u64 && self.open(want as usize, true, out).is_some() {
                    OpenError::Trailing
                } else if at_eof && end < e {
                    OpenError::MidChunk { got: end, expected: Some(e) }
                } else {
                    self.altered(len)
                }
            }
            None if at_eof && len < ENC_CHUNK => OpenError::LastChunk { chunk: self.chunk },
            None => self.altered(len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::age::recipients::{Kind, Recipient};
    use crate::age::seal::Sealer;
    use std::io::Write;

    fn sealed(len: usize) -> (Vec<Identity>, Vec<u8>, Vec<u8>) {
        let id = age::x25519::Identity::generate();
        let r = Recipient::new(Box::new(id.to_public()), Kind::X25519);
        let data: Vec<u8> = (0..len).map(|i| (i * 13 % 251) as u8).collect();
        let mut s = Sealer::new(Vec::new(), &[r], false).unwrap();
        s.write_all(&data).unwrap();
        let (out, _) = s.finish().unwrap();
        let ids = vec![Identity::new(Box::new(id), "X25519", "k".into())];
        (ids, out, data)
    }

    fn read_all(ids: &[Identity], file: &[u8], expect: Option<u64>) -> Result<Vec<u8>, OpenError> {
        let (_, mut p) = open(Box::new(file), Key::Identities(ids))?;
        let mut out = Vec::new();
        let mut chunk = vec![0u8; CHUNK];
        let mut first = true;
        while let Some(n) = p.next_into(&mut chunk)? {
            if first {
                if let Some(e) = expect {
                    p.expect_plaintext(e);
                }
                first = false;
            }
            out.extend_from_slice(&chunk[..n]);
        }
        Ok(out)
    }

    fn payload_start(file: &[u8]) -> usize {
        let at = file.windows(5).position(|w| w == b"\n--- ").unwrap() + 1;
        at + file[at..].iter().position(|&b| b == b'\n').unwrap() + 1 + NONCE
    }

    #[test]
    fn reads_back_every_size() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK] {
            let (ids, file, data) = sealed(len);
            assert_eq!(read_all(&ids, &file, None).unwrap(), data, "len {len}");
        }
    }

    /// Several chunks at once ([`Payload::next_many_into`]) give what one
    /// at a time gives, byte for byte and error for error, on a payload of
    /// many chunks cut, altered, extended and reordered everywhere that
    /// matters, with and without the expected length.
    #[test]
    fn many_chunks_at_once_read_and_fail_as_one_at_a_time() {
        let (ids, file, data) = sealed(9 * CHUNK + 300);
        let p = payload_start(&file);
        let read = |bytes: &[u8], buf: usize, many: bool, expect: Option<u64>| {
            let (_, mut payload) = open(Box::new(bytes), Key::Identities(&ids))?;
            if let Some(e) = expect {
                payload.expect_plaintext(e);
            }
            let (mut out, mut chunk) = (Vec::new(), vec![0u8; buf]);
            loop {
                let got = if many { payload.next_many_into(&mut chunk)? } else { payload.next_into(&mut chunk)? };
                let Some(n) = got else { return Ok::<_, OpenError>(out) };
                out.extend_from_slice(&chunk[..n]);
            }
        };
        assert_eq!(read(&file, 4 * CHUNK, true, None).unwrap(), data);
        let mut variants: Vec<(String, Vec<u8>)> = Vec::new();
        for c in 0..=10 {
            let at = p + c * ENC_CHUNK;
            for d in [0, 1, 16, 17] {
                for n in [at.saturating_sub(d), at + d] {
                    if n < file.len() {
                        variants.push((format!("cut at {n}"), file[..n].to_vec()));
                    }
                }
            }
            for off in [0, 5, CHUNK, CHUNK + 15] {
                if at + off < file.len() {
                    let mut f = file.clone();
                    f[at + off] ^= 1;
                    variants.push((format!("flip chunk {c} at {off}"), f));
                }
            }
        }
        for extra in [1, TAG, ENC_CHUNK, ENC_CHUNK + 1] {
            let mut f = file.clone();
            f.extend(std::iter::repeat_n(7u8, extra));
            variants.push((format!("{extra} bytes after the end"), f));
        }
        let mut swapped = file.clone();
        let (a, b) = (p + 2 * ENC_CHUNK, p + 5 * ENC_CHUNK);
        let second = swapped[b..b + ENC_CHUNK].to_vec();
        swapped.copy_within(a..a + ENC_CHUNK, b);
        swapped[a..a + ENC_CHUNK].copy_from_slice(&second);
        variants.push(("chunks 2 and 5 swapped".into(), swapped));
        for (what, bytes) in &variants {
            for expect in [None, Some(data.len() as u64)] {
                let one = format!("{:?}", read(bytes, CHUNK, false, expect));
                for buf in [2 * CHUNK, 4 * CHUNK, 64 * CHUNK] {
                    let many = format!("{:?}", read(bytes, buf, true, expect));
                    assert_eq!(many, one, "{what}, {buf} bytes at once, expected {expect:?}");
                }
            }
        }
    }

    #[test]
    fn cuts_are_placed() {
        let (ids, file, _) = sealed(3 * CHUNK + 500);
        let p = payload_start(&file);
        let cut = |n: usize| read_all(&ids, &file[..n], None).err().unwrap();
        assert!(matches!(cut(0), OpenError::Header(ParseError::Empty)));
        assert!(matches!(cut(10), OpenError::Header(ParseError::Truncated)));
        assert!(matches!(cut(40), OpenError::Header(ParseError::Truncated)));
        assert!(matches!(cut(p - 3), OpenError::NoPayload { .. }));
        assert!(matches!(cut(p), OpenError::NoPayload { .. }));
        assert!(matches!(cut(p + ENC_CHUNK), OpenError::ChunkBoundary { chunks: 1, .. }));
        assert!(matches!(cut(p + 2 * ENC_CHUNK), OpenError::ChunkBoundary { chunks: 2, .. }));
        assert!(matches!(cut(p + ENC_CHUNK + 5), OpenError::MidChunk { .. }));
        assert!(matches!(cut(p + ENC_CHUNK + 100), OpenError::LastChunk { chunk: 1 }));
        let e = read_all(&ids, &file[..file.len() - 10], Some(3 * CHUNK as u64 + 500)).err().unwrap();
        assert!(matches!(e, OpenError::MidChunk { expected: Some(_), .. }), "{e}");
    }

    #[test]
    fn changes_are_placed() {
        let (ids, file, _) = sealed(3 * CHUNK + 500);
        let p = payload_start(&file);
        let flip = |at: usize| {
            let mut f = file.clone();
            f[at] ^= 1;
            read_all(&ids, &f, Some(3 * CHUNK as u64 + 500)).err().unwrap()
        };
        assert!(matches!(flip(p + ENC_CHUNK + 7), OpenError::Altered { chunk: 1, .. }));
        assert!(matches!(flip(file.len() - 1), OpenError::Altered { chunk: 3, .. }));
        assert!(matches!(flip(p - 1), OpenError::Altered { chunk: 0, .. }), "the nonce");
        assert!(matches!(flip(2), OpenError::Header(ParseError::NotAge)));
        let mac = file.windows(4).position(|w| w == b"--- ").unwrap() + 6;
        assert!(matches!(flip(mac), OpenError::HeaderMac | OpenError::Header(ParseError::Malformed(_))));
        let mut longer = file.clone();
        longer.extend_from_slice(&[7u8; 100]);
        let e = read_all(&ids, &longer, Some(3 * CHUNK as u64 + 500)).err().unwrap();
        assert!(matches!(e, OpenError::Trailing), "{e}");
    }

    #[test]
    fn wrong_identity_and_file_key() {
        let (_, file, data) = sealed(1000);
        let (other, _, _) = sealed(1);
        assert!(matches!(read_all(&other, &file, None).err().unwrap(), OpenError::NoIdentity(_)));
        let id = age::x25519::Identity::generate();
        let r = Recipient::new(Box::new(id.to_public()), Kind::X25519);
        let mut s = Sealer::new(Vec::new(), &[r], true).unwrap();
        s.write_all(&data).unwrap();
        let (out, _, key) = s.finish_with_key().unwrap();
        let (info, mut p) = open(Box::new(&out[..]), Key::FileKey(&key)).unwrap();
        assert!(info.armored);
        let mut chunk = vec![0u8; CHUNK];
        assert_eq!(p.next_into(&mut chunk).unwrap(), Some(1000));
        assert_eq!(&chunk[..1000], &data[..]);
        assert_eq!(p.next_into(&mut chunk).unwrap(), None);
    }

    /// A header of `n` X25519 stanzas for nobody, the real one at `real`, and
    /// a malformed one (two arguments) at `bad` if any; MAC'd with the file key.
    fn crowded(n: usize, real: usize, bad: Option<usize>) -> (Vec<Identity>, Vec<u8>) {
        use age::Recipient as _;
        let id = age::x25519::Identity::generate();
        let key = FileKey::new(Box::new([9; 16]));
        let (mut real_stanza, _) = id.to_public().wrap_file_key(&key).unwrap();
        let nobody = age::x25519::Identity::generate().to_public();
        let mut stanzas: Vec<Stanza> = (0..n).map(|_| nobody.wrap_file_key(&key).unwrap().0.remove(0)).collect();
        stanzas[real] = real_stanza.remove(0);
        if let Some(b) = bad {
            stanzas[b].args.push("extra".into());
        }
        let mut file = format::encode_header(&stanzas, &key);
        file.extend_from_slice(&[0; NONCE + 32]);
        (vec![Identity::new(Box::new(id), "X25519", "k".into())], file)
    }

    #[test]
    fn two_threads_answer_as_one_would_the_first_stanza_in_order_decides() {
        let opened =
            |(ids, file): (Vec<Identity>, Vec<u8>)| open(Box::new(&file[..]), Key::Identities(&ids)).map(|_| ());
        assert!(opened(crowded(400, 399, None)).is_ok(), "the real stanza last");
        assert!(opened(crowded(400, 3, Some(350))).is_ok(), "the real one before a malformed one");
        assert!(matches!(opened(crowded(400, 350, Some(3))), Err(OpenError::Stanza(_))), "a malformed one first");
        assert!(matches!(opened(crowded(400, 390, Some(250))), Err(OpenError::Stanza(_))), "both in the second half");
        ONE_THREAD.with(|c| c.set(true));
        assert!(matches!(opened(crowded(400, 350, Some(3))), Err(OpenError::Stanza(_))), "one thread agrees");
    }
}
