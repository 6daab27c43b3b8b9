//! What the tools say, alike across tools: a summary line on every
//! success (terminal or not) unless -q, the detail with -v; restores
//! pointed to wm-restore; errors that show file names and public keys but
//! never a secret key, with clap's suggestions, age's spellings, and a
//! remedy for the common traps; counts with the right plural.

use std::path::{Path, PathBuf};

use crate::harness::*;

/// A database, a key, a backup of it and a directory with one backup in it.
struct World {
    d: Dir,
    id: PathBuf,
    key: String,
}

fn world() -> World {
    let d = Dir::new();
    d.workmem_db("memory.db", 200_000, true);
    let (id, key) = d.age_key("id.txt");
    run(WORKMEM_BACKUP, &d).args(["-q", "--db", "memory.db", "-r", &key, "--to", "b.age"]).go().ok();
    d.mkdir("bk");
    run(WORKMEM_BACKUP, &d).args(["-q", "--db", "memory.db", "-r", &key, "--to", "bk/"]).go().ok();
    World { d, id, key }
}

/// A tool's name, its binary, its arguments (`{N}` for a fresh name), its stdin.
type Case = (&'static str, &'static str, Vec<String>, Option<Vec<u8>>);

/// Every tool's ordinary successful run, as cron would start it.
fn runs(w: &World) -> Vec<Case> {
    let id = w.id.to_str().unwrap().to_string();
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    vec![
        ("wm-snapshot", WM_SNAPSHOT, s(&["--db", "memory.db", "-o", "snap-{N}.db"]), None),
        ("wm-seal", WM_SEAL, s(&["-r", &w.key, "-o", "sealed-{N}.age"]), Some(w.d.read("b.age"))),
        ("workmem-backup", WORKMEM_BACKUP, s(&["--db", "memory.db", "-r", &w.key, "--to", "w-{N}.age"]), None),
        ("wm-verify", WM_VERIFY, s(&["-i", &id, "b.age"]), None),
        ("wm-restore", WM_RESTORE, s(&["-i", &id, "--db", "memory.db", "--dry-run", "b.age"]), None),
        ("wm-prune", WM_PRUNE, s(&["--keep-last", "1", "bk"]), None),
        ("wm-keygen", WM_KEYGEN, s(&["-o", "key-{N}.txt"]), None),
    ]
}

#[test]
fn every_tool_says_one_line_on_success_terminal_or_not_nothing_with_q_and_more_with_v() {
    let w = world();
    for (n, verbosity) in [(0, None), (1, Some("-q")), (2, Some("-v"))] {
        for (prog, exe, args, stdin) in runs(&w) {
            let args: Vec<String> = args.iter().map(|a| a.replace("{N}", &n.to_string())).collect();
            let mut r = run(exe, &w.d).args(verbosity).args(&args);
            if let Some(data) = &stdin {
                r = r.stdin(data.clone());
            }
            let out = r.go();
            out.ok();
            let lines: Vec<&str> = out.stderr.lines().collect();
            // age-keygen's own line, which scripts read, is wm-keygen's summary.
            let prefix = if prog == "wm-keygen" { "Public key: age1".to_string() } else { format!("{prog}: ") };
            match verbosity {
                None => {
                    assert_eq!(lines.len(), 1, "{prog} {args:?}: one summary line: {:?}", out.stderr);
                    assert!(lines[0].starts_with(&prefix), "{prog}: {:?}", lines[0]);
                }
                Some("-q") => assert!(out.stderr.is_empty(), "{prog} -q: nothing on stderr: {:?}", out.stderr),
                _ => {
                    assert!(lines.len() >= 2, "{prog} -v: the summary and detail: {:?}", out.stderr);
                    assert!(lines[0].starts_with(&prefix), "{prog} -v: {lines:?}");
                }
            }
        }
    }
}

#[test]
fn help_and_man_pages_send_restores_to_wm_restore_and_explain_plain_age_once() {
    let man = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    for (prog, exe) in [
        ("wm-snapshot", WM_SNAPSHOT),
        ("wm-seal", WM_SEAL),
        ("workmem-backup", WORKMEM_BACKUP),
        ("wm-verify", WM_VERIFY),
        ("wm-restore", WM_RESTORE),
        ("wm-prune", WM_PRUNE),
        ("wm-keygen", WM_KEYGEN),
    ] {
        let help = String::from_utf8(std::process::Command::new(exe).arg("--help").output().unwrap().stdout).unwrap();
        assert!(!help.contains("age -d"), "{prog} --help shows a plain age restore:\n{help}");
        if matches!(prog, "wm-seal" | "workmem-backup") {
            assert!(help.contains("wm-restore -i identity.txt memory.db.age"), "{prog} --help points to wm-restore");
        }
        let page = std::fs::read_to_string(man.join(format!("{prog}.1"))).unwrap();
        let plain = page.matches("age \\-d \\-i identity.txt").count();
        let expected = usize::from(prog == "wm-restore");
        assert_eq!(plain, expected, "{prog}(1): the plain age restore is explained in wm-restore(1) only");
    }
}

