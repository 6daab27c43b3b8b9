//! wm-prune: what it promises, each test named after one promise. A
//! directory of synthetic backups (the content is irrelevant to the policy:
//! names only), or the same names on standard input; the policy itself is
//! proven against a brute-force reference in the library's unit tests.

use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::harness::*;

const PROG: &str = "wm-prune";

/// The keys of `wm-prune --json`, as wm-prune(1) lists them.
const PRUNE_KEYS: [&str; 16] = [
    "tool", "version", "exit", "error", "started", "finished", "seconds", "input", "delete", "policy", "backups",
    "kept", "dropped", "deleted", "skipped", "partial",
];

/// `memory-2026MMDDT063000Z.db.age` for day `day` of a month counted from
/// November 2026 (day 31 is 1 December).
fn daily(day: u32) -> String {
    let (month, d) = if day <= 30 { (11, day) } else { (12, day - 30) };
    format!("memory-2026{month:02}{d:02}T063000Z.db.age")
}

/// A test's world: `bk/` holding `names` (each file's content its own name),
/// and the other files a backup directory collects.
struct Fx {
    d: Dir,
}

impl Fx {
    fn new(names: &[String]) -> Fx {
        let d = Dir::new();
        d.mkdir("bk");
        for n in names {
            d.write(&format!("bk/{n}"), n);
        }
        Fx { d }
    }

    fn bk(&self) -> PathBuf {
        self.d.join("bk")
    }

    fn prune(&self, args: &[&str]) -> Out {
        run(WM_PRUNE, &self.d).args(args).go()
    }

    /// The names left in bk/, sorted.
    fn left(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.bk())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

fn lines(out: &Out) -> Vec<String> {
    String::from_utf8(out.stdout.clone()).unwrap().lines().map(str::to_string).collect()
}

// ---------------------------------------------------------------------------
// The filter
// ---------------------------------------------------------------------------

#[test]
fn without_delete_it_prints_what_the_policy_drops_and_changes_nothing() {
    let names: Vec<String> = (1..=10).map(daily).collect();
    let fx = Fx::new(&names);
    let before = fx.d.tree();
    let out = fx.prune(&["--keep-last", "3", "bk"]);
    out.ok();
    assert_eq!(lines(&out), names[..7].to_vec(), "the dropped names, oldest first");
    assert!(out.stderr.is_empty(), "nothing on stderr when it is not a terminal: {}", out.stderr);
    assert_unchanged(&before, &fx.d.tree(), "a run without --delete");
}

#[test]
fn delete_removes_exactly_what_the_policy_drops_and_prints_it() {
    let names: Vec<String> = (1..=40).map(daily).collect();
    let fx = Fx::new(&names);
    let out = fx.prune(&["--keep-daily", "7", "--keep-weekly", "4", "--delete", "bk"]);
    out.ok();
    let printed = lines(&out);
    let mut left = fx.left();
    // Daily: the 7 newest days (4-10 December); weekly: the newest of each of
    // the 4 newest ISO weeks (Monday 7, 30 November, 23, 16 November onward).
    let mut want: Vec<String> = (34..=40).map(daily).chain([daily(29), daily(22)]).collect();
    want.sort();
    assert_eq!(left, want);
    left.extend(printed.iter().cloned());
    left.sort();
    let mut all = names.clone();
    all.sort();
    assert_eq!(left, all, "printed is exactly what went");
    for n in &want {
        assert_eq!(fx.d.read(&format!("bk/{n}")), n.as_bytes(), "{n}: a kept backup is untouched");
    }
    // A second run finds nothing more to do.
    let again = fx.prune(&["--keep-daily", "7", "--keep-weekly", "4", "--delete", "bk"]);
    again.ok();
    assert!(again.stdout.is_empty());
}

#[test]
fn hidden_temporary_and_other_names_are_never_counted_or_touched() {
    let fx = Fx::new(&[daily(1), daily(2), daily(3)]);
    for other in [
        ".memory-20261101T063000Z.db.age.a1b2c3.tmp",
        ".hidden-20261101T063000Z.db.age",
        "memory-20261102T063000Z.db.age.part",
        "memory-20261102T063000Z.db.age.tmp",
        "memory.db.age",
        "notes.txt",
        "memory-20261102T0630Z.db.age",
        "memory-20260230T063000Z.db.age",
    ] {
        fx.d.write(&format!("bk/{other}"), "not a backup");
    }
    fx.d.mkdir("bk/memory-20261001T063000Z.db.age");
    let before = fx.d.tree();
    let out = fx.prune(&["--keep-last", "1", "--delete", "--json", "bk"]);
    out.ok();
    let (v, _) = json_on_stderr(&out);
    assert_eq!(v["backups"], 3, "only the three backups are counted: {v}");
    let after = fx.d.tree();
    let gone: Vec<&String> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    assert_eq!(gone, [&format!("bk/{}", daily(1)), &format!("bk/{}", daily(2))]);
    for (k, val) in &after {
        assert_eq!(before.get(k), Some(val), "{k} is untouched");
    }
}

#[test]
fn each_series_is_pruned_on_its_own_and_the_newest_is_never_dropped() {
    let fx = Fx::new(&[
        daily(1),
        daily(2),
        daily(3),
        "project-20261001T000000Z.db.age".into(),
        "memory-20261001T000000Z.db".into(),
    ]);
    let out = fx.prune(&["--keep-last", "1", "bk"]);
    out.ok();
    assert_eq!(lines(&out), [daily(1), daily(2)], "the project's only backup and the snapshot stay");
    // A rule that keeps nothing else still keeps the newest.
    let out = fx.prune(&["--keep-within", "1h", "bk"]);
    assert_eq!(lines(&out), [daily(1), daily(2)]);
}

#[test]
fn verbose_says_which_rules_keep_each_backup_and_what_was_not_counted() {
    let fx = Fx::new(&[daily(1), daily(2), daily(3)]);
    fx.d.write("bk/memory-20260230T063000Z.db.age", "odd");
    let out = fx.prune(&["--keep-last", "1", "--keep-daily", "2", "-v", "bk"]);
    out.ok();
    let err: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        err,
        [
            format!("wm-prune: keep {} (last snapshot, daily snapshot)", daily(3)).as_str(),
            format!("wm-prune: keep {} (daily snapshot)", daily(2)).as_str(),
            "wm-prune: skip memory-20260230T063000Z.db.age: named like a backup, but its date or time cannot exist; never counted or deleted",
        ]
    );
    assert_eq!(lines(&out), [daily(1)]);
}

