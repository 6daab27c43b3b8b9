//! Native age v1.3 post-quantum recipients (`age1pq1…`) and identities
//! (`AGE-SECRET-KEY-PQ-1…`): the `mlkem768x25519` stanza of c2sp.org/age.
//!
//! The stanza is HPKE (RFC 9180) SealBase/OpenBase with KEM MLKEM768-X25519
//! (X-Wing, 0x647a), KDF HKDF-SHA256, AEAD ChaCha20Poly1305,
//! `info = "age-encryption.org/mlkem768x25519"`, empty AAD; the plaintext is the
//! 16-byte file key. HPKE's key schedule is the `hpke` 0.12 crate's; the KEM is
//! [`super::xwing`].
//!
//! Error messages never contain the parsed string or any part of it.

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::str::FromStr;

use age::secrecy::SecretString;
use age::{DecryptError, EncryptError};
use age_core::format::{FileKey, Stanza, FILE_KEY_BYTES};
use age_core::primitives::{bech32_decode, bech32_encode, bech32_encode_to_fmt};
use age_core::secrecy::ExposeSecret;
use base64::prelude::{Engine, BASE64_STANDARD_NO_PAD};
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use rand::rngs::OsRng;
use rand::RngCore;
use zeroize::{Zeroize, Zeroizing};

use super::xwing::{EncappedKey, MlKem768X25519, PrivateKey, PublicKey, ENC_LEN, PUBLIC_KEY_LEN};

/// Stanza type (first argument of the stanza line).
pub const STANZA_TAG: &str = "mlkem768x25519";
/// HPKE `info`.
pub const HPKE_INFO: &[u8] = b"age-encryption.org/mlkem768x25519";
/// Label returned with every stanza: `age::Encryptor` refuses to mix recipients
/// whose label sets differ, so this cannot be combined with X25519, SSH, scrypt or
/// label-less plugin recipients (only with other `postquantum` ones, e.g.
/// `age::tagpq::Recipient`). Same label as Go age and the age crate's `tagpq`.
pub const POSTQUANTUM_LABEL: &str = "postquantum";

const RECIPIENT_HRP: &str = "age1pq";
const IDENTITY_HRP: &str = "AGE-SECRET-KEY-PQ-";
/// Body = 16-byte file key + 16-byte Poly1305 tag.
const BODY_LEN: usize = FILE_KEY_BYTES + 16;
/// Base64 (unpadded) length of a 1120-byte `enc`.
const ENC_B64_LEN: usize = (ENC_LEN * 4).div_ceil(3);

/// Why a string is not a hybrid recipient or identity.
///
/// Messages never repeat the input, nor any 8 consecutive characters of it (so they
/// do not spell out the key prefixes either).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// An `AGE-SECRET-KEY-…` string was given where a recipient belongs.
    SecretKeyGiven,
    /// An `age1…` string was given where an identity belongs.
    RecipientGiven,
    /// Recipients must be all lower-case, identities all upper-case (as Go age).
    WrongCase,
    /// Not valid Bech32 (bad character, separator or checksum).
    InvalidEncoding,
    /// Valid Bech32, but another key type (another HRP).
    WrongType,
    /// The payload has the wrong length (1216 bytes for a recipient, 32 for an identity).
    WrongLength,
    /// The payload is not a valid MLKEM768-X25519 public key (ML-KEM modulus check,
    /// or a small-order X25519 point).
    InvalidKey,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::SecretKeyGiven => "this is an age secret key, not a recipient",
            ParseError::RecipientGiven => "this is an age recipient (public key), not a secret key",
            ParseError::WrongCase => {
                "wrong letter case: post-quantum recipients are all lower-case, identities all upper-case"
            }
            ParseError::InvalidEncoding => "invalid Bech32 encoding (bad character or checksum)",
            ParseError::WrongType => "not a post-quantum age key (wrong type prefix)",
            ParseError::WrongLength => "wrong key length for a post-quantum age key",
            ParseError::InvalidKey => "invalid MLKEM768-X25519 public key",
        })
    }
}