#[test]
fn a_misspelled_flag_gets_clap_s_suggestion_and_age_s_spellings_work() {
    let w = world();
    let out = run(WM_PRUNE, &w.d).args(["--keep-lst", "2", "bk"]).go();
    out.expect(2, "unexpected argument '--keep-lst' found; did you mean '--keep-last'?").one_line_error("wm-prune");
    let out = run(WORKMEM_BACKUP, &w.d).args(["--db", "memory.db", "-r", &w.key, "--to", "x.age", "--verfy"]).go();
    out.expect(2, "did you mean '--verify'?").one_line_error("workmem-backup");
    // age's -o/--output, --recipient, --recipients-file, --identity.
    let key_file = w.d.write("recipients.txt", format!("{}\n", w.key));
    let snap = w.d.read("b.age");
    run(WM_SEAL, &w.d).args(["--recipient", &w.key, "--output", "o1.age"]).stdin(snap.clone()).go().ok();
    run(WM_SEAL, &w.d).args(["--recipients-file", key_file.to_str().unwrap(), "-o", "o2.age"]).stdin(snap).go().ok();
    run(WORKMEM_BACKUP, &w.d).args(["--db", "memory.db", "--recipient", &w.key, "--output", "o3.age"]).go().ok();
    run(WM_SNAPSHOT, &w.d).args(["--db", "memory.db", "--output", "o4.db"]).go().ok();
    run(WM_VERIFY, &w.d).args(["--identity", w.id.to_str().unwrap(), "o3.age"]).go().ok();
    for f in ["o1.age", "o2.age", "o3.age", "o4.db"] {
        assert!(w.d.join(f).is_file(), "{f} written");
    }
}

#[test]
fn file_names_and_public_keys_are_shown_secret_keys_never() {
    let w = world();
    let id = w.id.to_str().unwrap();
    let out = run(WM_RESTORE, &w.d).args(["-i", id, "b.age", "backups/memory-20261201T020000Z.db.age"]).go();
    out.expect(2, "unexpected argument 'backups/memory-20261201T020000Z.db.age' found").one_line_error("wm-restore");
    let secret = secret_of(&w.id);
    let out = run(WM_RESTORE, &w.d).args(["-i", id, "b.age", &secret]).go();
    out.expect(2, "(a value that looks like a secret key, not shown)").one_line_error("wm-restore");
    assert_not_echoed(&out.stderr, &secret, "a secret key as a stray argument");
    // A public key with one character changed: shown, and called a bad checksum.
    let last = w.key.chars().last().unwrap();
    let typo = format!("{}{}", &w.key[..w.key.len() - 1], if last == 'q' { 'p' } else { 'q' });
    let out = run(WM_SEAL, &w.d).args(["-r", &typo, "-o", "t.age"]).stdin(w.d.read("b.age")).go();
    out.expect(1, &format!("-r {typo}: not a valid age public key: bad checksum")).one_line_error("wm-seal");
    assert!(out.stderr.contains("wm-keygen -y"), "the remedy: {}", out.stderr);
    assert!(!w.d.join("t.age").exists());
}

#[test]
fn a_stopped_servers_wal_database_in_a_directory_the_backup_user_cannot_write_names_the_remedy() {
    let d = Dir::new();
    let dir = d.mkdir("srv");
    let db = d.workmem_db("srv/memory.db", 100_000, true);
    for j in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{j}", db.display()));
    }
    assert!(!Path::new(&format!("{}-shm", db.display())).exists(), "the server is stopped: no -shm");
    let (_, key) = d.age_key("id.txt");
    if !nix::unistd::geteuid().is_root() {
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
    }
    let before = d.tree();
    let out = run(WORKMEM_BACKUP, &d).args(["--db", "srv/memory.db", "-r", &key, "--to", "-"]).unprivileged().go();
    out.expect(1, "srv/memory.db: WAL database without its -shm file (is the server stopped?)")
        .expect(1, "attempt to write a readonly database")
        .expect(1, "run the backup as the database's owner (User= in a systemd unit)")
        .one_line_error("workmem-backup");
    assert!(out.stdout.is_empty());
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    assert_unchanged(&before, &d.tree(), "a refused read-only source");
}

#[test]
fn to_a_directory_that_does_not_exist_says_how_to_make_it() {
    let w = world();
    let before = w.d.tree();
    let out = run(WORKMEM_BACKUP, &w.d).args(["--db", "memory.db", "-r", &w.key, "--to", "nodir/"]).go();
    out.expect(1, "destination directory: nodir/: no such file or directory")
        .expect(1, "create it first (mkdir -p nodir), or drop the trailing slash")
        .one_line_error("workmem-backup");
    assert_unchanged(&before, &w.d.tree(), "--to nodir/");
}

#[test]
fn counts_of_one_are_singular() {
    let w = world();
    let out = run(WM_SEAL, &w.d).args(["-r", &w.key, "-o", "one.age"]).stdin(w.d.read("b.age")).go();
    out.expect(0, " for 1 recipient in ");
    let out = run(WM_PRUNE, &w.d).args(["--keep-last", "1", "bk"]).go();
    out.expect(0, "bk: 1 backup: 1 kept, 0 to drop");
    let out = run(WM_KEYGEN, &w.d).args(["-y", w.id.to_str().unwrap()]).go();
    out.expect(0, "wm-keygen: 1 recipient of ");
}
