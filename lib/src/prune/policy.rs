//! The retention policy: restic's `forget` (`internal/data/snapshot_policy.go`,
//! restic 0.18), applied to each series of backups.
//!
//! Backups newest first. A backup is kept if any rule keeps it, and every
//! rule that does is its reason, worded as restic words it:
//! - `within SPAN`: newer than the newest backup that is not in the future,
//!   minus SPAN (all are, if every backup is in the future);
//! - a count rule (`last`, `hourly`, `daily`, `weekly`, `monthly`, `yearly`)
//!   with count left keeps a backup whose period differs from the last one it
//!   kept ("daily snapshot"), and keeps the oldest backup of the series if it
//!   still has count left when it gets there ("oldest daily snapshot");
//!   [`Count::All`] (restic's -1) never runs out;
//! - a within rule (`hourly within SPAN`, …) does the same as a count rule
//!   without a count, for the backups newer than the newest minus SPAN.
//!
//! Periods are those of the UTC time in the name: hour, day, ISO week, month,
//! year. Where wm-prune differs from restic on purpose, [`Span::before`] and
//! [`Policy::validate`] say so.

use std::collections::BTreeMap;
use std::fmt;

use super::{BackupName, PruneError};
use crate::clock::{days_in_month, Utc};

/// A span of time back from the newest backup, restic's `--keep-within`:
/// `30d`, `12h`, `2w`, `1y6m`. Years and months are calendar ones (a month
/// before 31 March is 28 or 29 February); weeks, days and hours are fixed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    pub years: u32,
    pub months: u32,
    pub weeks: u32,
    pub days: u32,
    pub hours: u32,
}

impl Span {
    /// Parses `[Ny][Nm][Nw][Nd][Nh]`: each unit at most once, in that order,
    /// at least one, not all zero. The error says what is wrong, in words.
    pub fn parse(s: &str) -> Result<Span, String> {
        const UNITS: &str = "ymwdh";
        let mut span = Span::default();
        let mut rest = s;
        let mut last_unit: Option<usize> = None;
        if s.is_empty() {
            return Err("an empty span; write e.g. 30d, 12h, 2w or 1y6m".into());
        }
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let Some(unit) = rest[digits..].chars().next() else {
                return Err(format!("{s:?}: a number needs a unit (y, m, w, d or h), e.g. {rest}d"));
            };
            let Some(pos) = UNITS.find(unit) else {
                return Err(format!("{s:?}: {unit:?} is not a unit; use y (years), m (months), w, d or h"));
            };
            if digits == 0 {
                return Err(format!("{s:?}: {unit} needs a number before it, e.g. 30d"));
            }
            if last_unit.is_some_and(|l| l >= pos) {
                return Err(format!("{s:?}: give each unit once, in the order y, m, w, d, h"));
            }
            last_unit = Some(pos);
            let n: u32 = rest[..digits].parse().map_err(|_| format!("{s:?}: {} is too large", &rest[..digits]))?;
            match unit {
                'y' => span.years = n,
                'm' => span.months = n,
                'w' => span.weeks = n,
                'd' => span.days = n,
                _ => span.hours = n,
            }
            rest = &rest[digits + unit.len_utf8()..];
        }
        if span == Span::default() {
            return Err(format!("{s:?}: a span of zero keeps nothing; give at least 1h"));
        }
        Ok(span)
    }

    /// `t` minus this span. Years and months first, clamped to the month's
    /// last day, then weeks, days and hours. restic (Go's `AddDate`)
    /// normalises instead: 31 March minus `1m` is 3 March there, 28 February
    /// here, so wm-prune's window is never shorter than restic's and keeps
    /// at least what restic keeps.
    pub fn before(&self, t: &Utc) -> Utc {
        let months = t.year * 12 + (t.month as i64 - 1) - self.years as i64 * 12 - self.months as i64;
        let (year, month) = (months.div_euclid(12), months.rem_euclid(12) as u32 + 1);
        let day = t.day.min(days_in_month(year, month));
        let shifted = Utc { year, month, day, ..*t };
        let fixed = (self.weeks as i64 * 7 + self.days as i64) * 86_400 + self.hours as i64 * 3600;
        Utc::from_unix(shifted.unix() - fixed)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, unit) in [(self.years, 'y'), (self.months, 'm'), (self.weeks, 'w'), (self.days, 'd'), (self.hours, 'h')]
        {
            if n > 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

/// How many periods a count rule keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// At least 1 (0 is refused: leave the rule out).
    Upto(u32),
    /// restic's -1: every period, and the oldest backup.
    All,
}

