//! No error message, of any tool, contains 8 consecutive characters of a
//! secret key or of a near-miss of one: lower case, underscores, cut short,
//! one character changed, post-quantum keys, SSH private key blocks, a
//! secret in a recipients file or a malformed one in an identity file.

use age::secrecy::ExposeSecret;

use crate::harness::*;

/// The part of a secret after its type prefix, which is no secret.
fn body(secret: &str) -> String {
    let upper = secret.to_ascii_uppercase().replace('_', "-");
    let skip = if upper.starts_with("AGE-SECRET-KEY-PQ-1") {
        19
    } else if upper.starts_with("AGE-SECRET-KEY-1") {
        16
    } else {
        0
    };
    secret[skip..].to_string()
}

#[track_caller]
fn never_echoed(stderr: &str, secret: &str, what: &str) {
    let b = body(secret);
    let lower = stderr.to_lowercase();
    let chars: Vec<char> = b.chars().collect();
    for w in chars.windows(8) {
        let piece: String = w.iter().collect::<String>().to_lowercase();
        if piece.chars().all(|c| c.is_ascii_alphanumeric() || "+/=_-".contains(c)) {
            assert!(!lower.contains(&piece), "{what}: {piece:?} of the secret is in: {stderr}");
        }
    }
}

/// The near-misses of a secret key string.
fn variants(secret: &str) -> Vec<(String, &'static str)> {
    let mut changed: Vec<char> = secret.chars().collect();
    let i = changed.len() - 3;
    changed[i] = if changed[i] == 'Q' { 'P' } else { 'Q' };
    vec![
        (secret.to_string(), "the key itself"),
        (secret.to_lowercase(), "in lower case"),
        (secret.replace('-', "_"), "with underscores"),
        (secret[..secret.len() - 10].to_string(), "cut short"),
        (secret[8..].to_string(), "without its start"),
        (changed.into_iter().collect(), "one character changed"),
        (format!("  {secret}  "), "with spaces around"),
    ]
}

#[test]
fn a_secret_key_or_a_near_miss_given_as_a_recipient_is_never_echoed() {
    let d = Dir::new();
    d.workmem_db("memory.db", 100_000, true);
    let x25519 = age::x25519::Identity::generate().to_string().expose_secret().to_string();
    let pq = wmbackup::age::pq::HybridIdentity::generate().to_string().expose_secret().to_string();
    let before = d.tree();
    let mut runs = 0;
    for secret in [&x25519, &pq] {
        for (value, how) in variants(secret) {
            for out in [
                run(WORKMEM_BACKUP, &d).args(["--db", "memory.db", "--to", "out.age", "-r", &value]).go(),
                run(WM_SEAL, &d).args(["-r", &value, "--to", "out.age"]).stdin(b"x".to_vec()).go(),
                run(WM_SEAL, &d).args([value.as_str()]).stdin(b"x".to_vec()).go(),
            ] {
                assert_ne!(out.code(), 0, "{how}: refused");
                never_echoed(&out.stderr, secret, how);
                runs += 1;
            }
            // In a recipients file, on its second line.
            d.write("keys.txt", format!("# team\n{value}\n"));
            let out = run(WM_SEAL, &d).args(["-R", "keys.txt", "--to", "out.age"]).stdin(b"x".to_vec()).go();
            assert_eq!(out.code(), 1, "{how} in a file: {}", out.stderr);
            never_echoed(&out.stderr, secret, &format!("{how}, in a recipients file"));
            std::fs::remove_file(d.join("keys.txt")).unwrap();
            runs += 1;
        }
    }
    assert_unchanged(&before, &d.tree(), "secrets as recipients");
    assert_eq!(runs, 2 * 7 * 4);
}

#[test]
fn an_ssh_private_key_block_is_never_echoed_as_recipient_or_identity() {
    if !have("ssh-keygen") {
        return;
    }
    let d = Dir::new();
    let (key, _) = ssh_keygen(&d, "id", "", &["-t", "ed25519"]).unwrap();
    let block = std::fs::read_to_string(&key).unwrap();
    let lines: Vec<&str> = block.lines().filter(|l| !l.starts_with("-----")).collect();
    let mangled = block.replacen("b3BlbnNzaC1rZXktdjE", "b3BlbnNzaC1rZXktdjX", 1);
    d.write("mangled", &mangled);
    d.write("backup.age", b"age-encryption.org/v1\n");
    for out in [
        run(WM_SEAL, &d).args(["-r", &block, "--to", "out.age"]).stdin(b"x".to_vec()).go(),
        run(WM_SEAL, &d).args(["-R", "id", "--to", "out.age"]).stdin(b"x".to_vec()).go(),
        run(WM_VERIFY, &d).args(["-i", "mangled", "backup.age"]).go(),
        run(WM_RESTORE, &d).args(["-i", "mangled", "--db", "x.db", "backup.age"]).go(),
    ] {
        assert_ne!(out.code(), 0);
        for l in &lines {
            never_echoed(&out.stderr, l, "an SSH private key block");
        }
    }
}

