//! wm-verify: what it promises, each test named after one promise. A good
//! backup is reported restorable whoever made it and for every kind of
//! identity; every way a backup can be broken is told apart by name, with
//! exit 1 and one line; and no run, good or bad, leaves a file behind, least
//! of all plaintext.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::fixture;
use crate::harness::*;
use rusqlite::Connection;
use serde_json::{json, Value};

const PROG: &str = "wm-verify";
/// One age payload chunk on disk: 64 KiB of plaintext and a 16-byte tag.
const CHUNK: usize = 65536 + 16;
/// The source database: the only file allowed to start like SQLite.
const DB: &str = "memory.db";
const BACKUP: &str = "backup.age";

// ---------------------------------------------------------------- helpers

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Where the payload starts: after the header's `--- MAC` line and the 16-byte nonce.
fn payload_start(age: &[u8]) -> usize {
    let mac = find(age, b"\n--- ").expect("the header's MAC line");
    let end = mac + 1 + age[mac + 1..].iter().position(|&b| b == b'\n').expect("end of the MAC line");
    end + 1 + 16
}

/// A letter of the header's MAC (base64 after `--- `), well inside it.
fn mac_offset(age: &[u8]) -> usize {
    find(age, b"\n--- ").expect("the header's MAC line") + 5 + 20
}

/// A letter inside the X25519 stanza's argument (the ephemeral share).
fn stanza_argument_offset(age: &[u8]) -> usize {
    find(age, b"-> X25519 ").expect("an X25519 stanza") + 10 + 20
}

/// A letter inside the X25519 stanza's body (the wrapped file key).
fn stanza_body_offset(age: &[u8]) -> usize {
    let line = find(age, b"-> X25519 ").expect("an X25519 stanza");
    line + age[line..].iter().position(|&b| b == b'\n').unwrap() + 1 + 20
}

/// Replaces the first letter at or after `at` with another letter, so that
/// base64 stays base64; returns where.
fn flip_letter(data: &mut [u8], at: usize) -> usize {
    let i = (at..data.len()).find(|&i| data[i].is_ascii_alphabetic()).expect("a letter to flip");
    data[i] = match data[i] {
        b'z' => b'a',
        b'Z' => b'A',
        c => c + 1,
    };
    i
}

fn flip_byte(data: &mut [u8], at: usize) {
    data[at] ^= 0x01;
}

/// Files that hold a SQLite header, other than the source database.
fn plaintext_files(d: &Dir) -> Vec<PathBuf> {
    files_with_sqlite_header(&d.path).into_iter().filter(|p| p != &d.join(DB)).collect()
}

/// Runs `r` and checks that it created, changed and removed nothing in the
/// test's directory (which is also its TMPDIR), and left no plaintext.
#[track_caller]
fn checked(d: &Dir, r: Run, what: &str) -> Out {
    let before = d.tree();
    let out = r.go();
    assert!(!out.stderr.contains("panicked"), "{what}: no panic: {}", out.stderr);
    assert_unchanged(&before, &d.tree(), what);
    assert_eq!(plaintext_files(d), Vec::<PathBuf>::new(), "{what}: no plaintext left behind");
    out
}

/// `args` with `-v` first, unless they ask for `-q`.
fn verbose<'a>(args: &[&'a str]) -> Vec<&'a str> {
    match args.iter().any(|a| *a == "-q" || *a == "--quiet") {
        true => args.to_vec(),
        false => [&["-v"], args].concat(),
    }
}

/// The keys of the JSON report, as wm-verify(1) lists them; what was not
/// reached is null, never missing.
const JSON_KEYS: [&str; 19] = [
    "tool",
    "version",
    "exit",
    "backup",
    "restorable",
    "error",
    "opened_by",
    "recipients",
    "armored",
    "ciphertext",
    "size",
    "page_size",
    "page_count",
    "sqlite_version",
    "spool",
    "integrity_check",
    "fts5",
    "against",
    "tables",
];

/// The keys of an object, sorted.
fn keys_of(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
    k.sort_unstable();
    k
}

fn sorted<'a>(keys: &[&'a str]) -> Vec<&'a str> {
    let mut k = keys.to_vec();
    k.sort_unstable();
    k
}

/// The one JSON object on standard output: compact, one line, every key of
/// the man page and no other.
#[track_caller]
fn json_of(out: &Out) -> Value {
    let text = std::str::from_utf8(&out.stdout).expect("JSON is UTF-8");
    let t = text.strip_suffix('\n').unwrap_or(text);
    assert!(!t.contains('\n'), "one line of JSON: {text:?}");
    assert!(t.starts_with('{') && t.ends_with('}'), "one JSON object, nothing around it: {text:?}");
    let v: Value =
        serde_json::from_str(t).unwrap_or_else(|e| panic!("exactly one JSON object on stdout: {e}: {text:?}"));
    assert_eq!(keys_of(&v), sorted(&JSON_KEYS), "the documented keys: {v}");
    v
}

/// A table's entry in the JSON report.
fn table_entry(name: &str, rows: i64, live: Option<i64>) -> Value {
    json!({"name": name, "rows": rows, "live_rows": live, "difference": live.map(|l| l - rows)})
}

/// The report's `tables` list.
#[track_caller]
fn tables_of(v: &Value) -> &Vec<Value> {
    v["tables"].as_array().unwrap_or_else(|| panic!("tables is a list: {v}"))
}

/// A test's world: a workmem database of about 1 MiB, an X25519 key, and a
/// backup made by workmem-backup.
struct Fx {
    d: Dir,
    id: PathBuf,
    r: String,
    counts: fixture::Counts,
}

