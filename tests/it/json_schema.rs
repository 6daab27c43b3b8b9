//! One JSON convention for every tool (docs/json.md): each `--json` report,
//! of a success, of a failure, of a usage error, validates against
//! docs/json-schema.json; it starts with `tool`, `version` and `exit` (the
//! process's own exit status); and it is on standard output unless standard
//! output carries the backup, then on standard error.
//!
//! The validator below implements the part of JSON Schema 2020-12 the file
//! uses and refuses any other keyword, so that the schema cannot say more
//! than is checked.

use std::path::Path;

use serde_json::Value;

use crate::harness::*;

fn schema() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json-schema.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The problems of `v` against `s` (empty: valid), each with its JSON path.
fn validate(root: &Value, s: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
    let Some(s) = s.as_object() else { return out.push(format!("{at}: schema is not an object")) };
    for (k, rule) in s {
        match k.as_str() {
            "$schema" | "$id" | "title" | "description" | "$defs" => {}
            "$ref" => validate(root, resolve(root, rule), v, at, out),
            "type" => {
                let types: Vec<&str> = match rule {
                    Value::String(t) => vec![t.as_str()],
                    Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                    _ => panic!("{at}: type {rule}"),
                };
                if !types.iter().any(|t| is_type(v, t)) {
                    out.push(format!("{at}: {v} is not of type {types:?}"));
                }
            }
            "enum" if !rule.as_array().is_some_and(|a| a.contains(v)) => out.push(format!("{at}: {v} not in {rule}")),
            "const" if rule != v => out.push(format!("{at}: {v} is not {rule}")),
            "enum" | "const" => {}
            "minimum" if v.as_f64().is_some_and(|n| n < rule.as_f64().unwrap()) => {
                out.push(format!("{at}: {v} < {rule}"))
            }
            "maximum" if v.as_f64().is_some_and(|n| n > rule.as_f64().unwrap()) => {
                out.push(format!("{at}: {v} > {rule}"))
            }
            "minimum" | "maximum" => {}
            "minLength" if v.as_str().is_some_and(|t| (t.chars().count() as u64) < rule.as_u64().unwrap()) => {
                out.push(format!("{at}: {v} shorter than {rule}"))
            }
            "minLength" => {}
            "pattern" => {
                if let Some(t) = v.as_str() {
                    if !matches_pattern(rule.as_str().unwrap(), t) {
                        out.push(format!("{at}: {v} does not match {rule}"));
                    }
                }
            }
            "required" => {
                if let Some(o) = v.as_object() {
                    for name in rule.as_array().unwrap().iter().filter_map(Value::as_str) {
                        if !o.contains_key(name) {
                            out.push(format!("{at}: no key {name:?}"));
                        }
                    }
                }
            }
            "properties" => {
                if let Some(o) = v.as_object() {
                    for (name, sub) in rule.as_object().unwrap() {
                        if let Some(x) = o.get(name) {
                            validate(root, sub, x, &format!("{at}.{name}"), out);
                        }
                    }
                }
            }
            "additionalProperties" | "unevaluatedProperties" => {
                assert_eq!(rule, &Value::Bool(false), "{at}: only {k}: false is checked");
                if let Some(o) = v.as_object() {
                    let known = declared(root, &Value::Object(s.clone()), k == "unevaluatedProperties");
                    for name in o.keys().filter(|n| !known.contains(*n)) {
                        out.push(format!("{at}: key {name:?} is not in the schema"));
                    }
                }
            }
            "items" => {
                if let Some(a) = v.as_array() {
                    for (i, x) in a.iter().enumerate() {
                        validate(root, rule, x, &format!("{at}[{i}]"), out);
                    }
                }
            }
            "allOf" => {
                for sub in rule.as_array().unwrap() {
                    validate(root, sub, v, at, out);
                }
            }
            "oneOf" => {
                let mut why = Vec::new();
                let passing = rule
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|sub| {
                        let mut p = Vec::new();
                        validate(root, sub, v, at, &mut p);
                        why.extend(p.iter().take(3).cloned());
                        p.is_empty()
                    })
                    .count();
                if passing != 1 {
                    out.push(format!("{at}: {passing} of oneOf match (exactly 1 must): {why:?}"));
                }
            }
            other => panic!("{at}: the schema uses {other:?}, which this validator does not check"),
        }
    }
}

fn resolve<'a>(root: &'a Value, r: &Value) -> &'a Value {
    let r = r.as_str().unwrap();
    let name = r.strip_prefix("#/$defs/").unwrap_or_else(|| panic!("only local $defs references: {r}"));
    root.get("$defs").and_then(|d| d.get(name)).unwrap_or_else(|| panic!("no $defs/{name}"))
}

