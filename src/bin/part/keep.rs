//! `--keep-*`: the retention rules of wm-prune and workmem-backup, restic's.

use clap::Args;
use wmbackup::prune::{Policy, Span};

#[derive(Debug, Args)]
pub struct KeepArgs {
    /// Keep the N newest backups
    #[arg(long, value_name = "N", value_parser = count, allow_hyphen_values = true)]
    pub keep_last: Option<u32>,

    /// Keep the newest backup of each of the last N hours that have one (UTC)
    #[arg(long, value_name = "N", value_parser = count, allow_hyphen_values = true)]
    pub keep_hourly: Option<u32>,

    /// Keep the newest backup of each of the last N days that have one (UTC)
    #[arg(long, value_name = "N", value_parser = count, allow_hyphen_values = true)]
    pub keep_daily: Option<u32>,

    /// Keep the newest backup of each of the last N ISO weeks that have one
    #[arg(long, value_name = "N", value_parser = count, allow_hyphen_values = true)]
    pub keep_weekly: Option<u32>,

    /// Keep the newest backup of each of the last N months that have one
    #[arg(long, value_name = "N", value_parser = count, allow_hyphen_values = true)]
    pub keep_monthly: Option<u32>,

    /// Keep the newest backup of each of the last N years that have one
    #[arg(long, value_name = "N", value_parser = count, allow_hyphen_values = true)]
    pub keep_yearly: Option<u32>,

    /// Keep every backup newer than the newest minus DURATION: [Ny][Nm][Nw][Nd][Nh], e.g. 30d, 12h, 1y6m
    #[arg(long, value_name = "DURATION", value_parser = span, allow_hyphen_values = true)]
    pub keep_within: Option<Span>,
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
        }
    }
}

/// A count: a whole number from 1 (0 would keep nothing; restic's -1,
/// "keep all", is left out on purpose: leave the rule out instead).
fn count(s: &str) -> Result<u32, String> {
    if s.starts_with('-') {
        return Err("a count cannot be negative; give a whole number from 1".into());
    }
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err("not a whole number; give e.g. 7".into());
    }
    match s.parse::<u32>() {
        Ok(0) => Err("0 keeps nothing; leave the rule out, or give at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("too large".into()),
    }
}

fn span(s: &str) -> Result<Span, String> {
    Span::parse(s)
}
