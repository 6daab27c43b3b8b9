//! `workmem-backup --metrics-file`: the last run in node_exporter's
//! textfile-collector format, written atomically, so that Prometheus can
//! alert on a backup that failed or stopped happening.
//!
//! Every value is a gauge labelled with the database and the destination as
//! given. A failed run writes its time and exit status and carries the last
//! success (its time, duration and sizes) over from the previous file, read
//! tolerantly: a file we cannot read or parse only means "no success known".
//! The file is mode 0644: node_exporter runs as another user, and it holds
//! paths, times and sizes, nothing secret.

use std::fmt::{self, Write as _};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::output::{AtomicFile, Destination, OutputError};
use crate::stop::{hint, Failure, Hint, Knob, Stop};

pub const FILE_MODE: u32 = 0o644;
const PREFIX: &str = "workmem_backup_";
/// A previous file larger than this is not ours: ignored.
const MAX_PREVIOUS: u64 = 1 << 20;

/// The last successful backup.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Success {
    /// Unix time the backup was in place.
    pub timestamp: i64,
    pub duration: f64,
    pub snapshot_bytes: u64,
    pub ciphertext_bytes: u64,
}

/// One run, as the metrics file tells it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Run {
    /// The database, when it was found; otherwise the previous file's label.
    pub database: Option<String>,
    /// `--to` as given.
    pub destination: String,
    /// Unix time the run ended.
    pub finished: i64,
    pub exit_status: u8,
    /// `Some` when this run made a backup.
    pub success: Option<Success>,
}

/// The series a file describes, with their label text (between the braces).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Previous {
    pub labels: Option<String>,
    pub success: Option<Success>,
}

/// Reads what a previous file says about the last success. Lines that are
/// not ours, or not numbers, are skipped: the file may be damaged, or older.
pub fn parse_previous(text: &str) -> Previous {
    let mut labels = None;
    let mut s = Success::default();
    let mut found = false;
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(PREFIX) else { continue };
        let name_len = rest.find(|c: char| c == '{' || c.is_whitespace()).unwrap_or(rest.len());
        let (name, tail) = rest.split_at(name_len);
        let (label_text, value_part) = match tail.strip_prefix('{').and_then(|t| t.rsplit_once('}')) {
            Some((l, v)) => (Some(l.to_string()), v),
            None => (None, tail),
        };
        let Some(value) = value_part.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()) else { continue };
        if !value.is_finite() || value < 0.0 {
            continue;
        }
        match name {
            "last_success_timestamp_seconds" if value > 0.0 => {
                s.timestamp = value as i64;
                labels = label_text;
                found = true;
            }
            "duration_seconds" => s.duration = value,
            "snapshot_bytes" => s.snapshot_bytes = value as u64,
            "ciphertext_bytes" => s.ciphertext_bytes = value as u64,
            _ => {}
        }
    }
    Previous { labels, success: found.then_some(s) }
}

/// The file's text for `run`, the last success being this run's or else
/// `previous`'s; none known is written as 0.
pub fn render(run: &Run, previous: &Previous) -> String {
    let labels = match (&run.database, &previous.labels) {
        (Some(db), _) => format!("database=\"{}\",destination=\"{}\"", escape(db), escape(&run.destination)),
        (None, Some(l)) => l.clone(),
        (None, None) => format!("database=\"\",destination=\"{}\"", escape(&run.destination)),
    };
    let s = run.success.or(previous.success).unwrap_or_default();
    let series: [(&str, &str, String); 7] = [
        (
            "last_success_timestamp_seconds",
            "Unix time the last successful backup was in place (0: none known).",
            s.timestamp.to_string(),
        ),
        ("last_run_timestamp_seconds", "Unix time the last run ended, whatever its outcome.", run.finished.to_string()),
        (
            "last_exit_status",
            "Exit status of the last run: 0 success, 1 failure, 2 usage, 128+N signal N.",
            run.exit_status.to_string(),
        ),
        ("duration_seconds", "Duration of the last successful backup.", format!("{:.3}", s.duration)),
        (
            "snapshot_bytes",
            "Size of the database snapshot in the last successful backup.",
            s.snapshot_bytes.to_string(),
        ),
        (
            "ciphertext_bytes",
            "Size of the last successful backup file (age ciphertext).",
            s.ciphertext_bytes.to_string(),
        ),
        (
            "last_success",
            "1 if the last run succeeded, else 0.",
            u8::from(run.exit_status == 0 && run.success.is_some()).to_string(),
        ),
    ];
    let mut out = String::new();
    for (name, help, value) in series {
        let _ = writeln!(
            out,
            "# HELP {PREFIX}{name} {help}\n# TYPE {PREFIX}{name} gauge\n{PREFIX}{name}{{{labels}}} {value}"
        );
    }
    out
}