impl Fx {
    fn new() -> Fx {
        let d = Dir::new();
        let db = d.workmem_db(DB, 1 << 20, true);
        let counts = fixture::counts(&Connection::open(&db).unwrap()).unwrap();
        let (id, r) = d.age_key("id.txt");
        let fx = Fx { d, id, r, counts };
        fx.backup(BACKUP, &[]);
        fx
    }

    /// `workmem-backup --to NAME -r R --db memory.db EXTRA`.
    fn backup(&self, name: &str, extra: &[&str]) -> PathBuf {
        self.backup_for(name, &self.r, extra)
    }

    /// `workmem-backup --to NAME -r RECIPIENT --db memory.db EXTRA`.
    fn backup_for(&self, name: &str, recipient: &str, extra: &[&str]) -> PathBuf {
        run(WORKMEM_BACKUP, &self.d).args(["--to", name, "-r", recipient, "--db", DB]).args(extra).go().ok();
        self.d.join(name)
    }

    /// The consistent snapshot of the source, as wm-snapshot writes it.
    fn snapshot(&self) -> Vec<u8> {
        let out = run(WM_SNAPSHOT, &self.d).args(["--db", DB]).go();
        out.ok();
        out.stdout
    }

    /// `wm-seal --raw -r R --to NAME < data`: any bytes, sealed as they are.
    fn seal_raw(&self, name: &str, data: &[u8]) -> PathBuf {
        run(WM_SEAL, &self.d).args(["--raw", "-r", &self.r, "--to", name]).stdin(data.to_vec()).go().ok();
        self.d.join(name)
    }

    /// A copy of the backup under `name`, changed by `f`.
    fn tampered(&self, name: &str, f: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
        let mut data = self.d.read(BACKUP);
        f(&mut data);
        self.d.write(name, data)
    }

    /// `wm-verify -i id.txt ARGS`, checked for files left behind.
    fn verify(&self, args: &[&str]) -> Out {
        self.verify_as(&[&["-i", "id.txt"], args].concat())
    }

    /// `wm-verify ARGS` (no implicit identity), checked for files left behind.
    /// With `-v` (the detail the assertions read) unless the test says `-q`.
    fn verify_as(&self, args: &[&str]) -> Out {
        let args = verbose(args);
        checked(&self.d, run(WM_VERIFY, &self.d).args(&args), &format!("wm-verify {args:?}"))
    }

    /// `wm-verify ARGS < data`, checked for files left behind.
    fn verify_stdin(&self, args: &[&str], data: &[u8]) -> Out {
        let args = verbose(args);
        checked(
            &self.d,
            run(WM_VERIFY, &self.d).args(&args).stdin(data.to_vec()),
            &format!("wm-verify {args:?} < data"),
        )
    }

    /// The human report of a good backup: restorable, and the tables with their row counts.
    #[track_caller]
    fn assert_restorable(&self, out: &Out, what: &str) {
        assert_eq!(out.code(), 0, "{what}: restorable expected; stderr: {}", out.stderr);
        let first = out.stderr.lines().next().unwrap_or("");
        assert!(first.contains("restorable"), "{what}: the first line says restorable: {}", out.stderr);
        assert!(!first.contains("not restorable"), "{what}: {}", out.stderr);
        for (table, rows) in [("entities", self.counts.entities), ("observations", self.counts.observations)] {
            assert!(
                out.stderr.lines().any(|l| l.contains(table) && l.contains(&rows.to_string())),
                "{what}: the report lists {table} with {rows} rows: {}",
                out.stderr
            );
        }
        assert_not_echoed(&out.stderr, &secret_of(&self.id), what);
    }

    /// `file` fails to verify: exit 1, one line naming it and saying each of
    /// `needles`; and with --json, one object saying the same.
    #[track_caller]
    fn assert_fails(&self, file: &str, needles: &[&str]) {
        let out = self.verify(&[file]);
        self.assert_failure(&out, file, needles, file);
        let out = self.verify(&["--json", file]);
        assert_json_failure(&out, needles, file);
    }

    #[track_caller]
    fn assert_failure(&self, out: &Out, file: &str, needles: &[&str], what: &str) {
        assert_eq!(out.code(), 1, "{what}: exit code; stderr: {}", out.stderr);
        out.one_line_error(PROG);
        let lower = out.stderr.to_lowercase();
        for n in needles {
            assert!(lower.contains(&n.to_lowercase()), "{what}: stderr should say {n:?}: {}", out.stderr);
        }
        assert!(out.stderr.contains(file), "{what}: the message names {file:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{what}: nothing on stdout without --json");
        assert_not_echoed(&out.stderr, &secret_of(&self.id), what);
    }
}

/// `--json` on a failed verification: exit 1, one object, restorable false, the error says `needles`.
#[track_caller]
fn assert_json_failure(out: &Out, needles: &[&str], what: &str) {
    assert_eq!(out.code(), 1, "{what} --json: exit code; stderr: {}", out.stderr);
    let v = json_of(out);
    assert_eq!(v["restorable"], false, "{what} --json: restorable false: {v}");
    let error = v["error"].as_str().unwrap_or_else(|| panic!("{what} --json: error is a string: {v}"));
    for n in needles {
        assert!(error.to_lowercase().contains(&n.to_lowercase()), "{what} --json: error should say {n:?}: {v}");
    }
}

// ---------------------------------------------------------------- good backups, every maker, every identity

#[test]
fn backup_made_by_workmem_backup_is_restorable_and_the_report_lists_the_tables() {
    let fx = Fx::new();
    let out = fx.verify(&[BACKUP]);
    fx.assert_restorable(&out, "workmem-backup");
    assert!(out.stdout.is_empty(), "the human report goes to stderr");
}

