//! Post-quantum age, against an implementation by age's author: the npm
//! package `age-encryption` (typage). Its hybrid keys and files into our
//! tools, and our files into its decrypter. The package is installed in
//! `TARGET/npm` (`.ci/run` does it: `npm install --prefix target/npm
//! age-encryption@0.3.1`), or where `WM_NPM_DIR` says.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::*;

const GEN: &str = r#"import { generateHybridIdentity, identityToRecipient } from "age-encryption";
import { writeFileSync } from "node:fs";
const id = await generateHybridIdentity();
writeFileSync(process.argv[2], id + "\n");
writeFileSync(process.argv[3], (await identityToRecipient(id)) + "\n");
"#;

const ENCRYPT: &str = r#"import { Encrypter } from "age-encryption";
import { readFileSync, writeFileSync } from "node:fs";
const e = new Encrypter();
e.addRecipient(readFileSync(process.argv[2], "utf8").trim());
writeFileSync(process.argv[4], await e.encrypt(readFileSync(process.argv[3])));
"#;

const DECRYPT: &str = r#"import { Decrypter, armor } from "age-encryption";
import { readFileSync, writeFileSync } from "node:fs";
const d = new Decrypter();
d.addIdentity(readFileSync(process.argv[2], "utf8").trim());
let file = readFileSync(process.argv[3]);
if (file.subarray(0, 10).toString() === "-----BEGIN") file = armor.decode(file.toString());
writeFileSync(process.argv[4], await d.decrypt(file));
"#;

/// The installed package's `node_modules`, or a recorded skip (a failure
/// under CI=true).
fn npm_modules() -> Option<PathBuf> {
    if !have("node") {
        return None;
    }
    let dir = std::env::var_os("WM_NPM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("npm"));
    let modules = dir.join("node_modules");
    if modules.join("age-encryption").is_dir() {
        return Some(modules);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "the npm package age-encryption is required when CI=true: npm install --prefix {} age-encryption@0.3.1",
            dir.display()
        );
    }
    eprintln!("SKIPPED: the npm package age-encryption is not installed in {}", dir.display());
    record_skip("npm package age-encryption not installed", Skip::Test);
    None
}

/// A directory where `node` finds the package, with the three scripts.
fn node_world() -> Option<Dir> {
    let modules = npm_modules()?;
    let d = Dir::new();
    std::os::unix::fs::symlink(&modules, d.join("node_modules")).unwrap();
    d.write("gen.mjs", GEN);
    d.write("encrypt.mjs", ENCRYPT);
    d.write("decrypt.mjs", DECRYPT);
    Some(d)
}

#[track_caller]
fn node(d: &Dir, args: &[&str]) {
    let out = Command::new("node").current_dir(&d.path).args(args).output().unwrap();
    assert!(out.status.success(), "node {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_file_the_npm_package_encrypts_to_its_hybrid_key_verifies_and_restores_here() {
    let Some(d) = node_world() else { return };
    d.workmem_db("memory.db", 300_000, true);
    run(WM_SNAPSHOT, &d).args(["--db", "memory.db", "--to", "snap.db"]).go().ok();
    node(&d, &["gen.mjs", "id-pq.txt", "r-pq.txt"]);
    assert!(d.read("id-pq.txt").starts_with(b"AGE-SECRET-KEY-PQ-1"));
    node(&d, &["encrypt.mjs", "r-pq.txt", "snap.db", "npm.age"]);
    let out = run(WM_VERIFY, &d).args(["-v", "-i", "id-pq.txt", "npm.age"]).go();
    out.ok();
    assert!(out.stderr.contains("mlkem768x25519 identity"), "{}", out.stderr);
    run(WM_RESTORE, &d).args(["-q", "-i", "id-pq.txt", "--db", "restored.db", "npm.age"]).go().ok();
    assert_eq!(d.read("restored.db"), d.read("snap.db"), "restored byte for byte");
}

#[test]
fn our_post_quantum_backups_decrypt_with_the_npm_package() {
    let Some(d) = node_world() else { return };
    d.workmem_db("memory.db", 300_000, true);
    node(&d, &["gen.mjs", "id-pq.txt", "r-pq.txt"]);
    let recipient = String::from_utf8(d.read("r-pq.txt")).unwrap().trim().to_string();
    assert!(recipient.starts_with("age1pq1"));
    run(WORKMEM_BACKUP, &d).args(["-q", "--db", "memory.db", "--to", "b.age", "--age-recipient", &recipient]).go().ok();
    run(WORKMEM_BACKUP, &d).args(["-q", "--db", "memory.db", "--to", "a.age", "--armor", "-R", "r-pq.txt"]).go().ok();
    run(WM_SNAPSHOT, &d).args(["--db", "memory.db", "--to", "snap.db"]).go().ok();
    let sealed = run(WM_SEAL, &d).args(["-q", "-R", "r-pq.txt", "--to", "s.age"]).stdin(d.read("snap.db")).go();
    sealed.ok();
    for f in ["b.age", "a.age", "s.age"] {
        node(&d, &["decrypt.mjs", "id-pq.txt", f, &format!("{f}.db")]);
    }
    assert_eq!(d.read("s.age.db"), d.read("snap.db"), "wm-seal: decrypted byte for byte");
    if have("sqlite3") {
        for f in ["b.age.db", "a.age.db"] {
            assert_integrity(&d.join(f));
            assert_eq!(content_digest(&d.join(f)), content_digest(&d.join("memory.db")), "{f}");
        }
    }
}

#[test]
fn post_quantum_and_classic_recipients_together_are_refused_before_any_work() {
    let d = Dir::new();
    d.workmem_db("memory.db", 100_000, true);
    let (_, classic) = d.age_key("key.txt");
    let pq = wmbackup::age::pq::HybridIdentity::generate().to_public().to_string();
    d.write("mixed.txt", format!("{pq}\n{classic}\n"));
    let before = d.tree();
    for args in [vec!["--age-recipient", pq.as_str(), "--age-recipient", classic.as_str()], vec!["-R", "mixed.txt"]] {
        let out = run(WORKMEM_BACKUP, &d).args(["--db", "memory.db", "--to", "out.age"]).args(&args).go();
        out.expect(1, "cannot be mixed").one_line_error("workmem-backup");
        assert!(out.stderr.contains("post-quantum") && out.stderr.contains("classic"), "says why: {}", out.stderr);
        assert_unchanged(&before, &d.tree(), "mixed recipients");
    }
    let out = run(WM_SEAL, &d).args(["-r", &pq, "-r", &classic, "--to", "out.age"]).stdin(b"x".to_vec()).go();
    out.expect(1, "cannot be mixed").one_line_error("wm-seal");
    assert_unchanged(&before, &d.tree(), "mixed recipients, wm-seal");
}
