//! wm-verify over a history: many backups in one command, one at a time,
//! a line for each and a summary, exit 1 if any is not restorable, and a
//! broken one never stops the others.

use serde_json::Value;

use crate::harness::*;

const PROG: &str = "wm-verify";

/// `memory-202611DDT030000Z.db.age`, day 1 to 30 of November 2026.
fn night(day: u32) -> String {
    format!("memory-202611{day:02}T030000Z.db.age")
}

/// A 30-night history in bk/ (one real backup under 30 names) and one
/// backup of another series.
struct Fx {
    d: Dir,
    id: String,
}

impl Fx {
    fn new() -> Fx {
        let d = Dir::new();
        d.workmem_db("memory.db", 64 << 10, true);
        let (id, r) = d.age_key("id.txt");
        run(WORKMEM_BACKUP, &d).args(["--to", "one.age", "-r", &r, "--db", "memory.db"]).go().ok();
        let one = d.read("one.age");
        d.mkdir("bk");
        for day in 1..=30 {
            d.write(&format!("bk/{}", night(day)), &one);
        }
        d.write("bk/project-20261115T030000Z.db.age", &one);
        d.write("bk/memory-20261130T040000Z.db", b"a snapshot, not an age file");
        d.write("bk/notes.txt", b"not a backup");
        Fx { d, id: id.display().to_string() }
    }

    fn verify(&self, args: &[&str]) -> Out {
        run(WM_VERIFY, &self.d).args(["-i", &self.id]).args(args).go()
    }

    /// Truncates `name` in bk/ to half its length.
    fn break_one(&self, name: &str) {
        let path = self.d.join(&format!("bk/{name}"));
        let data = std::fs::read(&path).unwrap();
        std::fs::write(&path, &data[..data.len() / 2]).unwrap();
    }
}

#[test]
fn a_directory_checks_the_newest_of_each_series_and_all_checks_the_30_night_history() {
    let fx = Fx::new();
    let out = fx.verify(&["bk/"]);
    out.ok();
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stderr);
    assert!(lines[0].starts_with(&format!("wm-verify: bk/{}: restorable (", night(30))), "{}", lines[0]);
    assert!(lines[1].starts_with("wm-verify: bk/project-20261115T030000Z.db.age: restorable ("), "{}", lines[1]);
    assert!(lines[2].starts_with("wm-verify: checked 2 backup(s) in "), "{}", lines[2]);
    assert!(lines[2].ends_with("all restorable; 29 older backup(s) not checked (--all checks them)"), "{}", lines[2]);

    let out = fx.verify(&["--all", "bk"]);
    out.ok();
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 32, "31 backups and the summary: {}", out.stderr);
    for day in 1..=30 {
        assert!(
            lines.iter().any(|l| l.starts_with(&format!("wm-verify: bk/{}: restorable (", night(day)))),
            "night {day} checked: {}",
            out.stderr
        );
    }
    assert!(lines[31].contains("checked 31 backup(s) in ") && lines[31].ends_with("all restorable"), "{}", lines[31]);
    assert!(out.stdout.is_empty(), "nothing on stdout without --json");
}

#[test]
fn a_broken_backup_is_named_the_others_are_still_checked_and_the_run_exits_1() {
    let fx = Fx::new();
    fx.break_one(&night(12));
    fx.break_one(&night(3));
    let before = fx.d.tree();
    let out = fx.verify(&["--all", "bk/"]);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert_unchanged(&before, &fx.d.tree(), "checking a history");
    let lines: Vec<&str> = out.stderr.lines().collect();
    let broken: Vec<&&str> = lines.iter().filter(|l| l.contains("NOT restorable:")).collect();
    assert_eq!(broken.len(), 2, "{}", out.stderr);
    assert!(broken[0].starts_with(&format!("wm-verify: bk/{}: NOT restorable: ", night(12))), "{}", broken[0]);
    assert!(broken[1].starts_with(&format!("wm-verify: bk/{}: NOT restorable: ", night(3))), "{}", broken[1]);
    assert_eq!(lines.iter().filter(|l| l.contains(": restorable (")).count(), 29, "{}", out.stderr);
    assert!(out.stderr.contains("checked 31 backup(s) in "), "{}", out.stderr);
    assert!(out.stderr.contains(": 29 restorable, 2 NOT restorable"), "{}", out.stderr);
    assert!(out.stderr.contains("wm-verify: 2 of 31 backup(s) checked are not restorable"), "{}", out.stderr);

    // --json: one array, one object per backup, in the order checked.
    let out = fx.verify(&["--all", "--json", "bk/"]);
    assert_eq!(out.code(), 1);
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON array on stdout");
    let list = v.as_array().expect("an array");
    assert_eq!(list.len(), 31);
    let bad: Vec<&str> =
        list.iter().filter(|r| r["restorable"] == false).map(|r| r["backup"].as_str().unwrap()).collect();
    assert_eq!(bad, [format!("bk/{}", night(12)), format!("bk/{}", night(3))]);
    assert!(list.iter().filter(|r| r["restorable"] == false).all(|r| r["error"].is_string()));
    assert!(list.iter().filter(|r| r["restorable"] == true).all(|r| r["integrity_check"] == "ok"));
    assert_eq!(out.stderr.lines().count(), 1, "only the final error on stderr: {}", out.stderr);
}

#[test]
fn named_files_check_the_newest_of_each_series_and_against_wants_one_file() {
    let fx = Fx::new();
    fx.break_one(&night(1));
    let names: Vec<String> = (1..=5).map(|d| format!("bk/{}", night(d))).collect();
    let args: Vec<&str> = names.iter().map(String::as_str).collect();
    // As the shell expands bk/*: only the newest of the series is checked.
    let out = fx.verify(&args);
    out.ok();
    assert!(out.stderr.contains(&format!("bk/{}: restorable", night(5))), "{}", out.stderr);
    assert!(out.stderr.contains("4 older backup(s) not checked"), "{}", out.stderr);
    // --all: the broken first night too, and the rest still checked.
    let mut all = vec!["--all"];
    all.extend(&args);
    let out = fx.verify(&all);
    assert_eq!(out.code(), 1);
    assert_eq!(out.stderr.lines().filter(|l| l.contains(": restorable (")).count(), 4, "{}", out.stderr);
    // --against compares one backup only; - cannot be one of several.
    fx.verify(&["--against", "memory.db", &names[1], &names[2]])
        .expect(2, "--against compares one backup")
        .one_line_error(PROG);
    fx.verify(&["-", &names[1]]).expect(2, "cannot be one of several").one_line_error(PROG);
    // A directory without backups says so.
    fx.d.mkdir("empty");
    fx.verify(&["empty/"]).expect(1, "empty/: no age-encrypted backup").one_line_error(PROG);
}
