//! The man pages in man/: each documents every flag its binary's `--help`
//! shows, has the sections a reader looks for, and is clean under
//! `mandoc -Tlint -W warning`. And what every binary's stderr promises
//! whatever the page: one line per error, in one write.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use crate::harness::{have, run, Dir};

/// Each binary with its page, man/<name>.1.
const BINS: [(&str, &str); 6] = [
    ("wm-snapshot", env!("CARGO_BIN_EXE_wm-snapshot")),
    ("wm-seal", env!("CARGO_BIN_EXE_wm-seal")),
    ("workmem-backup", env!("CARGO_BIN_EXE_workmem-backup")),
    ("wm-verify", env!("CARGO_BIN_EXE_wm-verify")),
    ("wm-restore", env!("CARGO_BIN_EXE_wm-restore")),
    ("wm-prune", env!("CARGO_BIN_EXE_wm-prune")),
];

/// The sections every page must have, as `.SH` lines.
const SECTIONS: [&str; 10] = [
    "NAME",
    "SYNOPSIS",
    "DESCRIPTION",
    "OPTIONS",
    "EXIT STATUS",
    "ENVIRONMENT",
    "FILES",
    "EXAMPLES",
    "SECURITY",
    "SEE ALSO",
];

fn page_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("man").join(format!("{name}.1"))
}

fn page(name: &str) -> String {
    let path = page_path(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The full `--help` text of a binary.
fn help(exe: &str) -> String {
    let out = Command::new(exe).arg("--help").output().unwrap_or_else(|e| panic!("{exe} --help: {e}"));
    assert!(out.status.success(), "{exe} --help exited {:?}", out.status);
    String::from_utf8(out.stdout).expect("--help is UTF-8")
}

/// Every `--long-flag` token in a text, e.g. `--busy-timeout` from
/// "--busy-timeout <MS>" or from "(see a summary with '-h')" nothing.
fn long_flags(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while let Some(at) = text[i..].find("--").map(|p| p + i) {
        let starts_token = at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'-');
        let name_len = bytes[at + 2..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'-').count();
        let name = text[at + 2..at + 2 + name_len].trim_end_matches('-');
        if starts_token && name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            out.insert(format!("--{name}"));
        }
        i = at + 2 + name_len;
    }
    out
}

/// Every short flag of the options list: `-r` from "  -r, --recipient <RECIPIENT>".
fn short_flags(help: &str) -> BTreeSet<String> {
    help.lines()
        .filter_map(|line| {
            let b = line.trim_start().as_bytes();
            (b.len() >= 3 && b[0] == b'-' && b[1].is_ascii_alphanumeric() && b[2] == b',')
                .then(|| String::from_utf8_lossy(&b[..2]).into_owned())
        })
        .collect()
}

/// The values a `Possible values:` list offers: `vacuum` from "- vacuum: ...".
fn possible_values(help: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_list = false;
    for line in help.lines() {
        let t = line.trim();
        if t == "Possible values:" {
            in_list = true;
        } else if in_list {
            match t.strip_prefix("- ").and_then(|rest| rest.split(':').next()) {
                Some(value) => {
                    out.insert(value.trim().to_string());
                }
                None => in_list = false,
            }
        }
    }
    out
}

/// A flag as roff writes it: every hyphen escaped, `--to` is `\-\-to`.
fn roff(flag: &str) -> String {
    flag.replace('-', r"\-")
}

/// Whether the page has `word` (in roff form) as a whole token: not as the
/// tail of a longer flag (`\-r` inside `\-\-raw`) nor as its head (`\-\-to`
/// inside `\-\-tolerance`).
fn mentions(page: &str, word: &str) -> bool {
    page.match_indices(word).any(|(at, _)| {
        let before = &page[..at];
        let after = &page[at + word.len()..];
        let clean_start = !before.ends_with(r"\-") && !before.ends_with(|c: char| c.is_ascii_alphanumeric());
        let clean_end = !after.starts_with(r"\-") && !after.starts_with(|c: char| c.is_ascii_alphanumeric());
        clean_start && clean_end
    })
}

#[test]
fn every_help_flag_is_in_the_man_page() {
    let mut missing = Vec::new();
    for (name, exe) in BINS {
        let help = help(exe);
        let page = page(name);
        let longs = long_flags(&help);
        for must in ["--help", "--version"] {
            assert!(longs.contains(must), "{name} --help does not list {must}: the flag scan is broken");
        }
        for flag in longs.iter().chain(short_flags(&help).iter()) {
            if !mentions(&page, &roff(flag)) {
                missing.push(format!("{name}: {flag} (written {} in roff)", roff(flag)));
            }
        }
    }
    assert!(missing.is_empty(), "flags of --help missing from their man page:\n  {}", missing.join("\n  "));
}

#[test]
fn every_possible_value_in_help_is_in_the_man_page() {
    let mut missing = Vec::new();
    for (name, exe) in BINS {
        let page = page(name);
        for value in possible_values(&help(exe)) {
            if !mentions(&page, &roff(&value)) {
                missing.push(format!("{name}: {value}"));
            }
        }
    }
    assert!(missing.is_empty(), "values of --help missing from their man page:\n  {}", missing.join("\n  "));
}