#[test]
fn x25519_identity_made_by_age_keygen_verifies() {
    if !have("age-keygen") {
        return;
    }
    let fx = Fx::new();
    let (id, r) = age_keygen(&fx.d, "keygen.txt");
    fx.backup_for("keygen.age", &r, &[]);
    let out = fx.verify_as(&["-i", "keygen.txt", "keygen.age"]);
    fx.assert_restorable(&out, "age-keygen identity");
    assert_not_echoed(&out.stderr, &secret_of(&id), "age-keygen identity");
}

#[test]
fn ssh_ed25519_identity_verifies() {
    if !have("ssh-keygen") {
        return;
    }
    let fx = Fx::new();
    let (key, public) = ssh_keygen(&fx.d, "ed", "", &["-t", "ed25519"]).expect("ssh-keygen");
    fx.backup_for("ed.age", &public, &[]);
    let out = fx.verify_as(&["-i", "ed", "ed.age"]);
    fx.assert_restorable(&out, "ssh-ed25519");
    let private = std::fs::read_to_string(key).unwrap();
    for line in private.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!out.stderr.contains(line), "the SSH private key is never echoed: {}", out.stderr);
    }
}

#[test]
fn ssh_rsa_identity_verifies() {
    if !have("ssh-keygen") {
        return;
    }
    let fx = Fx::new();
    let (_, public) = ssh_keygen(&fx.d, "rsa", "", &["-t", "rsa", "-b", "2048"]).expect("ssh-keygen");
    fx.backup_for("rsa.age", &public, &[]);
    let out = fx.verify_as(&["-i", "rsa", "rsa.age"]);
    fx.assert_restorable(&out, "ssh-rsa");
}

#[test]
fn snapshot_piped_into_seal_verifies() {
    let fx = Fx::new();
    let snap = fx.snapshot();
    run(WM_SEAL, &fx.d).args(["-r", &fx.r, "--to", "piped.age"]).stdin(snap).go().ok();
    let out = fx.verify(&["piped.age"]);
    fx.assert_restorable(&out, "wm-snapshot | wm-seal");
}