#[test]
fn a_malformed_secret_in_an_identity_file_is_never_echoed() {
    let d = Dir::new();
    d.write("backup.age", b"age-encryption.org/v1\n");
    let x25519 = age::x25519::Identity::generate().to_string().expose_secret().to_string();
    let pq = wmbackup::age::pq::HybridIdentity::generate().to_string().expose_secret().to_string();
    let mut runs = 0;
    for secret in [&x25519, &pq] {
        for (value, how) in variants(secret) {
            d.write("id.txt", format!("# my key\n{value}\n"));
            for out in [
                run(WM_VERIFY, &d).args(["-i", "id.txt", "backup.age"]).go(),
                run(WM_RESTORE, &d).args(["-i", "id.txt", "--db", "x.db", "backup.age"]).go(),
            ] {
                assert_ne!(out.code(), 0, "{how}");
                never_echoed(&out.stderr, secret, &format!("{how}, in an identity file"));
                runs += 1;
            }
        }
    }
    assert_eq!(runs, 2 * 7 * 2);
}

/// The `-r`/`-i` value is checked for key material before any file-system
/// call: in a working directory the user cannot search, a stat of the value
/// fails with EACCES, whose message used to print the whole value. Run as
/// uid 65534 in a 0700 directory of root's (the test needs root: CI runs as
/// root; elsewhere it is skipped and the skip recorded).
#[test]
fn a_secret_value_is_refused_before_any_file_system_call_even_where_the_directory_cannot_be_searched() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if !nix::unistd::geteuid().is_root() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("the EACCES test needs root when CI=true");
        }
        eprintln!("SKIPPED: needs root (to run as another user in an unsearchable directory)");
        record_skip("not root (EACCES secret test)", Skip::Test);
        return;
    }
    let d = Dir::new();
    let locked = d.mkdir("locked");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(&d.path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let x25519 = age::x25519::Identity::generate().to_string().expose_secret().to_string();
    let pq = wmbackup::age::pq::HybridIdentity::generate().to_string().expose_secret().to_string();
    // As uid 65534, inside the directory it cannot search (entered as root,
    // before the switch: a child's chdir would otherwise come after it).
    let as_nobody_in_locked = |bin: &str, args: &[&str]| {
        let mut r = run(bin, &d).args(args).stdin(b"x".to_vec());
        let c = r.command();
        c.current_dir(&locked);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            c.pre_exec(|| {
                // nix has no setgroups on Apple systems; the tests run on Linux.
                #[cfg(not(target_vendor = "apple"))]
                nix::unistd::setgroups(&[]).map_err(std::io::Error::from)?;
                nix::unistd::setgid(nix::unistd::Gid::from_raw(65534)).map_err(std::io::Error::from)?;
                nix::unistd::setuid(nix::unistd::Uid::from_raw(65534)).map_err(std::io::Error::from)
            });
        }
        r.go()
    };
    // The directory really cannot be searched: a plain file name there gives EACCES.
    let out = as_nobody_in_locked(WM_SEAL, &["-r", "keys.txt", "--to", "/dev/null"]);
    assert!(out.stderr.contains("ermission denied"), "EACCES expected: {}", out.stderr);
    let mut runs = 0;
    for secret in [&x25519, &pq] {
        for (value, how) in variants(secret) {
            for (bin, args) in [
                (WM_SEAL, vec!["-r", &value, "--to", "/dev/null"]),
                (WM_SEAL, vec!["-R", &value, "--to", "/dev/null"]),
                (WORKMEM_BACKUP, vec!["--db", "/nonexistent/memory.db", "--to", "/dev/null", "-r", &value]),
                (WM_VERIFY, vec!["-i", &value, "/nonexistent/backup.age"]),
                (WM_RESTORE, vec!["-i", &value, "--db", "/nonexistent/x.db", "/nonexistent/backup.age"]),
            ] {
                let out = as_nobody_in_locked(bin, &args);
                assert_ne!(out.code(), 0, "{how}: refused by {bin}");
                never_echoed(&out.stderr, secret, &format!("{how}, in an unsearchable directory ({bin})"));
                runs += 1;
            }
        }
    }
    assert_eq!(runs, 2 * 7 * 5);
    // The key itself is refused as a key, not as a file that cannot be read.
    let out = as_nobody_in_locked(WM_SEAL, &["-r", &x25519, "--to", "/dev/null"]);
    out.expect(1, "age secret key");
    let out = as_nobody_in_locked(WM_VERIFY, &["-i", &x25519, "/nonexistent/backup.age"]);
    out.expect(1, "is a key (not shown)");
}
