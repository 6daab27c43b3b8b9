//! MLKEM768-X25519 (X-Wing) as an HPKE KEM for the `hpke` 0.12 crate.
//!
//! Wire format and algorithms as in draft-ietf-hpke-pq-03 / filippo.io/hpke-pq,
//! which is what Go age v1.3 uses (through filippo.io/hpke v0.4.0):
//!
//! - KEM id 0x647a, Nsecret 32, Nenc 1120 (ct_PQ 1088 || ct_T 32),
//!   Npk 1216 (ek_PQ 1184 || ek_T 32), Nsk 32 (a seed).
//! - expandKey(seed) = SHAKE256(seed, 96): the first 64 bytes are the ML-KEM-768
//!   seed d || z (FIPS 203 KeyGen_internal), the last 32 the X25519 secret.
//! - ss = SHA3-256(ss_PQ || ss_T || ct_T || ek_T || "\.//^\"), the label last
//!   (X-Wing draft-connolly-cfrg-xwing-kem-06 and later; earlier drafts put it first).
//! - An all-zero X25519 output is an error (Go's crypto/ecdh refuses it), so a
//!   low-order or identity `ct_T` fails decapsulation instead of yielding a key.
//!
//! The crypto is in `ml-kem`, `x25519-dalek` and `sha3`; this file is glue, modelled
//! on the age crate's own `tagpq` KEM (MLKEM768-P256), for the `hpke` crate's key
//! schedule (the same crate the age crate uses).

use hpke::generic_array::typenum::{Sum, Unsigned, U32};
use hpke::{kem::SharedSecret, Deserializable, HpkeError, Serializable};
use ml_kem::kem::{Decapsulate, Encapsulate};
use ml_kem::{Ciphertext, EncodedSizeUser, KemCore, MlKem768};
use rand::{CryptoRng, RngCore};
use sha3::digest::{ExtendableOutput, Update, XofReader};
use sha3::{Digest, Sha3_256, Shake256};
use x25519_dalek::{PublicKey as XPublicKey, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

/// `"\.//^\"`, i.e. 5c2e2f2f5e5c.
pub(crate) const LABEL: &[u8; 6] = br"\.//^\";
pub(crate) const KEM_ID: u16 = 0x647a;

pub(crate) const SEED_LEN: usize = 32;
pub(crate) const EK_PQ_LEN: usize = 1184;
pub(crate) const CT_PQ_LEN: usize = 1088;
pub(crate) const X_LEN: usize = 32;
/// Length of a public key (recipient): 1216.
pub const PUBLIC_KEY_LEN: usize = EK_PQ_LEN + X_LEN;
/// Length of the encapsulated key `enc`: 1120.
pub const ENC_LEN: usize = CT_PQ_LEN + X_LEN;

type DkPq = <MlKem768 as KemCore>::DecapsulationKey;
type EkPq = <MlKem768 as KemCore>::EncapsulationKey;

/// 1184 + 32 = 1216 and 1088 + 32 = 1120, as typenum sums (typenum has no U1216).
type Npk = Sum<<EkPq as EncodedSizeUser>::EncodedSize, U32>;
type Nenc = Sum<<MlKem768 as KemCore>::CiphertextSize, U32>;

/// The 32-byte seed plus its expansion, cached so decapsulation does not re-run
/// ML-KEM key generation. The seed is wiped on drop; `DecapsulationKey` (feature
/// `zeroize` of ml-kem) and `StaticSecret` wipe themselves.
#[derive(Clone)]
pub(crate) struct PrivateKey {
    seed: Zeroizing<[u8; SEED_LEN]>,
    dk_pq: DkPq,
    dk_t: StaticSecret,
    pk: PublicKey,
}

impl PrivateKey {
    pub(crate) fn from_seed(seed: &[u8; SEED_LEN]) -> Self {
        let (dk_pq, ek_pq, dk_t) = expand_key(seed);
        let ek_t = XPublicKey::from(&dk_t);
        PrivateKey { seed: Zeroizing::new(*seed), dk_pq, dk_t, pk: PublicKey { ek_pq, ek_t } }
    }

    pub(crate) fn seed(&self) -> &[u8; SEED_LEN] {
        &self.seed
    }

    pub(crate) fn public(&self) -> &PublicKey {
        &self.pk
    }
}

impl PartialEq for PrivateKey {
    fn eq(&self, other: &Self) -> bool {
        // Needed for the hpke::Kem trait bounds; an XOR fold, no early exit.
        let mut d = 0u8;
        for (a, b) in self.seed.iter().zip(other.seed.iter()) {
            d |= a ^ b;
        }
        d == 0
    }
}
impl Eq for PrivateKey {}

impl Serializable for PrivateKey {
    type OutputSize = U32;
    fn write_exact(&self, buf: &mut [u8]) {
        buf.copy_from_slice(&self.seed[..]);
    }
}

impl Deserializable for PrivateKey {
    fn from_bytes(encoded: &[u8]) -> Result<Self, HpkeError> {
        let seed: &[u8; SEED_LEN] =
            encoded.try_into().map_err(|_| HpkeError::IncorrectInputLength(SEED_LEN, encoded.len()))?;
        Ok(Self::from_seed(seed))
    }
}

/// ek_PQ || ek_T.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PublicKey {
    ek_pq: EkPq,
    ek_t: XPublicKey,
}
impl Eq for PublicKey {}

