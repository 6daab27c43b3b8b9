//! The age v1 format, both directions: constants, key derivation, nonces,
//! and the header (version line, recipient stanzas, MAC). The writer
//! ([`super::seal`]) and the reader ([`super::open`]) share all of it.
//!
//! Spec: C2SP age (age-encryption.org/v1). The payload is the STREAM
//! construction: ChaCha20-Poly1305 over 64 KiB chunks, the nonce an 11-byte
//! big-endian chunk counter and a last-chunk flag.

use std::fmt;
use std::io::{BufRead, Read};

use age::secrecy::ExposeSecret;
use age_core::format::{FileKey, Stanza};
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine;
use ring::aead::{LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use ring::{hkdf, hmac};
use zeroize::Zeroizing;

/// What every age v1 file begins with.
pub const VERSION_LINE: &[u8] = b"age-encryption.org/v1\n";
/// The prefix of every age version line, whatever the version.
pub const MAGIC: &[u8] = b"age-encryption.org/";
pub const ARMOR_BEGIN: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";
/// Plaintext bytes per STREAM chunk.
pub const CHUNK: usize = 64 * 1024;
/// The Poly1305 tag after each chunk.
pub const TAG: usize = 16;
pub const ENC_CHUNK: usize = CHUNK + TAG;
/// The payload nonce between the header and the first chunk.
pub const NONCE: usize = 16;
/// A header bigger than this is not one age wrote (20 ssh-rsa recipients take 15 KB).
pub const MAX_HEADER: usize = 1 << 20;

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA-256 to 32 bytes, as age derives its header MAC and payload keys.
fn hkdf32(salt: &[u8], ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    hkdf::Salt::new(hkdf::HKDF_SHA256, salt)
        .extract(ikm)
        .expand(&[info], Len(out.len()))
        .and_then(|okm| okm.fill(&mut out[..]))
        .expect("HKDF-SHA-256 can always expand to 32 bytes");
    out
}

/// The key of the header MAC (HMAC-SHA-256 over everything up to and including `---`).
pub fn header_mac_key(file_key: &FileKey) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, &hkdf32(&[], file_key.expose_secret(), b"header")[..])
}

/// The payload key for the 16-byte `nonce` that follows the header.
pub fn payload_key(file_key: &FileKey, nonce: &[u8]) -> LessSafeKey {
    let key = hkdf32(nonce, file_key.expose_secret(), b"payload");
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &key[..]).expect("a 32-byte key suits ChaCha20-Poly1305"))
}

/// The STREAM nonce of chunk `counter`.
pub fn chunk_nonce(counter: u64, last: bool) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[3..11].copy_from_slice(&counter.to_be_bytes());
    nonce[11] = u8::from(last);
    Nonce::assume_unique_for_key(nonce)
}

/// The age v1 header for `stanzas`, ending with its MAC line.
pub fn encode_header(stanzas: &[Stanza], file_key: &FileKey) -> Vec<u8> {
    let mut h = encode_header_without_mac(stanzas);
    let mac = hmac::sign(&header_mac_key(file_key), &h);
    h.push(b' ');
    h.extend_from_slice(B64.encode(mac.as_ref()).as_bytes());
    h.push(b'\n');
    h
}

/// The header up to and including `---`: what the MAC covers.
pub fn encode_header_without_mac(stanzas: &[Stanza]) -> Vec<u8> {
    let mut h = VERSION_LINE.to_vec();
    for s in stanzas {
        h.extend_from_slice(b"->");
        for part in std::iter::once(&s.tag).chain(s.args.iter()) {
            h.push(b' ');
            h.extend_from_slice(part.as_bytes());
        }
        h.push(b'\n');
        let body = B64.encode(&s.body);
        // 64 columns; the last line is always short, empty if need be.
        let mut rest = body.as_bytes();
        while rest.len() >= 64 {
            h.extend_from_slice(&rest[..64]);
            h.push(b'\n');
            rest = &rest[64..];
        }
        h.extend_from_slice(rest);
        h.push(b'\n');
    }
    h.extend_from_slice(b"---");
    h
}