/// The keys a schema declares: its `properties`, and with `deep` (for
/// `unevaluatedProperties`) those of its `allOf` members and references.
fn declared(root: &Value, s: &Value, deep: bool) -> Vec<String> {
    let mut names: Vec<String> =
        s.get("properties").and_then(Value::as_object).map(|o| o.keys().cloned().collect()).unwrap_or_default();
    if deep {
        if let Some(r) = s.get("$ref") {
            names.extend(declared(root, resolve(root, r), true));
        }
        for sub in s.get("allOf").and_then(Value::as_array).into_iter().flatten() {
            names.extend(declared(root, sub, true));
        }
    }
    names
}

fn is_type(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "integer" => v.is_u64() || v.is_i64(),
        "number" => v.is_number(),
        other => panic!("unknown type {other}"),
    }
}

/// `^`, `$`, literal characters, classes like `[0-9a-f]` and counts `{n}`:
/// the patterns the schema uses, anchored at both ends.
fn matches_pattern(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.strip_prefix('^').and_then(|p| p.strip_suffix('$')).expect("anchored").chars().collect();
    let mut atoms: Vec<(Vec<(char, char)>, usize)> = Vec::new();
    let mut i = 0;
    while i < p.len() {
        let set = if p[i] == '[' {
            let end = i + p[i..].iter().position(|c| *c == ']').expect("class ends");
            let body = &p[i + 1..end];
            i = end + 1;
            body.chunks(3)
                .map(|r| if r.len() == 3 && r[1] == '-' { (r[0], r[2]) } else { panic!("class {r:?}") })
                .collect()
        } else {
            assert!(!"(){}?*+.|\\".contains(p[i]), "pattern syntax not supported: {pattern}");
            i += 1;
            vec![(p[i - 1], p[i - 1])]
        };
        let mut n = 1;
        if i < p.len() && p[i] == '{' {
            let end = i + p[i..].iter().position(|c| *c == '}').expect("count ends");
            n = p[i + 1..end].iter().collect::<String>().parse().expect("a count");
            i = end + 1;
        }
        atoms.push((set, n));
    }
    let mut chars = text.chars();
    for (set, n) in atoms {
        for _ in 0..n {
            match chars.next() {
                Some(c) if set.iter().any(|(a, b)| (*a..=*b).contains(&c)) => {}
                _ => return false,
            }
        }
    }
    chars.next().is_none()
}

/// Where the report of a run must be, and the report: validated against the
/// schema and the named definition, its `tool`, `version` and `exit` right.
#[track_caller]
fn check(out: &Out, prog: &str, def: &str, on_stdout: bool) -> Value {
    let (v, _) = if on_stdout { json_on_stdout(out) } else { json_on_stderr(out) };
    let root = schema();
    for (s, what) in [(&root, "the schema"), (&root["$defs"][def], def)] {
        let mut problems = Vec::new();
        validate(&root, s, &v, "$", &mut problems);
        assert!(problems.is_empty(), "{prog}: the report does not validate against {what}: {problems:#?}\n{v}");
    }
    let text = if on_stdout { String::from_utf8_lossy(&out.stdout).into_owned() } else { out.stderr.clone() };
    let head = format!(r#"{{"tool":"{prog}","version":"{}","exit":{},"#, env!("CARGO_PKG_VERSION"), out.code());
    assert!(text.starts_with(&head), "{prog}: the first keys are tool, version, exit: {text}");
    assert_eq!(v["tool"], prog);
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["exit"], out.code(), "{prog}: the process's exit status: {v}");
    v
}

#[test]
fn the_validator_finds_what_the_schema_forbids() {
    let root = schema();
    let good = serde_json::json!({"tool": "wm-prune", "version": "1", "exit": 2, "error": "x"});
    let mut p = Vec::new();
    validate(&root, &root, &good, "$", &mut p);
    assert!(p.is_empty(), "{p:?}");
    for bad in [
        serde_json::json!({"tool": "wm-prune", "version": "1", "exit": 2}),
        serde_json::json!({"tool": "nope", "version": "1", "exit": 2, "error": null}),
        serde_json::json!({"tool": "wm-prune", "version": "1", "exit": -1, "error": null}),
        serde_json::json!({"tool": "wm-prune", "version": "1", "exit": 2, "error": null, "extra": 1}),
    ] {
        let mut p = Vec::new();
        validate(&root, &root, &bad, "$", &mut p);
        assert!(!p.is_empty(), "{bad} must not validate");
    }
    assert!(matches_pattern("^[0-9]{4}-[0-9]{2}Z$", "2026-12Z") && !matches_pattern("^[0-9]{4}$", "20261"));
}