#[test]
fn armored_backup_verifies() {
    let fx = Fx::new();
    let armored = fx.backup("armored.age", &["--armor"]);
    assert!(fx.d.read("armored.age").starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"), "{}", armored.display());
    let out = fx.verify(&["armored.age"]);
    fx.assert_restorable(&out, "--armor");
    let out = fx.verify_stdin(&["-i", "id.txt"], &fx.d.read("armored.age"));
    fx.assert_restorable(&out, "--armor on stdin");
}

#[test]
fn a_damaged_armored_backup_fails_as_truncated_or_altered_armor() {
    let fx = Fx::new();
    fx.backup("armored.age", &["--armor"]);
    let text = fx.d.read("armored.age");
    let cut = fx.d.write("cut.age", &text[..text.len() / 2]);
    let no_end = fx.d.write("no-end.age", &text[..text.len() - "-----END AGE ENCRYPTED FILE-----\n".len()]);
    let mut bad = text.clone();
    let at = text.len() / 2;
    bad[at] = b'!';
    let bad = fx.d.write("bad.age", bad);
    for file in [cut, no_end, bad] {
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        fx.assert_fails(&name, &["truncated or altered ascii armor"]);
    }
    // A changed letter that is still base64 decodes, and then fails authentication.
    let mut flipped = text.clone();
    flip_letter(&mut flipped, text.len() / 2);
    fx.d.write("flipped.age", flipped);
    fx.assert_fails("flipped.age", &["altered", "chunk"]);
}

#[test]
fn backup_made_by_the_age_cli_verifies_binary_and_armored() {
    if !have("age") {
        return;
    }
    let fx = Fx::new();
    for (name, armor) in [("cli.age", false), ("cli-armored.age", true)] {
        let mut cmd = Command::new("age");
        cmd.current_dir(&fx.d.path).args(["-r", &fx.r, "-o", name]);
        if armor {
            cmd.arg("-a");
        }
        let st = cmd.arg(DB).status().expect("run age");
        assert!(st.success(), "age -r -o {name}");
        let out = fx.verify(&[name]);
        fx.assert_restorable(&out, &format!("age CLI, armor {armor}"));
    }
}

#[test]
fn backup_on_standard_input_verifies_without_a_name_and_with_a_dash() {
    let fx = Fx::new();
    let data = fx.d.read(BACKUP);
    let out = fx.verify_stdin(&["-i", "id.txt"], &data);
    fx.assert_restorable(&out, "stdin, no BACKUP");
    let out = fx.verify_stdin(&["-i", "id.txt", "-"], &data);
    fx.assert_restorable(&out, "stdin, -");
}

#[test]
fn identity_on_standard_input_verifies_a_backup_file() {
    let fx = Fx::new();
    let identity = fx.d.read("id.txt");
    let out = fx.verify_stdin(&["-i", "-", BACKUP], &identity);
    fx.assert_restorable(&out, "-i - with a backup file");
}

#[test]
fn spool_memory_and_spool_disk_both_verify() {
    let fx = Fx::new();
    for spool in ["auto", "memory", "disk"] {
        let out = fx.verify(&["--spool", spool, BACKUP]);
        fx.assert_restorable(&out, &format!("--spool {spool}"));
        let out = fx.verify_stdin(&["-i", "id.txt", "--spool", spool], &fx.d.read(BACKUP));
        fx.assert_restorable(&out, &format!("--spool {spool}, stdin"));
    }
}

#[test]
fn disk_spool_in_tmpdir_leaves_it_empty_on_success_and_on_failure() {
    let fx = Fx::new();
    fx.d.mkdir("spool");
    let altered = fx.tampered("altered.age", |data| {
        let at = payload_start(data) + 5 * CHUNK + 100;
        flip_byte(data, at);
    });
    assert!(altered.exists());
    let snap = fx.snapshot();
    let pages = snap.len() / 4096;
    fx.seal_raw("cut-db.age", &snap[..pages / 2 * 4096]);
    for (file, code) in [(BACKUP, 0), ("altered.age", 1), ("cut-db.age", 1)] {
        let out = fx.verify(&["--spool", "disk", "--tmpdir", "spool", file]);
        assert_eq!(out.code(), code, "--spool disk --tmpdir spool {file}: {}", out.stderr);
        let left: Vec<_> = std::fs::read_dir(fx.d.join("spool")).unwrap().collect();
        assert!(left.is_empty(), "{file}: the spool directory is empty afterwards: {left:?}");
        let out = fx.verify_stdin(&["-i", "id.txt", "--spool", "disk", "--tmpdir", "spool"], &fx.d.read(file));
        assert_eq!(out.code(), code, "--spool disk --tmpdir spool < {file}: {}", out.stderr);
        let left: Vec<_> = std::fs::read_dir(fx.d.join("spool")).unwrap().collect();
        assert!(left.is_empty(), "{file} on stdin: the spool directory is empty afterwards: {left:?}");
    }
}

#[test]
fn quiet_success_prints_nothing() {
    let fx = Fx::new();
    let out = fx.verify(&["-q", BACKUP]);
    out.ok();
    assert_eq!(out.stderr, "", "-q: nothing on stderr");
    assert!(out.stdout.is_empty(), "-q: nothing on stdout");
}

#[test]
fn quiet_failure_still_says_why_in_one_line() {
    let fx = Fx::new();
    fx.tampered("cut.age", |data| data.truncate(data.len() - 1000));
    let out = fx.verify(&["-q", "cut.age"]);
    fx.assert_failure(&out, "cut.age", &["truncated"], "-q, cut");
}

#[test]
fn identity_file_with_comments_blank_lines_and_several_keys_verifies() {
    let fx = Fx::new();
    let (_, _) = fx.d.age_key("other.txt");
    let other = secret_of(&fx.d.join("other.txt"));
    let mine = secret_of(&fx.id);
    fx.d.write("both.txt", format!("# two keys\n\n# someone else's\n{other}\n\n\n# mine\n{mine}\n"));
    let out = fx.verify_as(&["-i", "both.txt", BACKUP]);
    fx.assert_restorable(&out, "the second key in the file");
    assert_not_echoed(&out.stderr, &other, "several keys");
    // A line of spaces is not an empty line: Go age refuses the file, and so do we.
    fx.d.write("spaces.txt", format!("# two keys\n{other}\n   \n{mine}\n"));
    let out = fx.verify_as(&["-i", "spaces.txt", BACKUP]);
    out.expect(1, "spaces.txt:3: a line of only whitespace");
    assert_not_echoed(&out.stderr, &mine, "a line of spaces");
}

#[test]
fn several_identity_files_verify_when_any_one_matches() {
    let fx = Fx::new();
    fx.d.age_key("other.txt");
    for args in [["-i", "other.txt", "-i", "id.txt"], ["-i", "id.txt", "-i", "other.txt"]] {
        let out = fx.verify_as(&[&args[..], &[BACKUP]].concat());
        fx.assert_restorable(&out, &format!("{args:?}"));
    }
}

// ---------------------------------------------------------------- the JSON report

#[test]
fn json_report_of_a_good_backup_has_every_field() {
    let fx = Fx::new();
    let snap = fx.snapshot();
    let sealed = fx.seal_raw("snap.age", &snap);
    let sealed_len = std::fs::metadata(&sealed).unwrap().len();
    let out = fx.verify(&["--json", "snap.age"]);
    out.ok();
    let v = json_of(&out);
    assert_eq!(v["restorable"], true, "{v}");
    assert_eq!(v["error"], Value::Null, "{v}");
    assert_eq!(v["backup"], "snap.age", "{v}");
    let size = v["size"].as_u64().unwrap_or_else(|| panic!("size is a non-negative integer: {v}"));
    assert!(size == snap.len() as u64 || size == sealed_len, "size is the database's or the backup's: {v}");
    assert_eq!(v["page_size"], 4096, "{v}");
    assert_eq!(v["page_count"], (snap.len() / 4096) as u64, "{v}");
    let version = v["sqlite_version"].as_str().unwrap_or_else(|| panic!("sqlite_version is a string: {v}"));
    let parts: Vec<&str> = version.split('.').collect();
    assert!(
        parts.len() == 3
            && parts[0] == "3"
            && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
        "sqlite_version like 3.54.1: {v}"
    );
    assert_eq!(v["integrity_check"], "ok", "{v}");
    let fts5 = v["fts5"].as_array().unwrap_or_else(|| panic!("fts5 is a list: {v}"));
    assert!(fts5.first().is_some_and(|f| f["table"] == "memory_fts" && f["ok"] == true), "the FTS5 index checked: {v}");
    for f in fts5 {
        assert_eq!(keys_of(f), sorted(&["table", "ok", "hits", "error"]), "an fts5 entry's keys: {f}");
    }
    let tables = tables_of(&v);
    let c = &fx.counts;
    for (name, rows) in [
        ("entities", c.entities),
        ("events", c.events),
        ("observations", c.observations),
        ("relations", c.relations),
        ("observation_embeddings", c.embeddings),
    ] {
        let entry = table_entry(name, rows, None);
        assert!(tables.contains(&entry), "tables has {entry}: {v}");
    }
}

#[test]
fn json_report_on_standard_input_is_one_object_too() {
    let fx = Fx::new();
    let out = fx.verify_stdin(&["-i", "id.txt", "--json"], &fx.d.read(BACKUP));
    out.ok();
    let v = json_of(&out);
    assert_eq!(v["restorable"], true, "{v}");
    assert!(v["backup"].is_string(), "backup is a string: {v}");
}

#[test]
fn against_the_live_database_reports_the_row_differences() {
    let fx = Fx::new();
    let c = fx.counts.clone();
    {
        let conn = Connection::open(fx.d.join(DB)).unwrap();
        for i in 0..7 {
            conn.execute("INSERT INTO observations(entity_id, content) VALUES (1, ?1)", [format!("new {i}")]).unwrap();
        }
        conn.execute("DELETE FROM relations WHERE id IN (SELECT id FROM relations ORDER BY id LIMIT 3)", []).unwrap();
    }
    // SQLite may make the live database's -wal and -shm when it reads it: nothing else may appear.
    let strip =
        |t: Tree| -> Tree { t.into_iter().filter(|(k, _)| !k.ends_with("-wal") && !k.ends_with("-shm")).collect() };
    let before = strip(fx.d.tree());
    let out = run(WM_VERIFY, &fx.d).args(["-i", "id.txt", "--against", DB, "--json", BACKUP]).go();
    assert_unchanged(&before, &strip(fx.d.tree()), "--against");
    assert_eq!(plaintext_files(&fx.d).into_iter().filter(|p| !p.ends_with("memory.db-wal")).count(), 0);
    out.ok();
    let v = json_of(&out);
    let tables = tables_of(&v);
    for entry in [
        table_entry("observations", c.observations, Some(c.observations + 7)),
        table_entry("relations", c.relations, Some(c.relations - 3)),
        table_entry("entities", c.entities, Some(c.entities)),
        table_entry("events", c.events, Some(c.events)),
    ] {
        assert!(tables.contains(&entry), "tables has {entry}: {v}");
    }
    // The human report says it too, and still succeeds.
    let out = run(WM_VERIFY, &fx.d).args(["-v", "-i", "id.txt", "--against", DB, BACKUP]).go();
    fx.assert_restorable(&out, "--against, human");
}

#[test]
fn json_report_of_a_failed_verification_is_one_object_saying_why() {
    let fx = Fx::new();
    fx.tampered("cut.age", |data| data.truncate(data.len() - 1000));
    let out = fx.verify(&["--json", "cut.age"]);
    assert_json_failure(&out, &["truncated"], "cut.age");
    let v = json_of(&out);
    assert_eq!(v["backup"], "cut.age", "{v}");
    let out = fx.verify_stdin(&["-i", "id.txt", "--json"], b"not an age file at all\n");
    assert_json_failure(&out, &["not an age file"], "stdin");
}

#[test]
fn json_usage_errors_are_one_failure_object_on_stdout() {
    let fx = Fx::new();
    for (args, needle) in [
        (vec!["--json", BACKUP], "--identity <FILE>"),
        (vec!["--json", "-i", "-"], "cannot both come from standard input"),
        (vec!["--json", "-i", "id.txt", "--spool", "nowhere", BACKUP], "'nowhere'"),
    ] {
        let out = fx.verify_as(&args);
        assert_eq!(out.code(), 2, "{args:?}: usage error; stderr: {}", out.stderr);
        assert!(out.stderr.is_empty(), "{args:?}: the report replaces the message: {}", out.stderr);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: one object: {e}"));
        assert_eq!(keys_of(&v), sorted(&["tool", "version", "exit", "error"]), "{v}");
        assert_eq!((v["tool"].as_str(), v["exit"].as_i64()), (Some("wm-verify"), Some(2)), "{v}");
        assert!(v["error"].as_str().is_some_and(|e| e.contains(needle)), "{args:?}: {v}");
    }
}

// ---------------------------------------------------------------- usage

#[test]
fn no_identity_is_a_usage_error() {
    let fx = Fx::new();
    let out = fx.verify_as(&[BACKUP]);
    assert_eq!(out.code(), 2, "stderr: {}", out.stderr);
    out.one_line_error(PROG);
    assert!(out.stderr.contains("-i") || out.stderr.contains("identity"), "says what is missing: {}", out.stderr);
    let out = fx.verify_stdin(&[], &fx.d.read(BACKUP));
    assert_eq!(out.code(), 2, "stdin, no -i: {}", out.stderr);
}

#[test]
fn identity_and_backup_both_on_standard_input_is_a_usage_error() {
    let fx = Fx::new();
    for args in [vec!["-i", "-"], vec!["-i", "-", "-"], vec!["-i", "id.txt", "-i", "-", "-"]] {
        let out = fx.verify_stdin(&args, &fx.d.read("id.txt"));
        assert_eq!(out.code(), 2, "{args:?}: usage error; stderr: {}", out.stderr);
        out.one_line_error(PROG);
        assert_not_echoed(&out.stderr, &secret_of(&fx.id), "identity on stdin");
    }
}

#[test]
fn unknown_spool_is_a_usage_error() {
    let fx = Fx::new();
    let out = fx.verify(&["--spool", "nowhere", BACKUP]);
    assert_eq!(out.code(), 2, "stderr: {}", out.stderr);
    out.one_line_error(PROG);
}

#[test]
fn missing_backup_file_fails_naming_it() {
    let fx = Fx::new();
    let out = fx.verify(&["missing.age"]);
    fx.assert_failure(&out, "missing.age", &[], "missing backup");
}

// ---------------------------------------------------------------- identities that cannot be used

#[test]
fn passphrase_protected_age_identity_is_not_supported() {
    let fx = Fx::new();
    // What `age -p` and `age -p -a` make of an identity file, at a work factor that keeps the test fast.
    let secret = fx.d.read("id.txt");
    for (name, armor) in [("protected-armored.age", true), ("protected.age", false)] {
        let mut r = age::scrypt::Recipient::new(age::secrecy::SecretString::from("correct horse".to_string()));
        r.set_work_factor(10);
        let encryptor = age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient)).unwrap();
        let format = if armor { age::armor::Format::AsciiArmor } else { age::armor::Format::Binary };
        let armored = age::armor::ArmoredWriter::wrap_output(Vec::new(), format).unwrap();
        let mut w = encryptor.wrap_output(armored).unwrap();
        w.write_all(&secret).unwrap();
        fx.d.write(name, w.finish().unwrap().finish().unwrap());
        let out = fx.verify_as(&["-i", name, BACKUP]);
        out.expect(1, "not supported").one_line_error(PROG);
        assert!(out.stderr.contains(name), "names the identity file: {}", out.stderr);
        let out = fx.verify_as(&["-i", name, "--json", BACKUP]);
        assert_eq!(out.code(), 1, "{name} --json: {}", out.stderr);
    }
}

