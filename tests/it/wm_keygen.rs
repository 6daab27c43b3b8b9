//! wm-keygen: age-keygen's flags and file format, checked both ways against
//! the Go reference age (found through `WM_REFERENCE_AGE`, a directory with
//! its `age` and `age-keygen`) and, for classic keys, Debian's age.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::*;

/// The Go reference age's directory, or a recorded skip (a failure under CI=true).
fn reference_age() -> Option<PathBuf> {
    let dir = std::env::var_os("WM_REFERENCE_AGE").map(PathBuf::from);
    if let Some(d) = dir.filter(|d| d.join("age").is_file() && d.join("age-keygen").is_file()) {
        return Some(d);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("WM_REFERENCE_AGE must name a directory holding the Go reference age and age-keygen when CI=true");
    }
    eprintln!("SKIPPED: WM_REFERENCE_AGE does not name the Go reference age");
    record_skip("Go reference age (WM_REFERENCE_AGE) not found", Skip::Test);
    None
}

/// `wm-keygen ARGS` in `d`, which must succeed: (stdout, stderr).
fn keygen(d: &Dir, args: &[&str]) -> (String, String) {
    let out = run(WM_KEYGEN, d).args(args).go();
    out.ok();
    (String::from_utf8(out.stdout).unwrap(), out.stderr)
}

/// A tool's `-y` of an identity file: its one recipient line.
fn public_of(tool: &Path, identity: &Path) -> String {
    let out = Command::new(tool).arg("-y").arg(identity).output().expect("run -y");
    assert!(out.status.success(), "{} -y: {}", tool.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim_end().to_string()
}

/// Encrypts `plain` to `recipient` with `age` and decrypts it with `identity`.
fn round_trip(age: &Path, d: &Dir, recipient: &str, identity: &Path, plain: &[u8]) {
    let input = d.write("plain.bin", plain);
    let sealed = d.join("sealed.age");
    let _ = std::fs::remove_file(&sealed);
    let st = Command::new(age).arg("-r").arg(recipient).arg("-o").arg(&sealed).arg(&input).status().unwrap();
    assert!(st.success(), "{} -r", age.display());
    let out = Command::new(age).arg("-d").arg("-i").arg(identity).arg(&sealed).output().unwrap();
    assert!(out.status.success(), "{} -d: {}", age.display(), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, plain, "{} decrypts what it encrypted to our key", age.display());
}

/// The three lines of age-keygen's format; returns (public, secret).
#[track_caller]
fn assert_key_file(text: &str, public_prefix: &str, secret_prefix: &str) -> (String, String) {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(text.ends_with('\n'), "{text:?}");
    let created = lines[0].strip_prefix("# created: ").unwrap_or_else(|| panic!("created line: {text}"));
    // RFC 3339 in UTC, as Go's time.RFC3339 prints it with TZ=UTC.
    let b = created.as_bytes();
    assert!(b.len() == 20 && b[4] == b'-' && b[10] == b'T' && b[19] == b'Z', "{created}");
    let public = lines[1].strip_prefix("# public key: ").unwrap_or_else(|| panic!("public key line: {text}"));
    assert!(public.starts_with(public_prefix), "{public}");
    assert!(lines[2].starts_with(secret_prefix), "secret key line");
    (public.to_string(), lines[2].to_string())
}

#[test]
fn keygen_writes_a_0600_file_in_age_keygens_format_prints_the_public_key_and_never_replaces_it() {
    let d = Dir::new();
    let out = run(WM_KEYGEN, &d).args(["-o", "identity.txt"]).go();
    out.ok();
    assert!(out.stdout.is_empty(), "the key goes to the file only");
    let text = String::from_utf8(d.read("identity.txt")).unwrap();
    let (public, _) = assert_key_file(&text, "age1", "AGE-SECRET-KEY-1");
    assert_eq!(out.stderr, format!("Public key: {public}\n"), "age-keygen's line on stderr");
    assert_eq!(mode_of(&d.join("identity.txt")), 0o600);

    let before = d.tree();
    let again = run(WM_KEYGEN, &d).args(["-o", "identity.txt"]).go();
    again.expect(1, "identity.txt: already exists; a key file is never replaced").one_line_error("wm-keygen");
    assert_unchanged(&before, &d.tree(), "a second wm-keygen -o of the same file");

    let (y, _) = keygen(&d, &["-y", "identity.txt"]);
    assert_eq!(y, format!("{public}\n"));
    let out = run(WM_KEYGEN, &d).args(["-y", "-q"]).stdin(text.clone()).go();
    out.ok();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("{public}\n"), "-y reads standard input");
    assert!(out.stderr.is_empty(), "-q: {}", out.stderr);
    // -y -o: the recipients file, never replaced either.
    keygen(&d, &["-y", "-o", "recipients.txt", "identity.txt"]);
    assert_eq!(String::from_utf8(d.read("recipients.txt")).unwrap(), format!("{public}\n"));
}