/// What is wrong with a header's text (before any key is tried).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    Empty,
    NotAge,
    Version(String),
    Truncated,
    Malformed(&'static str),
    TooLarge,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Empty => f.write_str("empty (0 bytes), not an age file"),
            ParseError::NotAge => f.write_str("not an age file (it does not begin with \"age-encryption.org/v1\")"),
            ParseError::Version(v) => write!(f, "unsupported age format version {v:?} (this reads v1)"),
            ParseError::Truncated => f.write_str("truncated inside the age header"),
            ParseError::Malformed(what) => write!(f, "malformed age header ({what}): altered, or not written by age"),
            ParseError::TooLarge => f.write_str("malformed age header (larger than 1 MiB)"),
        }
    }
}

/// A failure to read a header: the input's, or the text's.
#[derive(Debug)]
pub enum ReadError {
    Io(std::io::Error),
    Parse(ParseError),
}

impl From<ParseError> for ReadError {
    fn from(p: ParseError) -> ReadError {
        ReadError::Parse(p)
    }
}

/// A header as read and parsed: its bytes (through the MAC line), where the
/// `---` line starts, its stanzas and its MAC.
pub struct RawHeader {
    pub bytes: Vec<u8>,
    pub mac_at: usize,
    pub stanzas: Vec<Stanza>,
    pub mac: [u8; 32],
}

impl RawHeader {
    /// The bytes the MAC covers: everything up to and including `---`.
    pub fn authenticated(&self) -> &[u8] {
        &self.bytes[..self.mac_at + 3]
    }
}

/// Base64 as the header holds it: unpadded, canonical, and no line breaks.
fn decode_strict(s: &[u8]) -> Option<Vec<u8>> {
    if s.contains(&b'\n') || s.contains(&b'\r') {
        return None;
    }
    B64.decode(s).ok()
}

/// A stanza argument: non-empty, printable ASCII without spaces.
fn is_valid_arg(a: &[u8]) -> bool {
    !a.is_empty() && a.iter().all(|&c| (33..=126).contains(&c))
}

/// Reads and parses the header from `input`, up to and including the MAC
/// line, exactly as the reference implementation does: LF line ends only,
/// `->` stanzas with printable arguments, bodies in canonical unpadded base64
/// of at most 64 columns that end with a short line, and `--- ` followed by
/// a 32-byte MAC and nothing else.
///
/// The header is read line by line (never past its MAC line: the payload
/// follows) and then parsed once, as a whole, with the age crates' own
/// stanza grammar (`age_core`'s `age_stanza`): time and memory are linear
/// in its size, whatever its shape (the `age` crate's header reader
/// re-parses the whole header after every line, which is quadratic).
pub fn read_header(input: &mut dyn BufRead) -> Result<RawHeader, ReadError> {
    let mut bytes = Vec::new();
    let first = read_line(input, &mut bytes, VERSION_LINE.len()).map_err(ReadError::Io)?;
    if !first.ends_with(b"\n") {
        return Err(ReadError::Parse(match first.len() {
            0 => ParseError::Empty,
            _ if MAGIC.starts_with(first) || VERSION_LINE.starts_with(first) => ParseError::Truncated,
            _ if first.starts_with(MAGIC) => ParseError::Version(String::from_utf8_lossy(&first[MAGIC.len()..]).into()),
            _ => ParseError::NotAge,
        }));
    }
    if first != VERSION_LINE {
        return Err(ReadError::Parse(if first.starts_with(MAGIC) {
            ParseError::Version(String::from_utf8_lossy(first[MAGIC.len()..].trim_ascii_end()).into())
        } else {
            ParseError::NotAge
        }));
    }
    // The lines up to the MAC line: no stanza or body line begins with "---".
    // A line that can be neither is refused at once, not read past.
    let mac_at = loop {
        let start = bytes.len();
        let line = next_line(input, &mut bytes)?;
        if line.starts_with(b"---") {
            break start;
        }
        let body = &line[..line.len() - 1];
        let base64 = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
        let may_be_body = body.len() <= 64 && body.iter().all(base64);
        if !line.starts_with(b"-> ") && !may_be_body {
            return Err(ReadError::Parse(ParseError::Malformed(
                if line.starts_with(b"-") || start == VERSION_LINE.len() {
                    "a line that is neither a stanza nor the MAC"
                } else {
                    "a recipient stanza's body does not parse"
                },
            )));
        }
    };
    let stanzas = parse_stanzas(&bytes[VERSION_LINE.len()..mac_at])?;
    let line = &bytes[mac_at..];
    let mac = match line.strip_prefix(b"--- ").map(|l| &l[..l.len() - 1]) {
        Some(arg) if !arg.contains(&b' ') => decode_strict(arg),
        _ => None,
    };
    let mac = mac.and_then(|m| <[u8; 32]>::try_from(m).ok()).ok_or(ParseError::Malformed("bad MAC line"))?;
    Ok(RawHeader { bytes, mac_at, stanzas, mac })
}