impl PublicKey {
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; PUBLIC_KEY_LEN];
        self.write_exact(&mut v);
        v
    }
}

impl Serializable for PublicKey {
    type OutputSize = Npk;
    fn write_exact(&self, buf: &mut [u8]) {
        buf[..EK_PQ_LEN].copy_from_slice(&self.ek_pq.as_bytes());
        buf[EK_PQ_LEN..].copy_from_slice(self.ek_t.as_bytes());
    }
}

impl Deserializable for PublicKey {
    /// Length must be 1216. The ML-KEM part must pass the FIPS 203 §7.2 modulus
    /// check (every 12-bit coefficient < q), as Go's `mlkem.NewEncapsulationKey768`
    /// requires: ml-kem 0.2.3 reduces mod q when decoding, so re-encoding differs
    /// exactly when a coefficient was out of range. The X25519 part is any 32 bytes
    /// (as Go's `ecdh.X25519().NewPublicKey`), except that a point whose X25519 output
    /// is always zero (small order) is refused here rather than at encryption time.
    fn from_bytes(encoded: &[u8]) -> Result<Self, HpkeError> {
        if encoded.len() != PUBLIC_KEY_LEN {
            return Err(HpkeError::IncorrectInputLength(PUBLIC_KEY_LEN, encoded.len()));
        }
        let (pq, t) = encoded.split_at(EK_PQ_LEN);
        let ek_pq = EkPq::from_bytes(pq.try_into().map_err(|_| HpkeError::ValidationError)?);
        if ek_pq.as_bytes().as_slice() != pq {
            return Err(HpkeError::ValidationError);
        }
        let mut t_bytes = [0u8; X_LEN];
        t_bytes.copy_from_slice(t);
        let ek_t = XPublicKey::from(t_bytes);
        if is_small_order(&ek_t) {
            return Err(HpkeError::ValidationError);
        }
        Ok(PublicKey { ek_pq, ek_t })
    }
}

/// X25519 with a clamped scalar is a multiple of 8, so it maps every point of order
/// dividing 8 (and only those) to the all-zero output, whatever the scalar.
fn is_small_order(p: &XPublicKey) -> bool {
    let probe = StaticSecret::from([0x42u8; 32]);
    !probe.diffie_hellman(p).was_contributory()
}

/// ct_PQ || ct_T.
#[derive(Clone)]
pub(crate) struct EncappedKey {
    ct_pq: Ciphertext<MlKem768>,
    ct_t: [u8; X_LEN],
}

impl Serializable for EncappedKey {
    type OutputSize = Nenc;
    fn write_exact(&self, buf: &mut [u8]) {
        buf[..CT_PQ_LEN].copy_from_slice(self.ct_pq.as_slice());
        buf[CT_PQ_LEN..].copy_from_slice(&self.ct_t);
    }
}

impl Deserializable for EncappedKey {
    fn from_bytes(encoded: &[u8]) -> Result<Self, HpkeError> {
        if encoded.len() != ENC_LEN {
            return Err(HpkeError::IncorrectInputLength(ENC_LEN, encoded.len()));
        }
        let (pq, t) = encoded.split_at(CT_PQ_LEN);
        let ct_pq = <[u8; CT_PQ_LEN]>::try_from(pq).map_err(|_| HpkeError::ValidationError)?.into();
        let ct_t = t.try_into().map_err(|_| HpkeError::ValidationError)?;
        Ok(EncappedKey { ct_pq, ct_t })
    }
}

/// The HPKE KEM MLKEM768-X25519 (0x647a).
pub(crate) struct MlKem768X25519;