#[test]
fn every_tools_json_report_validates_and_sits_where_the_convention_says() {
    let d = Dir::new();
    d.workmem_db("memory.db", 200_000, true);
    let (id, key) = d.age_key("id.txt");
    let id = id.to_str().unwrap();
    d.mkdir("bk");

    // The tools that write a backup: to a file, the report on stdout; to stdout, on stderr.
    let out = run(WM_SNAPSHOT, &d).args(["--db", "memory.db", "--to", "snap.db", "--json"]).go();
    check(&out, "wm-snapshot", "backup", true);
    let out = run(WM_SNAPSHOT, &d).args(["--db", "memory.db", "--json"]).go();
    assert!(out.stdout.starts_with(b"SQLite format 3\0"), "the snapshot on stdout");
    check(&out, "wm-snapshot", "backup", false);
    let snap = d.read("snap.db");
    let out = run(WM_SEAL, &d).args(["-r", &key, "-o", "sealed.age", "--json"]).stdin(snap.clone()).go();
    check(&out, "wm-seal", "backup", true);
    let out = run(WM_SEAL, &d).args(["-r", &key, "--json"]).stdin(snap).go();
    check(&out, "wm-seal", "backup", false);
    let out = run(WORKMEM_BACKUP, &d).args(["--db", "memory.db", "-r", &key, "--to", "b.age", "--json"]).go();
    check(&out, "workmem-backup", "backup", true);
    let out = run(WORKMEM_BACKUP, &d)
        .args(["--db", "memory.db", "-r", &key, "--output", "bk/", "--keep-last", "1", "--verify", "--json"])
        .go();
    let v = check(&out, "workmem-backup", "backup", true);
    assert_eq!(v["verified"], true);

    // Failures, usage errors included: the failure object, in the same place.
    let out = run(WORKMEM_BACKUP, &d).args(["--db", "missing.db", "-r", &key, "--to", "x.age", "--json"]).go();
    check(&out, "workmem-backup", "failure", true);
    let out = run(WM_SEAL, &d).args(["--json", "--keep-lst"]).go();
    let v = check(&out, "wm-seal", "failure", false);
    assert!(v["error"].as_str().unwrap().contains("unexpected argument '--keep-lst'"), "{v}");
    let out = run(WM_SNAPSHOT, &d).args(["--json", "--db", "missing.db", "-o", "s2.db"]).go();
    check(&out, "wm-snapshot", "failure", true);

    // wm-verify, wm-restore and wm-prune never write data to stdout: the report is there.
    let out = run(WM_VERIFY, &d).args(["-i", id, "--json", "b.age"]).go();
    let v = check(&out, "wm-verify", "verification_report", true);
    assert_eq!((v["restorable"].clone(), v["backup"].clone()), (true.into(), "b.age".into()));
    d.write("bad.age", b"not an age file\n");
    let out = run(WM_VERIFY, &d).args(["-i", id, "--json", "bad.age"]).go();
    let v = check(&out, "wm-verify", "verification_report", true);
    assert_eq!(v["restorable"], false);
    let out = run(WM_VERIFY, &d).args(["--json", "b.age"]).go();
    check(&out, "wm-verify", "failure", true);
    // Several backups: an array of the same objects, each with its own exit.
    let out = run(WM_VERIFY, &d).args(["-i", id, "--json", "b.age", "bad.age"]).go();
    assert_eq!(out.code(), 1);
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON array on stdout");
    let root = schema();
    let mut problems = Vec::new();
    validate(&root, &root, &v, "$", &mut problems);
    assert!(problems.is_empty(), "{problems:#?}\n{v}");
    let exits: Vec<&Value> = v.as_array().unwrap().iter().map(|o| &o["exit"]).collect();
    assert_eq!(exits, [&Value::from(0), &Value::from(1)], "{v}");

    for dry in [true, false] {
        let mut args = vec!["-i", id, "--db", "memory.db", "--json", "b.age"];
        if dry {
            args.push("--dry-run");
        }
        let out = run(WM_RESTORE, &d).args(&args).go();
        let v = check(&out, "wm-restore", "restoration_report", true);
        let verification = &v["verification"];
        assert_eq!(verification["backup"], "b.age", "the verification names its backup (dry run {dry}): {v}");
        assert_eq!(verification["restorable"], true, "a good backup is restorable (dry run {dry}): {v}");
        assert_eq!(verification["integrity_check"], "ok");
        assert_eq!(v["restored"], !dry);
    }
    let out = run(WM_RESTORE, &d).args(["-i", id, "--db", "memory.db", "--json", "bad.age"]).go();
    let v = check(&out, "wm-restore", "restoration_report", true);
    assert_eq!((v["restored"].clone(), v["verification"]["restorable"].clone()), (false.into(), false.into()));

    let out = run(WM_PRUNE, &d).args(["--keep-last", "1", "--json", "bk"]).go();
    let v = check(&out, "wm-prune", "prune", true);
    assert_eq!(v["backups"], 1);
    let out = run(WM_PRUNE, &d).args(["--json", "bk"]).go();
    check(&out, "wm-prune", "failure", true);
}