impl Count {
    /// restic's number: -1 for all.
    pub fn as_i64(&self) -> i64 {
        match self {
            Count::Upto(n) => *n as i64,
            Count::All => -1,
        }
    }
}

/// The periods of restic's rules; `Last` is each backup's own place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Period {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Period {
    pub fn as_str(&self) -> &'static str {
        match self {
            Period::Last => "last",
            Period::Hourly => "hourly",
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Yearly => "yearly",
        }
    }

    /// The period `t` falls in, as one number (restic's `ymdh`, `ymd`, `yw`,
    /// `ym`, `y`, `always`); `nr` is the backup's place, newest first.
    fn of(&self, t: &Utc, nr: usize) -> i64 {
        let ym = t.year * 100 + t.month as i64;
        match self {
            Period::Last => nr as i64,
            Period::Hourly => (ym * 100 + t.day as i64) * 100 + t.hour as i64,
            Period::Daily => ym * 100 + t.day as i64,
            Period::Weekly => {
                let (year, week) = t.iso_week();
                year * 100 + week as i64
            }
            Period::Monthly => ym,
            Period::Yearly => t.year,
        }
    }
}

const COUNTED: [Period; 6] =
    [Period::Last, Period::Hourly, Period::Daily, Period::Weekly, Period::Monthly, Period::Yearly];
const WITHIN: [Period; 5] = [Period::Hourly, Period::Daily, Period::Weekly, Period::Monthly, Period::Yearly];

/// Which rules keep what (`None`: rule not given).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    pub last: Option<Count>,
    pub hourly: Option<Count>,
    pub daily: Option<Count>,
    pub weekly: Option<Count>,
    pub monthly: Option<Count>,
    pub yearly: Option<Count>,
    pub within: Option<Span>,
    pub within_hourly: Option<Span>,
    pub within_daily: Option<Span>,
    pub within_weekly: Option<Span>,
    pub within_monthly: Option<Span>,
    pub within_yearly: Option<Span>,
}

impl Policy {
    /// The count rule of `period`.
    pub fn count(&self, period: Period) -> Option<Count> {
        match period {
            Period::Last => self.last,
            Period::Hourly => self.hourly,
            Period::Daily => self.daily,
            Period::Weekly => self.weekly,
            Period::Monthly => self.monthly,
            Period::Yearly => self.yearly,
        }
    }

    /// The within rule of `period` (`Last` has none).
    pub fn within_of(&self, period: Period) -> Option<Span> {
        match period {
            Period::Last => None,
            Period::Hourly => self.within_hourly,
            Period::Daily => self.within_daily,
            Period::Weekly => self.within_weekly,
            Period::Monthly => self.within_monthly,
            Period::Yearly => self.within_yearly,
        }
    }

    /// No rule at all is refused: restic's `forget` with an empty policy
    /// removes every snapshot (it asks for `--unsafe-allow-remove-all`);
    /// here it is a usage error. A count of 0 is refused too (restic reads
    /// it as "rule off"): leave the rule out instead.
    pub fn validate(&self) -> Result<(), PruneError> {
        let counts = COUNTED.map(|p| self.count(p));
        let spans = [self.within].into_iter().chain(WITHIN.map(|p| self.within_of(p)));
        if counts.iter().all(Option::is_none) && spans.clone().all(|s| s.is_none()) {
            return Err(PruneError::NoRule);
        }
        if counts.contains(&Some(Count::Upto(0))) {
            return Err(PruneError::ZeroCount);
        }
        if spans.flatten().any(|s| s == Span::default()) {
            return Err(PruneError::ZeroCount);
        }
        Ok(())
    }
}

