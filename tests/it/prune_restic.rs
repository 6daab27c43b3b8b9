//! wm-prune against restic: restic's own golden retention cases (its data in
//! tests/data/restic/, BSD 2-Clause, notice beside it), run through the
//! binary; and a differential test of the library's policy against a
//! straight port of restic's `ApplyPolicy`, written here from restic's Go
//! code and sharing nothing with the library (its own calendar, Go's
//! `AddDate`), on thousands of random histories and policies.
//!
//! Same-second snapshots: a backup is known by a name with whole seconds,
//! and two backups of one series in the same second would have the same
//! name. restic's list has two such groups (`10:20:30` and `10:20:30.1`;
//! five snapshots at `2015-10-22 10:20:30`). Each group is given
//! consecutive seconds in restic's order (the one restic sorts as newer,
//! i.e. the later time or, for equal times, the earlier in its list, gets
//! the later second). The test checks that no shifted time meets another
//! snapshot's second or leaves its hour, so that no order, period or
//! cutoff of the cases changes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use wmbackup::clock::Utc;
use wmbackup::prune::{self, Count, Judged, Policy, Span};

use crate::harness::*;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/restic").join(name)
}

/// Seconds since 1970 and a fraction in tenths, from `2014-08-13 10:20:30.1`
/// or `2014-08-13T10:20:30.1Z`.
fn parse_time(s: &str) -> (i64, u32) {
    let s = s.trim_end_matches('Z').replace('T', " ");
    let (main, frac) = s.split_once('.').unwrap_or((&s, "0"));
    let stamp = main.replace(['-', ':'], "").replace(' ', "T") + "Z";
    let t = Utc::parse_stamp(&stamp).unwrap_or_else(|| panic!("{s}"));
    (t.unix(), frac.parse().unwrap())
}

struct Snapshot {
    time: (i64, u32),
    /// `tags=…` and `paths=…` as written, to tell equal times apart.
    extra: String,
    /// The second its backup's name carries.
    second: i64,
}

/// restic's list in its sorted order (newest first, stable), each with the
/// second of its name.
fn snapshots() -> Vec<Snapshot> {
    let text = std::fs::read_to_string(data("snapshots.txt")).unwrap();
    let mut list: Vec<Snapshot> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (date, rest) = l.split_at(19);
            let (time, extra) = match rest.split_once(' ') {
                Some((frac, extra)) => (format!("{date}{frac}"), extra.to_string()),
                None => (format!("{date}{rest}"), String::new()),
            };
            Snapshot { time: parse_time(&time), extra, second: 0 }
        })
        .collect();
    list.sort_by_key(|s| std::cmp::Reverse(s.time)); // stable, as Go's sort.Stable
    let mut i = 0;
    while i < list.len() {
        let base = list[i].time.0;
        let n = list[i..].iter().take_while(|s| s.time.0 == base).count();
        for (k, s) in list[i..i + n].iter_mut().enumerate() {
            s.second = base + (n - 1 - k) as i64;
        }
        i += n;
    }
    let seconds: std::collections::BTreeSet<i64> = list.iter().map(|s| s.second).collect();
    assert_eq!(seconds.len(), list.len(), "every snapshot has a second of its own");
    for s in &list {
        assert_eq!(s.second / 3600, s.time.0 / 3600, "a shifted second stays in its hour");
    }
    assert!(list.windows(2).all(|w| w[0].second > w[1].second), "restic's order is kept");
    list
}

fn name_of(second: i64) -> String {
    prune::name("restic", &Utc::from_unix(second), "db.age")
}

