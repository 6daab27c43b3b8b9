//! workmem-backup: what it promises (issue 5), each test named after one
//! promise. The seed's own test plan first, then the flags, the resolver and
//! its `.env` loader, the equivalence with the wm-snapshot | wm-seal pipeline,
//! and pipelines that leave the machine through rclone and ssh.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rusqlite::Connection;

const PROG: &str = "workmem-backup";
const METHODS: [&str; 2] = ["vacuum", "pages"];
const SPOOLS: [&str; 3] = ["auto", "memory", "disk"];

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// `age -d` with the real CLI into `to`; panics with age's message when it fails.
#[track_caller]
fn restore(identity: &Path, file: &Path, to: &Path) -> PathBuf {
    let plain = age_decrypt(identity, file).unwrap_or_else(|e| panic!("age -d {}: {e}", file.display()));
    std::fs::write(to, plain).unwrap();
    to.to_path_buf()
}

/// Decrypts a backup and checks it is the database `source` holds.
#[track_caller]
fn assert_restores_to(identity: &Path, backup: &Path, source: &Path) {
    let scratch = Dir::new();
    let restored = restore(identity, backup, &scratch.join("restored.db"));
    assert_integrity(&restored);
    assert_eq!(content_digest(&restored), content_digest(source), "restored {} equals the source", backup.display());
}

/// A tiny database that says which one it is.
fn tagged_db(path: &Path, tag: &str) -> PathBuf {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    let c = Connection::open(path).unwrap();
    c.execute_batch("CREATE TABLE tag(name TEXT NOT NULL);").unwrap();
    c.execute("INSERT INTO tag(name) VALUES (?1)", [tag]).unwrap();
    path.to_path_buf()
}

/// The tag of the database inside an encrypted backup.
#[track_caller]
fn tag_of(identity: &Path, backup: &Path) -> String {
    let scratch = Dir::new();
    let restored = restore(identity, backup, &scratch.join("restored.db"));
    let c = Connection::open(&restored).unwrap();
    c.query_row("SELECT name FROM tag", [], |r| r.get(0)).unwrap()
}

