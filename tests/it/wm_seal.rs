//! wm-seal: what it promises, each test named after one promise. The output
//! is always checked with the real `age` CLI, never with our own decoder.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::*;
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::{umask, Mode};
use nix::unistd::Pid;

const PROG: &str = "wm-seal";
const MIB: usize = 1024 * 1024;
const ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
const ARMOR_END: &str = "-----END AGE ENCRYPTED FILE-----";
/// A FIDO security-key SSH public key (ssh-keygen needs the device to make one).
const SK_ED25519: &str = "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIJKD6GKU7r4hOBfoe4TKXCFq6o+fq+0zOswhOZ2xyWUVAAAABHNzaDo= u@h";

// ---------------------------------------------------------------- helpers

/// `len` bytes whose first 100 are a SQLite header promising `pages` pages
/// of `page_size` bytes (the in-header size valid), the rest noise.
fn sqlite_like(page_size: u16, pages: u32, len: usize) -> Vec<u8> {
    let mut v = bytes(len.max(100), 99);
    v[..16].copy_from_slice(b"SQLite format 3\0");
    v[16..18].copy_from_slice(&page_size.to_be_bytes());
    v[18..24].copy_from_slice(&[1, 1, 0, 64, 32, 32]);
    v[24..28].copy_from_slice(&7u32.to_be_bytes());
    v[28..32].copy_from_slice(&pages.to_be_bytes());
    v[92..96].copy_from_slice(&7u32.to_be_bytes());
    v.truncate(len);
    v
}

fn seal(d: &Dir, args: &[&str], input: &[u8]) -> Out {
    run(WM_SEAL, d).args(args).stdin(input.to_vec()).go()
}

/// `wm-seal ARGS < input > file`: standard output redirected to a file.
fn seal_to_stdout_file(d: &Dir, args: &[&str], input: &[u8], file: &str) -> Out {
    let f = File::create(d.join(file)).unwrap();
    run(WM_SEAL, d).args(args).stdin(input.to_vec()).stdout_file(f).go()
}

/// The real `age -d -i identity file` gives back exactly `want`.
#[track_caller]
fn assert_decrypts_to(identity: &Path, file: &Path, want: &[u8], what: &str) {
    match age_decrypt(identity, file) {
        Ok(got) => assert!(
            got.len() == want.len() && sha256(&got) == sha256(want),
            "{what}: age -d gave {} bytes (sha256 {}), want {} bytes (sha256 {})",
            got.len(),
            sha256(&got),
            want.len(),
            sha256(want)
        ),
        Err(e) => panic!("{what}: age -d -i {} {} failed: {e}", identity.display(), file.display()),
    }
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

fn set_mode(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Runs `r` under umask `mask` (set between fork and exec).
fn with_umask(mut r: Run, mask: nix::libc::mode_t) -> Run {
    let m = Mode::from_bits_truncate(mask);
    // SAFETY: umask(2) is async-signal-safe and touches no memory.
    unsafe {
        r.command().pre_exec(move || {
            umask(m);
            Ok(())
        });
    }
    r
}

/// Starts wm-seal with stdin a pipe the test keeps, stdout discarded, stderr captured.
fn spawn_seal(d: &Dir, args: &[&str]) -> Child {
    run(WM_SEAL, d)
        .args(args)
        .command()
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wm-seal")
}

/// Writes `data` into the child's stdin from a thread and keeps the pipe open:
/// join the thread to get the pipe back, drop it to close.
fn feed(child: &mut Child, data: Vec<u8>) -> std::thread::JoinHandle<std::process::ChildStdin> {
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
        stdin
    })
}

/// The file `pid` has open directly inside `dir` (its temporary): what
/// /proc shows for it ("#123 (deleted)" for an O_TMPFILE) and its size.
fn temp_of(pid: u32, dir: &Path) -> Option<(String, u64)> {
    let dir = std::fs::canonicalize(dir).ok()?;
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        let Ok(target) = std::fs::read_link(e.path()) else { continue };
        if target.parent() == Some(dir.as_path()) {
            let size = std::fs::metadata(e.path()).map(|m| m.len()).unwrap_or(0);
            return Some((target.display().to_string(), size));
        }
    }
    None
}