#[test]
fn restics_golden_policy_cases_keep_what_restic_keeps_with_its_reasons() {
    let snaps = snapshots();
    assert_eq!(snaps.len(), 103);
    let listing: String = snaps.iter().map(|s| name_of(s.second) + "\n").collect();
    let index_of: BTreeMap<String, usize> = snaps.iter().enumerate().map(|(i, s)| (name_of(s.second), i)).collect();
    let cases = std::fs::read_to_string(data("policies.txt")).unwrap();
    let d = Dir::new();
    let (mut ran, mut documented) = (0, Vec::new());
    for line in cases.lines().filter(|l| !l.starts_with('#')) {
        let (n, flags) = line.split_once(": ").unwrap();
        let golden: serde_json::Value =
            serde_json::from_slice(&std::fs::read(data(&format!("policy_keep_snapshots_{n}"))).unwrap()).unwrap();
        if let Some(why) = flags.strip_prefix("- ") {
            documented.push((n.to_string(), why.to_string()));
            continue;
        }
        // restic's kept list, in its order, as places in the sorted list:
        // each golden entry is the next snapshot with its time and tags.
        let mut want = Vec::new();
        let mut from = 0;
        let reasons = golden["reasons"].as_array().unwrap();
        for (k, kept) in golden["keep"].as_array().unwrap().iter().enumerate() {
            let time = parse_time(kept["time"].as_str().unwrap());
            let tags = kept["tags"].as_array().map(|t| t.iter().map(|x| x.as_str().unwrap()).collect::<Vec<_>>());
            let extra = match (&tags, kept["paths"].as_array()) {
                (Some(t), None) => format!("tags={}", t.join(",")),
                (Some(t), Some(p)) => format!(
                    "tags={} paths={}",
                    t.join(","),
                    p.iter().map(|x| x.as_str().unwrap()).collect::<Vec<_>>().join(",")
                ),
                _ => String::new(),
            };
            let at = from + snaps[from..].iter().position(|s| s.time == time && s.extra == extra).unwrap();
            let matches: Vec<String> =
                reasons[k]["matches"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_string()).collect();
            want.push((at, matches));
            from = at + 1;
        }
        let mut args: Vec<&str> = flags.split(' ').collect();
        args.extend(["--json", "-"]);
        let out = run(WM_PRUNE, &d).args(&args).stdin(listing.clone()).go();
        out.ok();
        let (v, _) = json_on_stderr(&out);
        let got: Vec<(usize, Vec<String>)> = v["kept"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                let rules = k["rules"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect();
                (index_of[k["name"].as_str().unwrap()], rules)
            })
            .collect();
        assert_eq!(got, want, "case {n} ({flags}): kept places and reasons");
        let printed = String::from_utf8(out.stdout).unwrap();
        assert_eq!(printed.lines().count() + got.len(), snaps.len(), "case {n}: the rest is printed as dropped");
        ran += 1;
    }
    assert_eq!(ran, 36, "every case but the documented ones ran");
    let documented: Vec<&str> = documented.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(documented, ["0", "18", "19", "20"], "the documented differences, by case");
    // Case 0, the empty policy: restic would remove all; wm-prune refuses.
    let out = run(WM_PRUNE, &d).args(["-"]).stdin(listing).go();
    out.expect(2, "no retention rule given");
    assert!(out.stdout.is_empty(), "nothing is printed as dropped");
}

#[test]
fn the_two_smallest_cases_of_the_issue_keep_what_restic_keeps() {
    let d = Dir::new();
    // The oldest-snapshot rule: two backups of one day, 7 days asked.
    let two = "mem-20261101T080000Z.db.age\nmem-20261101T200000Z.db.age\n";
    let out = run(WM_PRUNE, &d).args(["--keep-daily", "7", "--json", "-"]).stdin(two).go();
    out.ok();
    assert!(out.stdout.is_empty(), "nothing dropped: {:?}", String::from_utf8_lossy(&out.stdout));
    let (v, _) = json_on_stderr(&out);
    assert_eq!(v["kept"][1]["rules"], serde_json::json!(["oldest daily snapshot"]));
    // A backup from the future: --keep-within counts back from the newest
    // backup that is not in the future.
    let now = unix_now();
    let mut names: Vec<String> = (0..40).map(|i| backup_name("mem", now - i * 86_400 - 60, "db.age")).collect();
    names.push(backup_name("mem", now + 180 * 86_400, "db.age"));
    let out = run(WM_PRUNE, &d).args(["--keep-within", "30d", "-v", "-"]).stdin(names.join("\n")).go();
    out.ok();
    let dropped = String::from_utf8(out.stdout).unwrap();
    assert_eq!(dropped.lines().count(), 40 - 30, "31 kept: the future one and 30 days");
    assert!(out.stderr.contains(&format!("keep {} (within 30d)", names[40])), "{}", out.stderr);
}

// ---------------------------------------------------------------------------
// The port: restic's ApplyPolicy over Unix seconds, with its own calendar.
// ---------------------------------------------------------------------------

/// Go's zero time, 0001-01-01T00:00:00Z, in Unix seconds.
const GO_ZERO: i64 = -62_135_596_800;

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day, hour) of Unix seconds `t`.
fn ymdh(t: i64) -> (i64, i64, i64, i64) {
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    (y, m, d, t.rem_euclid(86_400) / 3600)
}