impl std::error::Error for ParseError {}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// A post-quantum hybrid recipient, `age1pq1…` (an MLKEM768-X25519 public key, 1216 bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct HybridRecipient(PublicKey);

impl HybridRecipient {
    /// The raw 1216-byte public key (ML-KEM-768 encapsulation key || X25519 point).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.to_vec()
    }

    /// Parses a raw 1216-byte public key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ParseError> {
        if bytes.len() != PUBLIC_KEY_LEN {
            return Err(ParseError::WrongLength);
        }
        PublicKey::from_bytes(bytes).map(HybridRecipient).map_err(|_| ParseError::InvalidKey)
    }
}

impl FromStr for HybridRecipient {
    type Err = ParseError;

    /// Accepts exactly what Go age's `ParseHybridRecipient` accepts: Bech32 (no length
    /// limit), HRP `age1pq`, all lower-case, 1216-byte payload that is a valid key.
    fn from_str(s: &str) -> Result<Self, ParseError> {
        if starts_with_ignore_case(s, "AGE-SECRET-KEY-") {
            return Err(ParseError::SecretKeyGiven);
        }
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ParseError::WrongCase);
        }
        let bytes = bech32_decode(
            s,
            |_| ParseError::InvalidEncoding,
            |hrp| if hrp.as_str() == RECIPIENT_HRP { Ok(()) } else { Err(ParseError::WrongType) },
            |_, bytes| Ok(bytes.collect::<Vec<u8>>()),
        )?;
        Self::from_bytes(&bytes)
    }
}

impl fmt::Display for HybridRecipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        bech32_encode_to_fmt(f, bech32::Hrp::parse_unchecked(RECIPIENT_HRP), &self.0.to_vec())
    }
}

impl fmt::Debug for HybridRecipient {
    /// Abbreviated: the full string is about 1,960 characters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.to_string();
        write!(f, "HybridRecipient({}…{})", &s[..16], &s[s.len() - 8..])
    }
}

impl age::Recipient for HybridRecipient {
    fn wrap_file_key(&self, file_key: &FileKey) -> Result<(Vec<Stanza>, HashSet<String>), EncryptError> {
        let (enc, body) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, MlKem768X25519, _>(
            &OpModeS::Base,
            &self.0,
            HPKE_INFO,
            file_key.expose_secret(),
            &[],
            &mut OsRng,
        )
        // Only reachable with a small-order X25519 key, which parsing already refuses.
        .map_err(|_| {
            EncryptError::Io(io::Error::new(io::ErrorKind::InvalidInput, "mlkem768x25519: HPKE seal failed"))
        })?;
        let stanza =
            Stanza { tag: STANZA_TAG.to_owned(), args: vec![BASE64_STANDARD_NO_PAD.encode(enc.to_bytes())], body };
        Ok((vec![stanza], [POSTQUANTUM_LABEL.to_owned()].into_iter().collect()))
    }
}

/// A post-quantum hybrid identity, `AGE-SECRET-KEY-PQ-1…` (a 32-byte seed).
///
/// The seed and its expansion are wiped when dropped; `Debug` does not show them.
#[derive(Clone)]
pub struct HybridIdentity(PrivateKey);

impl HybridIdentity {
    /// A new random identity: 32 bytes from the OS CSPRNG (as `age-keygen -pq`).
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(&mut seed[..]);
        HybridIdentity(PrivateKey::from_seed(&seed))
    }

    /// From a raw 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        HybridIdentity(PrivateKey::from_seed(seed))
    }

    /// The `AGE-SECRET-KEY-PQ-1…` string (upper-case, as Go age writes it).
    pub fn to_string(&self) -> SecretString {
        let mut encoded = bech32_encode(bech32::Hrp::parse_unchecked(IDENTITY_HRP), self.0.seed());
        let upper = encoded.to_uppercase();
        encoded.zeroize();
        SecretString::from(upper)
    }

    /// The matching `age1pq1…` recipient.
    pub fn to_public(&self) -> HybridRecipient {
        HybridRecipient(self.0.public().clone())
    }
}