#[test]
fn passphrase_protected_ssh_key_is_not_supported() {
    if !have("ssh-keygen") {
        return;
    }
    let fx = Fx::new();
    let (_, public) = ssh_keygen(&fx.d, "locked", "secret", &["-t", "ed25519"]).expect("ssh-keygen");
    fx.backup_for("locked.age", &public, &[]);
    let out = fx.verify_as(&["-i", "locked", "locked.age"]);
    out.expect(1, "not supported").one_line_error(PROG);
    assert!(out.stderr.contains("locked"), "names the identity file: {}", out.stderr);
}

#[test]
fn a_public_key_given_as_identity_fails() {
    let fx = Fx::new();
    fx.d.write("recipient.txt", format!("# a recipients file\n{}\n", fx.r));
    let mut cases = vec!["recipient.txt"];
    if have_for_some_cases("ssh-keygen") {
        ssh_keygen(&fx.d, "ed", "", &["-t", "ed25519"]).expect("ssh-keygen");
        cases.push("ed.pub");
    }
    for file in cases {
        let out = fx.verify_as(&["-i", file, BACKUP]);
        assert_eq!(out.code(), 1, "-i {file}: stderr: {}", out.stderr);
        out.one_line_error(PROG);
        assert!(out.stderr.contains(file), "names the identity file: {}", out.stderr);
    }
}