/// Go's `ISOWeek`.
fn iso_week(t: i64) -> (i64, i64) {
    let days = t.div_euclid(86_400);
    let weekday = (days + 3).rem_euclid(7); // Monday 0
    let thursday = days - weekday + 3;
    let (y, _, _) = civil_from_days(thursday);
    (y, (thursday - days_from_civil(y, 1, 1)) / 7 + 1)
}

/// Go's `t.AddDate(-y, -m, -d).Add(-h hours)` in UTC: the date is
/// normalised (31 March minus a month is 3 March). With `clamp`, the
/// months are taken as wm-prune documents it instead (28 February).
fn go_before(t: i64, span: &Span, clamp: bool) -> i64 {
    let (y, m, d, _) = ymdh(t);
    let secs = t.rem_euclid(86_400);
    let months = y * 12 + (m - 1) - span.years as i64 * 12 - span.months as i64;
    let (ny, nm) = (months.div_euclid(12), months.rem_euclid(12) + 1);
    let days = span.weeks as i64 * 7 + span.days as i64;
    let day = if clamp {
        let len = days_from_civil(ny + i64::from(nm == 12), nm % 12 + 1, 1) - days_from_civil(ny, nm, 1);
        d.min(len)
    } else {
        d
    };
    // Go: the day may overflow the month; days_from_civil counts on.
    (days_from_civil(ny, nm, 1) + day - 1 - days) * 86_400 + secs - span.hours as i64 * 3600
}

/// restic's ApplyPolicy for `times` (distinct, any order) at `now`: the
/// kept times newest first, each with its reasons.
fn restic(times: &[i64], p: &Policy, now: i64, clamp: bool) -> Vec<(i64, Vec<String>)> {
    let mut list = times.to_vec();
    list.sort_by(|a, b| b.cmp(a));
    let mut latest = GO_ZERO;
    for &t in &list {
        if t > latest && t < now {
            latest = t;
        }
    }
    let count = |c: Option<Count>| match c {
        None => 0i64,
        Some(Count::Upto(n)) => n as i64,
        Some(Count::All) => -1,
    };
    type Bucker = fn(i64, usize) -> i64;
    let ymdh_b: Bucker = |t, _| {
        let (y, m, d, h) = ymdh(t);
        y * 1_000_000 + m * 10_000 + d * 100 + h
    };
    let ymd_b: Bucker = |t, _| {
        let (y, m, d, _) = ymdh(t);
        y * 10_000 + m * 100 + d
    };
    let yw_b: Bucker = |t, _| {
        let (y, w) = iso_week(t);
        y * 100 + w
    };
    let ym_b: Bucker = |t, _| {
        let (y, m, _, _) = ymdh(t);
        y * 100 + m
    };
    let y_b: Bucker = |t, _| ymdh(t).0;
    let always: Bucker = |_, nr| nr as i64;
    let mut buckets = [
        (count(p.last), always, -1i64, "last snapshot"),
        (count(p.hourly), ymdh_b, -1, "hourly snapshot"),
        (count(p.daily), ymd_b, -1, "daily snapshot"),
        (count(p.weekly), yw_b, -1, "weekly snapshot"),
        (count(p.monthly), ym_b, -1, "monthly snapshot"),
        (count(p.yearly), y_b, -1, "yearly snapshot"),
    ];
    let mut within = [
        (p.within_hourly, ymdh_b, -1i64, "hourly within"),
        (p.within_daily, ymd_b, -1, "daily within"),
        (p.within_weekly, yw_b, -1, "weekly within"),
        (p.within_monthly, ym_b, -1, "monthly within"),
        (p.within_yearly, y_b, -1, "yearly within"),
    ];
    let mut keep = Vec::new();
    for (nr, &cur) in list.iter().enumerate() {
        let mut reasons = Vec::new();
        if let Some(w) = p.within {
            if cur > go_before(latest, &w, clamp) {
                reasons.push(format!("within {w}"));
            }
        }
        for b in buckets.iter_mut() {
            if b.0 > 0 || b.0 == -1 {
                let val = (b.1)(cur, nr);
                if val != b.2 || nr == list.len() - 1 {
                    let oldest = if val == b.2 && nr == list.len() - 1 { "oldest " } else { "" };
                    b.2 = val;
                    if b.0 > 0 {
                        b.0 -= 1;
                    }
                    reasons.push(format!("{oldest}{}", b.3));
                }
            }
        }
        for b in within.iter_mut() {
            if let Some(w) = b.0 {
                if cur > go_before(latest, &w, clamp) {
                    let val = (b.1)(cur, nr);
                    if val != b.2 || nr == list.len() - 1 {
                        let oldest = if val == b.2 && nr == list.len() - 1 { "oldest " } else { "" };
                        b.2 = val;
                        reasons.push(format!("{oldest}{} {w}", b.3));
                    }
                }
            }
        }
        if !reasons.is_empty() {
            keep.push((cur, reasons));
        }
    }
    keep
}