#[test]
fn names_on_standard_input_are_judged_the_same_and_printed_as_given() {
    let d = Dir::new();
    let input =
        format!("{}\r\n{}\nsubdir/\n.{}\nnotes.txt\n\n{}\n{}\n", daily(3), daily(1), daily(2), daily(2), daily(1));
    let out = run(WM_PRUNE, &d).args(["--keep-last", "1", "-"]).stdin(input).go();
    out.ok();
    assert_eq!(lines(&out), [daily(1), daily(2)], "a name given twice counts once");
    assert_eq!(d.tree().len(), 0, "nothing written");
}

#[test]
fn rclone_lsf_into_wm_prune_into_rclone_delete_prunes_a_webdav_remote() {
    if !have("rclone") {
        return;
    }
    let names: Vec<String> = (1..=12).map(daily).collect();
    let fx = Fx::new(&names);
    fx.d.write("bk/notes.txt", "keep me");
    fx.d.write("bk/.memory-20261101T063000Z.db.age.a1b2c3.tmp", "keep me");
    let conf = fx.d.write("rclone.conf", "");
    let (server, envs) = webdav(&fx.bk(), &conf, &fx.d.path);
    let script = r#"set -o pipefail; rclone lsf wmtest: | "$1" --keep-last 4 --keep-weekly 2 - | rclone delete wmtest: --files-from-raw -"#;
    let mut c = Command::new("bash");
    c.args(["-c", script, "bash", WM_PRUNE]).stdin(Stdio::null());
    for (k, v) in &envs {
        c.env(k, v);
    }
    let out = c.output().expect("run bash");
    assert!(out.status.success(), "the pipeline: {}", String::from_utf8_lossy(&out.stderr));
    drop(server);
    let mut want: Vec<String> = (9..=12).map(daily).chain([daily(8)]).collect();
    want.push("notes.txt".into());
    want.push(".memory-20261101T063000Z.db.age.a1b2c3.tmp".into());
    want.sort();
    // Week 45 of 2026 ends on 8 November: its newest backup is day 8.
    assert_eq!(fx.left(), want, "the remote holds what the policy keeps, and every other name");
}

