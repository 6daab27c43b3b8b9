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
fn hkdf32(salt: &[u8], ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    hkdf::Salt::new(hkdf::HKDF_SHA256, salt)
        .extract(ikm)
        .expand(&[info], Len(out.len()))
        .and_then(|okm| okm.fill(&mut out))
        .expect("HKDF-SHA-256 can always expand to 32 bytes");
    out
}

/// The key of the header MAC (HMAC-SHA-256 over everything up to and including `---`).
pub fn header_mac_key(file_key: &FileKey) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, &hkdf32(&[], file_key.expose_secret(), b"header"))
}

/// The payload key for the 16-byte `nonce` that follows the header.
pub fn payload_key(file_key: &FileKey, nonce: &[u8]) -> LessSafeKey {
    let key = hkdf32(nonce, file_key.expose_secret(), b"payload");
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &key).expect("a 32-byte key suits ChaCha20-Poly1305"))
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
    let mac = hmac::sign(&header_mac_key(file_key), &h);
    h.push(b' ');
    h.extend_from_slice(B64.encode(mac.as_ref()).as_bytes());
    h.push(b'\n');
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

/// A header as read: its bytes (through the MAC line) and where the `---` line starts.
pub struct RawHeader {
    pub bytes: Vec<u8>,
    pub mac_at: usize,
}

impl RawHeader {
    /// The stanzas between the version line and the MAC line.
    pub fn stanzas(&self) -> Result<Vec<Stanza>, ParseError> {
        let mut region = &self.bytes[VERSION_LINE.len()..self.mac_at];
        let mut out = Vec::new();
        while !region.is_empty() {
            match age_core::format::read::age_stanza(region) {
                Ok((rest, s)) => {
                    out.push(Stanza::from(s));
                    region = rest;
                }
                Err(_) => return Err(ParseError::Malformed("a recipient stanza does not parse")),
            }
        }
        if out.is_empty() {
            return Err(ParseError::Malformed("no recipient stanzas"));
        }
        Ok(out)
    }

    /// The bytes the MAC covers: everything up to and including `---`.
    pub fn authenticated(&self) -> &[u8] {
        &self.bytes[..self.mac_at + 3]
    }

    /// The MAC, decoded.
    pub fn mac(&self) -> Result<Vec<u8>, ParseError> {
        B64.decode(self.bytes[self.mac_at + 4..].trim_ascii_end())
            .map_err(|_| ParseError::Malformed("the MAC is not base64"))
    }
}

/// Reads the header's lines from `input`, up to and including the MAC line.
/// I/O errors come back as `Err(Ok(e))`, format errors as `Err(Err(p))`.
pub fn read_header(input: &mut dyn BufRead) -> Result<RawHeader, Result<std::io::Error, ParseError>> {
    let mut bytes = Vec::new();
    let first = read_line(input, &mut bytes, VERSION_LINE.len()).map_err(Ok)?;
    if !first.ends_with(b"\n") {
        return Err(Err(match first.len() {
            0 => ParseError::Empty,
            _ if MAGIC.starts_with(first) || VERSION_LINE.starts_with(first) => ParseError::Truncated,
            _ if first.starts_with(MAGIC) => ParseError::Version(String::from_utf8_lossy(&first[MAGIC.len()..]).into()),
            _ => ParseError::NotAge,
        }));
    }
    if first != VERSION_LINE {
        return Err(Err(if first.starts_with(MAGIC) {
            ParseError::Version(String::from_utf8_lossy(first[MAGIC.len()..].trim_ascii_end()).into())
        } else {
            ParseError::NotAge
        }));
    }
    loop {
        let start = bytes.len();
        let line = read_line(input, &mut bytes, MAX_HEADER).map_err(Ok)?;
        if !line.ends_with(b"\n") {
            return Err(Err(if bytes.len() >= MAX_HEADER { ParseError::TooLarge } else { ParseError::Truncated }));
        }
        if line.starts_with(b"---") {
            if !line.starts_with(b"--- ") {
                return Err(Err(ParseError::Malformed("bad MAC line")));
            }
            return Ok(RawHeader { bytes, mac_at: start });
        }
        if bytes.len() >= MAX_HEADER {
            return Err(Err(ParseError::TooLarge));
        }
    }
}

/// Appends one line (with its `\n`, if the input has one) to `buf`, reading
/// at most `max` bytes; returns the line.
fn read_line<'b>(input: &mut dyn BufRead, buf: &'b mut Vec<u8>, max: usize) -> std::io::Result<&'b [u8]> {
    let start = buf.len();
    input.take(max as u64).read_until(b'\n', buf)?;
    Ok(&buf[start..])
}