/// Waits until the child's temporary in `dir` holds at least `at_least` bytes.
fn wait_for_temp(child: &mut Child, dir: &Path, at_least: u64) -> (String, u64) {
    let start = Instant::now();
    loop {
        if let Some((t, n)) = temp_of(child.id(), dir) {
            if n >= at_least {
                return (t, n);
            }
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("wm-seal ended before its temporary held {at_least} bytes ({st}): {}", stderr_of(child));
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("no temporary of {at_least}+ bytes appeared in {}", dir.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A destination that already holds a backup, encrypted to an old key.
struct OldBackup {
    d: Dir,
    old_id: PathBuf,
    old_plain: Vec<u8>,
    new_id: PathBuf,
    new_r: String,
}

const BACKUP: &str = "out/backup.age";

impl OldBackup {
    fn new() -> OldBackup {
        let d = Dir::new();
        let (old_id, old_r) = d.age_key("old.key");
        let (new_id, new_r) = d.age_key("new.key");
        d.mkdir("out");
        let old_plain = bytes(300_001, 7);
        seal(&d, &["-r", &old_r, "--to", BACKUP], &old_plain).ok();
        OldBackup { d, old_id, old_plain, new_id, new_r }
    }

    fn backup(&self) -> PathBuf {
        self.d.join(BACKUP)
    }

    /// Nothing changed anywhere, the destination's directory holds only the
    /// old backup, and that still decrypts to the old content.
    #[track_caller]
    fn assert_intact(&self, before: &Tree, what: &str) {
        assert_eq!(listing(&self.d.join("out")), vec!["backup.age"], "{what}: the directory holds only the old backup");
        assert_unchanged(before, &self.d.tree(), what);
        assert_decrypts_to(&self.old_id, &self.backup(), &self.old_plain, what);
    }
}

/// A test's world: a directory with an age key (`id.txt`, made by the
/// `age` crate), and wm-seal run with its recipient.
struct Fx {
    d: Dir,
    id: PathBuf,
    r: String,
}

impl Fx {
    fn new() -> Fx {
        let d = Dir::new();
        let (id, r) = d.age_key("id.txt");
        Fx { d, id, r }
    }

    /// `wm-seal -r R ARGS`, ready for its input and its run.
    fn run(&self, args: &[&str]) -> Run {
        run(WM_SEAL, &self.d).args(["-r", &self.r]).args(args)
    }

    /// `wm-seal -r R ARGS < input`.
    fn seal(&self, args: &[&str], input: &[u8]) -> Out {
        self.run(args).stdin(input.to_vec()).go()
    }

    /// `wm-seal -r R ARGS < input > file`.
    fn seal_to_stdout_file(&self, args: &[&str], input: &[u8], file: &str) -> Out {
        seal_to_stdout_file(&self.d, &[&["-r", self.r.as_str()], args].concat(), input, file)
    }

    /// The real `age -d -i id.txt NAME` gives back exactly `want`.
    #[track_caller]
    fn assert_decrypts_to(&self, name: &str, want: &[u8], what: &str) {
        assert_decrypts_to(&self.id, &self.d.join(name), want, what);
    }
}

// ---------------------------------------------------------------- interop with the age CLI

#[test]
fn x25519_output_decrypts_with_the_age_cli_to_the_same_bytes_at_every_size() {
    if !have("age") || !have("age-keygen") {
        return;
    }
    let d = Dir::new();
    let (id, r) = age_keygen(&d, "id.txt");
    let sizes = [0, 1, 65_535, 65_536, 65_537, MIB - 1, MIB, MIB + 1, MIB + 12_345 + 1, 5 * MIB + 77];
    for (i, &len) in sizes.iter().enumerate() {
        let input = bytes(len, i as u64 + 1);
        let mut args = vec!["-r", r.as_str()];
        if len == 0 {
            args.push("--allow-empty");
        }
        let what = |mode: &str| format!("{len} bytes, {mode}");

        let out = seal(&d, &[&args[..], &["--to", "to.age"]].concat(), &input);
        out.ok();
        assert!(out.stdout.is_empty(), "--to writes nothing on stdout");
        assert_decrypts_to(&id, &d.join("to.age"), &input, &what("--to"));
        assert_eq!(mode_of(&d.join("to.age")), 0o600);

        // `wm-seal -r K > file`
        seal_to_stdout_file(&d, &args, &input, "stdout.age").ok();
        assert_decrypts_to(&id, &d.join("stdout.age"), &input, &what("stdout"));

        // `--to -` is standard output too, here a pipe.
        let out = seal(&d, &[&args[..], &["--to", "-"]].concat(), &input);
        out.ok();
        std::fs::write(d.join("dash.age"), &out.stdout).unwrap();
        assert_decrypts_to(&id, &d.join("dash.age"), &input, &what("--to -"));
    }
    let mut names: Vec<String> = d.tree().into_keys().collect();
    names.sort();
    assert_eq!(names, ["dash.age", "id.txt", "stdout.age", "to.age"], "no stray files");
}

#[test]
fn ssh_ed25519_recipient_works_as_literal_file_and_recipients_file() {
    if !have("age") || !have("ssh-keygen") {
        return;
    }
    let d = Dir::new();
    let (key, public) = ssh_keygen(&d, "ed", "", &["-t", "ed25519"]).expect("ssh-keygen ed25519");
    assert!(public.starts_with("ssh-ed25519 "));
    let input = bytes(200_003, 2);
    for args in [["-r", public.as_str()], ["-r", "ed.pub"], ["-R", "ed.pub"]] {
        let what = format!("{args:?}");
        seal(&d, &[&args[..], &["--to", "out.age"]].concat(), &input).ok();
        assert_decrypts_to(&key, &d.join("out.age"), &input, &what);
        seal_to_stdout_file(&d, &args, &input, "stdout.age").ok();
        assert_decrypts_to(&key, &d.join("stdout.age"), &input, &what);
    }
}

#[test]
fn ssh_rsa_recipient_works_even_as_a_literal_longer_than_a_file_name() {
    if !have("age") || !have("ssh-keygen") {
        return;
    }
    let d = Dir::new();
    let (key, public) = ssh_keygen(&d, "rsa", "", &["-t", "rsa", "-b", "3072"]).expect("ssh-keygen rsa");
    assert!(public.starts_with("ssh-rsa "));
    assert!(public.len() > 255, "longer than NAME_MAX: the -r value cannot be a file name");
    let input = bytes(70_000, 3);
    for args in [["-r", public.as_str()], ["-r", "rsa.pub"], ["-R", "rsa.pub"]] {
        let what: String = args[1].chars().take(20).collect();
        seal(&d, &[&args[..], &["--to", "out.age"]].concat(), &input).ok();
        assert_decrypts_to(&key, &d.join("out.age"), &input, &what);
    }
}

#[test]
fn several_recipients_from_literals_and_a_crlf_commented_file_each_decrypt_alone() {
    if !have("age") || !have("age-keygen") || !have("ssh-keygen") {
        return;
    }
    let d = Dir::new();
    let (x1, x1_r) = age_keygen(&d, "x1.txt");
    let (x2, x2_r) = age_keygen(&d, "x2.txt");
    let (ed, ed_r) = ssh_keygen(&d, "ed", "", &["-t", "ed25519"]).unwrap();
    let (rsa, rsa_r) = ssh_keygen(&d, "rsa", "", &["-t", "rsa", "-b", "3072"]).unwrap();
    let (stranger, _) = age_keygen(&d, "stranger.txt");
    // A byte order mark, comments, blank and blank-looking lines, CRLF, indentation, no final newline.
    d.write(
        "team.txt",
        format!("\u{feff}# the team\r\n\r\n   \r\n{x2_r}\r\n\t# ssh keys below\r\n  {ed_r}  \r\n\n{rsa_r}"),
    );
    let input = bytes(MIB + 333, 4);
    let args = ["-r", x1_r.as_str(), "-R", "team.txt"];
    seal(&d, &[&args[..], &["--to", "out.age"]].concat(), &input).ok();
    for (id, who) in [(&x1, "x25519 literal"), (&x2, "x25519 in file"), (&ed, "ssh-ed25519"), (&rsa, "ssh-rsa")] {
        assert_decrypts_to(id, &d.join("out.age"), &input, who);
    }
    assert!(age_decrypt(&stranger, &d.join("out.age")).is_err(), "an identity not among the recipients fails");

    // The same recipients file through -r (an existing path is a file), to stdout, armored.
    let out = seal(&d, &["-r", "team.txt", "-r", x1_r.as_str(), "--armor"], &input);
    out.ok();
    std::fs::write(d.join("armored.age"), &out.stdout).unwrap();
    for (id, who) in [(&x1, "x25519 literal"), (&x2, "x25519 in file"), (&ed, "ssh-ed25519"), (&rsa, "ssh-rsa")] {
        assert_decrypts_to(id, &d.join("armored.age"), &input, &format!("armored, {who}"));
    }
}

#[test]
fn armored_output_is_pem_and_decrypts_from_file_and_stdout() {
    if !have("age") {
        return;
    }
    let fx = Fx::new();
    for (i, len) in [0usize, 100, MIB + 3].into_iter().enumerate() {
        let input = bytes(len, 20 + i as u64);
        let mut args = vec!["--armor"];
        if len == 0 {
            args.push("--allow-empty");
        }
        fx.seal(&[&args[..], &["--to", "a.age"]].concat(), &input).ok();
        let out = fx.seal(&args, &input);
        out.ok();
        fx.d.write("b.age", &out.stdout);
        for name in ["a.age", "b.age"] {
            let text = String::from_utf8(fx.d.read(name)).expect("armor is ASCII");
            assert!(text.starts_with(ARMOR_BEGIN), "{name} ({len} bytes) starts with the PEM line: {:?}", &text[..40]);
            assert!(text.trim_end().ends_with(ARMOR_END), "{name} ({len} bytes) ends with the PEM line");
            assert!(text.lines().all(|l| l.len() <= 64), "{name}: lines of at most 64 columns");
            fx.assert_decrypts_to(name, &input, &format!("{name}, {len} bytes"));
        }
    }
}

#[test]
fn sealed_snapshot_of_a_workmem_database_restores_intact() {
    if !have("age") || !have("sqlite3") {
        return;
    }
    let fx = Fx::new();
    let db = fx.d.workmem_db("memory.db", 1_500_000, true);
    let snap = run(WM_SNAPSHOT, &fx.d).args(["--db", "memory.db"]).go();
    snap.ok();
    assert!(is_plaintext_db(&db));
    for (mode, args) in [("--to", &["--to", "memory.db.age"][..]), ("stdout", &[][..])] {
        let out = fx.seal(args, &snap.stdout);
        out.ok();
        if mode == "stdout" {
            fx.d.write("memory.db.age", &out.stdout);
        }
        let sealed = fx.d.join("memory.db.age");
        assert!(!files_with_sqlite_header(&fx.d.path).contains(&sealed), "{mode}: no plaintext in the sealed file");
        fx.assert_decrypts_to("memory.db.age", &snap.stdout, mode);
        let restored = fx.d.write("restored.db", age_decrypt(&fx.id, &sealed).unwrap());
        assert_integrity(&restored);
        assert_eq!(content_digest(&restored), content_digest(&db), "{mode}: same content as the source");
        std::fs::remove_file(&restored).unwrap();
    }
}

// ---------------------------------------------------------------- atomicity

#[test]
fn failed_runs_leave_the_old_backup_untouched_and_no_temporary() {
    if !have("age") {
        return;
    }
    let o = OldBackup::new();
    let db = std::fs::read(o.d.workmem_db("memory.db", 300_000, false)).unwrap();
    let secret = secret_of(&o.new_id);
    let new_r = o.new_r.as_str();
    // Version-valid-for (offset 92) differs from the change counter (offset 24).
    let mut unsized_db = sqlite_like(4096, 64, 64 * 4096);
    unsized_db[92..96].copy_from_slice(&6u32.to_be_bytes());
    let cases: Vec<(&str, Vec<&str>, Vec<u8>, &str)> = vec![
        ("bad recipient", vec!["-r", "nonsense"], bytes(1000, 1), "neither an existing file nor a valid recipient"),
        ("a secret key as recipient", vec!["-r", &secret], bytes(1000, 1), "age-keygen -y"),
        ("first 5000 bytes of a real database", vec!["-r", new_r], db[..5000].to_vec(), "truncated SQLite input"),
        (
            "7 of 8 MiB of a database: megabytes sealed before the end",
            vec!["-r", new_r],
            sqlite_like(4096, 2048, 7 * MIB + 123),
            "truncated SQLite input: 7340155 of 8388608 bytes",
        ),
        ("cut inside the SQLite header", vec!["-r", new_r], db[..50].to_vec(), "truncated SQLite header"),
        (
            "SQLite input longer than its header says",
            vec!["-r", new_r],
            sqlite_like(4096, 64, 64 * 4096 + 1),
            "longer than its header says",
        ),
        (
            "SQLite header that does not record the size",
            vec!["-r", new_r],
            unsized_db.clone(),
            "header does not record its size",
        ),
        ("empty input without --allow-empty", vec!["-r", new_r], Vec::new(), "empty (0 bytes)"),
    ];
    let before = o.d.tree();
    for (what, args, input, needle) in cases {
        let out = seal(&o.d, &[&args[..], &["--to", BACKUP]].concat(), &input);
        out.expect(1, needle).one_line_error(PROG);
        assert!(out.stdout.is_empty(), "{what}: nothing on stdout");
        o.assert_intact(&before, what);
    }
}

#[test]
fn stdin_read_error_fails_and_leaves_the_old_backup() {
    if !have("age") {
        return;
    }
    let o = OldBackup::new();
    let before = o.d.tree();
    // A directory on stdin: read(2) fails with EISDIR.
    let out =
        run(WM_SEAL, &o.d).args(["-r", &o.new_r, "--to", BACKUP]).stdin_file(File::open(o.d.join("out")).unwrap()).go();
    out.expect(1, "standard input: is a directory").one_line_error(PROG);
    o.assert_intact(&before, "read error on stdin");
}

#[test]
fn sigterm_sigint_and_sighup_mid_stream_exit_128_plus_n_and_leave_the_old_backup() {
    if !have("age") {
        return;
    }
    let o = OldBackup::new();
    let before = o.d.tree();
    let input = bytes(7 * MIB, 3);
    for (sig, code) in [(Signal::SIGTERM, 143), (Signal::SIGINT, 130), (Signal::SIGHUP, 129)] {
        // 0: blocked in the first read; 7 MiB: megabytes already in the temporary.
        for (fed, temp_at_least) in [(0, 0), (input.len(), MIB as u64)] {
            let what = format!("{sig} after {fed} bytes");
            let mut child = spawn_seal(&o.d, &["-r", &o.new_r, "--to", BACKUP]);
            let feeder = feed(&mut child, input[..fed].to_vec());
            let (temp, size) = wait_for_temp(&mut child, &o.d.join("out"), temp_at_least);
            kill(Pid::from_raw(child.id() as i32), sig).unwrap();
            let started = Instant::now();
            let status = wait_timeout(&mut child, Duration::from_secs(10));
            let err = stderr_of(&mut child);
            drop(feeder.join().unwrap());
            assert_eq!(status.code(), Some(code), "{what} (temporary {temp}, {size} bytes): {err}");
            assert!(started.elapsed() < Duration::from_secs(3), "{what}: stops promptly");
            assert!(err.contains(&format!("interrupted by {sig}")), "{what}: says why: {err}");
            o.assert_intact(&before, &what);
        }
    }
}

#[test]
fn sigkill_mid_stream_leaves_only_the_old_backup() {
    if !have("age") {
        return;
    }
    let o = OldBackup::new();
    let before = o.d.tree();
    let mut child = spawn_seal(&o.d, &["-r", &o.new_r, "--to", BACKUP]);
    let feeder = feed(&mut child, bytes(7 * MIB, 4));
    let (temp, size) = wait_for_temp(&mut child, &o.d.join("out"), MIB as u64);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(10));
    drop(feeder.join().unwrap());
    assert_eq!(status.signal(), Some(9), "killed");
    let unnamed = temp.ends_with("(deleted)");
    assert!(LINUX_FAST_PATHS || !unnamed, "only the Linux paths make unnamed files: {temp}");
    if unnamed {
        // O_TMPFILE: the half-written file had no name, so nothing can remain.
        eprintln!("SIGKILL with {size} bytes in {temp}");
        o.assert_intact(&before, &format!("SIGKILL with {size} bytes in the unnamed temporary {temp}"));
    } else {
        // The named temporary (portable paths, or a file system without
        // O_TMPFILE) is left behind by SIGKILL, as documented: exactly that
        // one hidden file, nothing else, until the next run removes it.
        let names = listing(&o.d.join("out"));
        eprintln!("SIGKILL left the named temporary {temp}: {names:?}");
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(is_hidden_temp(&names[0]) && names[0].starts_with(".backup.age."), "{names:?}");
        assert_decrypts_to(&o.old_id, &o.backup(), &o.old_plain, "SIGKILL, named temporary");
        let next = bytes(5000, 41);
        seal(&o.d, &["-r", &o.new_r, "--to", BACKUP], &next).ok();
        assert_eq!(listing(&o.d.join("out")), vec!["backup.age"], "the next run removed the leftover");
        assert_decrypts_to(&o.new_id, &o.backup(), &next, "the next run's backup");
    }
}

#[test]
fn unwritable_destination_directory_is_permission_denied_and_leaves_the_old_backup() {
    if !have("age") {
        return;
    }
    let o = OldBackup::new();
    set_mode(&o.d.join("out"), 0o555);
    let before = o.d.tree();
    let out = run(WM_SEAL, &o.d).args(["-r", &o.new_r, "--to", BACKUP]).stdin(bytes(100_000, 5)).unprivileged().go();
    out.expect(1, "permission denied").one_line_error(PROG);
    assert!(out.stderr.contains("/out"), "names the directory: {}", out.stderr);
    o.assert_intact(&before, "unwritable directory");
    set_mode(&o.d.join("out"), 0o755);
}

#[test]
fn successful_run_replaces_the_old_backup_for_the_new_key_only() {
    if !have("age") {
        return;
    }
    let o = OldBackup::new();
    let new_plain = bytes(1_234_567, 9);
    seal(&o.d, &["-r", &o.new_r, "--to", BACKUP], &new_plain).ok();
    assert_decrypts_to(&o.new_id, &o.backup(), &new_plain, "new backup, new key");
    let old = age_decrypt(&o.old_id, &o.backup());
    assert!(old.is_err(), "the old key no longer decrypts the replaced backup");
    assert_eq!(listing(&o.d.join("out")), vec!["backup.age"]);
    assert_eq!(mode_of(&o.backup()), 0o600);
}

#[test]
fn commit_fsyncs_the_file_renames_it_into_place_then_fsyncs_the_directory() {
    if !have("strace") {
        return;
    }
    let Fx { d, r, .. } = Fx::new();
    d.write("out/backup.age", b"old");
    let input = d.write("input.bin", bytes(300_000, 14));
    let trace = d.join("trace.txt");
    let st = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=open,openat,fsync,fdatasync,linkat,rename,renameat,renameat2", "-o"])
        .arg(&trace)
        .arg(WM_SEAL)
        .args(["-r", &r, "--to", BACKUP])
        .current_dir(&d.path)
        .stdin(File::open(&input).unwrap())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "strace wm-seal: {st}");
    let text = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let find = |from: usize, pred: &dyn Fn(&str) -> bool, what: &str| -> usize {
        from + lines[from..].iter().position(|l| pred(l)).unwrap_or_else(|| panic!("no {what} in:\n{text}"))
    };
    let fd_of = |line: &str| line.rsplit("= ").next().unwrap().trim().to_string();
    let out_dir = std::fs::canonicalize(d.join("out")).unwrap().display().to_string();
    // The directory is opened once, as the command line names it (`out/…`).
    let named = |l: &str| l.contains(&format!("\"{out_dir}\"")) || l.contains("\"out\"");
    let dir_open = find(0, &|l| named(l) && l.contains("O_DIRECTORY"), "directory open");
    let dir_fd = fd_of(lines[dir_open]);
    // Linux: an unnamed file, named (linkat) just before the rename; portable
    // paths: a hidden name from the start, created O_EXCL, and no linkat.
    let created = |l: &str| {
        if LINUX_FAST_PATHS {
            l.contains("O_TMPFILE")
        } else {
            l.contains("O_EXCL") && l.contains("\".backup.age.")
        }
    };
    let tmp_open = find(dir_open, &created, "temporary's creation");
    assert!(lines[tmp_open].contains("0600"), "created 0600: {}", lines[tmp_open]);
    let tmp_fd = fd_of(lines[tmp_open]);
    let synced = |fd: &str, l: &str| l.contains(&format!("fsync({fd})")) || l.contains(&format!("fdatasync({fd})"));
    let file_sync = find(tmp_open, &|l| synced(&tmp_fd, l), "fsync of the temporary");
    let rename = find(0, &|l| l.contains("rename") && l.contains("\"backup.age\""), "rename into place");
    assert!(file_sync < rename, "the data is durable before the rename:\n{text}");
    let linked = lines.iter().position(|l| l.contains("linkat("));
    if LINUX_FAST_PATHS {
        assert!(linked.is_some_and(|at| file_sync < at && at < rename), "linked after the fsync:\n{text}");
    } else {
        assert_eq!(linked, None, "the portable paths never link:\n{text}");
        assert!(!text.contains("O_TMPFILE"), "the portable paths make no unnamed file:\n{text}");
    }
    find(rename, &|l| synced(&dir_fd, l), "fsync of the directory after the rename");
}

// ---------------------------------------------------------------- truncated input on stdout

#[test]
fn truncated_sqlite_input_on_stdout_never_decrypts_cleanly_but_raw_seals_it() {
    if !have("age") {
        return;
    }
    let fx = Fx::new();
    let db = std::fs::read(fx.d.workmem_db("memory.db", 300_000, false)).unwrap();
    let cases = [
        ("first 5000 bytes of a real database", db[..5000].to_vec()),
        ("7 MiB of an 8 MiB database", sqlite_like(4096, 2048, 7 * MIB + 123)),
        ("7 MiB of an 8 MiB database, cut at a chunk boundary", sqlite_like(4096, 2048, 7 * MIB)),
    ];
    for (what, input) in cases {
        for armor in [false, true] {
            let args: &[&str] = if armor { &["--armor"] } else { &[] };
            let out = fx.seal_to_stdout_file(args, &input, "cut.age");
            out.expect(1, "truncated SQLite input").one_line_error(PROG);
            if let Ok(got) = age_decrypt(&fx.id, &fx.d.join("cut.age")) {
                panic!(
                    "{what}, armor {armor}: age -d succeeded ({} bytes): a truncated input became a backup",
                    got.len()
                );
            }
        }
        // --raw: the same bytes, sealed as they are.
        fx.seal_to_stdout_file(&["--raw"], &input, "raw.age").ok();
        fx.assert_decrypts_to("raw.age", &input, &format!("{what}, --raw"));
    }
    // A complete database needs no --raw.
    fx.seal_to_stdout_file(&[], &db, "whole.age").ok();
    fx.assert_decrypts_to("whole.age", &db, "complete database");
}

// ---------------------------------------------------------------- permissions

#[test]
fn new_and_replaced_files_are_0600_whatever_the_umask() {
    let fx = Fx::new();
    // The umask really reaches the child: a shell under umask 000 creates 0666.
    let mut control = Command::new("sh");
    control.args(["-c", ": > control"]).current_dir(&fx.d.path);
    // SAFETY: as in with_umask.
    unsafe {
        control.pre_exec(|| {
            umask(Mode::empty());
            Ok(())
        });
    }
    assert!(control.status().unwrap().success());
    assert_eq!(mode_of(&fx.d.join("control")), 0o666, "umask 000 applied");

    for mask in [0o000, 0o022, 0o277, 0o777] {
        let out = with_umask(fx.run(&["--to", "new.age"]).stdin(b"x".to_vec()), mask).go();
        out.ok();
        assert_eq!(mode_of(&fx.d.join("new.age")), 0o600, "new file under umask {mask:03o}");
        std::fs::remove_file(fx.d.join("new.age")).unwrap();
        for old_mode in [0o644, 0o666, 0o400] {
            let old = fx.d.write("old.age", b"old");
            set_mode(&old, old_mode);
            let out = with_umask(fx.run(&["--to", "old.age"]).stdin(b"x".to_vec()), mask).go();
            out.ok();
            assert_eq!(mode_of(&old), 0o600, "replaced {old_mode:03o} file under umask {mask:03o}");
            assert_ne!(fx.d.read("old.age"), b"old", "replaced");
            std::fs::remove_file(&old).unwrap();
        }
    }
}

// ---------------------------------------------------------------- refusals

#[test]
fn terminal_on_stdin_is_refused_with_exit_2() {
    let fx = Fx::new();
    let before = fx.d.tree();
    for to in [None, Some("out.age")] {
        let (_controller, tty) = pty();
        let mut cmd = fx.run(&[]);
        if let Some(t) = to {
            cmd = cmd.args(["--to", t]);
        }
        let out = cmd.stdin_file(tty).go();
        out.expect(2, "terminal").one_line_error(PROG);
        assert!(out.stdout.is_empty());
    }
    assert_unchanged(&before, &fx.d.tree(), "terminal on stdin");
}

#[test]
fn binary_output_to_a_terminal_is_refused_but_armor_is_allowed() {
    let fx = Fx::new();
    for to in [None, Some("-")] {
        let (_controller, tty) = pty();
        let mut cmd = fx.run(&[]);
        if let Some(t) = to {
            cmd = cmd.args(["--to", t]);
        }
        let out = cmd.stdin(b"some data".to_vec()).stdout_file(tty).go();
        out.expect(2, "terminal").one_line_error(PROG);
        assert!(out.stderr.contains("--to"), "suggests --to: {}", out.stderr);
    }

    let (controller, tty) = pty();
    // Drain the terminal from a thread, so that the output can never block on it.
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut f = File::from(controller);
        let mut buf = [0u8; 4096];
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let out = fx.run(&["--armor"]).stdin(b"some data".to_vec()).stdout_file(tty).go();
    out.ok();
    let mut shown = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&shown).contains(ARMOR_END) {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(chunk) => shown.extend(chunk),
            Err(_) => break,
        }
    }
    let shown = String::from_utf8_lossy(&shown);
    assert!(shown.contains(ARMOR_BEGIN) && shown.contains(ARMOR_END), "armor on the terminal: {shown:?}");
}