#[test]
fn a_symlink_named_like_a_backup_is_counted_and_only_the_link_is_ever_deleted() {
    let fx = Fx::new(&[daily(2), daily(3)]);
    let elsewhere = fx.d.write("elsewhere/precious.db.age", "precious");
    symlink(&elsewhere, fx.bk().join(daily(1))).unwrap();
    let out = fx.prune(&["--keep-last", "1", "--json", "bk"]);
    out.ok();
    let (v, _) = json_on_stderr(&out);
    assert_eq!(v["backups"], 3, "the link is counted: {v}");
    assert_eq!(lines(&out), [daily(1), daily(2)]);
    let out = fx.prune(&["--keep-last", "1", "--delete", "bk"]);
    out.ok();
    assert_eq!(fx.left(), [daily(3)]);
    assert_eq!(std::fs::read(&elsewhere).unwrap(), b"precious", "the link's target outside DIR is untouched");
    // A kept link says so.
    symlink(&elsewhere, fx.bk().join(daily(4))).unwrap();
    let out = fx.prune(&["--keep-last", "1", "-v", "bk"]);
    assert!(
        out.stderr.contains(&format!("keep {} (last snapshot; a symbolic link, never followed)", daily(4))),
        "{}",
        out.stderr
    );
}

// ---------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------

#[test]
fn json_report_has_the_documented_keys_rules_drops_and_deletions() {
    let fx = Fx::new(&[daily(1), daily(2), daily(3)]);
    let out = fx.prune(&["--keep-last", "1", "--keep-within", "1d", "--delete", "--json", "bk"]);
    out.ok();
    assert_eq!(lines(&out), [daily(1), daily(2)], "stdout still carries the names");
    let (v, keys) = json_on_stderr(&out);
    assert_eq!(keys, sorted_keys(&PRUNE_KEYS), "{v}");
    assert_eq!(v["tool"], PROG);
    assert_eq!(v["exit"], 0);
    assert_eq!(v["error"], serde_json::Value::Null);
    assert_eq!(v["input"], "bk");
    assert_eq!(v["delete"], true);
    assert_eq!(v["policy"]["last"], 1);
    assert_eq!(v["policy"]["within"], "1d");
    assert_eq!(v["policy"]["daily"], serde_json::Value::Null);
    assert_eq!(
        v["kept"],
        serde_json::json!([{"name": daily(3), "time": "2026-11-03T06:30:00Z", "rules": ["within 1d", "last snapshot"], "symlink": false, "companions": []}])
    );
    assert_eq!(v["dropped"], serde_json::json!([daily(1), daily(2)]));
    assert_eq!(v["deleted"], serde_json::json!([daily(1), daily(2)]));
    assert!(v["seconds"].as_f64().is_some_and(|s| s >= 0.0), "{v}");
}

#[test]
fn json_failures_are_one_object_with_the_exit_status_and_the_error() {
    let fx = Fx::new(&[daily(1)]);
    assert_json_failure(&fx.prune(&["--json", "bk"]), PROG, 2, "no retention rule");
    assert_json_failure(&fx.prune(&["--json", "--keep-daily", "-2", "bk"]), PROG, 2, "cannot be negative");
    assert_json_failure(&fx.prune(&["--json", "--keep-last", "1", "nope"]), PROG, 1, "no such file or directory");
}

// ---------------------------------------------------------------------------
// Bad input: exit 2 or 1, one line naming what is wrong, nothing changed
// ---------------------------------------------------------------------------