#[test]
fn keygen_to_standard_output_prints_the_key_and_the_public_key_on_stderr_as_age_keygen_does() {
    let d = Dir::new();
    let (stdout, stderr) = keygen(&d, &[]);
    let (public, _) = assert_key_file(&stdout, "age1", "AGE-SECRET-KEY-1");
    assert_eq!(stderr, format!("Public key: {public}\n"), "stdout is a pipe, not a terminal");
    let (stdout, stderr) = keygen(&d, &["-pq"]);
    let (public, _) = assert_key_file(&stdout, "age1pq1", "AGE-SECRET-KEY-PQ-1");
    assert_eq!(stderr, format!("Public key: {public}\n"));
    let (_, stderr) = keygen(&d, &["-v", "--pq", "--output=pq.txt"]);
    assert!(
        stderr.contains("wm-keygen: wrote a post-quantum (ML-KEM-768 + X25519) identity to pq.txt (mode 0600)"),
        "{stderr}"
    );
}

#[test]
fn keygen_refuses_mixed_up_invocations_in_one_line_and_shows_no_secret() {
    let d = Dir::new();
    run(WM_KEYGEN, &d).args(["-y", "-pq"]).go().expect(2, "cannot be used with").one_line_error("wm-keygen");
    let (text, _) = keygen(&d, &[]);
    let (public, secret) = assert_key_file(&text, "age1", "AGE-SECRET-KEY-1");
    // A public key where the identity belongs; a key with a typo; spaces around a key (Go refuses them).
    d.write("public.txt", format!("{public}\n"));
    let out = run(WM_KEYGEN, &d).args(["-y", "public.txt"]).go();
    out.expect(1, "public.txt: line 1: a public key (age1...), not a secret key").one_line_error("wm-keygen");
    let other = if secret.ends_with('Q') { 'P' } else { 'Q' };
    let typo = format!("# c\n{}{other}\n", &secret[..secret.len() - 1]);
    d.write("typo.txt", &typo);
    let out = run(WM_KEYGEN, &d).args(["-y", "typo.txt"]).go();
    out.expect(1, "typo.txt: line 2: an X25519 secret key that does not decode").one_line_error("wm-keygen");
    assert_not_echoed(&out.stderr, &secret, "wm-keygen -y of a mistyped key");
    d.write("spaced.txt", format!("  {secret}\n"));
    let out = run(WM_KEYGEN, &d).args(["-y", "spaced.txt"]).go();
    out.expect(1, "spaced.txt: line 1: not a native age identity").one_line_error("wm-keygen");
    assert_not_echoed(&out.stderr, &secret, "wm-keygen -y of a spaced key");
    run(WM_KEYGEN, &d)
        .args(["-y", "missing.txt"])
        .go()
        .expect(1, "missing.txt: no such file")
        .one_line_error("wm-keygen");
    let out = run(WM_KEYGEN, &d).args(["--completions", "bash"]).go();
    out.ok();
    assert!(String::from_utf8_lossy(&out.stdout).contains("wm-keygen"), "a completion script");
}

#[test]
fn go_reference_age_reads_our_keys_and_we_read_its_keys_classic_and_post_quantum() {
    let Some(go) = reference_age() else { return };
    let (go_age, go_keygen) = (go.join("age"), go.join("age-keygen"));
    let d = Dir::new();
    for (flag, prefix) in [(None, "AGE-SECRET-KEY-1"), (Some("-pq"), "AGE-SECRET-KEY-PQ-1")] {
        let name = format!("ours{}.txt", flag.unwrap_or(""));
        let mut args = vec!["-q", "-o", name.as_str()];
        args.extend(flag);
        keygen(&d, &args);
        let text = String::from_utf8(d.read(&name)).unwrap();
        let (public, _) = assert_key_file(&text, "age1", prefix);
        assert_eq!(public_of(&go_keygen, &d.join(&name)), public, "Go's age-keygen -y of our {name}");
        round_trip(&go_age, &d, &public, &d.join(&name), &bytes(100_000, 7));

        let theirs = d.join(&format!("theirs{}.txt", flag.unwrap_or("")));
        let mut cmd = Command::new(&go_keygen);
        cmd.args(flag).arg("-o").arg(&theirs);
        assert!(cmd.output().unwrap().status.success(), "Go age-keygen");
        assert_eq!(public_of(Path::new(WM_KEYGEN), &theirs), public_of(&go_keygen, &theirs), "our -y of Go's key");
    }
}

#[test]
fn debian_age_reads_our_classic_keys_and_we_read_its_keys() {
    if !have("age") || !have("age-keygen") {
        return;
    }
    let d = Dir::new();
    keygen(&d, &["-q", "-o", "ours.txt"]);
    let public = public_of(Path::new(WM_KEYGEN), &d.join("ours.txt"));
    assert_eq!(public_of(Path::new("age-keygen"), &d.join("ours.txt")), public, "Debian age-keygen -y of our key");
    round_trip(Path::new("age"), &d, &public, &d.join("ours.txt"), &bytes(50_000, 3));
    let (theirs, their_public) = age_keygen(&d, "theirs.txt");
    assert_eq!(public_of(Path::new(WM_KEYGEN), &theirs), their_public, "our -y of Debian age-keygen's key");
}
