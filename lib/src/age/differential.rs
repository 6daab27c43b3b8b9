//! Our reader against the age crate's, on files sealed by our writer and
//! then damaged: cut short, bits flipped, bytes inserted, whitespace added or
//! changed in the header and the MAC line, binary and ASCII-armored.
//!
//! The promise is one-sided: whatever we accept, the age crate accepts too
//! (with the same plaintext), with one documented exception where the crate
//! is stricter than the age spec: whitespace before an armored file, which
//! the spec allows, Go age accepts and the official vector
//! `armor_whitespace_outside` requires (the age crate lists that vector as a
//! known failure of its own). Such a case counts only when the crate accepts
//! the same file once that whitespace is removed. The other way round, we are
//! stricter where the spec is (armor framing), and every such case is
//! classified below.
//!
//! `WM_DIFF_CASES` sets the number of damaged files (`make test`: a few
//! thousand; `make reliability`: many more).

use std::io::{Read, Write};

use super::identity::Identity;
use super::recipients::{Kind, Recipient};
use super::seal::Sealer;
use super::testkit::decrypt;

use super::open::Key;

/// xorshift64*: deterministic, so that a failing case can be replayed.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn cases() -> usize {
    std::env::var("WM_DIFF_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(3000)
}

/// What the age crate makes of `file`: the plaintext, or refusal.
fn age_crate(file: &[u8], armored: bool, id: &age::x25519::Identity) -> Option<Vec<u8>> {
    let ids = std::iter::once(id as &dyn age::Identity);
    let mut out = Vec::new();
    if armored {
        let d = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(file)).ok()?;
        d.decrypt(ids).ok()?.read_to_end(&mut out).ok()?;
    } else {
        let d = age::Decryptor::new_buffered(file).ok()?;
        d.decrypt(ids).ok()?.read_to_end(&mut out).ok()?;
    }
    Some(out)
}

/// Where the header ends (after the MAC line) in a binary or armored file's text.
fn header_end(file: &[u8]) -> usize {
    file.windows(4)
        .position(|w| w == b"\n---")
        .map_or(file.len(), |at| at + 1 + file[at + 1..].iter().position(|&c| c == b'\n').unwrap_or(0) + 1)
}

/// One damaged copy of `file` and a word for what was done.
fn damage(file: &[u8], armored: bool, rng: &mut Rng) -> (Vec<u8>, &'static str) {
    let mut f = file.to_vec();
    // For the binary format aim half the edits at the header, where parsing
    // leniencies live; the payload is authenticated chunk by chunk anyway.
    let end = if armored { f.len() } else { header_end(&f) };
    let at = |rng: &mut Rng, len: usize| if rng.below(2) == 0 { rng.below(end.min(len)) } else { rng.below(len) };
    match rng.below(6) {
        0 => {
            let cut = at(rng, f.len());
            f.truncate(cut);
            (f, "truncated")
        }
        1 => {
            let i = at(rng, f.len());
            f[i] ^= 1 << rng.below(8);
            (f, "bit flipped")
        }
        2 => {
            let i = at(rng, f.len() + 1);
            f.insert(i, rng.next() as u8);
            (f, "byte inserted")
        }
        3 | 4 => {
            // Whitespace before a line end (the MAC line's included) or at a line's start.
            let ends: Vec<usize> = (0..end.min(f.len())).filter(|&i| f[i] == b'\n').collect();
            let ws = [b' ', b'\t', b'\r', 0x0c, 0x0b][rng.below(5)];
            match ends.get(rng.below(ends.len())) {
                Some(&nl) if rng.below(2) == 0 => f.insert(nl, ws),
                Some(&nl) => f.insert(nl + 1, ws),
                None => f.insert(0, ws),
            }
            (f, "whitespace in a header line")
        }
        _ => {
            // Whitespace before the file or after it.
            let ws = [b' ', b'\n', b'\t', b'\r'][rng.below(4)];
            if rng.below(2) == 0 {
                f.insert(0, ws);
            } else {
                f.push(ws);
            }
            (f, "whitespace around the file")
        }
    }
}

#[test]
fn we_never_accept_what_the_age_crate_refuses() {
    let mut rng = Rng::new(0x5eed_0fa9e);
    let id = age::x25519::Identity::generate();
    let ours = vec![Identity::new(Box::new(id.clone()), "X25519", "k".into())];
    let recipient = || Recipient::new(Box::new(id.to_public()), Kind::X25519);
    let mut originals = Vec::new();
    for (len, armored) in [(0, false), (1000, false), (70_000, false), (200_000, false), (500, true), (70_000, true)] {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let mut s = Sealer::new(Vec::new(), &[recipient()], armored).unwrap();
        s.write_all(&data).unwrap();
        let (file, _) = s.finish().unwrap();
        originals.push((file, data, armored));
    }
    let (mut both, mut neither, mut stricter, mut spec_whitespace) = (0, 0, Vec::new(), 0);
    let mut broader = Vec::new();
    for case in 0..cases() {
        let (file, data, armored) = &originals[case % originals.len()];
        let (bad, how) = damage(file, *armored, &mut rng);
        let mine = decrypt(&bad, Key::Identities(&ours)).ok();
        let theirs = age_crate(&bad, *armored, &id);
        match (&mine, &theirs) {
            (Some(m), Some(t)) => {
                assert_eq!(m, t, "case {case} ({how}): both accept, with the same plaintext");
                assert_eq!(m, data, "case {case} ({how}): an accepted file holds the original");
                both += 1;
            }
            (None, None) => neither += 1,
            (Some(_), None)
                if *armored
                    && bad.first().is_some_and(u8::is_ascii_whitespace)
                    && age_crate(bad.trim_ascii_start(), true, &id).is_some() =>
            {
                spec_whitespace += 1
            }
            (Some(_), None) => broader.push(format!(
                "case {case}: {how} (armored {armored}, first bytes {:?}, last bytes {:?})",
                String::from_utf8_lossy(&bad[..bad.len().min(8)]),
                String::from_utf8_lossy(&bad[bad.len().saturating_sub(8)..])
            )),
            (None, Some(_)) => stricter.push((case, how, bad)),
        }
    }
    eprintln!(
        "differential: {} damaged files; both accept {both}, both refuse {neither}, only the age crate accepts {}, \
         only we accept {} (+{spec_whitespace} armored files after whitespace, which the spec allows)",
        cases(),
        stricter.len(),
        broader.len()
    );
    assert!(broader.is_empty(), "we accepted what the age crate refuses:\n{}", broader.join("\n"));
    // Where we are stricter, it is the age spec's armor rule (nothing but
    // whitespace around a strict PEM block), which the age crate relaxes.
    for (case, how, bad) in &stricter {
        assert!(
            matches!(
                *how,
                "whitespace around the file" | "whitespace in a header line" | "byte inserted" | "bit flipped"
            ),
            "case {case} ({how}): only the age crate accepts"
        );
        let text = String::from_utf8_lossy(bad);
        assert!(
            text.contains("-----BEGIN AGE") || text.contains("-----END"),
            "case {case} ({how}): only armor is judged more strictly"
        );
    }
}