/// A copy (a hard link when possible) of the built workmem-backup in `dir`,
/// so that "the executable's directory" is a directory the test controls.
fn install_copy(dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(PROG);
    if std::fs::hard_link(WORKMEM_BACKUP, &p).is_err() {
        std::fs::copy(WORKMEM_BACKUP, &p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    p.to_str().unwrap().to_string()
}

/// Hidden or temporary-looking names in a listing: what a run must never leave.
fn strays(t: &Tree) -> Vec<String> {
    t.keys()
        .filter(|k| {
            let name = k.trim_end_matches('/').rsplit('/').next().unwrap_or(k);
            name.starts_with('.') || name.contains(".tmp") || name.contains("(deleted)")
        })
        .cloned()
        .collect()
}

/// The listing without the source's `-wal`/`-shm`, which SQLite itself may
/// create when it reads a WAL database (see `wal_source_is_never_modified_and_only_sqlites_wal_index_may_appear`).
fn without_wal_index(t: &Tree) -> Tree {
    t.iter()
        .filter(|(k, _)| !k.ends_with("-wal") && !k.ends_with("-shm"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn names(t: &Tree) -> Vec<String> {
    t.keys().cloned().collect()
}

fn canonical(p: &Path) -> PathBuf {
    let dir = std::fs::canonicalize(p.parent().unwrap()).unwrap();
    dir.join(p.file_name().unwrap())
}

trait RunExt {
    fn cwd(self, dir: &Path) -> Self;
    fn arg_path(self, p: &Path) -> Self;
}

impl RunExt for Run {
    fn cwd(mut self, dir: &Path) -> Self {
        self.command().current_dir(dir);
        self
    }
    fn arg_path(self, p: &Path) -> Self {
        self.args([p])
    }
}

/// Runs `script` with bash (pipefail needs bash, not dash); `args` are $1, $2, ...
fn bash(script: &str, args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new("bash");
    c.arg("-c").arg(script).arg("bash").args(args).stdin(Stdio::null()).env_remove("MEMORY_DB_PATH");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("run bash")
}

/// A test's world: a workmem database `memory.db` and an age key `key.txt`
/// (made by the `age` crate) in one directory, and workmem-backup run on the
/// one to the other's recipient.
struct Fx {
    d: Dir,
    db: PathBuf,
    id: PathBuf,
    key: String,
}

impl Fx {
    /// `memory.db` of about `bytes`, in WAL mode or with a rollback journal.
    fn new(bytes: u64, wal: bool) -> Fx {
        let d = Dir::new();
        let db = d.workmem_db("memory.db", bytes, wal);
        let (id, key) = d.age_key("key.txt");
        Fx { d, db, id, key }
    }

    /// `workmem-backup --db memory.db --age-recipient KEY ARGS`, ready to run.
    fn run(&self, args: &[&str]) -> Run {
        run(WORKMEM_BACKUP, &self.d).args(["--db", "memory.db", "--age-recipient", &self.key]).args(args)
    }

    /// `backup` (relative to the directory) decrypts with the real `age` CLI
    /// to a database that passes integrity_check and holds what memory.db holds.
    #[track_caller]
    fn assert_restores(&self, backup: impl AsRef<Path>) {
        assert_restores_to(&self.id, &self.d.path.join(backup), &self.db);
    }
}

// ---------------------------------------------------------------------------
// 1. The seed's test plan, against the binary
// ---------------------------------------------------------------------------

#[test]
fn round_trip_backup_decrypts_with_age_to_the_same_rows() {
    if !have("age") || !have("sqlite3") {
        return;
    }
    for wal in [true, false] {
        let fx = Fx::new(600_000, wal);
        let before = sha256_file(&fx.db);
        let out = fx.run(&["--to", "memory.db.age"]).go();
        out.ok();
        assert!(out.stdout.is_empty(), "stdout stays empty");
        let backup = fx.d.join("memory.db.age");
        assert_eq!(mode_of(&backup), 0o600, "the backup is private");
        assert!(!is_plaintext_db(&backup), "the backup is not plaintext");
        assert!(
            files_with_sqlite_header(&fx.d.path).iter().all(|p| p == &fx.db),
            "no plaintext copy next to the source"
        );
        fx.assert_restores("memory.db.age");
        assert_eq!(sha256_file(&fx.db), before, "source unchanged (wal={wal})");
    }
}

#[test]
fn missing_source_fails_with_exit_1_and_creates_nothing() {
    let d = Dir::new();
    let (_id, key) = d.age_key("key.txt");
    d.mkdir("sub");
    let before = d.tree();
    for db in ["missing.db", "sub/missing.db", "nodir/memory.db"] {
        let out = run(WORKMEM_BACKUP, &d).args(["--db", db, "--to", "out.age", "--age-recipient", &key]).go();
        out.expect(1, "no such file").one_line_error(PROG);
        assert!(out.stderr.contains(db), "names the path: {}", out.stderr);
        assert!(out.stdout.is_empty());
        assert_unchanged(&before, &d.tree(), db);
    }
    // Default resolution with nothing to find: exit 1, nothing created either.
    let bin = Dir::new();
    let exe = install_copy(&bin.path);
    let out = run(&exe, &d).args(["--to", "out.age", "-r", &key]).go();
    out.expect(1, "memory.db").one_line_error(PROG);
    assert_unchanged(&before, &d.tree(), "no memory.db anywhere");
    assert!(!d.join("memory.db").exists() && !bin.join("memory.db").exists(), "the source is never created");
}

#[test]
fn zero_recipients_is_a_usage_error() {
    let d = Dir::new();
    d.workmem_db("memory.db", 100_000, true);
    d.write("comments-only.txt", "# nobody here yet\n\n");
    let before = d.tree();
    let out = run(WORKMEM_BACKUP, &d).args(["--db", "memory.db", "--to", "out.age"]).go();
    assert_eq!(out.code(), 2, "no recipient flag at all is a usage error: {}", out.stderr);
    assert!(out.stderr.contains("--age-recipient"), "names the flag: {}", out.stderr);
    assert!(out.stdout.is_empty());
    // A recipients file without recipients: still zero recipients, refused.
    let out = run(WORKMEM_BACKUP, &d).args(["--db", "memory.db", "--to", "out.age", "-R", "comments-only.txt"]).go();
    out.expect(1, "no recipients").one_line_error(PROG);
    assert!(out.stderr.contains("comments-only.txt"), "{}", out.stderr);
    assert_unchanged(&before, &d.tree(), "zero recipients");
}

#[test]
fn unwritable_destination_directory_is_permission_denied_and_creates_nothing() {
    let d = Dir::new();
    d.workmem_db("memory.db", 100_000, false);
    let ro = d.mkdir("ro");
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let key = age::x25519::Identity::generate().to_public().to_string();
    let before = d.tree();
    let out = run(WORKMEM_BACKUP, &d)
        .args(["--db", "memory.db", "--to", "ro/memory.db.age", "--age-recipient", &key])
        .unprivileged()
        .go();
    out.expect(1, "permission denied").one_line_error(PROG);
    assert!(out.stderr.contains("/ro"), "names the directory: {}", out.stderr);
    assert_unchanged(&before, &d.tree(), "read-only destination directory");
    run(WORKMEM_BACKUP, &d)
        .args(["--db", "memory.db", "--to", "nodir/memory.db.age", "-r", &key])
        .go()
        .expect(1, "no such file or directory")
        .one_line_error(PROG);
    run(WORKMEM_BACKUP, &d)
        .args(["--db", "memory.db", "--to", "ro/", "-r", &key])
        .unprivileged()
        .go()
        .expect(1, "permission denied")
        .one_line_error(PROG);
    assert_unchanged(&before, &d.tree(), "bad destinations");
}

#[test]
fn empty_paths_are_usage_errors() {
    let Fx { d, key, .. } = Fx::new(100_000, true);
    let before = d.tree();
    let out = run(WORKMEM_BACKUP, &d).args(["--db", "memory.db", "--to", "", "--age-recipient", &key]).go();
    assert_eq!(out.code(), 2, "--to '': {}", out.stderr);
    assert!(out.stderr.contains("--to"), "names the flag: {}", out.stderr);
    let out = run(WORKMEM_BACKUP, &d).args(["--db", "", "--to", "out.age", "--age-recipient", &key]).go();
    assert_eq!(out.code(), 2, "--db '': {}", out.stderr);
    assert!(out.stderr.contains("--db"), "names the flag: {}", out.stderr);
    for out in [
        run(WORKMEM_BACKUP, &d).args(["--db", "memory.db", "--to=", "--age-recipient", &key]).go(),
        run(WORKMEM_BACKUP, &d).args(["--db=", "--to", "out.age", "--age-recipient", &key]).go(),
    ] {
        assert_eq!(out.code(), 2, "{}", out.stderr);
        assert!(!out.stderr.contains("panicked"));
    }
    // An empty recipient value is a usage error too (typically an unset variable).
    for flag in ["--age-recipient", "-r"] {
        let out = run(WORKMEM_BACKUP, &d).args(["--db", "memory.db", "--to", "out.age", flag, ""]).go();
        out.expect(2, "empty value").one_line_error(PROG);
    }
    assert_unchanged(&before, &d.tree(), "empty paths");
}

#[test]
fn recipients_literals_files_and_files_named_like_keys_all_work() {
    if !have("age") || !have("sqlite3") {
        return;
    }
    let d = Dir::new();
    let db = d.workmem_db("memory.db", 200_000, true);
    let (id_a, key_a) = d.age_key("a.key");
    let (id_b, key_b) = d.age_key("b.key");
    let (id_c, key_c) = d.age_key("c.key");
    let (id_x, _key_x) = d.age_key("x.key");

    // A literal, through the seed's flag and through -r.
    for flag in ["--age-recipient", "-r"] {
        run(WORKMEM_BACKUP, &d).args(["--db", "memory.db", "--to", "lit.age", flag, &key_a]).go().ok();
        assert_restores_to(&id_a, &d.join("lit.age"), &db);
        assert!(age_decrypt(&id_x, &d.join("lit.age")).is_err(), "a stranger cannot decrypt");
    }

    // Repeated --age-recipient: every one of them can decrypt.
    run(WORKMEM_BACKUP, &d)
        .args(["--db", "memory.db", "--to", "two.age", "--age-recipient", &key_a, "--age-recipient", &key_b])
        .go()
        .ok();
    for id in [&id_a, &id_b] {
        assert_restores_to(id, &d.join("two.age"), &db);
    }

    // A recipients file (comments, blank lines, CRLF) through --age-recipient and -R.
    d.write("team.txt", format!("# the team\r\n\r\n{key_b}\r\n  {key_c}  \r\n"));
    for flag in ["--age-recipient", "-R"] {
        run(WORKMEM_BACKUP, &d).args(["--db", "memory.db", "--to", "team.age", flag, "team.txt"]).go().ok();
        for id in [&id_b, &id_c] {
            assert_restores_to(id, &d.join("team.age"), &db);
        }
        assert!(age_decrypt(&id_a, &d.join("team.age")).is_err(), "only the file's recipients");
    }

    // A file named like a key is a file: its content counts, not its name.
    d.write(&key_a, format!("{key_c}\n"));
    run(WORKMEM_BACKUP, &d).args(["--db", "memory.db", "--to", "named.age", "--age-recipient", &key_a]).go().ok();
    assert_restores_to(&id_c, &d.join("named.age"), &db);
    assert!(age_decrypt(&id_a, &d.join("named.age")).is_err(), "the file's name is not a recipient");
    std::fs::remove_file(d.join(&key_a)).unwrap();

    // A literal, a file and -R together.
    run(WORKMEM_BACKUP, &d)
        .args(["--db", "memory.db", "--to", "mix.age", "-r", &key_a, "--age-recipient", "team.txt", "-R", "team.txt"])
        .go()
        .ok();
    for id in [&id_a, &id_b, &id_c] {
        assert_restores_to(id, &d.join("mix.age"), &db);
    }

    // An SSH public key, literal and as a file, decrypted with the SSH private key.
    if have_for_some_cases("ssh-keygen") {
        let ssh = d.join("id_ed25519");
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
            .arg(&ssh)
            .status()
            .unwrap();
        assert!(st.success());
        let pubkey = std::fs::read_to_string(d.join("id_ed25519.pub")).unwrap();
        run(WORKMEM_BACKUP, &d).args(["--db", "memory.db", "--to", "ssh.age", "-r", pubkey.trim()]).go().ok();
        assert_restores_to(&ssh, &d.join("ssh.age"), &db);
        run(WORKMEM_BACKUP, &d).args(["--db", "memory.db", "--to", "sshf.age", "-R", "id_ed25519.pub"]).go().ok();
        assert_restores_to(&ssh, &d.join("sshf.age"), &db);
    }
}

#[test]
fn bad_recipients_are_refused_before_any_work_with_one_clear_line() {
    let Fx { d, id, key, .. } = Fx::new(100_000, true);
    let secret = secret_of(&id);
    d.mkdir("adir");
    d.write("bad-line.txt", format!("# team\n{secret}\n"));
    d.write("garbage-line.txt", format!("{key}\nnot a key at all\n"));
    d.write(
        "private.txt",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
    );
    let locked = d.mkdir("locked");
    d.write("locked/keys.txt", format!("{key}\n"));
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let truncated = &key[..40];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--age-recipient", "bogus"], "neither an existing file nor a valid recipient"),
        (vec!["-r", "./no-such-keys.txt"], "neither an existing file nor a valid recipient"),
        (vec!["--age-recipient", truncated], "not a valid age public key: bad checksum"),
        (vec!["--age-recipient", &secret], "age-keygen -y"),
        (vec!["--age-recipient", "adir"], "is a directory"),
        (vec!["--age-recipient", "bad-line.txt"], "bad-line.txt:2"),
        (vec!["-R", "garbage-line.txt"], "garbage-line.txt:2"),
        (vec!["-R", "no-such-keys.txt"], "no such file"),
        (vec!["-R", "private.txt"], "SSH private key"),
        (
            vec!["--age-recipient", "age1yubikey1qwt50d05nh5vutpdzmlg5wn80xq5negm4uj9ghv0snvdd3yysf5yw3rhl3t"],
            "age-plugin-yubikey",
        ),
    ];
    let before = d.tree();
    for (args, needle) in &cases {
        // The source does not exist: a recipient problem must be found first.
        for db in ["memory.db", "missing.db"] {
            let out = run(WORKMEM_BACKUP, &d).args(["--db", db, "--to", "out.age"]).args(args).go();
            out.expect(1, needle).one_line_error(PROG);
            assert!(!out.stderr.contains(&secret[15..]), "a secret is never echoed: {}", out.stderr);
            assert_unchanged(&before, &d.tree(), &format!("{args:?}"));
        }
    }
    let out = run(WORKMEM_BACKUP, &d).args(["--db", "memory.db", "--to", "out.age", "--age-recipient", &secret]).go();
    assert!(out.stderr.contains("secret key"), "says what it is: {}", out.stderr);
    // A recipients file that cannot be reached is reported as such, not as a bad key.
    let out = run(WORKMEM_BACKUP, &d)
        .args(["--db", "memory.db", "--to", "out.age", "--age-recipient", "locked/keys.txt"])
        .unprivileged()
        .go();
    out.expect(1, "permission denied").one_line_error(PROG);
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(!d.join("out.age").exists());
}

#[test]
fn destination_that_is_the_source_is_refused_and_the_source_untouched() {
    let Fx { d, key, .. } = Fx::new(200_000, true);
    d.mkdir("sub");
    std::fs::hard_link(d.join("memory.db"), d.join("hard.age")).unwrap();
    symlink("memory.db", d.join("link.age")).unwrap();
    symlink("link.age", d.join("chain.age")).unwrap();
    symlink(d.join("memory.db"), d.join("abslink.age")).unwrap();
    symlink("memory.db-wal", d.join("dangling-wal.age")).unwrap();
    symlink("memory.db-journal", d.join("dangling-journal.age")).unwrap();
    symlink("sub/../memory.db-shm", d.join("dangling-shm.age")).unwrap();
    symlink(".", d.join("here")).unwrap();
    symlink("memory.db", d.join("alias.db")).unwrap();
    let abs = d.join("memory.db").to_str().unwrap().to_string();
    let dests = [
        "memory.db",
        "./memory.db",
        "sub/../memory.db",
        abs.as_str(),
        "here/memory.db",
        "hard.age",
        "link.age",
        "chain.age",
        "abslink.age",
        "dangling-wal.age",
        "dangling-journal.age",
        "dangling-shm.age",
        "memory.db-wal",
        "memory.db-shm",
        "memory.db-journal",
        "./memory.db-journal",
    ];
    let check = |db: &str, to: &str, env: Option<&str>, before: &Tree| {
        let mut r = run(WORKMEM_BACKUP, &d).args(["--to", to, "--age-recipient", &key]);
        match env {
            Some(v) => r = r.env("MEMORY_DB_PATH", v),
            None => r = r.args(["--db", db]),
        }
        let out = r.go();
        out.expect(1, "is the source database").one_line_error(PROG);
        assert!(out.stdout.is_empty());
        assert_unchanged(before, &d.tree(), &format!("--db {db} --to {to}"));
    };
    // No -wal exists yet: the dangling symlinks really dangle.
    assert!(!d.join("memory.db-wal").exists());
    let before = d.tree();
    for to in dests {
        check("memory.db", to, None, &before);
    }
    // The source named through a symlink, through MEMORY_DB_PATH, by absolute path.
    for to in ["memory.db", "link.age", "memory.db-wal", "hard.age"] {
        check("alias.db", to, None, &before);
        check("", to, Some("  memory.db  "), &before);
        check(&abs, to, None, &before);
    }

    // Refused before the source is read: even an unreadable source gives this error.
    std::fs::set_permissions(d.join("memory.db"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let before_locked = d.tree();
    let out = run(WORKMEM_BACKUP, &d)
        .args(["--db", "memory.db", "--to", "memory.db", "--age-recipient", &key])
        .unprivileged()
        .go();
    out.expect(1, "is the source database").one_line_error(PROG);
    assert_unchanged(&before_locked, &d.tree(), "unreadable source as destination");
    std::fs::set_permissions(d.join("memory.db"), std::fs::Permissions::from_mode(0o644)).unwrap();

    // With a live writer the -wal and -shm exist: a hard link to the -wal is refused as well.
    let holder = Connection::open(d.join("memory.db")).unwrap();
    holder.execute_batch("PRAGMA wal_autocheckpoint=0; INSERT INTO events(label) VALUES ('live');").unwrap();
    assert!(d.join("memory.db-wal").exists(), "the writer keeps a -wal");
    std::fs::hard_link(d.join("memory.db-wal"), d.join("hard-wal.age")).unwrap();
    std::fs::hard_link(d.join("memory.db-shm"), d.join("hard-shm.age")).unwrap();
    let before = d.tree();
    for to in ["hard-wal.age", "hard-shm.age", "dangling-wal.age", "memory.db-wal", "memory.db-shm", "memory.db"] {
        check("memory.db", to, None, &before);
    }
    drop(holder);
}

#[test]
fn no_temporary_is_left_after_success() {
    if !have("age") || !have("sqlite3") {
        return;
    }
    let fx = Fx::new(400_000, false);
    let tmp = fx.d.mkdir("tmp");
    fx.d.mkdir("out");
    for method in METHODS {
        for spool in SPOOLS {
            fx.run(&["--to", "out/memory.db.age", "--method", method, "--spool", spool]).env("TMPDIR", &tmp).go().ok();
            let listing = names(&fx.d.tree());
            assert_eq!(
                listing,
                ["key.txt", "memory.db", "out/", "out/memory.db.age", "tmp/"],
                "exactly the expected files after {method}/{spool}"
            );
            fx.assert_restores("out/memory.db.age");
        }
    }
    // --tmpdir is where a disk spool goes; it is left empty too.
    let spool_dir = fx.d.mkdir("spool");
    fx.run(&["--to", "out/memory.db.age", "--spool", "disk", "--tmpdir", "spool"]).go().ok();
    assert!(std::fs::read_dir(&spool_dir).unwrap().next().is_none(), "nothing left in --tmpdir");
    assert_eq!(names(&fx.d.tree()), ["key.txt", "memory.db", "out/", "out/memory.db.age", "spool/", "tmp/"]);
}

/// A quiescent WAL database (no -wal, no -shm) gets SQLite's own empty `-wal`
/// and `-shm` when read (DECISION_LOG.md, "A WAL source with no -wal/-shm"):
/// the database file itself stays byte-identical, and nothing else appears.
#[test]
fn wal_source_is_never_modified_and_only_sqlites_wal_index_may_appear() {
    let fx = Fx::new(200_000, true);
    fx.d.mkdir("out");
    assert!(
        !fx.d.join("memory.db-wal").exists() && !fx.d.join("memory.db-shm").exists(),
        "quiescent: no -wal, no -shm"
    );
    let before = sha256_file(&fx.db);
    for method in METHODS {
        fx.run(&["--to", "out/memory.db.age", "--method", method]).go().ok();
        assert_eq!(sha256_file(&fx.db), before, "the database file is never written ({method})");
        assert_eq!(
            names(&without_wal_index(&fx.d.tree())),
            ["key.txt", "memory.db", "out/", "out/memory.db.age"],
            "exactly the expected files after --method {method}"
        );
        assert_eq!(
            std::fs::metadata(fx.d.join("memory.db-wal")).map(|m| m.len()).unwrap_or(0),
            0,
            "the -wal stays empty"
        );
    }
}

#[test]
fn second_run_replaces_the_first_old_key_fails_new_key_works() {
    if !have("age") || !have("sqlite3") {
        return;
    }
    let d = Dir::new();
    let db = d.workmem_db("memory.db", 200_000, true);
    let (id_old, key_old) = d.age_key("old.key");
    let (id_new, key_new) = d.age_key("new.key");
    let dest = d.join("memory.db.age");
    run(WORKMEM_BACKUP, &d).args(["--db", "memory.db", "--to", "memory.db.age", "--age-recipient", &key_old]).go().ok();
    assert_restores_to(&id_old, &dest, &db);
    let first_ino = std::fs::metadata(&dest).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).unwrap();
    // A looser mode on the old file must not carry over to the new one.
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o644)).unwrap();

    run(WORKMEM_BACKUP, &d).args(["--db", "memory.db", "--to", "memory.db.age", "--age-recipient", &key_new]).go().ok();
    assert!(age_decrypt(&id_old, &dest).is_err(), "the old key no longer decrypts");
    assert_restores_to(&id_new, &dest, &db);
    assert_eq!(mode_of(&dest), 0o600, "the new backup is private whatever the old one was");
    let second_ino = std::fs::metadata(&dest).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).unwrap();
    assert_ne!(first_ino, second_ino, "replaced by rename, not rewritten in place");

    // A failing run leaves the previous backup exactly as it was.
    let before = sha256_file(&dest);
    run(WORKMEM_BACKUP, &d)
        .args(["--db", "missing.db", "--to", "memory.db.age", "--age-recipient", &key_old])
        .go()
        .expect(1, "no such file");
    assert_eq!(sha256_file(&dest), before, "previous backup untouched by a failed run");
    assert_eq!(strays(&d.tree()), Vec::<String>::new());
}

/// Exit code of a finished child: its own, or 128+N when a signal killed it
/// (a signal that lands before the handlers are installed).
fn exit_code(status: std::process::ExitStatus) -> i32 {
    status.code().unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0))
}

