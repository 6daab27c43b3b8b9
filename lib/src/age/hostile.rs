//! The worst header shapes a hostile age file can take within the 1 MiB
//! header limit ([`super::format::MAX_HEADER`]), for the tests and the
//! benchmark that hold the reader to its time bound. None needs a secret:
//! anyone with a public key, or none, can write them.
//!
//! The shapes: many tiny stanzas (the most lines and stanzas a header can
//! hold), the same without an end (refused as too large), one stanza with a
//! 1 MiB body (the most body lines), one stanza with the most arguments, and
//! as many X25519 and post-quantum stanzas as fit, each of which costs the
//! matching identity a key agreement (or a decapsulation) to refuse.

use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine;
use rand::RngCore;

use super::format::{MAX_HEADER, NONCE, VERSION_LINE};

/// One hostile file: a name for reports, and its bytes (header, nonce, a
/// short payload).
pub struct Shape {
    pub name: &'static str,
    pub file: Vec<u8>,
}

/// Base64 of `n` random bytes.
fn random_b64(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut b);
    B64.encode(b)
}

/// A header of `stanzas` while the whole stays within `MAX_HEADER`, closed
/// by a well-formed MAC line (that no key matches) unless `end` is false,
/// then a nonce and a short payload.
fn header(stanzas: impl Iterator<Item = String>, end: bool) -> Vec<u8> {
    let mac = format!("--- {}\n", random_b64(32));
    let mut h = VERSION_LINE.to_vec();
    for s in stanzas {
        let room = if end { MAX_HEADER - mac.len() } else { MAX_HEADER + s.len() };
        if h.len() + s.len() > room {
            break;
        }
        h.extend_from_slice(s.as_bytes());
    }
    if end {
        h.extend_from_slice(mac.as_bytes());
    }
    h.extend_from_slice(&[0u8; NONCE]);
    h.extend_from_slice(&[0u8; 64]);
    h
}

/// Every worst shape, freshly made (random shares and bodies).
pub fn shapes() -> Vec<Shape> {
    use std::iter::{once, repeat_with};
    let tiny = || "-> a\n\n".to_string();
    let x25519 = || format!("-> X25519 {}\n{}\n", random_b64(32), random_b64(32));
    let pq = || format!("-> mlkem768x25519 {}\n{}\n", random_b64(1120), random_b64(32));
    let body = {
        // One stanza whose body fills the header: full 64-column lines, a short last one.
        let mut s = String::from("-> a\n");
        let line = "A".repeat(64);
        while s.len() + 65 + 100 < MAX_HEADER {
            s.push_str(&line);
            s.push('\n');
        }
        s.push('\n');
        s
    };
    let args = {
        let mut s = String::from("-> a");
        while s.len() + 2 + 100 < MAX_HEADER {
            s.push_str(" b");
        }
        s.push_str("\n\n");
        s
    };
    vec![
        Shape { name: "tiny stanzas", file: header(repeat_with(tiny), true) },
        Shape { name: "tiny stanzas, no end", file: header(repeat_with(tiny), false) },
        Shape { name: "one stanza, 1 MiB body", file: header(once(body), true) },
        Shape { name: "one stanza, most arguments", file: header(once(args), true) },
        Shape { name: "X25519 stanzas", file: header(repeat_with(x25519), true) },
        Shape { name: "mlkem768x25519 stanzas", file: header(repeat_with(pq), true) },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::age::format::ParseError;
    use crate::age::identity::Identity;
    use crate::age::open::{open, Key, OpenError};
    use crate::age::pq::HybridIdentity;
    use std::time::{Duration, Instant};

    /// The bound the header must be read and refused in, whatever its shape.
    /// Counted in CPU time of the thread, so that a loaded machine (other
    /// tests run beside this one) does not make it fail; the benchmark
    /// (`make bench`, release build) times the same shapes by the clock.
    const BOUND: Duration = Duration::from_secs(1);

    fn thread_cpu() -> Duration {
        use nix::libc::{clock_gettime, timespec, CLOCK_THREAD_CPUTIME_ID};
        let mut t = timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: a valid clock id and a pointer to a timespec we own.
        assert_eq!(unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut t) }, 0);
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    }

    #[test]
    fn every_worst_header_is_refused_within_a_second() {
        let ids = vec![
            Identity::new(Box::new(age::x25519::Identity::generate()), "X25519", "x.txt".into()),
            Identity::new(Box::new(HybridIdentity::generate()), "mlkem768x25519", "pq.txt".into()),
        ];
        // The whole work on this thread, so that its CPU time counts all of it
        // (the reader otherwise shares a big header's key agreements between two).
        crate::age::open::ONE_THREAD.with(|c| c.set(true));
        for shape in shapes() {
            let (started, cpu) = (Instant::now(), thread_cpu());
            let got = open(Box::new(&shape.file[..]), Key::Identities(&ids)).map(|_| ()).err();
            let (wall, took) = (started.elapsed(), thread_cpu() - cpu);
            eprintln!("{}: {} bytes, refused in {took:.2?} of CPU ({wall:.2?} wall)", shape.name, shape.file.len());
            match (shape.name, &got) {
                ("tiny stanzas, no end", Some(OpenError::Header(ParseError::TooLarge))) => {}
                (_, Some(OpenError::NoIdentity(_))) if shape.name != "tiny stanzas, no end" => {}
                _ => panic!("{}: {got:?}", shape.name),
            }
            assert!(took < BOUND, "{}: {took:?}", shape.name);
        }
    }
}