/// xorshift64*: the same histories on every run.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

fn random_span(rng: &mut Rng) -> Span {
    loop {
        let mut unit = |p: u64, max: u64| if rng.below(p) == 0 { rng.below(max + 1) as u32 } else { 0 };
        let s =
            Span { years: unit(5, 2), months: unit(3, 14), weeks: unit(5, 3), days: unit(2, 40), hours: unit(2, 30) };
        if s != Span::default() {
            return s;
        }
    }
}

#[test]
fn the_policy_agrees_with_a_port_of_restic_on_random_histories() {
    let mut rng = Rng(0x007e_571c_5eed);
    // Month ends and leap days, where calendar arithmetic differs.
    let anchors = ["20260331T120000Z", "20240229T060000Z", "20261202T063000Z", "20201231T235959Z", "20250531T000000Z"];
    let (mut cases, mut months_differ, mut with_future) = (0, 0, 0);
    for case in 0..4000 {
        let anchor = Utc::parse_stamp(anchors[rng.below(anchors.len() as u64) as usize]).unwrap().unix();
        let spread = [7_200, 3 * 86_400, 40 * 86_400, 400 * 86_400, 3 * 365 * 86_400][rng.below(5) as usize];
        let n = 1 + rng.below(60) as usize;
        let mut times: Vec<i64> = (0..n).map(|_| anchor - rng.below(spread as u64) as i64).collect();
        times.sort_unstable();
        times.dedup();
        // Now: usually after them all; sometimes inside the history, so
        // that some backups are in the future, or before them all.
        let now = match rng.below(6) {
            0 => anchor - rng.below(spread as u64) as i64,
            1 => anchor - spread - 1,
            _ => anchor + 1 + rng.below(86_400) as i64,
        };
        let count = |rng: &mut Rng| match rng.below(10) {
            0..=2 => Some(Count::Upto(1 + rng.below(8) as u32)),
            3 => Some(Count::All),
            _ => None,
        };
        let span = |rng: &mut Rng| (rng.below(5) == 0).then(|| random_span(rng));
        let mut p = Policy {
            last: count(&mut rng),
            hourly: count(&mut rng),
            daily: count(&mut rng),
            weekly: count(&mut rng),
            monthly: count(&mut rng),
            yearly: count(&mut rng),
            within: span(&mut rng),
            within_hourly: span(&mut rng),
            within_daily: span(&mut rng),
            within_weekly: span(&mut rng),
            within_monthly: span(&mut rng),
            within_yearly: span(&mut rng),
        };
        if p.validate().is_err() {
            p.within = Some(random_span(&mut rng));
        }
        let backups = times
            .iter()
            .map(|&t| match prune::judge(&name_of(t)) {
                Judged::Backup(b) => b,
                other => panic!("{other:?}"),
            })
            .collect();
        let plan = prune::plan(backups, &p, &[], &Utc::from_unix(now));
        let got: Vec<(i64, Vec<String>)> =
            plan.kept.iter().map(|k| (k.backup.time.unix(), k.rules.iter().map(|r| r.to_string()).collect())).collect();
        assert_eq!(got.len() + plan.dropped.len(), times.len(), "case {case}: every backup decided once");
        let want = restic(&times, &p, now, false);
        if got != want {
            // The one documented difference: months and years clamped to
            // the month's end, where Go's AddDate runs into the next month.
            let clamped = restic(&times, &p, now, true);
            assert_eq!(got, clamped, "case {case}: an undocumented difference: {p:?}, now {now}, times {times:?}");
            let kept: Vec<i64> = got.iter().map(|k| k.0).collect();
            assert!(want.iter().all(|w| kept.contains(&w.0)), "case {case}: wm-prune keeps all that restic keeps");
            months_differ += 1;
        }
        if times.iter().any(|&t| t >= now) {
            with_future += 1;
        }
        cases += 1;
    }
    assert_eq!(cases, 4000);
    assert!(months_differ > 0, "the month-end anchors do reach the documented difference");
    assert!(with_future > 400, "histories with backups in the future: {with_future}");
    eprintln!("prune_restic: {cases} random histories, {months_differ} differ only by month arithmetic");
}