#[test]
fn bad_input_exits_2_or_1_with_one_line_and_changes_nothing() {
    let fx = Fx::new(&[daily(1), daily(2), daily(3)]);
    fx.d.write("file", "a file");
    fx.d.write("bk/memory-20260230T063000Z.db.age", "odd");
    let impossible = format!("{}\nmemory-20260230T063000Z.db.age\n", daily(1));
    // (what, arguments, standard input, exit code, message)
    type Case<'a> = (&'a str, Vec<&'a str>, Option<&'a str>, i32, &'a str);
    let cases: Vec<Case> = vec![
        ("no rule", vec!["bk"], None, 2, "no retention rule given"),
        (
            "a negative count",
            vec!["--keep-daily", "-2", "bk"],
            None,
            2,
            "'-2' for '--keep-daily <N>': a count cannot be negative",
        ),
        ("garbage as a count", vec!["--keep-daily", "seven", "bk"], None, 2, "not a whole number"),
        ("a count of zero", vec!["--keep-last", "0", "bk"], None, 2, "0 keeps nothing"),
        ("a bad duration", vec!["--keep-within", "30", "bk"], None, 2, "a number needs a unit"),
        ("units out of order", vec!["--keep-within", "1d1y", "bk"], None, 2, "in the order y, m, w, d, h"),
        ("no DIR", vec!["--keep-last", "1"], None, 2, "required"),
        ("an empty DIR", vec!["--keep-last", "1", ""], None, 2, "a value is required for '<DIR|->'"),
        ("--delete with -", vec!["--keep-last", "1", "--delete", "-"], None, 2, "--delete needs a DIR"),
        ("-q with -v", vec!["--keep-last", "1", "-q", "-v", "bk"], None, 2, "cannot be used with"),
        (
            "DIR does not exist",
            vec!["--keep-last", "1", "--delete", "nope"],
            None,
            1,
            "open directory: nope: no such file or directory",
        ),
        (
            "DIR is a file",
            vec!["--keep-last", "1", "--delete", "file"],
            None,
            1,
            "open directory: file: not a directory",
        ),
        (
            "an impossible date on stdin",
            vec!["--keep-last", "1", "-"],
            Some(impossible.as_str()),
            1,
            "line 2: \"memory-20260230T063000Z.db.age\" is named like a backup, but its date or time cannot exist",
        ),
    ];
    for (what, args, stdin, code, needle) in cases {
        let before = fx.d.tree();
        let mut r = run(WM_PRUNE, &fx.d).args(&args);
        if let Some(s) = stdin {
            r = r.stdin(s);
        }
        let out = r.go();
        out.expect(code, needle).one_line_error(PROG);
        assert!(out.stdout.is_empty(), "{what}: nothing on stdout");
        assert_unchanged(&before, &fx.d.tree(), what);
    }
}

#[test]
fn delete_in_a_directory_it_cannot_write_deletes_nothing_and_says_so() {
    let fx = Fx::new(&[daily(1), daily(2), daily(3)]);
    std::fs::set_permissions(fx.bk(), std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
    let before = fx.d.tree();
    let out = run(WM_PRUNE, &fx.d).args(["--keep-last", "1", "--delete", "bk"]).unprivileged().go();
    out.expect(1, "delete in: bk: permission denied; nothing was deleted").one_line_error(PROG);
    assert!(out.stderr.contains("check the directory's owner and permissions"), "{}", out.stderr);
    assert!(out.stdout.is_empty());
    assert_unchanged(&before, &fx.d.tree(), "an unwritable directory");
    // Without --delete it only reads: fine.
    run(WM_PRUNE, &fx.d).args(["--keep-last", "1", "bk"]).unprivileged().go().ok();
}

// ---------------------------------------------------------------------------
// Partial uploads and restore copies
// ---------------------------------------------------------------------------

#[test]
fn partial_uploads_are_never_counted_and_stale_ones_are_reported_and_deleted() {
    let now = unix_now();
    let good: Vec<String> = (1..=3).map(|i| backup_name("memory", now - i * 86_400, "db.age")).collect();
    let fx = Fx::new(&good);
    // Three failed nights after the good ones, and one upload still running.
    let stale: Vec<String> =
        (4..=6).map(|i| backup_name("memory", now - i * 86_400 - 3600, "db.age") + ".partial").collect();
    let running = backup_name("memory", now - 600, "db.age") + ".partial";
    let unknown = "memory.db.age.partial".to_string();
    for n in stale.iter().chain([&running, &unknown]) {
        fx.d.write(&format!("bk/{n}"), "truncated");
    }
    // --keep-last 3 keeps the three good backups: the partial ones never count.
    let out = fx.prune(&["--keep-last", "3", "--json", "bk"]);
    out.ok();
    let (v, _) = json_on_stderr(&out);
    assert_eq!(v["backups"], 3, "{v}");
    assert_eq!(v["dropped"], serde_json::json!([]));
    let mut oldest_first = stale.clone();
    oldest_first.reverse();
    assert_eq!(lines(&out), oldest_first, "the stale partial uploads are printed, oldest first");
    let partial = v["partial"].as_array().unwrap();
    assert_eq!(partial.len(), 5, "{v}");
    let stale_of = |n: &str| partial.iter().find(|p| p["name"] == n).map(|p| p["stale"].clone()).unwrap();
    assert_eq!(stale_of(&running), false);
    assert_eq!(stale_of(&unknown), false);
    assert_eq!(stale_of(&stale[0]), true);
    // -v says which is which.
    let out = fx.prune(&["--keep-last", "3", "-v", "bk"]);
    assert!(out.stderr.contains(&format!("partial upload {running}, never counted: newer than 1d")), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("partial upload {unknown}, never counted: no time in its name")),
        "{}",
        out.stderr
    );
    // --partial-age moves the line; --delete removes only what is stale.
    let out = fx.prune(&["--keep-last", "3", "--partial-age", "5d2h", "--delete", "bk"]);
    out.ok();
    assert_eq!(lines(&out), [stale[2].clone()], "only the one older than 5 days and 2 hours");
    let out = fx.prune(&["--keep-last", "3", "--delete", "bk"]);
    out.ok();
    let mut want: Vec<String> = good.iter().cloned().chain([running, unknown]).collect();
    want.sort();
    assert_eq!(fx.left(), want, "the good backups, the running upload and the one of unknown age are left");
    fx.prune(&["--keep-last", "3", "--partial-age", "0d", "bk"]).expect(2, "a span of zero");
}

