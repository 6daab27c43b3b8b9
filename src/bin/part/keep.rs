//! `--keep-*`: the retention rules of wm-prune and workmem-backup, restic's.

use clap::Args;
use wmbackup::prune::{Count, Policy, Span};

#[derive(Debug, Args)]
pub struct KeepArgs {
    /// Keep the N newest backups (-1: all)
    #[arg(long, value_name = "N", value_parser = count, allow_hyphen_values = true)]
    pub keep_last: Option<Count>,

    /// Keep the newest backup of each of the last N hours that have one, UTC (-1: every one)
    #[arg(long, value_name = "N", value_parser = count, allow_hyphen_values = true)]
    pub keep_hourly: Option<Count>,

    /// Keep the newest backup of each of the last N days that have one, UTC (-1: every one)
    #[arg(long, value_name = "N", value_parser = count, allow_hyphen_values = true)]
    pub keep_daily: Option<Count>,

    /// Keep the newest backup of each of the last N ISO weeks that have one (-1: every one)
    #[arg(long, value_name = "N", value_parser = count, allow_hyphen_values = true)]
    pub keep_weekly: Option<Count>,

    /// Keep the newest backup of each of the last N months that have one (-1: every one)
    #[arg(long, value_name = "N", value_parser = count, allow_hyphen_values = true)]
    pub keep_monthly: Option<Count>,

    /// Keep the newest backup of each of the last N years that have one (-1: every one)
    #[arg(long, value_name = "N", value_parser = count, allow_hyphen_values = true)]
    pub keep_yearly: Option<Count>,

    /// Keep every backup newer than the newest (not in the future) minus DURATION: [Ny][Nm][Nw][Nd][Nh], e.g. 30d, 12h, 1y6m
    #[arg(long, value_name = "DURATION", value_parser = span, allow_hyphen_values = true)]
    pub keep_within: Option<Span>,

    /// Keep the newest backup of each hour within DURATION of the newest
    #[arg(long, value_name = "DURATION", value_parser = span, allow_hyphen_values = true)]
    pub keep_within_hourly: Option<Span>,

    /// Keep the newest backup of each day within DURATION of the newest
    #[arg(long, value_name = "DURATION", value_parser = span, allow_hyphen_values = true)]
    pub keep_within_daily: Option<Span>,

    /// Keep the newest backup of each ISO week within DURATION of the newest
    #[arg(long, value_name = "DURATION", value_parser = span, allow_hyphen_values = true)]
    pub keep_within_weekly: Option<Span>,

    /// Keep the newest backup of each month within DURATION of the newest
    #[arg(long, value_name = "DURATION", value_parser = span, allow_hyphen_values = true)]
    pub keep_within_monthly: Option<Span>,

    /// Keep the newest backup of each year within DURATION of the newest
    #[arg(long, value_name = "DURATION", value_parser = span, allow_hyphen_values = true)]
    pub keep_within_yearly: Option<Span>,
}

impl KeepArgs {
    /// The rules given; [`Policy::default`] when none is.
    pub fn policy(&self) -> Policy {
        Policy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: self.keep_within,
            within_hourly: self.keep_within_hourly,
            within_daily: self.keep_within_daily,
            within_weekly: self.keep_within_weekly,
            within_monthly: self.keep_within_monthly,
            within_yearly: self.keep_within_yearly,
        }
    }
}

/// A count: a whole number from 1, or restic's -1, "keep all in this rule"
/// (0 would keep nothing: leave the rule out instead).
fn count(s: &str) -> Result<Count, String> {
    if s == "-1" {
        return Ok(Count::All);
    }
    if s.starts_with('-') {
        return Err("a count cannot be negative; give a whole number from 1, or -1 for all".into());
    }
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err("not a whole number; give e.g. 7".into());
    }
    match s.parse::<u32>() {
        Ok(0) => Err("0 keeps nothing; leave the rule out, or give at least 1".into()),
        Ok(n) => Ok(Count::Upto(n)),
        Err(_) => Err("too large".into()),
    }
}

fn span(s: &str) -> Result<Span, String> {
    Span::parse(s)
}
