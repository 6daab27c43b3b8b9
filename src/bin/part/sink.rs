//! `--to PATH|DIR/|-`: the output of the tools that write data.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use wmbackup::clock::Utc;
use wmbackup::output::Sink;
use wmbackup::prune;
use wmbackup::signals::Cancel;
use wmbackup::Error;

/// How a file written into `--to DIR/` is named: `STEM-YYYYMMDDTHHMMSSZ.EXT`.
pub struct Series {
    pub stem: String,
    pub ext: &'static str,
}

/// How many seconds later a new file's name may say when the names before
/// it are taken.
pub const SPARE_SECONDS: i64 = 9;

/// `--to` names a directory: it ends with `/`, or is an existing directory
/// (`-` is standard output, even if a directory of that name exists). A
/// symlink counts as the directory it points to only when the running user
/// or root owns it, the rule every written name follows: another user's link to a
/// directory is taken for a file name, which the output then refuses.
pub fn is_dir(to: &Path) -> bool {
    if to == Path::new("-") {
        return false;
    }
    if to.as_os_str().as_bytes().ends_with(b"/") {
        return true;
    }
    wmbackup::output::is_followable_directory(to)
}

/// Opens `--to` (absent or `-`: standard output), never the database
/// `source`. `--to ''` is a usage error, typically an unset shell variable.
/// A directory gets a new file named after `series` and the UTC time now;
/// it never replaces nor follows anything at that name: when the name is
/// taken (a backup of the same second, or anything planted there) the file
/// takes the next second's name, up to [`SPARE_SECONDS`] later, so that
/// wm-prune still counts it in the same series.
pub fn open(
    to: Option<&Path>,
    cancel: &Cancel,
    terminal_ok: bool,
    source: Option<&Path>,
    series: &Series,
) -> Result<Sink, Error> {
    if to.is_some_and(|p| p.as_os_str().is_empty()) {
        return Err(Error::usage("destination: --to: empty path", Some("give a file name, or - for standard output")));
    }
    if let Some(dir) = to.filter(|p| is_dir(p)) {
        missing_dir(dir)?;
        let now = Utc::now().unix();
        let names = (0..=SPARE_SECONDS)
            .map(|later| OsString::from(prune::name(&series.stem, &Utc::from_unix(now + later), series.ext)))
            .collect();
        return Ok(Sink::open_new(dir, names, source)?);
    }
    Ok(Sink::open(to, cancel, terminal_ok, source)?)
}

/// `--to nodir/` where no such directory exists: say how to get one.
fn missing_dir(dir: &Path) -> Result<(), Error> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(MissingDir(dir.to_path_buf()).into()),
        _ => Ok(()),
    }
}

#[derive(Debug)]
struct MissingDir(std::path::PathBuf);

impl std::fmt::Display for MissingDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "destination directory: {}: no such file or directory", self.0.display())
    }
}

impl std::error::Error for MissingDir {}

impl wmbackup::stop::Failure for MissingDir {
    fn hint(&self) -> Option<wmbackup::stop::Hint> {
        let dir = self.0.display().to_string();
        let file = dir.trim_end_matches('/');
        Some(
            format!("create it first (mkdir -p {file}), or drop the trailing slash to write a file named {file}")
                .into(),
        )
    }
}