#[test]
fn restore_copies_are_a_series_pruned_as_sets_with_their_journals() {
    let mut names = Vec::new();
    for day in 1..=4 {
        let copy = format!("memory.db.pre-restore-202611{day:02}T120000Z");
        names.push(copy.clone());
        if day != 3 {
            names.push(format!("{copy}-wal"));
            names.push(format!("{copy}-shm"));
        }
    }
    // A backup series beside them, and a journal whose copy is not (yet) there.
    names.push(daily(1));
    names.push(daily(2));
    names.push("memory.db.pre-restore-20261105T120000Z-wal".into());
    let fx = Fx::new(&names);
    let out = fx.prune(&["--keep-last", "2", "--json", "bk"]);
    out.ok();
    let (v, _) = json_on_stderr(&out);
    assert_eq!(v["backups"], 6, "four copies and two backups: {v}");
    assert_eq!(
        lines(&out),
        [
            "memory.db.pre-restore-20261101T120000Z",
            "memory.db.pre-restore-20261101T120000Z-shm",
            "memory.db.pre-restore-20261101T120000Z-wal",
            "memory.db.pre-restore-20261102T120000Z",
            "memory.db.pre-restore-20261102T120000Z-shm",
            "memory.db.pre-restore-20261102T120000Z-wal",
        ],
        "each dropped copy with its journals, the copy first"
    );
    let kept = v["kept"].as_array().unwrap();
    let newest = kept.iter().find(|k| k["name"] == "memory.db.pre-restore-20261104T120000Z").unwrap();
    assert_eq!(
        newest["companions"],
        serde_json::json!(["memory.db.pre-restore-20261104T120000Z-shm", "memory.db.pre-restore-20261104T120000Z-wal"])
    );
    assert!(
        v["skipped"].as_array().unwrap().iter().any(|s| s["name"] == "memory.db.pre-restore-20261105T120000Z-wal"),
        "a journal without its copy is named: {v}"
    );
    let out = fx.prune(&["--keep-last", "2", "--delete", "bk"]);
    out.ok();
    let mut want: Vec<String> =
        names.iter().filter(|n| !n.contains("20261101") && !n.contains("20261102")).cloned().collect();
    want.push(daily(1));
    want.push(daily(2));
    want.sort();
    want.dedup();
    assert_eq!(fx.left(), want, "the two newest copies with their journals, both backups, the lone journal");
}