impl hpke::Kem for MlKem768X25519 {
    type PublicKey = PublicKey;
    type PrivateKey = PrivateKey;
    type EncappedKey = EncappedKey;
    type NSecret = U32;
    const KEM_ID: u16 = KEM_ID;

    fn sk_to_pk(sk: &Self::PrivateKey) -> Self::PublicKey {
        sk.pk.clone()
    }

    /// DeriveKeyPair(ikm): seed = SHAKE256.LabeledDerive(ikm, "DeriveKeyPair", "", 32).
    /// age never calls it (identities are random seeds); it is here for the trait and
    /// checked against the 0x647a HPKE test vector.
    fn derive_keypair(ikm: &[u8]) -> (Self::PrivateKey, Self::PublicKey) {
        let seed = Zeroizing::new(shake256_labeled_derive::<SEED_LEN>(ikm, KEM_ID, b"DeriveKeyPair", b""));
        let sk = PrivateKey::from_seed(&seed);
        let pk = sk.pk.clone();
        (sk, pk)
    }

    fn decap(
        sk: &Self::PrivateKey,
        pk_sender_id: Option<&Self::PublicKey>,
        enc: &Self::EncappedKey,
    ) -> Result<SharedSecret<Self>, HpkeError> {
        if pk_sender_id.is_some() {
            // Auth modes are not defined for this KEM.
            return Err(HpkeError::DecapError);
        }
        // ML-KEM decapsulation cannot fail (implicit rejection); ml-kem 0.2 types it as Result<_, ()>.
        let mut ss_pq = sk.dk_pq.decapsulate(&enc.ct_pq).map_err(|()| HpkeError::DecapError)?;
        let ss_t = sk.dk_t.diffie_hellman(&XPublicKey::from(enc.ct_t));
        if !ss_t.was_contributory() {
            ss_pq.zeroize();
            return Err(HpkeError::DecapError);
        }
        let ss = combiner(&ss_pq, ss_t.as_bytes(), &enc.ct_t, sk.pk.ek_t.as_bytes());
        ss_pq.zeroize();
        Ok(ss)
    }

    /// Randomness order as EncapsDerand: 32 bytes for ML-KEM first, then 32 for the
    /// X25519 ephemeral secret (only matters for deterministic tests).
    fn encap<R: CryptoRng + RngCore>(
        pk: &Self::PublicKey,
        sender_id_keypair: Option<(&Self::PrivateKey, &Self::PublicKey)>,
        csprng: &mut R,
    ) -> Result<(SharedSecret<Self>, Self::EncappedKey), HpkeError> {
        if sender_id_keypair.is_some() {
            return Err(HpkeError::EncapError);
        }
        let (ct_pq, mut ss_pq) = pk.ek_pq.encapsulate(csprng).map_err(|()| HpkeError::EncapError)?;
        let mut sk_e_bytes = Zeroizing::new([0u8; X_LEN]);
        csprng.fill_bytes(&mut sk_e_bytes[..]);
        let sk_e = StaticSecret::from(*sk_e_bytes);
        let ct_t = XPublicKey::from(&sk_e).to_bytes();
        let ss_t = sk_e.diffie_hellman(&pk.ek_t);
        if !ss_t.was_contributory() {
            ss_pq.zeroize();
            return Err(HpkeError::EncapError);
        }
        let ss = combiner(&ss_pq, ss_t.as_bytes(), &ct_t, pk.ek_t.as_bytes());
        ss_pq.zeroize();
        Ok((ss, EncappedKey { ct_pq, ct_t }))
    }
}

/// SHAKE256(seed, 96) -> (ML-KEM-768 from d || z, X25519 secret).
fn expand_key(seed: &[u8; SEED_LEN]) -> (DkPq, EkPq, StaticSecret) {
    let mut xof = Shake256::default();
    xof.update(seed);
    let mut reader = xof.finalize_xof();
    let mut d = Zeroizing::new([0u8; 32]);
    let mut z = Zeroizing::new([0u8; 32]);
    let mut t = Zeroizing::new([0u8; X_LEN]);
    reader.read(&mut d[..]);
    reader.read(&mut z[..]);
    reader.read(&mut t[..]);
    let (dk_pq, ek_pq) = MlKem768::generate_deterministic(&(*d).into(), &(*z).into());
    let dk_t = StaticSecret::from(*t);
    (dk_pq, ek_pq, dk_t)
}