#[test]
fn destination_that_is_not_a_regular_file_or_a_missing_directory_is_refused() {
    let fx = Fx::new();
    fx.d.write("file", "a file");
    nix::unistd::mkfifo(&fx.d.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
    let before = fx.d.tree();
    fx.seal(&["--to", "fifo"], b"data").expect(1, "not a regular file").one_line_error(PROG);
    fx.seal(&["--to", "nodir/"], b"data").expect(1, "no such file or directory").one_line_error(PROG);
    fx.seal(&["--to", "file/"], b"data").expect(1, "not a directory").one_line_error(PROG);
    assert_unchanged(&before, &fx.d.tree(), "--to a FIFO or a directory that is not one");
}

#[test]
fn wrong_destination_fails_before_any_input_arrives() {
    let Fx { d, r, .. } = Fx::new();
    let before = d.tree();
    for (to, needle) in [("nodir/backup.age", "no such file"), ("nodir/", "no such file")] {
        // Standard input stays open and empty: only a destination opened first can fail now.
        let mut child = spawn_seal(&d, &["-r", &r, "--to", to]);
        let stdin = child.stdin.take().unwrap();
        let status = wait_timeout(&mut child, Duration::from_secs(5));
        drop(stdin);
        let err = stderr_of(&mut child);
        assert_eq!(status.code(), Some(1), "--to {to}: {err}");
        assert!(err.contains(needle), "--to {to}: {err}");
    }
    assert_unchanged(&before, &d.tree(), "wrong destinations");
}

#[test]
fn a_symlink_destination_is_followed_and_its_target_replaced() {
    if !have("age") {
        return;
    }
    let o = OldBackup::new();
    std::os::unix::fs::symlink("out/backup.age", o.d.join("link.age")).unwrap();
    let new_plain = bytes(10_000, 15);
    seal(&o.d, &["-r", &o.new_r, "--to", "link.age"], &new_plain).ok();
    assert!(std::fs::symlink_metadata(o.d.join("link.age")).unwrap().file_type().is_symlink(), "still a link");
    assert_decrypts_to(&o.new_id, &o.backup(), &new_plain, "the link's target");
    assert_eq!(listing(&o.d.join("out")), vec!["backup.age"]);
}

#[test]
fn no_recipients_at_all_is_a_usage_error() {
    let d = Dir::new();
    let before = d.tree();
    for args in [vec![], vec!["--to", "out.age"], vec!["--armor", "--raw"]] {
        let out = seal(&d, &args, b"data");
        assert_eq!(out.code(), 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("--recipient"), "names what is missing: {}", out.stderr);
        assert!(out.stdout.is_empty());
    }
    assert_unchanged(&before, &d.tree(), "no recipients");
}

#[test]
fn empty_recipient_or_destination_value_is_a_usage_error() {
    let fx = Fx::new();
    let before = fx.d.tree();
    let out = seal(&fx.d, &["-r", ""], b"data");
    out.expect(2, "-r: empty value").one_line_error(PROG);
    // Refused by the argument parser (clap), whose usage message is not one line.
    let out = fx.seal(&["--to", ""], b"data");
    out.expect(2, "--to");
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!(out.stdout.is_empty());
    assert_unchanged(&before, &fx.d.tree(), "empty values");
}

#[test]
fn empty_input_is_refused_unless_allow_empty_and_writes_nothing() {
    let fx = Fx::new();
    let before = fx.d.tree();
    for input in [Some(Vec::new()), None] {
        // Piped empty input, and /dev/null.
        let mut cmd = fx.run(&[]);
        if let Some(i) = &input {
            cmd = cmd.stdin(i.clone());
        }
        let out = cmd.go();
        out.expect(1, "empty (0 bytes)").one_line_error(PROG);
        assert!(out.stderr.contains("--allow-empty"), "names the way out: {}", out.stderr);
        assert!(out.stdout.is_empty(), "not even an age header on stdout");
        fx.run(&["--to", "new.age"]).go().expect(1, "empty (0 bytes)");
    }
    assert_unchanged(&before, &fx.d.tree(), "empty input: no file created");
    let out = fx.run(&["--allow-empty"]).go();
    out.ok();
    assert!(out.stdout.starts_with(b"age-encryption.org/v1\n"), "an age file of nothing");
}

#[test]
fn input_that_only_starts_like_the_sqlite_magic_is_sealed_as_it_is() {
    if !have("age") {
        return;
    }
    let fx = Fx::new();
    for input in [&b"S"[..], b"SQLite", b"SQLite format 3", b"SQLite format 2\0 and then some text\n"] {
        let what = String::from_utf8_lossy(input).into_owned();
        fx.seal(&["--to", "out.age"], input).ok();
        fx.assert_decrypts_to("out.age", input, &what);
    }
}

#[test]
fn summary_goes_to_a_terminal_stderr_unless_quiet() {
    let fx = Fx::new();
    for quiet in [false, true] {
        let (controller, tty) = pty();
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || {
            let mut f = File::from(controller);
            let mut buf = [0u8; 4096];
            while let Ok(n) = f.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let mut args = vec!["--to", "out.age"];
        if quiet {
            args.push("-q");
        }
        let mut child =
            fx.run(&args).command().stdin(Stdio::piped()).stdout(Stdio::null()).stderr(tty).spawn().unwrap();
        child.stdin.take().unwrap().write_all(&bytes(3000, 16)).unwrap();
        let status = wait_timeout(&mut child, Duration::from_secs(10));
        assert!(status.success());
        let mut shown = Vec::new();
        while let Ok(chunk) = rx.recv_timeout(Duration::from_millis(if quiet { 300 } else { 3000 })) {
            shown.extend(chunk);
            if String::from_utf8_lossy(&shown).contains('\n') {
                break;
            }
        }
        let shown = String::from_utf8_lossy(&shown);
        if quiet {
            assert!(shown.is_empty(), "-q: nothing on the terminal: {shown:?}");
        } else {
            assert!(shown.starts_with("wm-seal: sealed"), "one-line summary: {shown:?}");
            assert!(shown.contains("1 recipient"), "{shown:?}");
        }
    }
}

// ---------------------------------------------------------------- recipients errors

#[test]
fn every_recipients_error_exits_1_names_its_source_and_creates_nothing() {
    let Fx { d, id, r: good } = Fx::new();
    let secret = secret_of(&id);
    assert!(secret.starts_with("AGE-SECRET-KEY-1"));
    let cut = good[..good.len() - 5].to_string();
    let plugin = "age1yubikey1qwt50d05nh5vutpdzmlg5wn80xq5negm4uj9ghv0snvdd3yysf5yw3rhl3t";
    let plugin_identity = "AGE-PLUGIN-YUBIKEY-1QWT50D05NH5VUTPDZMLG5WN80XQ5NEGM4UJ9GHV0SNVDD3YYSF5Y";
    d.write("empty.txt", "");
    d.write("comments.txt", "# the team\r\n\r\n   \r\n\t# nobody yet\n");
    d.write("secret.txt", format!("# team\n{good}\n{secret}\n"));
    d.write("plugin.txt", format!("{good}\n{plugin}\n"));
    d.write("malformed.txt", "age1xyz\n");
    d.write("cut.txt", format!("# cut short\r\n{cut}\r\n"));
    d.write("mixed.txt", format!("{good}\n\n# ok so far\nssh-ed25519 AAAAnotbase64!!\n"));
    d.write("plugin-id.txt", format!("{plugin_identity}\n"));
    d.write("binary.bin", bytes(2000, 8));
    d.write("huge.txt", format!("{good}\n").repeat(MIB / good.len() + 10));
    d.mkdir("keysdir");

    let s = |v: &str| v.to_string();
    // (flag, value, what the message must say)
    let mut cases: Vec<(&str, String, Vec<String>)> = vec![
        ("-R", s("empty.txt"), vec![s("recipients file: empty.txt"), s("no recipients in it")]),
        ("-r", s("empty.txt"), vec![s("recipients file: empty.txt"), s("no recipients in it")]),
        ("-R", s("comments.txt"), vec![s("recipients file: comments.txt"), s("only comments")]),
        ("-r", secret.clone(), vec![s("age secret key"), s("age-keygen -y")]),
        ("-R", s("secret.txt"), vec![s("secret.txt:3"), s("age secret key"), s("age-keygen -y")]),
        ("-r", s("id.txt"), vec![s("id.txt:2"), s("age-keygen -y")]),
        ("-R", s("id.txt"), vec![s("id.txt:2"), s("age-keygen -y")]),
        ("-r", s(plugin), vec![s("plugin recipient"), s("age-plugin-yubikey is not on PATH")]),
        ("-R", s("plugin.txt"), vec![s("plugin.txt:2"), s("plugin recipient"), s("age-plugin-yubikey is not on PATH")]),
        ("-r", s(plugin_identity), vec![s("plugin identity")]),
        ("-R", s("plugin-id.txt"), vec![s("plugin-id.txt:1"), s("plugin identity")]),
        ("-r", s("age1xyz"), vec![s("neither an existing file nor a valid recipient")]),
        ("-R", s("malformed.txt"), vec![s("malformed.txt:1"), s("not a valid age or SSH recipient")]),
        ("-r", cut.clone(), vec![s("neither an existing file nor a valid recipient")]),
        ("-R", s("cut.txt"), vec![s("cut.txt:2"), s("not a valid age or SSH recipient")]),
        ("-R", s("mixed.txt"), vec![s("mixed.txt:4"), s("not a valid age or SSH recipient")]),
        ("-r", s("keysdir"), vec![s("recipients file: keysdir"), s("is a directory")]),
        ("-R", s("keysdir"), vec![s("recipients file: keysdir"), s("is a directory")]),
        ("-R", s("missing.txt"), vec![s("recipients file: missing.txt"), s("no such file")]),
        ("-r", s("missing.txt"), vec![s("missing.txt"), s("neither an existing file nor a valid recipient")]),
        ("-r", s(SK_ED25519), vec![s("unsupported SSH key type sk-ssh-ed25519@openssh.com")]),
        ("-R", s("binary.bin"), vec![s("binary.bin"), s("not a text file")]),
        ("-R", s("huge.txt"), vec![s("huge.txt"), s("larger than 1 MiB")]),
    ];
    if have_for_some_cases("ssh-keygen") {
        let (_, ed_r) = ssh_keygen(&d, "ed", "", &["-t", "ed25519"]).unwrap();
        let (_, ec_r) = ssh_keygen(&d, "ec", "", &["-t", "ecdsa"]).unwrap();
        d.write("ec-in-file.txt", format!("{ed_r}\n{ec_r}\n"));
        for flag in ["-R", "-r"] {
            cases.push((flag, s("ed"), vec![s("ed:1"), s("SSH private key"), s("pass the .pub")]));
        }
        cases.push(("-r", ec_r.clone(), vec![s("unsupported SSH key type ecdsa")]));
        let (_, small) = ssh_rsa_public(&d, "rsa1024", 1024);
        cases.push(("-r", small, vec![s("shorter than 2048 bits")]));
        cases.push(("-R", s("rsa1024.pub"), vec![s("rsa1024.pub:1"), s("shorter than 2048 bits")]));
    }
    let private_ed = std::fs::read_to_string(d.join("ed")).unwrap_or_default();

    let before = d.tree();
    for (flag, value, needles) in &cases {
        for to in [Some("out.age"), None] {
            let mut cmd = run(WM_SEAL, &d).args([*flag, value.as_str()]);
            if let Some(t) = to {
                cmd = cmd.args(["--to", t]);
            }
            let out = cmd.stdin(bytes(1000, 6)).go();
            let what = format!("{flag} {:?} --to {to:?}", value.chars().take(30).collect::<String>());
            assert_eq!(out.code(), 1, "{what}: exit code; stderr: {}", out.stderr);
            for n in needles {
                assert!(out.stderr.contains(n.as_str()), "{what}: stderr should contain {n:?}: {}", out.stderr);
            }
            out.one_line_error(PROG);
            assert!(out.stdout.is_empty(), "{what}: nothing on stdout");
            assert_not_echoed(&out.stderr, &secret, &what);
            for line in private_ed.lines().filter(|l| !l.starts_with("-----")) {
                assert!(!out.stderr.contains(line), "{what}: the SSH private key is never echoed");
            }
        }
    }
    assert_unchanged(&before, &d.tree(), "recipients errors");
}

#[test]
fn an_unsupported_ssh_key_in_a_recipients_file_is_skipped_with_a_warning_as_age_does() {
    if !have("ssh-keygen") {
        return;
    }
    let Fx { d, .. } = Fx::new();
    let (ed, ed_r) = ssh_keygen(&d, "ed", "", &["-t", "ed25519"]).unwrap();
    let (_, ec_r) = ssh_keygen(&d, "ec", "", &["-t", "ecdsa"]).unwrap();
    d.write("mixed.txt", format!("{ed_r}\n{ec_r}\n"));
    let data = bytes(5000, 8);
    let out = run(WM_SEAL, &d).args(["-R", "mixed.txt", "--to", "out.age"]).stdin(data.clone()).go();
    out.ok();
    assert_eq!(out.stderr.lines().count(), 1, "one warning: {}", out.stderr);
    for needle in ["warning", "mixed.txt", "ecdsa-sha2-nistp256", "line 2"] {
        assert!(out.stderr.contains(needle), "the warning says {needle:?}: {}", out.stderr);
    }
    let quiet = run(WM_SEAL, &d).args(["-q", "-R", "mixed.txt", "--to", "out2.age"]).stdin(data.clone()).go();
    assert!(quiet.ok().stderr.is_empty(), "-q silences it: {}", quiet.stderr);
    if have("age") {
        assert_decrypts_to(&ed, &d.join("out.age"), &data, "sealed to the ssh-ed25519 key of the file");
    }
}

#[test]
fn unreadable_recipients_file_is_permission_denied_not_a_bad_recipient() {
    let Fx { d, r: good, .. } = Fx::new();
    let keys = d.write("keys.txt", format!("{good}\n"));
    set_mode(&keys, 0o000);
    // A file in a directory that cannot be searched: stat(2) itself fails with EACCES.
    d.write("locked/keys.txt", format!("{good}\n"));
    set_mode(&d.join("locked"), 0o000);
    let before = d.tree();
    for (flag, value) in [("-r", "keys.txt"), ("-R", "keys.txt"), ("-r", "locked/keys.txt"), ("-R", "locked/keys.txt")]
    {
        let out = run(WM_SEAL, &d).args([flag, value, "--to", "out.age"]).stdin(b"data".to_vec()).unprivileged().go();
        out.expect(1, "permission denied").one_line_error(PROG);
        assert!(out.stderr.contains(value), "names the file: {}", out.stderr);
        assert!(
            !out.stderr.contains("neither") && !out.stderr.contains("not a valid"),
            "{flag} {value}: reported as it is, not as a bad recipient: {}",
            out.stderr
        );
    }
    assert_unchanged(&before, &d.tree(), "unreadable recipients files");
    set_mode(&d.join("locked"), 0o755);
}

#[test]
fn existing_file_named_like_a_recipient_is_read_as_a_recipients_file() {
    if !have("age") {
        return;
    }
    let d = Dir::new();
    let (id_a, r_a) = d.age_key("a.key");
    let (id_b, r_b) = d.age_key("b.key");
    // A file whose name is A's recipient, holding B's.
    d.write(&r_a, format!("# B only\n{r_b}\n"));
    let input = bytes(5000, 12);
    seal(&d, &["-r", &r_a, "--to", "out.age"], &input).ok();
    assert_decrypts_to(&id_b, &d.join("out.age"), &input, "the file's recipient");
    assert!(age_decrypt(&id_a, &d.join("out.age")).is_err(), "the file name is not a recipient");
}

#[test]
fn a_secret_key_is_never_echoed_whatever_surrounds_it() {
    let fx = Fx::new();
    let secret = secret_of(&fx.id);
    for value in [format!(" {secret}"), format!("{secret} "), format!("'{secret}'"), format!("\t{secret}\r")] {
        let out = seal(&fx.d, &["-r", &value], b"data");
        out.expect(1, "recipient").one_line_error(PROG);
        assert_not_echoed(&out.stderr, &secret, &format!("{:?}", &value[..3]));
    }
}

#[test]
fn an_ssh_private_key_given_literally_is_refused_without_echoing_it() {
    if !have("ssh-keygen") {
        return;
    }
    let d = Dir::new();
    ssh_keygen(&d, "ed", "", &["-t", "ed25519"]).unwrap();
    let private = std::fs::read_to_string(d.join("ed")).unwrap();
    let out = seal(&d, &["-r", private.trim_end()], b"data");
    out.expect(1, "SSH private key").one_line_error(PROG);
    for line in private.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!out.stderr.contains(line), "the private key is never echoed: {}", out.stderr);
    }
}