#[test]
fn a_malformed_identity_line_is_refused_without_echoing_it() {
    let fx = Fx::new();
    let secret = secret_of(&fx.id);
    // The key cut short by one character: no longer a key, still secret.
    let cut = &secret[..secret.len() - 1];
    fx.d.write("bad.txt", format!("# almost\n{cut}\n"));
    let out = fx.verify_as(&["-i", "bad.txt", BACKUP]);
    assert_eq!(out.code(), 1, "stderr: {}", out.stderr);
    out.one_line_error(PROG);
    assert!(out.stderr.contains("bad.txt"), "names the identity file: {}", out.stderr);
    assert_not_echoed(&out.stderr, &secret, "malformed identity");
}

#[test]
fn missing_identity_file_fails_naming_it() {
    let fx = Fx::new();
    let out = fx.verify_as(&["-i", "nokey.txt", BACKUP]);
    assert_eq!(out.code(), 1, "stderr: {}", out.stderr);
    out.one_line_error(PROG);
    assert!(out.stderr.contains("nokey.txt"), "{}", out.stderr);
}

#[test]
fn wrong_identity_is_no_identity_and_never_echoes_the_secret() {
    let fx = Fx::new();
    let (other, _) = fx.d.age_key("other.txt");
    let out = fx.verify_as(&["-i", "other.txt", BACKUP]);
    fx.assert_failure(&out, BACKUP, &["no identity"], "wrong key");
    assert_not_echoed(&out.stderr, &secret_of(&other), "wrong key");
    let out = fx.verify_as(&["-i", "other.txt", "--json", BACKUP]);
    assert_json_failure(&out, &["no identity"], "wrong key");
}

// ---------------------------------------------------------------- broken files, each told apart

#[test]
fn a_plaintext_database_is_not_an_age_file() {
    let fx = Fx::new();
    fx.assert_fails(DB, &["not an age file"]);
}

#[test]
fn random_bytes_are_not_an_age_file() {
    let fx = Fx::new();
    fx.d.write("noise.age", bytes(300_000, 5));
    fx.assert_fails("noise.age", &["not an age file"]);
}

#[test]
fn failures_on_standard_input_name_standard_input() {
    let fx = Fx::new();
    let mut cut = fx.d.read(BACKUP);
    cut.truncate(cut.len() - 1000);
    for (data, needle) in [(bytes(10_000, 6), "not an age file"), (cut, "truncated")] {
        for args in [vec!["-i", "id.txt"], vec!["-i", "id.txt", "-"]] {
            let out = fx.verify_stdin(&args, &data);
            fx.assert_failure(&out, "standard input", &[needle], &format!("{args:?} < {needle}"));
        }
    }
}

#[test]
fn empty_input_is_not_restorable() {
    let fx = Fx::new();
    fx.d.write("empty.age", b"");
    let out = fx.verify(&["empty.age"]);
    fx.assert_failure(&out, "empty.age", &[], "empty file");
    let out = fx.verify_stdin(&["-i", "id.txt"], b"");
    fx.assert_failure(&out, "standard input", &[], "empty standard input");
}

#[test]
fn a_cut_inside_the_header_is_a_truncated_header() {
    let fx = Fx::new();
    let data = fx.d.read(BACKUP);
    let stanza = stanza_body_offset(&data);
    for (name, len) in [("cut30.age", 30), ("mid-stanza.age", stanza), ("before-mac.age", mac_offset(&data) - 25)] {
        fx.d.write(name, &data[..len]);
        fx.assert_fails(name, &["truncated", "header"]);
    }
}