/// The stanzas of `text` (whole lines, from the first stanza to the MAC
/// line): at least one, each in the strict (not the legacy) grammar.
fn parse_stanzas(mut text: &[u8]) -> Result<Vec<Stanza>, ParseError> {
    if text.is_empty() {
        return Err(ParseError::Malformed("no recipient stanza"));
    }
    let mut stanzas = Vec::new();
    while !text.is_empty() {
        match age_core::format::read::age_stanza(text) {
            Ok((rest, stanza)) => {
                stanzas.push(Stanza::from(stanza));
                text = rest;
            }
            Err(_) => return Err(ParseError::Malformed(stanza_fault(text))),
        }
    }
    Ok(stanzas)
}

/// What is wrong with the stanza at the start of `text`, which does not parse.
fn stanza_fault(text: &[u8]) -> &'static str {
    let first = text.split(|&c| c == b'\n').next().unwrap_or_default();
    match first.strip_prefix(b"-> ") {
        None => "a line that is neither a stanza nor the MAC",
        Some(args) if !args.split(|&c| c == b' ').all(is_valid_arg) => "a recipient stanza does not parse",
        Some(_) => "a recipient stanza's body does not parse",
    }
}

/// The next whole header line (with its `\n`), within the size limit.
fn next_line<'b>(input: &mut dyn BufRead, bytes: &'b mut Vec<u8>) -> Result<&'b [u8], ReadError> {
    let room = MAX_HEADER.saturating_sub(bytes.len());
    let start = bytes.len();
    input.take(room as u64).read_until(b'\n', bytes).map_err(ReadError::Io)?;
    if !bytes.ends_with(b"\n") || bytes.len() == start {
        return Err(ReadError::Parse(if bytes.len() >= MAX_HEADER {
            ParseError::TooLarge
        } else {
            ParseError::Truncated
        }));
    }
    Ok(&bytes[start..])
}

/// Appends one line (with its `\n`, if the input has one) to `buf`, reading
/// at most `max` bytes; returns the line.
fn read_line<'b>(input: &mut dyn BufRead, buf: &'b mut Vec<u8>, max: usize) -> std::io::Result<&'b [u8]> {
    let start = buf.len();
    input.take(max as u64).read_until(b'\n', buf)?;
    Ok(&buf[start..])
}

/// The ASCII armor's last line.
pub const ARMOR_END: &[u8] = b"-----END AGE ENCRYPTED FILE-----";
/// Whitespace tolerated before and after the armor, as the reference does.
const MAX_ARMOR_WHITESPACE: usize = 1024;