#[test]
fn cancelled_run_leaves_no_destination_and_no_temporaries() {
    let fx = Fx::new(40_000_000, true);
    let d = &fx.d;
    let tmp = d.mkdir("tmp");
    d.write("previous.age", b"the previous backup");
    let before = without_wal_index(&d.tree());
    let start = |dest: &str, method: &str, spool: &str| {
        let mut r = fx.run(&["--to", dest, "--method", method, "--spool", spool]).env("TMPDIR", &tmp);
        r.command().stdout(Stdio::piped());
        r.spawn()
    };

    // Deterministic: to a pipe nobody reads, the run blocks mid-stream and
    // the signal always finds it there.
    for (sig, code) in [(Signal::SIGTERM, 143), (Signal::SIGINT, 130)] {
        let (reader, writer) = std::io::pipe().unwrap();
        let mut r = fx.run(&["--to", "-", "--spool", "disk"]).env("TMPDIR", &tmp);
        r.command().stdout(writer);
        let mut child = r.spawn();
        std::thread::sleep(Duration::from_millis(300));
        kill(Pid::from_raw(child.id() as i32), sig).unwrap();
        let status = wait_timeout(&mut child, Duration::from_secs(20));
        drop(reader);
        let err = stderr_of(&mut child);
        assert_eq!(exit_code(status), code, "{sig} while blocked on a full pipe: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(std::fs::read_dir(&tmp).unwrap().next().is_none(), "{sig}: no spool left in TMPDIR");
        assert_unchanged(&before, &without_wal_index(&d.tree()), &format!("{sig} to a pipe"));
    }

    // To a file: the signal lands at a fraction of a full run's duration, so
    // that most runs really are interrupted, whatever the machine's speed.
    let mut interrupted = 0;
    let mut runs = 0;
    for (method, spool) in [("vacuum", "disk"), ("vacuum", "memory"), ("pages", "auto")] {
        let t0 = Instant::now();
        let mut child = start("timing.age", method, spool);
        assert!(wait_timeout(&mut child, Duration::from_secs(60)).success(), "{}", stderr_of(&mut child));
        let full = t0.elapsed();
        std::fs::remove_file(d.join("timing.age")).unwrap();
        for (sig, code) in [(Signal::SIGTERM, 143), (Signal::SIGINT, 130)] {
            for fraction in [0.15, 0.35] {
                for dest in ["memory.db.age", "previous.age"] {
                    let delay = full.mul_f64(fraction).max(Duration::from_millis(15));
                    let mut child = start(dest, method, spool);
                    std::thread::sleep(delay);
                    kill(Pid::from_raw(child.id() as i32), sig).unwrap();
                    let signalled = Instant::now();
                    let status = wait_timeout(&mut child, Duration::from_secs(30));
                    let err = stderr_of(&mut child);
                    let c = exit_code(status);
                    runs += 1;
                    let what = format!("{sig} {method}/{spool} --to {dest} after {delay:?} (full run {full:?})");
                    assert!(c == 0 || c == code, "{what}: exit {c}: {err}");
                    assert!(!err.contains("panicked"), "{what}: {err}");
                    if c == code {
                        interrupted += 1;
                        assert!(signalled.elapsed() < Duration::from_secs(5), "{what}: stops promptly");
                        // Nothing committed: no new destination, the previous one intact.
                        assert_unchanged(&before, &without_wal_index(&d.tree()), &what);
                    } else {
                        // It finished first: the backup is whole; put the directory back.
                        assert!(d.join(dest).exists(), "{what}: exit 0 means a destination");
                        if dest == "previous.age" {
                            d.write("previous.age", b"the previous backup");
                            std::fs::set_permissions(d.join(dest), std::fs::Permissions::from_mode(0o644)).unwrap();
                        } else {
                            std::fs::remove_file(d.join(dest)).unwrap();
                        }
                    }
                    assert!(std::fs::read_dir(&tmp).unwrap().next().is_none(), "{what}: no spool left in TMPDIR");
                    assert_eq!(strays(&d.tree()), Vec::<String>::new(), "{what}: no temporaries");
                }
            }
        }
    }
    assert!(interrupted * 3 >= runs, "many runs were really interrupted ({interrupted} of {runs})");
}

/// The exit code and the message name the signal that came, whatever the
/// run was doing (an interrupted SQLite statement once reported SIGINT for SIGTERM).
#[test]
fn an_interrupted_run_reports_the_signal_that_came() {
    let fx = Fx::new(40_000_000, true);
    for method in METHODS {
        let args = ["--to", "memory.db.age", "--method", method];
        let t0 = Instant::now();
        fx.run(&args).go().ok();
        let full = t0.elapsed();
        std::fs::remove_file(fx.d.join("memory.db.age")).unwrap();
        let mut interrupted = 0;
        for (sig, code, name) in [(Signal::SIGTERM, 143, "SIGTERM"), (Signal::SIGINT, 130, "SIGINT")] {
            for fraction in [0.15, 0.3, 0.45].repeat(2) {
                let mut child = fx.run(&args).spawn();
                std::thread::sleep(full.mul_f64(fraction).max(Duration::from_millis(15)));
                kill(Pid::from_raw(child.id() as i32), sig).unwrap();
                let status = wait_timeout(&mut child, Duration::from_secs(30));
                let err = stderr_of(&mut child);
                let c = exit_code(status);
                if c == 0 {
                    std::fs::remove_file(fx.d.join("memory.db.age")).unwrap();
                    continue;
                }
                interrupted += 1;
                let what = format!("{name} during --method {method} at {fraction} of {full:?}");
                assert_eq!(c, code, "{what}: exit 128+N: {err}");
                // Killed before the handlers were installed: no message at all, which is fine.
                assert!(err.is_empty() || err.contains(name), "{what}: names the signal: {err}");
                assert!(!fx.d.join("memory.db.age").exists(), "{what}: nothing committed");
            }
        }
        assert!(interrupted > 0, "--method {method}: at least one run was interrupted");
    }
}

/// A run stuck in a call that no signal ends (opening an `--env-file` FIFO
/// nobody writes to: the standard library retries EINTR) takes the first
/// signal as a request to stop, which it cannot act on; the second kills it
/// the default way. The Linux paths wait for it with `sigtimedwait`, the
/// portable ones poll `sigpending` every 50 ms: both are run here.
#[test]
fn a_second_signal_kills_a_run_that_cannot_stop() {
    use std::os::unix::process::ExitStatusExt;
    let fx = Fx::new(100_000, false);
    nix::unistd::mkfifo(&fx.d.join("env.fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let mut child = fx.run(&["--to", "memory.db.age", "--env-file", "env.fifo"]).spawn();
    let pid = Pid::from_raw(child.id() as i32);
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "blocked opening the FIFO");
    kill(pid, Signal::SIGTERM).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "the first signal only asks the run to stop");
    kill(pid, Signal::SIGINT).unwrap();
    let signalled = Instant::now();
    let status = wait_timeout(&mut child, Duration::from_secs(10));
    assert_eq!(status.signal(), Some(Signal::SIGINT as i32), "killed by the second signal: {status:?}");
    assert!(signalled.elapsed() < Duration::from_secs(1), "at once: {:?}", signalled.elapsed());
    assert!(!fx.d.join("memory.db.age").exists(), "nothing committed");
    assert!(hidden_temps(&fx.d.path).is_empty(), "no temporary was made yet");
}

// ---------------------------------------------------------------------------
// 2. Flags
// ---------------------------------------------------------------------------

#[test]
fn seed_flags_work_and_env_file_picks_the_source() {
    if !have("age") || !have("sqlite3") {
        return;
    }
    let d = Dir::new();
    d.mkdir("data");
    let db = d.workmem_db("data/live.db", 200_000, true);
    let (id_a, key_a) = d.age_key("a.key");
    let (id_b, key_b) = d.age_key("b.key");
    d.write("conf.env", "MEMORY_DB_PATH=data/live.db\n");
    // --to, --age-recipient twice, --db.
    run(WORKMEM_BACKUP, &d)
        .args(["--to", "one.age", "--age-recipient", &key_a, "--age-recipient", &key_b, "--db", "data/live.db"])
        .go()
        .ok();
    for id in [&id_a, &id_b] {
        assert_restores_to(id, &d.join("one.age"), &db);
    }
    // --env-file instead of --db.
    run(WORKMEM_BACKUP, &d).args(["--env-file", "conf.env", "--to", "two.age", "--age-recipient", &key_a]).go().ok();
    assert_restores_to(&id_a, &d.join("two.age"), &db);
    // Equals-sign forms.
    run(WORKMEM_BACKUP, &d)
        .args(["--to=three.age", &format!("--age-recipient={key_b}"), "--db=data/live.db"])
        .go()
        .ok();
    assert_restores_to(&id_b, &d.join("three.age"), &db);
}

#[test]
fn armor_writes_pem_that_age_decrypts() {
    if !have("age") || !have("sqlite3") {
        return;
    }
    let fx = Fx::new(200_000, true);
    for flag in ["--armor", "-a"] {
        fx.run(&["--to", "armored.age", flag]).go().ok();
        let text = std::fs::read_to_string(fx.d.join("armored.age")).expect("armored output is text");
        assert!(text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----\n"), "{}", &text[..60.min(text.len())]);
        assert!(text.trim_end().ends_with("-----END AGE ENCRYPTED FILE-----"));
        assert!(text.lines().all(|l| l.len() <= 64), "PEM lines of at most 64 columns");
        assert_eq!(mode_of(&fx.d.join("armored.age")), 0o600);
        fx.assert_restores("armored.age");
    }
    fx.run(&["--to", "binary.age"]).go().ok();
    assert!(fx.d.read("binary.age").starts_with(b"age-encryption.org/v1\n"), "binary age without --armor");
}

#[test]
fn every_method_and_spool_with_and_without_check_round_trips() {
    if !have("age") || !have("sqlite3") {
        return;
    }
    for wal in [true, false] {
        let fx = Fx::new(500_000, wal);
        let tmp = fx.d.mkdir("tmp");
        for method in METHODS {
            for spool in SPOOLS {
                for check in [false, true] {
                    let mut r = fx.run(&["--to", "b.age", "--method", method, "--spool", spool]).env("TMPDIR", &tmp);
                    if check {
                        r = r.args(["--check"]);
                    }
                    let out = r.go();
                    out.ok();
                    assert!(out.stdout.is_empty());
                    assert!(
                        out.stderr.contains(&format!("via {method}")),
                        "the summary names the method: {}",
                        out.stderr
                    );
                    fx.assert_restores("b.age");
                    assert!(std::fs::read_dir(&tmp).unwrap().next().is_none(), "no spool left");
                }
            }
        }
    }
    let fx = Fx::new(100_000, true);
    let out = fx.run(&["--to", "b.age", "--method", "copy"]).go();
    assert_eq!(out.code(), 2, "unknown method: {}", out.stderr);
    let out = fx.run(&["--to", "b.age", "--spool", "ram"]).go();
    assert_eq!(out.code(), 2, "unknown spool: {}", out.stderr);
    assert!(!fx.d.join("b.age").exists());
}

#[test]
fn quiet_leaves_stderr_empty_otherwise_one_summary_line_and_stdout_always_empty() {
    let fx = Fx::new(200_000, true);
    fx.d.mkdir("out");
    for q in ["-q", "--quiet"] {
        let out = fx.run(&["--to", "out/q.age", q]).go();
        out.ok();
        assert_eq!(out.stderr, "", "{q}: nothing on stderr");
        assert!(out.stdout.is_empty(), "{q}: nothing on stdout");
        assert!(fx.d.join("out/q.age").exists());
    }
    let out = fx.run(&["--to", "out/s.age"]).go();
    out.ok();
    assert!(out.stdout.is_empty(), "stdout stays empty");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one summary line: {:?}", out.stderr);
    assert!(lines[0].starts_with("workmem-backup: "), "{}", lines[0]);
    let dest = canonical(&fx.d.join("out/s.age"));
    assert!(lines[0].contains(dest.to_str().unwrap()), "names the destination {}: {}", dest.display(), lines[0]);
    assert!(lines[0].contains("memory.db"), "names the source: {}", lines[0]);
    assert!(!out.stderr.contains('\r') && !out.stderr.contains('\x1b'), "no progress bar when not a terminal");
    // Errors still show under -q.
    let out = run(WORKMEM_BACKUP, &fx.d).args(["--db", "missing.db", "--to", "out/e.age", "-r", &fx.key, "-q"]).go();
    out.expect(1, "missing.db").one_line_error(PROG);
}

#[test]
fn help_shows_the_flags_and_points_to_wm_restore() {
    let d = Dir::new();
    let out = run(WORKMEM_BACKUP, &d).args(["--help"]).go();
    out.ok();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--to",
        "--age-recipient",
        "--recipients-file",
        "--db",
        "--env-file",
        "--armor",
        "--method",
        "--spool",
        "--tmpdir",
        "--busy-timeout",
        "--check",
        "--quiet",
    ] {
        assert!(help.contains(flag), "--help documents {flag}");
    }
    assert!(help.contains("wm-restore -i identity.txt"), "--help points to wm-restore:\n{help}");
    assert!(!help.contains("age -d"), "--help never shows the restore that loses data:\n{help}");
}

#[test]
fn go_style_single_dash_long_flags_work_like_double_dash() {
    if !have("age") || !have("sqlite3") {
        return;
    }
    let fx = Fx::new(200_000, true);
    let (d, key) = (&fx.d, &fx.key);
    d.write("conf.env", "MEMORY_DB_PATH=memory.db\n");
    let cases: Vec<Vec<String>> = vec![
        vec!["-to".into(), "go1.age".into(), "-db".into(), "memory.db".into(), "-age-recipient".into(), key.clone()],
        vec!["-to=go2.age".into(), "-db=memory.db".into(), format!("-age-recipient={key}")],
        vec![
            "-env-file".into(),
            "conf.env".into(),
            "-to".into(),
            "go3.age".into(),
            "-age-recipient".into(),
            key.clone(),
        ],
        vec![
            "-to".into(),
            "go4.age".into(),
            "-db".into(),
            "memory.db".into(),
            "-age-recipient".into(),
            key.clone(),
            "-method".into(),
            "pages".into(),
            "-spool".into(),
            "memory".into(),
            "-check".into(),
            "-armor".into(),
            "-quiet".into(),
        ],
    ];
    for args in &cases {
        let out = run(WORKMEM_BACKUP, d).args(args).go();
        out.ok();
        let to = args
            .iter()
            .position(|a| a == "-to")
            .map(|i| args[i + 1].clone())
            .unwrap_or_else(|| args[0].trim_start_matches("-to=").to_string());
        fx.assert_restores(&to);
        if args.contains(&"-quiet".to_string()) {
            assert_eq!(out.stderr, "", "-quiet is --quiet");
            assert!(d.read(&to).starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"), "-armor is --armor");
        }
    }
    // The same backup as with double dashes: same content.
    run(WORKMEM_BACKUP, d).args(["--to", "dd.age", "--db", "memory.db", "--age-recipient", key]).go().ok();
    fx.assert_restores("dd.age");
}

// ---------------------------------------------------------------------------
// 3. The resolver and the .env loader
// ---------------------------------------------------------------------------

#[test]
fn db_flag_beats_memory_db_path_beats_executable_dir_beats_cwd() {
    if !have("age") {
        return;
    }
    let d = Dir::new();
    let (id, key) = d.age_key("key.txt");
    let exe = install_copy(&d.join("bin"));
    tagged_db(&d.join("bin/memory.db"), "exe");
    tagged_db(&d.join("cwd/memory.db"), "cwd");
    tagged_db(&d.join("cwd/rel.db"), "env-relative");
    let env_db = tagged_db(&d.join("env.db"), "env");
    let flag_db = tagged_db(&d.join("flag.db"), "flag");
    let out = d.mkdir("out");
    let cwd = d.join("cwd");
    let backup = out.join("b.age");
    let env_db_s = env_db.to_str().unwrap().to_string();
    let go = |db: Option<&Path>, env: Option<&str>| {
        let mut r = run(&exe, &d).cwd(&cwd).args(["--to"]).arg_path(&backup).args(["--age-recipient", &key]);
        if let Some(p) = db {
            r = r.args(["--db"]).arg_path(p);
        }
        if let Some(v) = env {
            r = r.env("MEMORY_DB_PATH", v);
        }
        let out = r.go();
        out.ok();
        tag_of(&id, &backup)
    };
    assert_eq!(go(Some(&flag_db), Some(&env_db_s)), "flag", "--db beats MEMORY_DB_PATH");
    assert_eq!(go(None, Some(&env_db_s)), "env", "MEMORY_DB_PATH beats the executable's directory");
    assert_eq!(go(None, Some(&format!("  {env_db_s}  "))), "env", "MEMORY_DB_PATH is trimmed");
    assert_eq!(go(None, Some(&format!("\t{env_db_s}\n"))), "env", "MEMORY_DB_PATH is trimmed of tabs and newlines");
    assert_eq!(go(None, Some("  rel.db ")), "env-relative", "a relative MEMORY_DB_PATH is relative to the cwd");
    assert_eq!(go(None, None), "exe", "the executable's directory beats the cwd");
    assert_eq!(go(None, Some("")), "exe", "an empty MEMORY_DB_PATH counts as unset");
    assert_eq!(go(None, Some("   ")), "exe", "a blank MEMORY_DB_PATH counts as unset");
    std::fs::remove_file(d.join("bin/memory.db")).unwrap();
    assert_eq!(go(None, None), "cwd", "then the working directory");

    // Neither place holds memory.db: the error names both.
    std::fs::remove_file(cwd.join("memory.db")).unwrap();
    std::fs::remove_file(&backup).unwrap();
    let before = d.tree();
    let r = run(&exe, &d).cwd(&cwd).args(["--to"]).arg_path(&backup).args(["--age-recipient", &key]);
    let res = r.go();
    res.expect(1, "memory.db").one_line_error(PROG);
    let exe_place = canonical(&d.join("bin/memory.db"));
    let exe_place_raw = d.join("bin/memory.db");
    assert!(
        res.stderr.contains(exe_place.to_str().unwrap()) || res.stderr.contains(exe_place_raw.to_str().unwrap()),
        "names the executable's directory: {}",
        res.stderr
    );
    let cwd_place = canonical(&cwd.join("memory.db"));
    let cwd_place_raw = cwd.join("memory.db");
    assert!(
        res.stderr.contains(cwd_place.to_str().unwrap()) || res.stderr.contains(cwd_place_raw.to_str().unwrap()),
        "names the working directory: {}",
        res.stderr
    );
    assert_unchanged(&before, &d.tree(), "nothing found, nothing created");
}

#[test]
fn env_file_syntax_cases_pick_the_right_database() {
    if !have("age") {
        return;
    }
    let d = Dir::new();
    let (id, key) = d.age_key("key.txt");
    let exe = install_copy(&d.join("bin"));
    let cwd = d.mkdir("cwd");
    tagged_db(&cwd.join("memory.db"), "fallback");
    let backup = d.join("b.age");
    let cases: &[(&str, &str, &str)] = &[
        ("plain", "MEMORY_DB_PATH=plain.db\n", "plain.db"),
        ("export prefix", "export MEMORY_DB_PATH=exported.db\n", "exported.db"),
        ("export and blanks", "export   MEMORY_DB_PATH =  spaced.db  \n", "spaced.db"),
        ("single quotes", "MEMORY_DB_PATH='with space.db'\n", "with space.db"),
        ("double quotes", "MEMORY_DB_PATH=\"dq.db\"\n", "dq.db"),
        ("double quotes are literal", "MEMORY_DB_PATH=\"a\\nb.db\"\n", "a\\nb.db"),
        ("single quotes are literal", "MEMORY_DB_PATH='$HOME.db'\n", "$HOME.db"),
        ("hash inside single quotes", "MEMORY_DB_PATH='h #x.db'\n", "h #x.db"),
        ("hash inside double quotes", "MEMORY_DB_PATH=\"q #x.db\" # a comment\n", "q #x.db"),
        ("inline comment after space", "MEMORY_DB_PATH=c.db # the live one\n", "c.db"),
        ("inline comment after tab", "MEMORY_DB_PATH=t.db\t# the live one\n", "t.db"),
        ("hash without whitespace is kept", "MEMORY_DB_PATH=a#b.db\n", "a#b.db"),
        ("full-line comment", "# MEMORY_DB_PATH=wrong.db\nMEMORY_DB_PATH=right.db\n", "right.db"),
        ("UTF-8 BOM", "\u{feff}MEMORY_DB_PATH=bom.db\n", "bom.db"),
        ("CRLF", "# comment\r\nOTHER=1\r\nMEMORY_DB_PATH='crlf.db'\r\n", "crlf.db"),
        ("BOM and CRLF on the first line", "\u{feff}MEMORY_DB_PATH=bomcrlf.db\r\nX=y\r\n", "bomcrlf.db"),
        (
            "malformed lines skipped",
            "this is not a pair\n1BAD=x\n=nokey\nB-C=y\nMEMORY_DB_PATH=good.db\nMEMORY_DB_PATH=\"unterminated\n",
            "good.db",
        ),
        ("last value wins", "MEMORY_DB_PATH=first.db\nMEMORY_DB_PATH=last.db\n", "last.db"),
        ("no MEMORY_DB_PATH", "OTHER=1\n", "memory.db"),
        ("only malformed", "MEMORY_DB_PATH 'x.db'\nMEMORY_DB_PATH=\"open.db\n", "memory.db"),
    ];
    for (what, content, file) in cases {
        if *file != "memory.db" {
            tagged_db(&cwd.join(file), what);
        }
        let env = d.write("test.env", content);
        let out = run(&exe, &d)
            .cwd(&cwd)
            .args(["--env-file"])
            .arg_path(&env)
            .args(["--to"])
            .arg_path(&backup)
            .args(["--age-recipient", &key])
            .go();
        out.ok();
        assert_eq!(out.stderr.lines().count(), 1, "{what}: no warning, one summary line: {}", out.stderr);
        let want = if *file == "memory.db" { "fallback" } else { what };
        assert_eq!(tag_of(&id, &backup), want, "{what}: {content:?} -> {file}");
        std::fs::remove_file(&backup).unwrap();
    }
}

#[test]
fn env_file_missing_is_silent_unreadable_is_a_warning_and_the_process_env_wins() {
    if !have("age") {
        return;
    }
    let d = Dir::new();
    let (id, key) = d.age_key("key.txt");
    let exe = install_copy(&d.join("bin"));
    let cwd = d.mkdir("cwd");
    let out_dir = d.mkdir("out");
    std::fs::set_permissions(&out_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    tagged_db(&cwd.join("memory.db"), "cwd");
    tagged_db(&cwd.join("dotenv.db"), "dotenv");
    tagged_db(&cwd.join("process.db"), "process");
    let env = d.write("cwd/.env", "MEMORY_DB_PATH=dotenv.db\n");
    let backup = out_dir.join("b.age");
    let base = || run(&exe, &d).cwd(&cwd).args(["--to"]).arg_path(&backup).args(["--age-recipient", &key]);

    // The .env is used when the process has no MEMORY_DB_PATH...
    base().args(["--env-file", ".env"]).go().ok();
    assert_eq!(tag_of(&id, &backup), "dotenv");
    // ...a non-empty process value wins...
    base().args(["--env-file", ".env"]).env("MEMORY_DB_PATH", "process.db").go().ok();
    assert_eq!(tag_of(&id, &backup), "process");
    // ...an empty process value wins too: the .env is not used, the resolver falls through.
    base().args(["--env-file", ".env"]).env("MEMORY_DB_PATH", "").go().ok();
    assert_eq!(tag_of(&id, &backup), "cwd", "MEMORY_DB_PATH='' in the process hides the .env value");
    // ...and --db beats both.
    base().args(["--env-file", ".env", "--db", "process.db"]).go().ok();
    assert_eq!(tag_of(&id, &backup), "process");

    // Empty in the process, nothing beside the executable or in the cwd: an error
    // naming both places, and never the .env's database.
    std::fs::rename(cwd.join("memory.db"), cwd.join("moved.db")).unwrap();
    let out = base().args(["--env-file", ".env"]).env("MEMORY_DB_PATH", "").go();
    out.expect(1, "memory.db").one_line_error(PROG);
    assert!(!out.stderr.contains("dotenv.db"), "the .env value is not used: {}", out.stderr);
    assert!(out.stderr.contains("/bin/memory.db") && out.stderr.contains("/cwd/memory.db"), "{}", out.stderr);
    std::fs::rename(cwd.join("moved.db"), cwd.join("memory.db")).unwrap();

    // A missing .env is silently ignored.
    std::fs::remove_file(&backup).unwrap();
    let out = base().args(["--env-file", "no-such.env"]).go();
    out.ok();
    assert_eq!(out.stderr.lines().count(), 1, "no warning for a missing .env: {}", out.stderr);
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
    assert_eq!(tag_of(&id, &backup), "cwd");

    // An unreadable .env is a warning; the run goes on with the next rule.
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::remove_file(&backup).unwrap();
    let out = base().args(["--env-file", ".env"]).unprivileged().go();
    out.ok();
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "a warning and the summary: {:?}", out.stderr);
    assert!(lines[0].starts_with("workmem-backup: warning: "), "{}", lines[0]);
    assert!(lines[0].contains(".env") && lines[0].contains("permission denied"), "{}", lines[0]);
    assert!(lines[1].contains("backed up"), "{}", lines[1]);
    assert_eq!(tag_of(&id, &backup), "cwd", "the unreadable .env contributed nothing");
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o644)).unwrap();
}