#[test]
fn every_man_page_has_the_required_sections() {
    for (name, _) in BINS {
        let page = page(name);
        let headings: Vec<&str> =
            page.lines().filter_map(|l| l.strip_prefix(".SH ")).map(|h| h.trim().trim_matches('"')).collect();
        for section in SECTIONS {
            assert!(headings.contains(&section), "man/{name}.1 has no .SH {section} (it has {headings:?})");
        }
        let see_also = page.split(".SH SEE ALSO").nth(1).unwrap_or("");
        for other in BINS.iter().map(|(n, _)| *n).filter(|n| *n != name) {
            assert!(see_also.contains(&format!(".BR {other} (1)")), "man/{name}.1: SEE ALSO does not name {other}(1)");
        }
    }
}

#[test]
fn man_pages_are_clean_under_mandoc_lint() {
    if !have("mandoc") {
        return;
    }
    for (name, _) in BINS {
        let path = page_path(name);
        let out = Command::new("mandoc")
            .args(["-Tlint", "-W", "warning"])
            .arg(&path)
            .output()
            .unwrap_or_else(|e| panic!("mandoc: {e}"));
        let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(
            report.trim().is_empty() && out.status.success(),
            "mandoc -Tlint -W warning {} ({:?}):\n{report}",
            path.display(),
            out.status
        );
    }
}

/// Every page in man/ reads at 80 columns without `man` complaining (a
/// table wider than the line, a line it cannot break).
#[test]
fn man_pages_fit_80_columns() {
    if !have("man") {
        return;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("man");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("read man/").path())
        .filter(|p| p.extension().is_some_and(|x| x == "1"))
        .collect();
    pages.sort();
    assert!(pages.len() >= BINS.len(), "a page per binary in {}", dir.display());
    for path in pages {
        let out = Command::new("man")
            .arg("-l")
            .arg(&path)
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .env("LC_ALL", "C.UTF-8")
            .output()
            .unwrap_or_else(|e| panic!("man -l {}: {e}", path.display()));
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && warnings.trim().is_empty(),
            "man -l {} at 80 columns ({:?}):\n{warnings}",
            path.display(),
            out.status
        );
    }
}

#[test]
fn the_flag_scan_finds_long_and_short_flags_but_not_prose() {
    let help = "  -r, --recipient <R>   Encrypt (see --to); not a--flag, nor --, nor ---x\n      --busy-timeout <MS>\n";
    let longs: Vec<_> = long_flags(help).into_iter().collect();
    assert_eq!(longs, ["--busy-timeout", "--recipient", "--to"]);
    assert_eq!(short_flags(help).into_iter().collect::<Vec<_>>(), ["-r"]);
    assert!(mentions(r".BR \-r , \-\-raw", r"\-r"));
    assert!(!mentions(r".B \-\-raw", r"\-r"), "\\-r inside \\-\\-raw is not -r");
    assert!(!mentions(r".B \-\-busy\-timeout", r"\-\-busy"), "a prefix of a longer flag does not count");
}

/// Every binary writes its error line in one write(2), the newline
/// included: lines of jobs sharing a log never interleave mid-line. A usage
/// error, a failure, and a failure reported as JSON.
#[test]
fn an_error_line_is_one_write_so_shared_logs_never_interleave_mid_line() {
    if !have("strace") {
        return;
    }
    let d = Dir::new();
    let cases: [(&str, &[&str]); 9] = [
        (env!("CARGO_BIN_EXE_wm-snapshot"), &["--no-such-flag"]),
        (env!("CARGO_BIN_EXE_wm-snapshot"), &["--db", "missing.db", "--to", "x.db"]),
        (env!("CARGO_BIN_EXE_wm-seal"), &["-r", "missing.txt", "--to", "x.age"]),
        (env!("CARGO_BIN_EXE_workmem-backup"), &["--db", "missing.db", "--to", "x.age", "-r", "missing.txt"]),
        (env!("CARGO_BIN_EXE_workmem-backup"), &["--json", "--db", "missing.db", "--to", "x.age", "-r", "k"]),
        (env!("CARGO_BIN_EXE_wm-verify"), &["-i", "missing.txt", "missing.age"]),
        (env!("CARGO_BIN_EXE_wm-restore"), &["-i", "missing.txt", "--db", "m.db", "missing.age"]),
        (env!("CARGO_BIN_EXE_wm-prune"), &["--keep-last", "2", "missing-dir"]),
        (env!("CARGO_BIN_EXE_wm-prune"), &["--keep-last", "0", "-"]),
    ];
    for (exe, args) in cases {
        let log = d.join("trace.log");
        let out = run("strace", &d)
            .args(["-f", "-s", "4096", "-e", "trace=write", "-o"])
            .args([&log])
            .args([exe])
            .args(args)
            .go();
        assert_ne!(out.code(), 0, "{exe} {args:?} fails");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{exe} {args:?}: one line: {}", out.stderr);
        let trace = std::fs::read_to_string(&log).unwrap();
        let writes: Vec<&str> = trace.lines().filter(|l| l.contains("write(2,")).collect();
        assert_eq!(writes.len(), 1, "{exe} {args:?}: one write to stderr: {trace}");
        assert!(writes[0].contains("\\n\","), "{exe} {args:?}: the newline in the same write: {}", writes[0]);
    }
}
