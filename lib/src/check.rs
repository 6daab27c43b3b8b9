//! Checking a history: many backups verified in one run, one at a time,
//! through [`verify::verify`], so that memory and spool stay bounded by the
//! largest single backup, and a failure never stops the others.
//!
//! [`select`] turns what the user named (files, directories) into the
//! backups to check: by default the newest age-encrypted backup of each
//! series (STEM and EXT, as wm-prune groups them, per directory), with
//! `all` every one. A named file that is not a timestamped backup is
//! always checked: the user named it.

use std::collections::BTreeMap;
use std::fmt;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use crate::age::open::{Key, OpenError};
use crate::prune::{self, BackupDir, Judged, PruneError};
use crate::report::Verification;
use crate::run::Run;
use crate::signals::{open_read, CancelRead};
use crate::stop::{Failure, Hint};
use crate::verify::{self, VerifyError};

/// One backup to check, as the user will see it named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub path: PathBuf,
    /// The backups of its series not checked (older ones, without `all`).
    pub skipped_older: usize,
}

/// Whether a series holds age files: its EXT ends in `age` (`db.age`,
/// `age`). Snapshots (`db`) and restore copies are not what wm-verify reads.
fn is_age(ext: &str) -> bool {
    ext == "age" || ext.ends_with(".age")
}

/// The backups to check, in the order named; within a directory, series
/// by series (STEM, EXT), newest first.
pub fn select(named: &[PathBuf], all: bool) -> Result<Vec<Target>, CheckError> {
    let mut out = Vec::new();
    // Named files that are backups: grouped by (directory, STEM, EXT) to
    // pick the newest of each series; their first place decides the order.
    let mut series: BTreeMap<(PathBuf, String, String), Vec<(prune::BackupName, PathBuf)>> = BTreeMap::new();
    let mut order: Vec<Option<(PathBuf, String, String)>> = Vec::new();
    let mut plain: Vec<PathBuf> = Vec::new();
    for path in named {
        let meta = std::fs::metadata(path).map_err(|e| CheckError::Named { path: path.clone(), source: e })?;
        if meta.is_dir() {
            let dir = BackupDir::open(path).map_err(CheckError::List)?;
            let listing = dir.list().map_err(CheckError::List)?;
            let mut here: BTreeMap<(String, String), Vec<prune::BackupName>> = BTreeMap::new();
            for b in listing.backups.into_iter().filter(|b| is_age(&b.ext)) {
                here.entry((b.stem.clone(), b.ext.clone())).or_default().push(b);
            }
            if here.is_empty() {
                return Err(CheckError::NoBackups { dir: path.clone() });
            }
            for (_, mut list) in here {
                list.sort_by_key(|b| std::cmp::Reverse(b.time));
                let take = if all { list.len() } else { 1 };
                let skipped_older = list.len() - take;
                for (i, b) in list.into_iter().take(take).enumerate() {
                    let skipped_older = if i == 0 { skipped_older } else { 0 };
                    out.push(Target { path: path.join(&b.name), skipped_older });
                }
            }
            continue;
        }
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        match prune::judge(&file_name) {
            Judged::Backup(b) if !all => {
                let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
                let key = (parent, b.stem.clone(), b.ext.clone());
                if !series.contains_key(&key) {
                    order.push(Some(key.clone()));
                }
                series.entry(key).or_default().push((b, path.clone()));
            }
            _ => {
                order.push(None);
                plain.push(path.clone());
            }
        }
    }
    let mut plain = plain.into_iter();
    for slot in order {
        match slot {
            None => out.extend(plain.next().map(|path| Target { path, skipped_older: 0 })),
            Some(key) => {
                let mut list = series.remove(&key).unwrap_or_default();
                list.sort_by_key(|b| std::cmp::Reverse(b.0.time));
                list.dedup_by(|a, b| a.0.name == b.0.name);
                let skipped_older = list.len().saturating_sub(1);
                out.extend(list.into_iter().next().map(|(_, path)| Target { path, skipped_older }));
            }
        }
    }
    Ok(out)
}