// ---------------------------------------------------------------------------
// 4. The pipeline and the one command give the same database
// ---------------------------------------------------------------------------

#[test]
fn pipeline_and_one_command_decrypt_to_the_same_database() {
    if !have("age") || !have("sqlite3") {
        return;
    }
    let Fx { d, db, id, key } = Fx::new(600_000, true);
    let tmpdir = d.path.to_str().unwrap();
    for method in METHODS {
        let piped = d.join(&format!("piped-{method}.age"));
        let single = d.join(&format!("single-{method}.age"));
        let out = bash(
            r#"set -o pipefail; "$1" --db "$2" --method "$6" | "$3" --to "$4" -r "$5""#,
            &[WM_SNAPSHOT, db.to_str().unwrap(), WM_SEAL, piped.to_str().unwrap(), &key, method],
            &[("TMPDIR", tmpdir)],
        );
        assert!(out.status.success(), "pipeline: {}", String::from_utf8_lossy(&out.stderr));
        run(WORKMEM_BACKUP, &d)
            .args(["--db", "memory.db", "--age-recipient", &key, "--method", method, "--to"])
            .arg_path(&single)
            .go()
            .ok();
        let scratch = Dir::new();
        let a = restore(&id, &piped, &scratch.join("a.db"));
        let b = restore(&id, &single, &scratch.join("b.db"));
        assert_integrity(&a);
        assert_integrity(&b);
        assert_eq!(content_digest(&a), content_digest(&b), "{method}: same content");
        assert_eq!(content_digest(&a), content_digest(&db), "{method}: and the source's");
        // The bytes may differ only if the source changed in between; it did not.
        assert_eq!(sha256_file(&a), sha256_file(&b), "{method}: an unchanged source gives the same image");
    }
    // pipefail: a failing snapshot fails the pipeline and commits nothing.
    let missing = d.join("missing.age");
    let out = bash(
        r#"set -o pipefail; "$1" --db "$2" | "$3" --to "$4" -r "$5""#,
        &[WM_SNAPSHOT, d.join("nope.db").to_str().unwrap(), WM_SEAL, missing.to_str().unwrap(), &key],
        &[],
    );
    assert!(!out.status.success(), "the pipeline fails");
    assert!(!missing.exists(), "nothing committed from an empty input");
}