/// A label value as the text format wants it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The metrics file, its temporary created up front: a directory we cannot
/// write fails the run before the backup, not after.
pub struct MetricsFile {
    path: PathBuf,
    file: AtomicFile,
}

impl MetricsFile {
    pub fn create(path: &Path) -> Result<MetricsFile, MetricsError> {
        let err = |e| MetricsError { path: path.to_path_buf(), source: e };
        let file = AtomicFile::create(Destination::resolve(path).map_err(err)?).map_err(err)?;
        file.set_mode(FILE_MODE).map_err(err)?;
        Ok(MetricsFile { path: path.to_path_buf(), file })
    }

    /// Writes `run` (with the previous file's last success when this run
    /// has none) atomically: temporary, fsync, rename, fsync directory.
    pub fn write(mut self, run: &Run) -> Result<(), MetricsError> {
        let err = |e| MetricsError { path: self.path.clone(), source: e };
        let previous = read_previous(self.file.destination());
        let text = render(run, &previous);
        let path = self.file.destination().path.clone();
        self.file.write_all(text.as_bytes()).map_err(|e| err(OutputError::Write { path, source: e }))?;
        let path = self.path.clone();
        self.file.commit().map(drop).map_err(|e| MetricsError { path, source: e })
    }
}

/// The file now at the destination's name, read through the directory
/// opened once: a regular file only, never through a symlink, never a FIFO.
fn read_previous(dest: &Destination) -> Previous {
    let mut text = String::new();
    match dest.open_existing().map(|f| f.take(MAX_PREVIOUS).read_to_string(&mut text)) {
        Some(Ok(_)) => parse_previous(&text),
        _ => Previous::default(),
    }
}

#[derive(Debug)]
pub struct MetricsError {
    pub path: PathBuf,
    pub source: OutputError,
}

impl fmt::Display for MetricsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "metrics file: {}", self.source)
    }
}

impl std::error::Error for MetricsError {}