/// Whether the input is ASCII-armored, decided on its first bytes however
/// the reads split them: whitespace, then the BEGIN line. Returns the input
/// whole again, with what was looked at put back in front.
pub fn sniff_armor<'r>(mut input: Box<dyn BufRead + 'r>) -> std::io::Result<(bool, Box<dyn BufRead + 'r>)> {
    const LOOK: usize = MAX_ARMOR_WHITESPACE + 64;
    let mut seen: Vec<u8> = Vec::new();
    let armored = loop {
        let text = &seen[seen.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(seen.len())..];
        let full = seen.len() >= LOOK;
        if !text.is_empty() && MAGIC.starts_with(&text[..text.len().min(MAGIC.len())]) {
            // The binary format: decided once the magic is whole, or the input ends.
            if text.len() >= MAGIC.len() {
                break false;
            }
        } else if text.starts_with(b"-") {
            break true;
        } else if !text.is_empty() && (full || contains_begin(text)) {
            // Not age, but a BEGIN line after some garbage: armor that fails.
            break contains_begin(text);
        } else if full {
            break false;
        }
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            break !text.is_empty() && contains_begin(text);
        }
        let n = buf.len().min(LOOK - seen.len());
        seen.extend_from_slice(&buf[..n]);
        input.consume(n);
    };
    let whole: Box<dyn BufRead + 'r> = Box::new(std::io::Cursor::new(seen).chain(input));
    Ok((armored, whole))
}

fn contains_begin(text: &[u8]) -> bool {
    text.windows(10).any(|w| w.eq_ignore_ascii_case(b"-----BEGIN"))
}

/// A strict reader of age's ASCII armor (RFC 7468 strict PEM, the age
/// spec's rules): whitespace only before the BEGIN line and after the END
/// line (at most 1 KiB each), LF or CRLF line ends, lines of 64 columns of
/// canonical padded base64 and a shorter last one, nothing else. What it
/// refuses comes back as `InvalidData` errors starting "invalid armor".
pub struct Dearmor<R> {
    input: R,
    started: bool,
    decoded: Vec<u8>,
    pos: usize,
    /// Set once the END line has been read (and what follows it checked).
    done: Option<Result<(), String>>,
}

impl<R: BufRead> Dearmor<R> {
    pub fn new(input: R) -> Dearmor<R> {
        Dearmor { input, started: false, decoded: Vec::new(), pos: 0, done: None }
    }

    /// One line without its `\n` (and one `\r`); an error at the end of input.
    fn line(&mut self) -> std::io::Result<Result<Vec<u8>, String>> {
        let mut line = Vec::new();
        (&mut self.input).take(MAX_ARMOR_WHITESPACE as u64 + 128).read_until(b'\n', &mut line)?;
        if line.is_empty() {
            return Ok(Err("unexpected end of file".into()));
        }
        if line.ends_with(b"\n") {
            line.pop();
        } else if line.len() > MAX_ARMOR_WHITESPACE {
            return Ok(Err("line too long".into()));
        }
        if line.ends_with(b"\r") {
            line.pop();
        }
        Ok(Ok(line))
    }

    /// After the END line: only a little whitespace may follow.
    fn drain(&mut self) -> std::io::Result<Result<(), String>> {
        let mut rest = Vec::new();
        (&mut self.input).take(MAX_ARMOR_WHITESPACE as u64).read_to_end(&mut rest)?;
        Ok(if !rest.iter().all(u8::is_ascii_whitespace) {
            Err("trailing data after armored file".into())
        } else if rest.len() == MAX_ARMOR_WHITESPACE {
            Err("too much trailing whitespace".into())
        } else {
            Ok(())
        })
    }