// ---------------------------------------------------------------------------
// 5. Off-machine pipelines
// ---------------------------------------------------------------------------

#[test]
fn pipeline_into_rclone_webdav_round_trips() {
    if !have("rclone") || !have("age") || !have("sqlite3") {
        return;
    }
    let Fx { d, db, id, key } = Fx::new(600_000, true);
    let served = d.mkdir("served");
    let conf = d.write("rclone.conf", "");
    let (server, envs) = webdav(&served, &conf, &d.path);
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = bash(
        r#"set -o pipefail; "$1" --db "$2" | "$3" -r "$4" | rclone rcat wmtest:memory.db.age"#,
        &[WM_SNAPSHOT, db.to_str().unwrap(), WM_SEAL, &key],
        &envs,
    );
    assert!(out.status.success(), "upload pipeline: {}", String::from_utf8_lossy(&out.stderr));
    assert!(served.join("memory.db.age").exists(), "the server holds the backup");

    let fetched = d.join("fetched.age");
    let out = bash(r#"set -o pipefail; rclone cat wmtest:memory.db.age > "$1""#, &[fetched.to_str().unwrap()], &envs);
    assert!(out.status.success(), "rclone cat: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sha256_file(&fetched), sha256_file(&served.join("memory.db.age")), "fetched what was stored");
    assert!(!is_plaintext_db(&fetched));
    assert_restores_to(&id, &fetched, &db);

    // pipefail: a failing snapshot fails the whole upload pipeline.
    let out = bash(
        r#"set -o pipefail; "$1" --db "$2" | "$3" -r "$4" | rclone rcat wmtest:broken.age"#,
        &[WM_SNAPSHOT, d.join("nope.db").to_str().unwrap(), WM_SEAL, &key],
        &envs,
    );
    assert!(!out.status.success(), "a failed snapshot fails the pipeline");
    drop(server);
}

#[test]
fn pipeline_into_ssh_round_trips() {
    if !have("/usr/sbin/sshd") || !have("ssh") || !have("ssh-keygen") || !have("age") || !have("sqlite3") {
        return;
    }
    let Fx { d, db, id, key } = Fx::new(600_000, true);
    let keygen = |name: &str| {
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "wmtest", "-f"])
            .arg(d.join(name))
            .status()
            .unwrap();
        assert!(st.success(), "ssh-keygen {name}");
        d.join(name)
    };
    let hostkey = keygen("hostkey");
    let userkey = keygen("userkey");
    std::fs::copy(d.join("userkey.pub"), d.join("authorized_keys")).unwrap();
    if nix::unistd::geteuid().is_root() {
        // sshd's privilege separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
    }
    let port = free_port();
    let config = d.write(
        "sshd_config",
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
             PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             StrictModes no\nUsePAM no\nPidFile {}\nPermitRootLogin prohibit-password\n",
            hostkey.display(),
            d.join("authorized_keys").display(),
            d.join("sshd.pid").display()
        ),
    );
    let mut server = Server {
        name: "sshd",
        child: Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-p", &port.to_string(), "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sshd"),
    };
    server.wait_for_port(port);
    let remote = d.mkdir("remote");
    let dest = remote.join("memory.db.age");
    let remote_cmd = format!("cat > '{}'", dest.display());
    let out = bash(
        r#"set -o pipefail; "$1" --db "$2" | "$3" -r "$4" | ssh -F /dev/null -p "$5" -i "$6" -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR 127.0.0.1 "$7""#,
        &[WM_SNAPSHOT, db.to_str().unwrap(), WM_SEAL, &key, &port.to_string(), userkey.to_str().unwrap(), &remote_cmd],
        &[("TMPDIR", d.path.to_str().unwrap())],
    );
    if !out.status.success() {
        let _ = server.child.kill();
        let _ = server.child.wait();
        let log = stderr_of(&mut server.child);
        panic!("ssh pipeline failed: {}\nsshd log:\n{log}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(dest.exists(), "the backup arrived");
    assert!(!is_plaintext_db(&dest));
    assert_restores_to(&id, &dest, &db);
    drop(server);
}

/// The spool and the destination on different file systems: the only rename
/// happens inside the destination's directory, so this must just work.
#[test]
fn spool_on_another_file_system_than_the_destination_works() {
    if !have("age") || !have("sqlite3") {
        return;
    }
    let fx = Fx::new(400_000, true);
    // /dev/shm where it is a file system of its own, else a tmpfs mounted here.
    let Some(spool) = other_file_system(&fx.d.path) else { return };
    for method in METHODS {
        fx.run(&["-q", "--to", "memory.db.age", "--method", method, "--spool", "disk", "--tmpdir"])
            .args([&spool.path])
            .go()
            .ok();
        fx.assert_restores("memory.db.age");
        assert!(std::fs::read_dir(&spool.path).unwrap().next().is_none(), "nothing left in the spool directory");
    }
}

// ---------------------------------------------------------------------------
// 6. History: timestamped backups, --keep-*, --json, --metrics-file
// ---------------------------------------------------------------------------

#[test]
fn to_a_directory_names_the_backup_after_the_database_and_the_utc_second() {
    if !have("age") || !have("sqlite3") {
        return;
    }
    let fx = Fx::new(300_000, false);
    for (dir, to) in [("bk", "bk/"), ("existing", "existing")] {
        fx.d.mkdir(dir);
        let t0 = unix_now();
        let out = fx.run(&["--to", to]).go();
        out.ok();
        let backup = the_backup_in(&fx.d.join(dir), "memory", "db.age", t0, unix_now());
        assert!(out.stderr.contains(&backup.display().to_string()), "the summary names the file: {}", out.stderr);
        assert_eq!(mode_of(&backup), 0o600);
        fx.assert_restores(&backup);
    }
}

#[test]
fn two_backups_in_the_same_second_never_overwrite_each_other() {
    let fx = Fx::new(200_000, false);
    fx.d.mkdir("bk");
    // Every name the run could pick in the next minute is taken already.
    let now = unix_now();
    for t in now - 1..now + 60 {
        fx.d.write(&format!("bk/{}", backup_name("memory", t, "db.age")), "an earlier backup");
    }
    let before = fx.d.tree();
    let out = fx.run(&["--to", "bk/", "--keep-last", "1"]).go();
    out.expect(1, "already exists; never replaced").one_line_error(PROG);
    assert!(out.stderr.contains("names from this second on are taken"), "{}", out.stderr);
    assert_unchanged(&before, &fx.d.tree(), "a backup whose name is taken");
}

#[test]
fn a_second_backup_in_the_same_second_takes_the_next_seconds_name_in_the_same_series() {
    let fx = Fx::new(200_000, false);
    fx.d.mkdir("bk");
    fx.d.mkdir("first");
    // The names of this second and the next are taken, one by a backup, one
    // by a dangling symlink to a file outside that must never be created.
    let now = unix_now();
    fx.d.write(&format!("bk/{}", backup_name("memory", now, "db.age")), "an earlier backup");
    fx.d.write(&format!("bk/{}", backup_name("memory", now - 1, "db.age")), "an earlier backup");
    std::os::unix::fs::symlink(
        fx.d.join("outside"),
        fx.d.join(&format!("bk/{}", backup_name("memory", now + 1, "db.age"))),
    )
    .unwrap();
    let out = fx.run(&["--to", "bk/"]).go();
    out.ok();
    assert!(!fx.d.join("outside").exists(), "nothing created through the planted link");
    let new: Vec<String> = std::fs::read_dir(fx.d.join("bk"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| (now - 1..=now + 1).all(|t| *n != backup_name("memory", t, "db.age")))
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    std::fs::rename(fx.d.join("bk").join(&new[0]), fx.d.join("first").join(&new[0])).unwrap();
    let backup = the_backup_in(&fx.d.join("first"), "memory", "db.age", now + 2, unix_now() + 9);
    assert!(out.stderr.contains(&new[0]), "the summary names the file it took: {}", out.stderr);
    fx.assert_restores(&backup);
}

#[test]
fn keep_prunes_only_its_own_series_once_the_new_backup_is_in_place() {
    let fx = Fx::new(200_000, false);
    let old: Vec<String> = (1..=5).map(|d| format!("memory-2020010{d}T030000Z.db.age")).collect();
    let others = [
        "project-20200101T030000Z.db.age",
        "memory-20200101T030000Z.db",
        "notes.txt",
        ".memory-20200101T030000Z.db.age.a1b2c3.tmp",
    ];
    for n in old.iter().map(String::as_str).chain(others) {
        fx.d.write(&format!("bk/{n}"), n);
    }
    let t0 = unix_now();
    let out = fx.run(&["--to", "bk/", "--keep-last", "3", "--verify", "--json"]).go();
    out.ok();
    let (v, _) = json_on_stdout(&out);
    assert_eq!(v["pruned"], serde_json::json!(old[..3]), "the oldest of its series, oldest first: {v}");
    assert_eq!(v["verified"], true);
    let mut left: Vec<String> = std::fs::read_dir(fx.d.join("bk"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let new = left.iter().find(|n| (t0..=unix_now()).any(|t| **n == backup_name("memory", t, "db.age"))).cloned();
    let mut want: Vec<String> = others.iter().map(|s| s.to_string()).chain(old[3..].iter().cloned()).collect();
    want.extend(new.clone());
    want.sort();
    assert!(new.is_some(), "the new backup is there: {left:?}");
    assert_eq!(left, want);
    for n in others {
        assert_eq!(fx.d.read(&format!("bk/{n}")), n.as_bytes(), "{n} untouched");
    }
}

#[test]
fn a_failed_backup_prunes_nothing() {
    let fx = Fx::new(200_000, false);
    for d in 1..=3 {
        fx.d.write(&format!("bk/memory-2020010{d}T030000Z.db.age"), "old");
    }
    let before = fx.d.tree();
    run(WORKMEM_BACKUP, &fx.d)
        .args(["--db", "nope.db", "-r", &fx.key, "--to", "bk/", "--keep-last", "1"])
        .go()
        .expect(1, "no such file")
        .one_line_error(PROG);
    fx.run(&["--to", "bk/", "--keep-last", "1", "-R", "nope.txt"]).go().expect(1, "nope.txt").one_line_error(PROG);
    assert_unchanged(&before, &fx.d.tree(), "failed backups with --keep-last 1");
}

#[test]
fn keep_without_a_directory_is_a_usage_error() {
    let fx = Fx::new(200_000, false);
    let before = fx.d.tree();
    for to in ["b.age", "-"] {
        fx.run(&["--to", to, "--keep-daily", "7"]).go().expect(2, "--keep-* needs --to DIR/").one_line_error(PROG);
    }
    fx.run(&["--to", "bk/", "--keep-daily", "0"]).go().expect(2, "0 keeps nothing").one_line_error(PROG);
    assert_unchanged(&before, &fx.d.tree(), "--keep-* without a directory");
}

#[test]
fn json_report_has_every_documented_key_and_the_sha256_of_the_file_as_written() {
    if !have("sqlite3") {
        return;
    }
    let fx = Fx::new(300_000, true);
    let out = fx.run(&["--to", "b.age", "--json", "--verify"]).go();
    out.ok();
    let (v, keys) = json_on_stdout(&out);
    assert_eq!(keys, sorted_keys(&BACKUP_KEYS), "{v}");
    let file = fx.d.join("b.age");
    assert_eq!(v["tool"], PROG);
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!((v["exit"].clone(), v["error"].clone()), (serde_json::json!(0), serde_json::Value::Null));
    assert_eq!(v["sha256"], sha256_file(&file), "what sha256sum says of the file");
    assert_eq!(v["ciphertext_bytes"], std::fs::metadata(&file).unwrap().len());
    assert_eq!(v["destination"], canonical(&file).display().to_string());
    assert_eq!(v["method"], "vacuum");
    assert_eq!(v["spool"], "memory");
    assert_eq!(v["verified"], true);
    assert_eq!(v["armored"], false);
    assert_eq!(v["pruned"], serde_json::json!([]));
    let pragma = |p: &str| sqlite3(&fx.db, &format!("PRAGMA {p}")).trim().parse::<u64>().unwrap();
    assert_eq!(
        v["source"],
        serde_json::json!({
            "path": canonical(&fx.db).display().to_string(),
            "page_size": pragma("page_size"),
            "page_count": pragma("page_count"),
            "journal_mode": "wal",
        })
    );
    assert!(v["snapshot_bytes"].as_u64().is_some_and(|b| b > 0 && b % pragma("page_size") == 0), "{v}");
    let fingerprint = &sha256(fx.key.as_bytes())[..8];
    assert_eq!(v["recipients"], serde_json::json!([{"type": "X25519", "fingerprint": fingerprint}]));
    for k in ["started", "finished"] {
        let t = v[k].as_str().unwrap_or_default();
        assert!(t.len() == 20 && t.ends_with('Z') && t.as_bytes()[10] == b'T', "{k} is RFC 3339 UTC: {t}");
    }
    assert!(v["seconds"].as_f64().is_some_and(|s| s > 0.0), "{v}");
}

#[test]
fn json_goes_to_stderr_and_leaves_stdout_to_the_backup() {
    let fx = Fx::new(200_000, false);
    let out = fx.run(&["--to", "-", "--json", "--armor"]).go();
    out.ok();
    assert!(out.stdout.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"), "the backup on stdout");
    let (v, _) = json_on_stderr(&out);
    assert_eq!(v["destination"], "standard output");
    assert_eq!(v["armored"], true);
    assert_eq!(v["sha256"], sha256(&out.stdout), "the digest of the bytes as written");
}

#[test]
fn json_failures_are_one_object_usage_errors_included() {
    let fx = Fx::new(200_000, false);
    let before = fx.d.tree();
    assert_json_failure(&fx.run(&["--json"]).go(), PROG, 2, "--to");
    assert_json_failure(
        &fx.run(&["--json", "--to", "b.age", "--keep-last", "2"]).go(),
        PROG,
        2,
        "--keep-* needs --to DIR/",
    );
    let out = run(WORKMEM_BACKUP, &fx.d).args(["--json", "--db", "nope.db", "-r", &fx.key, "--to", "b.age"]).go();
    assert_json_failure(&out, PROG, 1, "open source:");
    assert_unchanged(&before, &fx.d.tree(), "failed runs with --json");
}

/// The samples of a textfile: name -> (labels, value); every sample has
/// its HELP and TYPE gauge lines.
#[track_caller]
fn metrics(path: &Path) -> std::collections::BTreeMap<String, (String, f64)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
        assert!(text.contains(&format!("# HELP {name} ")), "{name} has HELP");
        assert!(text.contains(&format!("# TYPE {name} gauge\n")), "{name} has TYPE");
        out.insert(name.to_string(), (labels.trim_end_matches('}').to_string(), value.parse().unwrap()));
    }
    out
}

#[test]
fn metrics_file_tells_prometheus_the_last_success_and_a_failure_keeps_it() {
    let fx = Fx::new(200_000, false);
    fx.d.mkdir("bk");
    fx.d.mkdir("prom");
    let prom = fx.d.join("prom/workmem_backup.prom");
    let t0 = unix_now();
    fx.run(&["-q", "--to", "bk/", "--metrics-file", "prom/workmem_backup.prom"]).go().ok();
    let t1 = unix_now();
    let backup = the_backup_in(&fx.d.join("bk"), "memory", "db.age", t0, t1);
    let m = metrics(&prom);
    let value = |m: &std::collections::BTreeMap<String, (String, f64)>, n: &str| {
        m.get(&format!("workmem_backup_{n}")).map(|x| x.1).unwrap_or_else(|| panic!("{n} missing: {m:?}"))
    };
    let success = value(&m, "last_success_timestamp_seconds");
    assert!((t0 as f64..=t1 as f64).contains(&success), "{success} within the run");
    assert_eq!(value(&m, "last_exit_status"), 0.0);
    assert_eq!(value(&m, "last_success"), 1.0);
    assert_eq!(value(&m, "ciphertext_bytes"), std::fs::metadata(&backup).unwrap().len() as f64);
    assert!(value(&m, "snapshot_bytes") > 0.0 && value(&m, "duration_seconds") > 0.0);
    let labels = format!("database=\"{}\",destination=\"bk/\"", canonical(&fx.db).display());
    assert!(m.values().all(|(l, _)| *l == labels), "{m:?}");
    assert_eq!(mode_of(&prom), 0o644, "readable by node_exporter, another user");
    assert_eq!(std::fs::read_dir(fx.d.join("prom")).unwrap().count(), 1, "no temporary left");

    // A failed run: its status and time, the last success kept.
    run(WORKMEM_BACKUP, &fx.d)
        .args(["-q", "--db", "nope.db", "-r", &fx.key, "--to", "bk/", "--metrics-file"])
        .args([&prom])
        .go()
        .expect(1, "no such file");
    let m = metrics(&prom);
    assert_eq!(value(&m, "last_success_timestamp_seconds"), success);
    assert_eq!(value(&m, "last_exit_status"), 1.0);
    assert_eq!(value(&m, "last_success"), 0.0);
    assert!(value(&m, "last_run_timestamp_seconds") >= success);
    // A usage error found after the flags were read is a failed run too.
    fx.run(&["-q", "--to", "b.age", "--keep-last", "1", "--metrics-file", "prom/workmem_backup.prom"])
        .go()
        .expect(2, "--keep-*");
    let m = metrics(&prom);
    assert_eq!((value(&m, "last_exit_status"), value(&m, "last_success_timestamp_seconds")), (2.0, success));
}

#[test]
fn a_metrics_file_that_cannot_be_written_fails_before_the_backup() {
    let fx = Fx::new(200_000, false);
    fx.d.mkdir("bk");
    let before = fx.d.tree();
    fx.run(&["--to", "bk/", "--metrics-file", "nodir/m.prom"])
        .go()
        .expect(1, "metrics file: destination directory: nodir: no such file or directory")
        .one_line_error(PROG);
    fx.run(&["--to", "bk/", "--metrics-file", ""])
        .go()
        .expect(2, "a value is required for '--metrics-file <PATH>'")
        .one_line_error(PROG);
    assert_unchanged(&before, &fx.d.tree(), "an unwritable metrics file");
}
