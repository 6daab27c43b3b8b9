//! An in-tree mutation fuzzer for what reads untrusted bytes: the age
//! reader ([`super::open`]) and the recipient and identity parsers. It
//! starts from the seed corpus in `lib/testdata/fuzz/` and applies random
//! edits (bit flips, inserted, deleted and duplicated spans, cuts). What it
//! checks, besides "never panics":
//!
//! - a damaged age file is either refused or yields exactly the original
//!   plaintext (the format authenticates everything that matters);
//! - no error message repeats 8 or more consecutive characters of anything
//!   in the input that looks like key material.
//!
//! `WM_FUZZ_CASES` sets the number of cases per target (`make test`: a few
//! hundred; `make fuzz`: as many as you like). A coverage-guided fuzzer
//! (cargo-fuzz) needs a nightly toolchain; this runs on stable, everywhere.

use std::path::{Path, PathBuf};

use super::differential::Rng;
use super::identity::{self, Identity};
use super::open::Key;
use super::recipients;
use super::testkit::decrypt;

fn cases() -> usize {
    std::env::var("WM_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400)
}

fn corpus(kind: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/fuzz").join(kind);
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect()
}

/// One to four random edits.
fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut f = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = f.len();
        match rng.below(6) {
            0 if len > 0 => {
                let i = rng.below(len);
                f[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(len + 1);
                let b = [b' ', b'\n', b'\r', b'-', b'>', b'=', b'A', 0, 0xff][rng.below(9)];
                f.insert(i, b);
            }
            2 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below(16.min(len - i));
                f.drain(i..i + n);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below(64.min(len - i));
                let span = f[i..i + n].to_vec();
                let at = rng.below(len + 1);
                f.splice(at..at, span);
            }
            4 => f.truncate(rng.below(len + 1)),
            _ if len > 0 => {
                let i = rng.below(len);
                f[i] = rng.next() as u8;
            }
            _ => {}
        }
    }
    f
}

/// Every run of 20+ characters that keys are made of, in the input.
fn keyish_runs(input: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(input);
    text.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '_' | '-')))
        .filter(|r| r.len() >= 20)
        .map(str::to_ascii_lowercase)
        .collect()
}

#[track_caller]
fn assert_no_echo(message: &str, input: &[u8], what: &str) {
    // The published SSH key type names are words of the message, not input.
    let mut lower = message.to_ascii_lowercase();
    for t in recipients::OTHER_SSH_TYPES {
        lower = lower.replace(t, " ");
    }
    for run in keyish_runs(input) {
        let bytes = run.as_bytes();
        for w in bytes.windows(8) {
            let piece = std::str::from_utf8(w).unwrap();
            assert!(!lower.contains(piece), "{what}: the message repeats {piece:?} of the input: {message}");
        }
    }
}

fn identities() -> Vec<Identity> {
    ["x25519.txt", "pq.txt"]
        .iter()
        .flat_map(|n| {
            let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/fuzz/identity").join(n);
            identity::parse(&p, &std::fs::read(&p).unwrap()).unwrap()
        })
        .collect()
}

#[test]
fn fuzz_the_reader_refuses_or_gives_the_original() {
    let ids = identities();
    let seeds: Vec<_> = corpus("open")
        .into_iter()
        .map(|(p, bytes)| {
            let plain = decrypt(&bytes, Key::Identities(&ids))
                .unwrap_or_else(|e| panic!("{}: the seed opens: {e}", p.display()));
            (p, bytes, plain)
        })
        .collect();
    let mut rng = Rng::new(0xf022);
    let mut accepted = 0;
    for case in 0..cases() {
        let (path, seed, plain) = &seeds[case % seeds.len()];
        let bad = mutate(seed, &mut rng);
        match decrypt(&bad, Key::Identities(&ids)) {
            Ok(got) => {
                assert_eq!(&got, plain, "case {case} from {}: accepted, so it must be the original", path.display());
                accepted += 1;
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    eprintln!("fuzz open: {} cases, {accepted} accepted (all with the original plaintext)", cases());
}

#[test]
fn fuzz_the_recipient_and_identity_parsers_never_echo_key_material() {
    let mut rng = Rng::new(0xf023);
    let recipients_seeds = corpus("recipients");
    let identity_seeds = corpus("identity");
    for case in 0..cases() {
        let (_, seed) = &recipients_seeds[case % recipients_seeds.len()];
        let bad = mutate(seed, &mut rng);
        if let Err(e) = recipients::parse_file(Path::new("F"), &bad) {
            assert_no_echo(&e.to_string(), &bad, "recipients file");
        }
        if let Ok(text) = std::str::from_utf8(&bad) {
            for line in text.lines() {
                if let Err(p) = recipients::parse_literal(line) {
                    assert_no_echo(&p.to_string(), line.as_bytes(), "recipient literal");
                }
                // A value is shown only when nothing in it looks like a secret key.
                if let Some(shown) = recipients::shown(line) {
                    assert!(!recipients::secret_shaped(line), "{shown:?}");
                }
            }
        }
        let (_, seed) = &identity_seeds[case % identity_seeds.len()];
        let bad = mutate(seed, &mut rng);
        if let Err(e) = identity::parse(Path::new("F"), &bad) {
            assert_no_echo(&e.to_string(), &bad, "identity file");
        }
    }
    eprintln!("fuzz parsers: {} recipients files and {} identity files", cases(), cases());
}