fn combiner(ss_pq: &[u8], ss_t: &[u8], ct_t: &[u8], ek_t: &[u8]) -> SharedSecret<MlKem768X25519> {
    let mut h = Sha3_256::new();
    Digest::update(&mut h, ss_pq);
    Digest::update(&mut h, ss_t);
    Digest::update(&mut h, ct_t);
    Digest::update(&mut h, ek_t);
    Digest::update(&mut h, LABEL);
    let mut out = SharedSecret::<MlKem768X25519>::default();
    out.0.copy_from_slice(&h.finalize());
    out
}

/// SHAKE256.LabeledDerive from draft-ietf-hpke-pq-03 (KEM suite id).
fn shake256_labeled_derive<const L: usize>(ikm: &[u8], kem_id: u16, label: &[u8], context: &[u8]) -> [u8; L] {
    let mut out = [0u8; L];
    let mut x = Shake256::default();
    x.update(ikm);
    x.update(b"HPKE-v1");
    x.update(b"KEM");
    x.update(&kem_id.to_be_bytes());
    x.update(&u16::try_from(label.len()).expect("short label").to_be_bytes());
    x.update(label);
    x.update(&u16::try_from(L).expect("short output").to_be_bytes());
    x.update(context);
    x.finalize_xof_into(&mut out);
    out
}

// Sizes are fixed by the types; keep the constants honest.
const _: () = assert!(<Npk as Unsigned>::USIZE == PUBLIC_KEY_LEN);
const _: () = assert!(<Nenc as Unsigned>::USIZE == ENC_LEN);

#[cfg(test)]
mod tests {
    //! Known-answer tests for the KEM and the HPKE suite age uses with it: the
    //! vector for KEM 0x647a, HKDF-SHA256 and ChaCha20Poly1305 of filippo.io/hpke,
    //! the library Go age v1.3 uses (lib/testdata/SOURCE).

