//! `--time-budget SECONDS`: how long SQLite may check a decrypted database.

use std::time::Duration;

/// A whole number of seconds, at least 1.
pub fn parse(s: &str) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(Duration::from_secs(n)),
        _ => Err("expected a whole number of seconds, at least 1".into()),
    }
}