/// Verifies the age file at `path` as wm-verify verifies one; the report
/// names it as `path` shows.
pub fn verify_file(
    path: &Path,
    key: Key<'_>,
    opts: &verify::Options,
    run: &Run,
) -> (Verification, Result<(), VerifyError>) {
    let name = path.display().to_string();
    let opened = open_read(path, &run.cancel).and_then(|f| {
        let size = f.metadata()?.len();
        Ok((f, size))
    });
    let (report, result) = match opened {
        Ok((file, size)) => {
            let opts = verify::Options { size_hint: Some(size), ..opts.clone() };
            let input = Box::new(BufReader::with_capacity(1 << 20, CancelRead::new(file, &run.cancel)));
            verify::verify(input, key, &opts, run)
        }
        Err(e) => (Verification::default(), Err(VerifyError::Open(OpenError::Read(e)))),
    };
    (Verification { backup: name, restorable: result.is_ok(), ..report }, result)
}

#[derive(Debug)]
pub enum CheckError {
    /// A name given that cannot be looked at.
    Named {
        path: PathBuf,
        source: std::io::Error,
    },
    List(PruneError),
    /// A directory without one age-encrypted timestamped backup.
    NoBackups {
        dir: PathBuf,
    },
    /// Backups checked that are not restorable (each reported on its own).
    NotRestorable {
        failed: usize,
        checked: usize,
    },
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Named { path, source } => {
                write!(f, "{}: {}", path.display(), crate::stop::io_cause(source))
            }
            CheckError::List(e) => e.fmt(f),
            CheckError::NotRestorable { failed, checked } => {
                write!(f, "{failed} of {checked} backup(s) checked are not restorable")
            }
            CheckError::NoBackups { dir } => {
                write!(
                    f,
                    "{}: no age-encrypted backup named STEM-YYYYMMDDTHHMMSSZ.EXT in this directory",
                    dir.display()
                )
            }
        }
    }
}

impl std::error::Error for CheckError {}

impl Failure for CheckError {
    fn hint(&self) -> Option<Hint> {
        match self {
            CheckError::NoBackups { .. } => {
                Some("name the backup files themselves, or the directory workmem-backup --to writes".into())
            }
            CheckError::List(e) => e.hint(),
            CheckError::NotRestorable { .. } => {
                Some("each is named above with the reason; make a new backup before relying on the history".into())
            }
            CheckError::Named { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(targets: &[Target]) -> Vec<String> {
        targets.iter().map(|t| t.path.file_name().unwrap().to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn a_directory_gives_the_newest_age_backup_of_each_series_or_all() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            "memory-20261101T000000Z.db.age",
            "memory-20261102T000000Z.db.age",
            "project-20261101T000000Z.db.age",
            "memory-20261103T000000Z.db",
            "memory.db.pre-restore-20261103T000000Z",
            "memory-20261104T000000Z.db.age.partial",
            "notes.txt",
        ] {
            std::fs::write(d.path().join(n), b"x").unwrap();
        }
        let dir = d.path().to_path_buf();
        let newest = select(std::slice::from_ref(&dir), false).unwrap();
        assert_eq!(names(&newest), ["memory-20261102T000000Z.db.age", "project-20261101T000000Z.db.age"]);
        assert_eq!(newest[0].skipped_older, 1);
        let all = select(&[dir], true).unwrap();
        assert_eq!(
            names(&all),
            ["memory-20261102T000000Z.db.age", "memory-20261101T000000Z.db.age", "project-20261101T000000Z.db.age"]
        );
    }

    #[test]
    fn named_files_keep_their_order_and_only_the_newest_of_a_series_without_all() {
        let d = tempfile::tempdir().unwrap();
        let p = |n: &str| {
            let path = d.path().join(n);
            std::fs::write(&path, b"x").unwrap();
            path
        };
        let named = [p("other.age"), p("m-20261101T000000Z.db.age"), p("m-20261103T000000Z.db.age"), p("z.age")];
        assert_eq!(names(&select(&named, false).unwrap()), ["other.age", "m-20261103T000000Z.db.age", "z.age"]);
        assert_eq!(names(&select(&named, true).unwrap()).len(), 4);
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(select(&[empty.path().to_path_buf()], false), Err(CheckError::NoBackups { .. })));
        assert!(matches!(select(&[d.path().join("missing")], false), Err(CheckError::Named { .. })));
    }
}