    /// Decodes the next line into `self.decoded`.
    fn next_line(&mut self) -> std::io::Result<Result<(), String>> {
        let mut skipped = 0;
        while !self.started {
            let line = match self.line()? {
                Ok(l) => l,
                Err(e) => return Ok(Err(e)),
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                skipped += line.len() + 1;
                if skipped > MAX_ARMOR_WHITESPACE {
                    return Ok(Err("too much leading whitespace".into()));
                }
                continue;
            }
            if line != ARMOR_BEGIN {
                return Ok(Err("invalid first line".into()));
            }
            self.started = true;
        }
        let line = match self.line()? {
            Ok(l) => l,
            Err(e) => return Ok(Err(e)),
        };
        if line == ARMOR_END {
            let drained = self.drain()?;
            self.done = Some(drained.clone());
            return Ok(drained);
        }
        if line.is_empty() {
            return Ok(Err("empty line in armored data".into()));
        }
        if line.len() > 64 {
            return Ok(Err("column limit exceeded".into()));
        }
        self.decoded = match base64::engine::general_purpose::STANDARD.decode(&line) {
            Ok(d) => d,
            Err(_) => return Ok(Err("not canonical base64".into())),
        };
        self.pos = 0;
        if self.decoded.len() < 48 {
            match self.line()? {
                Ok(l) if l == ARMOR_END => {}
                Ok(_) => return Ok(Err("invalid closing line".into())),
                Err(e) => return Ok(Err(e)),
            }
            let drained = self.drain()?;
            if drained.is_err() {
                return Ok(drained);
            }
            self.done = Some(Ok(()));
        }
        Ok(Ok(()))
    }
}

impl<R: BufRead> Read for Dearmor<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("invalid armor: {e}"));
        while self.pos == self.decoded.len() {
            match &self.done {
                Some(Ok(())) => return Ok(0),
                Some(Err(e)) => return Err(invalid(e.clone())),
                None => {}
            }
            if let Err(e) = self.next_line()? {
                self.done = Some(Err(e.clone()));
                return Err(invalid(e));
            }
        }
        let n = buf.len().min(self.decoded.len() - self.pos);
        buf[..n].copy_from_slice(&self.decoded[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out its bytes one at a time: the worst split a pipe can make.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((b, rest)), Some(slot)) => {
                    *slot = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    fn sniffed(data: &[u8]) -> (bool, Vec<u8>) {
        let input: Box<dyn BufRead> = Box::new(std::io::BufReader::with_capacity(1, Trickle(data)));
        let (armored, mut whole) = sniff_armor(input).unwrap();
        let mut back = Vec::new();
        whole.read_to_end(&mut back).unwrap();
        (armored, back)
    }

    #[test]
    fn armor_is_recognised_however_the_reads_split_it() {
        let armored = b"\n \n-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n-----END AGE ENCRYPTED FILE-----\n";
        assert_eq!(sniffed(armored), (true, armored.to_vec()), "whitespace first, one byte per read");
        let binary = b"age-encryption.org/v1\n-> X25519 abc\n";
        assert_eq!(sniffed(binary), (false, binary.to_vec()));
        assert!(sniffed(b"garbage\n-----BEGIN AGE ENCRYPTED FILE-----\n").0, "armor after garbage is armor that fails");
        assert!(!sniffed(b"just text").0);
        assert!(!sniffed(b"").0);
    }

    #[test]
    fn the_mac_line_is_read_strictly() {
        let key = FileKey::new(Box::new([7; 16]));
        let stanza = Stanza { tag: "X25519".into(), args: vec!["abc".into()], body: vec![1; 32] };
        let good = encode_header(&[stanza], &key);
        assert!(read_header(&mut &good[..]).is_ok());
        for ws in [b' ', b'\t', b'\r', 0x0c] {
            let mut bad = good.clone();
            bad.insert(bad.len() - 1, ws);
            assert!(
                matches!(read_header(&mut &bad[..]), Err(ReadError::Parse(ParseError::Malformed(_)))),
                "trailing {ws:#x} on the MAC line"
            );
        }
    }
}