    use hpke::aead::ChaCha20Poly1305;
    use hpke::kdf::HkdfSha256;
    use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
    use rand::rngs::OsRng;
    use rand::{CryptoRng, RngCore};

    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        assert!(s.len().is_multiple_of(2));
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// Hands out pre-set bytes; panics when they run out (so unexpected draws are caught).
    struct FixedRng<'a>(&'a [u8]);
    impl RngCore for FixedRng<'_> {
        fn next_u32(&mut self) -> u32 {
            unreachable!("only fill_bytes is expected")
        }
        fn next_u64(&mut self) -> u64 {
            unreachable!("only fill_bytes is expected")
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            assert!(dest.len() <= self.0.len(), "ran out of fixed randomness");
            let (a, b) = self.0.split_at(dest.len());
            dest.copy_from_slice(a);
            self.0 = b;
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
    impl CryptoRng for FixedRng<'_> {}

    #[test]
    fn hpke_pq_vector_0x647a_hkdf_sha256_chacha20poly1305() {
        let json = include_str!("../../testdata/hpke-pq-0x647a.json");
        let all: serde_json::Value = serde_json::from_str(json).unwrap();
        let v = all
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["kem_id"] == 0x647a && v["kdf_id"] == 1 && v["aead_id"] == 3 && v["mode"] == 0)
            .expect("vector for 0x647a/1/3 present");
        let h = |k: &str| hex(v[k].as_str().unwrap());

        // DeriveKeyPair and the seed -> public key expansion.
        let (sk, pk) = MlKem768X25519::derive_keypair(&h("ikmR"));
        assert_eq!(sk.to_bytes().as_slice(), h("skRm").as_slice(), "DeriveKeyPair seed");
        assert_eq!(pk.to_vec(), h("pkRm"), "PrivateKeyToPublicKey");
        let sk2 = PrivateKey::from_bytes(&h("skRm")).unwrap();
        assert_eq!(sk2.public().to_vec(), h("pkRm"));
        let pk2 = PublicKey::from_bytes(&h("pkRm")).unwrap();
        assert_eq!(pk2, pk);

        // Decapsulation.
        let enc = EncappedKey::from_bytes(&h("enc")).unwrap();
        let ss = MlKem768X25519::decap(&sk, None, &enc).unwrap();
        assert_eq!(ss.0.as_slice(), h("shared_secret").as_slice(), "Decaps");

        // Deterministic encapsulation (EncapsDerand with ikmE = 32 bytes ML-KEM || 32 bytes X25519).
        let ikm_e = h("ikmE");
        assert_eq!(ikm_e.len(), 64);
        let mut rng = FixedRng(&ikm_e);
        let (ss_e, enc_e) = MlKem768X25519::encap(&pk, None, &mut rng).unwrap();
        assert!(rng.0.is_empty(), "encap must draw exactly 64 bytes");
        assert_eq!(enc_e.to_bytes().as_slice(), h("enc").as_slice(), "Encaps enc");
        assert_eq!(ss_e.0.as_slice(), h("shared_secret").as_slice(), "Encaps ss");

        // The full HPKE suite (key schedule from the hpke crate): open and seal every message.
        let info = h("info");
        let mut rctx =
            hpke::setup_receiver::<ChaCha20Poly1305, HkdfSha256, MlKem768X25519>(&OpModeR::Base, &sk, &enc, &info)
                .unwrap();
        let mut rng = FixedRng(&ikm_e);
        let (enc_s, mut sctx) =
            hpke::setup_sender::<ChaCha20Poly1305, HkdfSha256, MlKem768X25519, _>(&OpModeS::Base, &pk, &info, &mut rng)
                .unwrap();
        assert_eq!(enc_s.to_bytes().as_slice(), h("enc").as_slice());
        let encs = v["encryptions"].as_array().unwrap();
        assert!(!encs.is_empty());
        for e in encs {
            let (aad, ct, pt) =
                (hex(e["aad"].as_str().unwrap()), hex(e["ct"].as_str().unwrap()), hex(e["pt"].as_str().unwrap()));
            assert_eq!(rctx.open(&ct, &aad).unwrap(), pt, "open");
            assert_eq!(sctx.seal(&pt, &aad).unwrap(), ct, "seal");
        }
        eprintln!("hpke-pq 0x647a vector: keygen, DeriveKeyPair, Encaps, Decaps, {} seal/open OK", encs.len());
    }

    #[test]
    fn round_trip() {
        let (sk, pk) = MlKem768X25519::gen_keypair(&mut OsRng);
        let (ss, enc) = MlKem768X25519::encap(&pk, None, &mut OsRng).unwrap();
        let enc2 = EncappedKey::from_bytes(&enc.to_bytes()).unwrap();
        assert_eq!(MlKem768X25519::decap(&sk, None, &enc2).unwrap().0, ss.0);
        // Another key decapsulates to something else (implicit rejection), without error.
        let (sk_other, _) = MlKem768X25519::gen_keypair(&mut OsRng);
        assert_ne!(MlKem768X25519::decap(&sk_other, None, &enc2).unwrap().0, ss.0);
    }

    #[test]
    fn low_order_and_zero_x25519_shares_are_refused() {
        let (sk, pk) = MlKem768X25519::gen_keypair(&mut OsRng);
        let (_, enc) = MlKem768X25519::encap(&pk, None, &mut OsRng).unwrap();
        let mut bytes = enc.to_bytes().to_vec();
        // u = 0 (identity) and u = 1 (order 4) give the all-zero X25519 output.
        for u0 in [0u8, 1] {
            bytes[CT_PQ_LEN..].fill(0);
            bytes[CT_PQ_LEN] = u0;
            let e = EncappedKey::from_bytes(&bytes).unwrap();
            assert!(matches!(MlKem768X25519::decap(&sk, None, &e), Err(HpkeError::DecapError)));
        }
        // And as recipient keys.
        let mut pk_bytes = pk.to_vec();
        pk_bytes[EK_PQ_LEN..].fill(0);
        assert!(PublicKey::from_bytes(&pk_bytes).is_err());
        pk_bytes[EK_PQ_LEN] = 1;
        assert!(PublicKey::from_bytes(&pk_bytes).is_err());
    }

    #[test]
    fn public_key_modulus_check_and_lengths() {
        let (_, pk) = MlKem768X25519::gen_keypair(&mut OsRng);
        let good = pk.to_vec();
        assert!(PublicKey::from_bytes(&good).is_ok());
        // First 12-bit coefficient := 0xFFF >= q = 3329.
        let mut bad = good.clone();
        bad[0] = 0xFF;
        bad[1] |= 0x0F;
        assert!(PublicKey::from_bytes(&bad).is_err());
        assert!(PublicKey::from_bytes(&good[..PUBLIC_KEY_LEN - 1]).is_err());
        assert!(EncappedKey::from_bytes(&[0u8; ENC_LEN - 1]).is_err());
        assert!(EncappedKey::from_bytes(&[0u8; ENC_LEN + 1]).is_err());
        assert!(PrivateKey::from_bytes(&[0u8; 31]).is_err());
    }

    #[test]
    fn label_bytes() {
        assert_eq!(LABEL, &[0x5c, 0x2e, 0x2f, 0x2f, 0x5e, 0x5c]);
    }
}
