//! UTC time as the tools write it: `20261202T063000Z` in file names, RFC 3339
//! in reports. The civil-date arithmetic is Howard Hinnant's `days_from_civil`
//! and its inverse, exact for every date after 1970.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A UTC date and time to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Utc {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl Utc {
    pub fn now() -> Utc {
        Utc::from_system(SystemTime::now())
    }

    pub fn from_system(t: SystemTime) -> Utc {
        Utc::from_unix(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64))
    }

    pub fn from_unix(secs: i64) -> Utc {
        let days = secs.div_euclid(86_400);
        let rest = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        Utc {
            year,
            month,
            day,
            hour: (rest / 3600) as u32,
            minute: (rest % 3600 / 60) as u32,
            second: (rest % 60) as u32,
        }
    }

    pub fn unix(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * 86_400
            + self.hour as i64 * 3600
            + self.minute as i64 * 60
            + self.second as i64
    }

    pub fn to_system(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.unix().max(0) as u64)
    }

    /// `20261202T063000Z`: sorts as time does, and is safe in any file name.
    pub fn stamp(&self) -> String {
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `2026-12-02T06:30:00Z`.
    pub fn rfc3339(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// Parses a [`Utc::stamp`]; `None` for anything else, an impossible
    /// date (30 February) included.
    pub fn parse_stamp(s: &str) -> Option<Utc> {
        let b = s.as_bytes();
        if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
            return None;
        }
        let digits = |r: std::ops::Range<usize>| -> Option<u32> {
            let part = s.get(r)?;
            part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
        };
        let t = Utc {
            year: digits(0..4)? as i64,
            month: digits(4..6)?,
            day: digits(6..8)?,
            hour: digits(9..11)?,
            minute: digits(11..13)?,
            second: digits(13..15)?,
        };
        let valid = (1..=12).contains(&t.month)
            && (1..=days_in_month(t.year, t.month)).contains(&t.day)
            && t.hour < 24
            && t.minute < 60
            && t.second < 60;
        valid.then_some(t)
    }

    /// ISO 8601 week-numbering year and week (1..=53).
    pub fn iso_week(&self) -> (i64, u32) {
        let days = days_from_civil(self.year, self.month, self.day);
        // 1970-01-01 was a Thursday; ISO weekday 1 = Monday.
        let weekday = (days + 3).rem_euclid(7) + 1;
        let thursday = days - weekday + 4;
        let (year, _, _) = civil_from_days(thursday);
        let jan1 = days_from_civil(year, 1, 1);
        (year, ((thursday - jan1) / 7 + 1) as u32)
    }
}

pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_impossible_dates_are_refused() {
        let t = Utc::from_unix(1_796_193_000);
        assert_eq!(t.stamp(), "20261202T063000Z");
        assert_eq!(t.rfc3339(), "2026-12-02T06:30:00Z");
        assert_eq!(Utc::parse_stamp(&t.stamp()), Some(t));
        assert_eq!(Utc::parse_stamp("20260230T000000Z"), None, "30 February");
        assert_eq!(Utc::parse_stamp("20250229T000000Z"), None, "2025 is no leap year");
        assert!(Utc::parse_stamp("20240229T235959Z").is_some());
        assert_eq!(Utc::parse_stamp("20261206T246000Z"), None);
        assert_eq!(Utc::parse_stamp("2026120xT000000Z"), None);
        for secs in [0, 86_399, 951_782_400, 1_709_164_800, 4_102_444_800] {
            assert_eq!(Utc::from_unix(secs).unix(), secs);
        }
    }

    #[test]
    fn iso_weeks_at_year_boundaries() {
        let w = |s: &str| Utc::parse_stamp(s).unwrap().iso_week();
        assert_eq!(w("20201231T000000Z"), (2020, 53));
        assert_eq!(w("20210103T000000Z"), (2020, 53), "a Sunday in week 53 of the year before");
        assert_eq!(w("20210104T000000Z"), (2021, 1));
        assert_eq!(w("20241230T000000Z"), (2025, 1), "a Monday in week 1 of the next year");
        assert_eq!(w("20261202T000000Z"), (2026, 49));
    }
}