/// Why a backup is kept; its `Display` is restic's reason string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// `within 30d`.
    Within(Span),
    /// `daily snapshot`; `oldest daily snapshot` for the oldest backup kept
    /// because the rule still had count left.
    Count { period: Period, oldest: bool },
    /// `daily within 30d`; `oldest daily within 30d`.
    PeriodWithin { period: Period, span: Span, oldest: bool },
    /// The newest of its series, kept whatever the policy says (no rule of
    /// a valid policy leaves it, so this names a safeguard, never a reason
    /// restic would give).
    Newest,
    /// A backup the caller protects: the one just made.
    New,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let oldest = |o: bool| if o { "oldest " } else { "" };
        match self {
            Rule::Within(span) => write!(f, "within {span}"),
            Rule::Count { period, oldest: o } => write!(f, "{}{} snapshot", oldest(*o), period.as_str()),
            Rule::PeriodWithin { period, span, oldest: o } => {
                write!(f, "{}{} within {span}", oldest(*o), period.as_str())
            }
            Rule::Newest => f.write_str("newest"),
            Rule::New => f.write_str("new"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub backup: BackupName,
    /// Every rule that keeps it, in restic's order: `within`, the count
    /// rules (last to yearly), the within rules (hourly to yearly); then
    /// `new` or `newest`.
    pub rules: Vec<Rule>,
}

/// What a policy does to a set of backups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Series by series (STEM, then EXT), newest first.
    pub kept: Vec<Kept>,
    /// Series by series, oldest first: the order to delete them in.
    pub dropped: Vec<BackupName>,
}

/// Applies `policy` to `backups` (a name given twice counts once), each
/// series on its own. A backup named in `protect` is kept whatever the
/// policy says. `now` decides which backups are in the future: `within`
/// rules count back from the newest backup that is not.
pub fn plan(backups: Vec<BackupName>, policy: &Policy, protect: &[&str], now: &Utc) -> Plan {
    let mut series: BTreeMap<(String, String), Vec<BackupName>> = BTreeMap::new();
    for b in backups {
        series.entry((b.stem.clone(), b.ext.clone())).or_default().push(b);
    }
    let mut out = Plan::default();
    for (_, mut list) in series {
        list.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| a.name.cmp(&b.name)));
        list.dedup_by(|a, b| a.name == b.name);
        let times: Vec<Utc> = list.iter().map(|b| b.time).collect();
        let mut dropped = Vec::new();
        for (backup, mut rules) in list.into_iter().zip(keep_rules(&times, policy, now)) {
            if protect.contains(&backup.name.as_str()) {
                rules.push(Rule::New);
            }
            if rules.is_empty() {
                dropped.push(backup);
            } else {
                out.kept.push(Kept { backup, rules });
            }
        }
        dropped.reverse();
        out.dropped.extend(dropped);
    }
    out
}

/// For the times of one series sorted newest first, the rules that keep
/// each: restic's `ApplyPolicy`, rule for rule.
fn keep_rules(times: &[Utc], policy: &Policy, now: &Utc) -> Vec<Vec<Rule>> {
    // The newest backup not in the future; `None` if all are, and then
    // every backup is within any span (restic counts back from year 1).
    let latest = times.iter().copied().filter(|t| t < now).max();
    let within = |span: Span, t: &Utc| latest.is_none_or(|l| *t > span.before(&l));
    let mut left: Vec<Option<Count>> = COUNTED.iter().map(|p| policy.count(*p)).collect();
    let mut last: Vec<Option<i64>> = vec![None; COUNTED.len()];
    let mut last_within: Vec<Option<i64>> = vec![None; WITHIN.len()];
    let oldest_nr = times.len().saturating_sub(1);
    let mut out = Vec::with_capacity(times.len());
    for (nr, t) in times.iter().enumerate() {
        let mut keep = Vec::new();
        if let Some(span) = policy.within.filter(|s| within(*s, t)) {
            keep.push(Rule::Within(span));
        }
        for (i, period) in COUNTED.iter().enumerate() {
            let has_left = matches!(left[i], Some(Count::All)) || matches!(left[i], Some(Count::Upto(n)) if n > 0);
            if !has_left {
                continue;
            }
            let val = period.of(t, nr);
            if last[i] != Some(val) || nr == oldest_nr {
                let oldest = last[i] == Some(val);
                last[i] = Some(val);
                if let Some(Count::Upto(n)) = &mut left[i] {
                    *n -= 1;
                }
                keep.push(Rule::Count { period: *period, oldest });
            }
        }
        for (i, period) in WITHIN.iter().enumerate() {
            let Some(span) = policy.within_of(*period).filter(|s| within(*s, t)) else { continue };
            let val = period.of(t, nr);
            if last_within[i] != Some(val) || nr == oldest_nr {
                let oldest = last_within[i] == Some(val);
                last_within[i] = Some(val);
                keep.push(Rule::PeriodWithin { period: *period, span, oldest });
            }
        }
        if nr == 0 && keep.is_empty() {
            keep.push(Rule::Newest);
        }
        out.push(keep);
    }
    out
}