impl Failure for MetricsError {
    fn hint(&self) -> Option<Hint> {
        use OutputError::*;
        match &self.source {
            Create { source, .. } | Directory { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => {
                Some(hint!["check the directory's permissions, or choose another ", Knob::MetricsFile])
            }
            IsDirectory(_) | NotRegular(_) | Directory { .. } => {
                Some(hint!["name a file in an existing directory with ", Knob::MetricsFile])
            }
            _ => None,
        }
    }

    fn stop(&self) -> Option<Stop> {
        self.source.stop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn success() -> Success {
        Success { timestamp: 1_796_193_000, duration: 1.25, snapshot_bytes: 4096, ciphertext_bytes: 4300 }
    }

    /// Every sample of a text, as (name, labels, value).
    fn samples(text: &str) -> Vec<(String, String, f64)> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').unwrap();
                let (name, labels) = series.split_once('{').unwrap();
                (name.to_string(), labels.trim_end_matches('}').to_string(), value.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn a_success_is_written_with_help_type_and_labels() {
        let run = Run {
            database: Some("/srv/my \"db\"/memory.db".into()),
            destination: "/backups/".into(),
            finished: 1_796_193_002,
            exit_status: 0,
            success: Some(success()),
        };
        let text = render(&run, &Previous::default());
        assert_eq!(text.lines().filter(|l| l.starts_with("# HELP workmem_backup_")).count(), 7);
        assert_eq!(
            text.lines().filter(|l| l.starts_with("# TYPE workmem_backup_") && l.ends_with(" gauge")).count(),
            7
        );
        let s = samples(&text);
        assert!(
            s.iter().all(|(_, l, _)| l == r#"database="/srv/my \"db\"/memory.db",destination="/backups/""#),
            "{s:?}"
        );
        let value = |n: &str| s.iter().find(|(name, _, _)| name == n).map(|x| x.2).unwrap();
        assert_eq!(value("workmem_backup_last_success_timestamp_seconds"), 1_796_193_000.0);
        assert_eq!(value("workmem_backup_last_run_timestamp_seconds"), 1_796_193_002.0);
        assert_eq!(value("workmem_backup_duration_seconds"), 1.25);
        assert_eq!(value("workmem_backup_ciphertext_bytes"), 4300.0);
        assert_eq!(value("workmem_backup_last_success"), 1.0);
        assert_eq!(parse_previous(&text).success, Some(success()), "what we write, we read back");
    }

    #[test]
    fn a_failure_keeps_the_last_success_and_its_labels() {
        let good = render(
            &Run {
                database: Some("/db".into()),
                destination: "/b/".into(),
                finished: 10,
                exit_status: 0,
                success: Some(success()),
            },
            &Previous::default(),
        );
        let failed = Run { database: None, destination: "/b/".into(), finished: 99, exit_status: 1, success: None };
        let text = render(&failed, &parse_previous(&good));
        let s = samples(&text);
        let value = |n: &str| s.iter().find(|(name, _, _)| name == n).map(|x| x.2).unwrap();
        assert_eq!(value("workmem_backup_last_success_timestamp_seconds"), 1_796_193_000.0);
        assert_eq!(value("workmem_backup_last_exit_status"), 1.0);
        assert_eq!(value("workmem_backup_last_run_timestamp_seconds"), 99.0);
        assert_eq!(value("workmem_backup_last_success"), 0.0);
        assert!(s.iter().all(|(_, l, _)| l == r#"database="/db",destination="/b/""#), "{s:?}");
    }

    #[test]
    fn a_damaged_or_foreign_previous_file_only_means_no_success_known() {
        for text in [
            "",
            "garbage\n\0\u{1}",
            "workmem_backup_last_success_timestamp_seconds{x=\"1\"} NaN\n",
            "workmem_backup_last_success_timestamp_seconds -5\n",
        ] {
            assert_eq!(parse_previous(text).success, None, "{text:?}");
        }
        // Older or hand-written: no labels, a timestamp after the value, extra series.
        let p = parse_previous("# a comment\nother_metric 5\nworkmem_backup_last_success_timestamp_seconds 1700000000 1700000000000\nworkmem_backup_snapshot_bytes 12\n");
        assert_eq!(p.success.map(|s| (s.timestamp, s.snapshot_bytes)), Some((1_700_000_000, 12)));
        let never =
            render(&Run { database: Some("/db".into()), exit_status: 1, ..Run::default() }, &Previous::default());
        assert!(
            never.contains("workmem_backup_last_success_timestamp_seconds{database=\"/db\",destination=\"\"} 0\n"),
            "{never}"
        );
    }

    #[test]
    fn the_file_is_replaced_atomically_and_readable_by_others() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("workmem_backup.prom");
        let ok = Run {
            database: Some("/db".into()),
            destination: "/b/".into(),
            finished: 10,
            exit_status: 0,
            success: Some(success()),
        };
        MetricsFile::create(&p).unwrap().write(&ok).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o644);
        let failed = Run {
            database: Some("/db".into()),
            destination: "/b/".into(),
            finished: 20,
            exit_status: 143,
            success: None,
        };
        MetricsFile::create(&p).unwrap().write(&failed).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.contains(
                "workmem_backup_last_success_timestamp_seconds{database=\"/db\",destination=\"/b/\"} 1796193000\n"
            ),
            "{text}"
        );
        assert!(text.contains("workmem_backup_last_exit_status{database=\"/db\",destination=\"/b/\"} 143\n"), "{text}");
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["workmem_backup.prom"], "no temporary left");
        assert!(MetricsFile::create(d.path()).is_err(), "a directory is refused");
    }
}