impl FromStr for HybridIdentity {
    type Err = ParseError;

    /// Accepts exactly what Go age's `ParseHybridIdentity` accepts: Bech32, HRP
    /// `AGE-SECRET-KEY-PQ-` in upper case (so the whole string is upper-case), 32 bytes.
    fn from_str(s: &str) -> Result<Self, ParseError> {
        if starts_with_ignore_case(s, "age1") {
            return Err(ParseError::RecipientGiven);
        }
        if s.bytes().any(|b| b.is_ascii_lowercase()) {
            return Err(ParseError::WrongCase);
        }
        let mut bytes = Zeroizing::new(bech32_decode(
            s,
            |_| ParseError::InvalidEncoding,
            |hrp| if hrp.as_str() == IDENTITY_HRP { Ok(()) } else { Err(ParseError::WrongType) },
            |_, bytes| Ok(bytes.collect::<Vec<u8>>()),
        )?);
        let seed: &[u8; 32] = bytes.as_slice().try_into().map_err(|_| ParseError::WrongLength)?;
        let id = HybridIdentity(PrivateKey::from_seed(seed));
        bytes.zeroize();
        Ok(id)
    }
}

impl fmt::Debug for HybridIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HybridIdentity(<secret>)")
    }
}

impl age::Identity for HybridIdentity {
    /// - another stanza type (exact, case-sensitive match): `None`;
    /// - malformed (not exactly one argument, argument not canonical unpadded base64 of
    ///   1120 bytes, body not 32 bytes; checked before any decryption): `InvalidHeader`;
    /// - decapsulation refused (the X25519 share gives the all-zero secret): `InvalidHeader`,
    ///   as Go age (a hard error, CCTV class "header failure");
    /// - AEAD open fails: `None`. ML-KEM rejects implicitly, so a stanza for another
    ///   recipient looks exactly like this; it must not stop the search (as X25519 in age).
    fn unwrap_stanza(&self, stanza: &Stanza) -> Option<Result<FileKey, DecryptError>> {
        if stanza.tag != STANZA_TAG {
            return None;
        }
        let arg = match &stanza.args[..] {
            [arg] => arg,
            _ => return Some(Err(DecryptError::InvalidHeader)),
        };
        // Length first (cheap, bounds the decode), then strict decode: the engine
        // refuses padding and non-zero trailing bits, i.e. accepts canonical only.
        if arg.len() != ENC_B64_LEN {
            return Some(Err(DecryptError::InvalidHeader));
        }
        let enc = match BASE64_STANDARD_NO_PAD.decode(arg) {
            Ok(enc) if enc.len() == ENC_LEN => enc,
            _ => return Some(Err(DecryptError::InvalidHeader)),
        };
        if stanza.body.len() != BODY_LEN {
            return Some(Err(DecryptError::InvalidHeader));
        }
        let enc = match EncappedKey::from_bytes(&enc) {
            Ok(enc) => enc,
            Err(_) => return Some(Err(DecryptError::InvalidHeader)),
        };
        let mut ctx = match hpke::setup_receiver::<ChaCha20Poly1305, HkdfSha256, MlKem768X25519>(
            &OpModeR::Base,
            &self.0,
            &enc,
            HPKE_INFO,
        ) {
            Ok(ctx) => ctx,
            Err(_) => return Some(Err(DecryptError::InvalidHeader)),
        };
        let plaintext = Zeroizing::new(ctx.open(&stanza.body, &[]).ok()?);
        Some(FileKey::try_init_with_mut(|k| {
            if plaintext.len() == FILE_KEY_BYTES {
                k.copy_from_slice(&plaintext);
                Ok(())
            } else {
                Err(DecryptError::InvalidHeader)
            }
        }))
    }
}