// ---------------------------------------------------------------- pipes

#[test]
fn closed_stdout_pipe_exits_1_quietly() {
    let fx = Fx::new();
    let input = fx.d.write("big.bin", bytes(8 * MIB, 11));
    let mut child = fx
        .run(&[])
        .command()
        .stdin(File::open(&input).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Like `| head -c 10`: read ten bytes, hang up.
    let mut out = child.stdout.take().unwrap();
    let mut ten = [0u8; 10];
    out.read_exact(&mut ten).unwrap();
    drop(out);
    let status = wait_timeout(&mut child, Duration::from_secs(20));
    let err = stderr_of(&mut child);
    assert_eq!(status.code(), Some(1), "exit 1 on EPIPE; stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.is_empty(), "quietly: the reader tells its own story: {err:?}");
}

#[test]
fn sigterm_while_blocked_writing_stdout_exits_143_promptly() {
    let fx = Fx::new();
    let input = fx.d.write("big.bin", bytes(8 * MIB, 13));
    // A pipe nobody reads: wm-seal blocks in write(2) once it is full.
    let (reader, writer) = std::io::pipe().unwrap();
    let mut child =
        fx.run(&[]).command().stdin(File::open(&input).unwrap()).stdout(writer).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    sigterm_expect_143(&mut child, "blocked on the full pipe");
    drop(reader);
}

#[test]
fn a_recipients_fifo_nobody_writes_to_gives_way_to_sigterm() {
    use nix::unistd::mkfifo;
    let d = Dir::new();
    mkfifo(&d.join("keys.fifo"), Mode::from_bits_truncate(0o600)).unwrap();
    let before = d.tree();
    let mut child = run(WM_SEAL, &d).args(["-R", "keys.fifo", "--to", BACKUP]).spawn();
    // Waiting for a writer, as cat would.
    std::thread::sleep(Duration::from_millis(300));
    sigterm_expect_143(&mut child, "-R FIFO");
    assert_unchanged(&before, &d.tree(), "SIGTERM while opening a recipients FIFO");
}

// ---------------------------------------------------------------- history and reports

#[test]
fn to_a_directory_names_the_file_with_the_stem_and_the_utc_second() {
    if !have("age") {
        return;
    }
    let fx = Fx::new();
    let db = fx.d.workmem_db("memory.db", 100_000, false);
    let input = std::fs::read(&db).unwrap();
    for (dir, args, stem, ext) in [
        ("default", &["--to", "default/"][..], "backup", "db.age"),
        ("stem", &["--to", "stem", "--stem", "memory"][..], "memory", "db.age"),
        ("raw", &["--to", "raw/", "--raw"][..], "backup", "age"),
    ] {
        fx.d.mkdir(dir);
        let t0 = unix_now();
        fx.seal(args, &input).ok();
        let file = the_backup_in(&fx.d.join(dir), stem, ext, t0, unix_now());
        assert_eq!(mode_of(&file), 0o600);
        assert_decrypts_to(&fx.id, &file, &input, dir);
    }
}

#[test]
fn stem_is_refused_without_a_directory_or_when_it_makes_no_backup_name() {
    let fx = Fx::new();
    fx.d.mkdir("bk");
    let before = fx.d.tree();
    fx.seal(&["--to", "x.age", "--stem", "memory"], b"data")
        .expect(2, "--stem names files in --to DIR/ only")
        .one_line_error(PROG);
    for stem in [".hidden", "a/b", "", "tab\there"] {
        fx.seal(&["--to", "bk/", "--stem", stem], b"data").expect(2, "--stem").one_line_error(PROG);
    }
    assert_unchanged(&before, &fx.d.tree(), "bad --stem");
}

#[test]
fn json_report_on_stderr_has_the_sha256_of_the_file_and_no_source() {
    let fx = Fx::new();
    let input = bytes(200_000, 3);
    let out = fx.seal(&["--to", "s.age", "--json", "--raw"], &input);
    out.ok();
    let (v, keys) = json_on_stderr(&out);
    assert_eq!(keys, sorted_keys(&BACKUP_KEYS), "{v}");
    let file = fx.d.join("s.age");
    assert_eq!(v["tool"], PROG);
    assert_eq!(v["sha256"], sha256_file(&file));
    assert_eq!(v["snapshot_bytes"], input.len());
    assert_eq!(v["ciphertext_bytes"], std::fs::metadata(&file).unwrap().len());
    for k in ["source", "method", "spool"] {
        assert_eq!(v[k], serde_json::Value::Null, "{k}: wm-seal has none: {v}");
    }
    assert_eq!(v["recipients"][0]["fingerprint"], &sha256(fx.r.as_bytes())[..8]);
    // A failure is one object too, and stdout stays empty.
    let out = fx.seal(&["--to", "e.age", "--json"], b"");
    assert_json_failure(&out, PROG, 1, "empty (0 bytes)");
    assert!(out.stdout.is_empty());
}