#[test]
fn a_cut_at_a_chunk_boundary_is_truncated_at_a_chunk_boundary() {
    let fx = Fx::new();
    let data = fx.d.read(BACKUP);
    let start = payload_start(&data);
    assert!(data.len() > start + 4 * CHUNK, "the backup spans more than four chunks: {} bytes", data.len());
    for (name, chunks) in [("one-chunk.age", 1), ("three-chunks.age", 3)] {
        fx.d.write(name, &data[..start + chunks * CHUNK]);
        fx.assert_fails(name, &["truncated", "chunk boundary"]);
    }
}

#[test]
fn a_cut_inside_a_chunk_is_truncated() {
    let fx = Fx::new();
    let data = fx.d.read(BACKUP);
    let start = payload_start(&data);
    for (name, len) in [
        ("last-1000.age", data.len() - 1000),
        ("mid-chunk-1.age", start + CHUNK + CHUNK / 2),
        ("mid-nonce.age", start - 8),
        ("no-payload.age", start),
    ] {
        fx.d.write(name, &data[..len]);
        fx.assert_fails(name, &["truncated"]);
    }
}

#[test]
fn a_flipped_byte_in_the_header_mac_is_an_altered_header() {
    let fx = Fx::new();
    fx.tampered("mac.age", |data| {
        let at = mac_offset(data);
        flip_letter(data, at);
    });
    fx.assert_fails("mac.age", &["altered", "header"]);
}

#[test]
fn a_flipped_byte_in_the_x25519_stanza_is_no_identity() {
    let fx = Fx::new();
    fx.tampered("argument.age", |data| {
        let at = stanza_argument_offset(data);
        flip_letter(data, at);
    });
    fx.tampered("body.age", |data| {
        let at = stanza_body_offset(data);
        flip_letter(data, at);
    });
    for name in ["argument.age", "body.age"] {
        fx.assert_fails(name, &["no identity"]);
    }
}

#[test]
fn a_flipped_byte_in_a_middle_chunk_is_an_altered_chunk() {
    let fx = Fx::new();
    fx.tampered("middle.age", |data| {
        let at = payload_start(data) + 5 * CHUNK + 1234;
        flip_byte(data, at);
    });
    fx.tampered("first.age", |data| {
        let at = payload_start(data) + 10;
        flip_byte(data, at);
    });
    for name in ["middle.age", "first.age"] {
        fx.assert_fails(name, &["altered", "chunk"]);
    }
}

#[test]
fn a_flipped_byte_in_the_nonce_is_altered() {
    let fx = Fx::new();
    fx.tampered("nonce.age", |data| {
        let at = payload_start(data) - 5;
        flip_byte(data, at);
    });
    fx.assert_fails("nonce.age", &["altered"]);
}

#[test]
fn a_flipped_byte_in_the_last_chunk_is_altered() {
    let fx = Fx::new();
    fx.tampered("last.age", |data| {
        let at = data.len() - 10;
        flip_byte(data, at);
    });
    fx.assert_fails("last.age", &["altered"]);
}

#[test]
fn bytes_appended_after_the_end_fail() {
    let fx = Fx::new();
    fx.tampered("appended.age", |data| data.extend_from_slice(&bytes(100, 9)));
    let out = fx.verify(&["appended.age"]);
    fx.assert_failure(&out, "appended.age", &[], "appended");
    assert!(
        out.stderr.contains("after the final chunk") || out.stderr.contains("altered"),
        "says trailing data or altered: {}",
        out.stderr
    );
    let out = fx.verify(&["--json", "appended.age"]);
    assert_json_failure(&out, &[], "appended");
}

#[test]
fn a_sealed_file_of_random_bytes_is_not_a_sqlite_database() {
    let fx = Fx::new();
    fx.seal_raw("noise.age", &bytes(300_000, 7));
    fx.assert_fails("noise.age", &["not a SQLite database"]);
}

#[test]
fn a_sealed_half_database_is_a_truncated_sqlite_database() {
    let fx = Fx::new();
    let snap = fx.snapshot();
    let pages = snap.len() / 4096;
    assert!(pages > 20, "a database of many pages: {pages}");
    fx.seal_raw("half.age", &snap[..pages / 2 * 4096]);
    fx.assert_fails("half.age", &["truncated SQLite database"]);
}

#[test]
fn a_header_promising_terabytes_is_a_truncated_database_not_an_allocation() {
    let fx = Fx::new();
    let mut snap = fx.snapshot();
    snap.truncate(8 * 4096);
    // 2^31 - 1 pages of 4 KiB, the in-header size marked valid.
    snap[28..32].copy_from_slice(&0x7fff_ffffu32.to_be_bytes());
    let counter = [snap[24], snap[25], snap[26], snap[27]];
    snap[92..96].copy_from_slice(&counter);
    fx.seal_raw("liar.age", &snap);
    for spool in ["memory", "auto"] {
        let out = fx.verify(&["--spool", spool, "liar.age"]);
        fx.assert_failure(&out, "liar.age", &["truncated SQLite database", "32768 of 8796093018112 bytes"], spool);
    }
}

#[test]
fn a_sealed_database_with_a_page_of_garbage_is_not_restorable() {
    let fx = Fx::new();
    let mut snap = fx.snapshot();
    let pages = snap.len() / 4096;
    let page = pages / 2;
    snap[page * 4096..(page + 1) * 4096].copy_from_slice(&bytes(4096, 10));
    fx.seal_raw("garbage.age", &snap);
    let out = fx.verify(&["garbage.age"]);
    fx.assert_failure(&out, "garbage.age", &[], "a page of garbage");
    let out = fx.verify(&["--json", "garbage.age"]);
    assert_json_failure(&out, &[], "a page of garbage");
}

