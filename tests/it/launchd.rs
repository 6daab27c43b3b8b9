//! The launchd example, `contrib/launchd/local.workmem-backup.plist`: a
//! well-formed property list (`plutil -lint` where there is one, an XML
//! parse everywhere) whose job runs workmem-backup nightly with arguments it
//! accepts, shown as it is by workmem-backup(1) and the README.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use roxmltree::{Document, Node, ParsingOptions};

use crate::harness::*;

const PLIST: &str = include_str!("../../contrib/launchd/local.workmem-backup.plist");

fn source(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The element children of a node, comments and blanks left out.
fn elements<'a, 'i>(n: Node<'a, 'i>) -> Vec<Node<'a, 'i>> {
    n.children().filter(|c| c.is_element()).collect()
}

/// A plist `<dict>` as key -> value element; every key once, each followed by its value.
fn dict<'a, 'i>(n: Node<'a, 'i>) -> BTreeMap<String, Node<'a, 'i>> {
    assert!(n.has_tag_name("dict"), "a dict, not <{}>", n.tag_name().name());
    let items = elements(n);
    assert_eq!(items.len() % 2, 0, "keys and values in pairs");
    let mut out = BTreeMap::new();
    for pair in items.chunks(2) {
        assert!(pair[0].has_tag_name("key"), "a key first, not <{}>", pair[0].tag_name().name());
        let key = pair[0].text().unwrap_or_default().to_string();
        assert!(out.insert(key.clone(), pair[1]).is_none(), "{key} given twice");
    }
    out
}

fn string(n: Node) -> String {
    assert!(n.has_tag_name("string"), "a string, not <{}>", n.tag_name().name());
    n.text().unwrap_or_default().to_string()
}

fn integer(n: Node) -> i64 {
    assert!(n.has_tag_name("integer"), "an integer, not <{}>", n.tag_name().name());
    n.text().unwrap_or_default().trim().parse().expect("a decimal integer")
}

#[test]
fn the_launchd_example_is_a_property_list_that_runs_workmem_backup_nightly() {
    let options = ParsingOptions { allow_dtd: true, ..ParsingOptions::default() };
    let doc = Document::parse_with_options(PLIST, options).expect("the plist is well-formed XML");
    let root = doc.root_element();
    assert!(root.has_tag_name("plist") && root.attribute("version") == Some("1.0"), "<plist version=\"1.0\">");
    let top = elements(root);
    assert_eq!(top.len(), 1, "one top-level dict");
    let job = dict(top[0]);

    assert_eq!(string(job["Label"]), "local.workmem-backup", "the label is the file's name");
    let args: Vec<String> = elements(job["ProgramArguments"]).into_iter().map(string).collect();
    assert!(job["ProgramArguments"].has_tag_name("array"));
    assert!(args[0].starts_with('/') && args[0].ends_with("/workmem-backup"), "an absolute program path: {args:?}");
    let when = dict(job["StartCalendarInterval"]);
    assert_eq!(when.keys().collect::<Vec<_>>(), ["Hour", "Minute"], "once a day, at a fixed time");
    assert!((0..24).contains(&integer(when["Hour"])) && (0..60).contains(&integer(when["Minute"])));
    assert!(string(job["StandardErrorPath"]).starts_with('/'), "launchd expands no ~");
    for a in &args {
        assert!(!a.contains('~') && !a.contains('$'), "launchd expands neither ~ nor variables: {a}");
    }

    // Every argument is one workmem-backup accepts: with the placeholder paths
    // the run fails for a missing file (exit 1), not for a usage error (2).
    let d = Dir::new();
    let out = run(WORKMEM_BACKUP, &d).args(&args[1..]).go();
    out.expect(1, "/Users/YOU/").one_line_error("workmem-backup");
    assert!(d.tree().is_empty(), "nothing created");

    // Apple's own check, on a Mac.
    let plutil = Command::new("sh").args(["-c", "command -v plutil"]).stdout(Stdio::null()).status();
    if plutil.is_ok_and(|s| s.success()) {
        let lint =
            Command::new("plutil").arg("-lint").arg(source("contrib/launchd/local.workmem-backup.plist")).output();
        let lint = lint.expect("run plutil");
        assert!(lint.status.success(), "plutil -lint: {}", String::from_utf8_lossy(&lint.stdout));
    }
}

#[test]
fn the_man_page_shows_the_launchd_example_as_it_is_and_the_readme_links_it() {
    let page = std::fs::read_to_string(source("man/workmem-backup.1")).unwrap();
    let start = page.find(".EX\n<?xml").expect("workmem-backup(1) shows the plist") + ".EX\n".len();
    let len = page[start..].find("\n.EE").expect("its example ends");
    let shown = page[start..start + len].replace("\\-", "-").replace("\\e", "\\");
    assert_eq!(shown, PLIST.trim_end(), "workmem-backup(1) shows contrib/launchd/local.workmem-backup.plist");

    let readme = std::fs::read_to_string(source("README.md")).unwrap();
    assert!(
        readme.contains("(contrib/launchd/local.workmem-backup.plist)"),
        "the README links the LaunchAgent example"
    );
}