#[test]
fn a_broken_fts5_index_is_reported_and_not_restorable() {
    let fx = Fx::new();
    let scratch = Dir::new();
    let copy = scratch.write("copy.db", fx.snapshot());
    {
        let conn = Connection::open(&copy).unwrap();
        conn.execute_batch("DELETE FROM memory_fts_data WHERE id > 10 AND id % 2 = 0;").unwrap();
    }
    fx.seal_raw("fts.age", &std::fs::read(&copy).unwrap());
    let out = fx.verify(&["--json", "fts.age"]);
    assert_eq!(out.code(), 1, "a broken FTS5 index is not restorable; stderr: {}", out.stderr);
    let v = json_of(&out);
    assert_eq!(v["restorable"], false, "{v}");
    // Either the FTS5 check lists the index as broken, or the check that found it names it.
    let error = v["error"].as_str().unwrap_or_else(|| panic!("error is a string: {v}"));
    let listed_broken =
        v["fts5"].as_array().is_some_and(|list| list.iter().any(|f| f["table"] == "memory_fts" && f["ok"] == false));
    assert!(listed_broken || error.contains("memory_fts"), "the broken FTS5 index is named: {v}");
}

// ---------------------------------------------------------------- workmem-backup --verify

#[test]
fn workmem_backup_verify_reads_the_committed_backup_back() {
    let fx = Fx::new();
    let cases = [
        ("verified.age", vec!["--verify"]),
        ("verified-armored.age", vec!["--verify", "--armor"]),
        ("verified-disk.age", vec!["--verify", "--spool", "disk"]),
        // A page stream of a WAL database: the image says WAL mode (bytes 18/19).
        ("verified-pages.age", vec!["--verify", "--method", "pages"]),
        ("verified-pages-disk.age", vec!["--verify", "--method", "pages", "--spool", "disk"]),
    ];
    for (name, extra) in cases {
        let before = fx.d.tree();
        let out = run(WORKMEM_BACKUP, &fx.d).args(["--to", name, "-r", &fx.r, "--db", DB]).args(&extra).go();
        out.ok();
        assert!(out.stderr.contains("verified"), "{extra:?}: says verified: {}", out.stderr);
        let after = fx.d.tree();
        let created: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
        assert_eq!(created, vec![name], "{extra:?}: only the backup appears");
        assert_eq!(plaintext_files(&fx.d), Vec::<PathBuf>::new(), "{extra:?}: no plaintext left behind");
        for spool in ["memory", "disk"] {
            let out = fx.verify(&["--spool", spool, name]);
            fx.assert_restorable(&out, &format!("{name} --spool {spool}"));
        }
    }
}

#[test]
fn workmem_backup_verify_to_standard_output_is_a_usage_error() {
    let fx = Fx::new();
    let before = fx.d.tree();
    let out = run(WORKMEM_BACKUP, &fx.d).args(["--to", "-", "--verify", "-r", &fx.r, "--db", DB]).go();
    out.expect(2, "--verify");
    assert!(out.stdout.is_empty(), "nothing on stdout");
    assert_unchanged(&before, &fx.d.tree(), "--to - --verify");
}

#[test]
fn sigterm_while_waiting_for_the_rest_of_stdin_exits_143_and_leaves_nothing() {
    use std::time::Duration;
    let fx = Fx::new();
    let backup = fx.d.read(BACKUP);
    let tmp = fx.d.mkdir("tmp");
    let before = fx.d.tree();
    for spool in ["memory", "disk"] {
        let what = format!("--spool {spool}");
        let mut child = run(WM_VERIFY, &fx.d)
            .args(["-i", "id.txt", "--spool", spool, "--tmpdir", "tmp"])
            .command()
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Half of the backup, then the writer stays silent with the pipe open:
        // the plaintext so far sits in the spool.
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&backup[..backup.len() / 2]).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let err = sigterm_expect_143(&mut child, &what);
        drop(stdin);
        assert_eq!(err.lines().count(), 1, "{what}: one line: {err}");
        assert_unchanged(&before, &fx.d.tree(), &what);
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "{what}: the spool directory stays empty");
    }
}

#[test]
fn a_fifo_nobody_writes_to_gives_way_to_sigterm_as_backup_and_as_identity() {
    use nix::sys::stat::Mode;
    use nix::unistd::mkfifo;
    use std::time::Duration;
    let fx = Fx::new();
    mkfifo(&fx.d.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
    let before = fx.d.tree();
    for args in [&["-i", "id.txt", "fifo"][..], &["-i", "fifo", BACKUP][..]] {
        let what = format!("wm-verify {args:?}");
        let mut child = run(WM_VERIFY, &fx.d).args(args).spawn();
        // Waiting for a writer, as cat would.
        std::thread::sleep(Duration::from_millis(300));
        sigterm_expect_143(&mut child, &what);
        assert_unchanged(&before, &fx.d.tree(), &what);
    }
}

#[test]
fn sigkill_mid_verification_leaves_no_file_in_the_spool_directory() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    use std::time::Duration;
    let fx = Fx::new();
    let backup = fx.d.read(BACKUP);
    let tmp = fx.d.mkdir("tmp");
    let before = fx.d.tree();
    let mut child = run(WM_VERIFY, &fx.d)
        .args(["-i", "id.txt", "--spool", "disk", "--tmpdir", "tmp"])
        .command()
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Most of the backup: the spool holds most of the plaintext when the kill comes.
    stdin.write_all(&backup[..backup.len() - 100]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "still waiting for the last bytes");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    let _ = wait_timeout(&mut child, Duration::from_secs(10));
    drop(stdin);
    assert_unchanged(&before, &fx.d.tree(), "SIGKILL with the plaintext in the disk spool");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "nothing in the spool directory");
    assert_eq!(plaintext_files(&fx.d), Vec::<PathBuf>::new(), "no plaintext anywhere");
}
