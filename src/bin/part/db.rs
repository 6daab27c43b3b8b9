//! `--db` and `--env-file`: which database, by the workmem server's rules.

use std::path::{Path, PathBuf};

use clap::Args;
use wmbackup::sqlite::resolve::{self, DotenvOutcome, Env};
use wmbackup::Error;

#[derive(Debug, Args)]
pub struct DbArgs {
    /// Source database [default: $MEMORY_DB_PATH, else memory.db beside this program, else ./memory.db]
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,

    /// Load variables (MEMORY_DB_PATH) from a .env file first; the process environment wins
    #[arg(long, value_name = "PATH")]
    pub env_file: Option<PathBuf>,
}

impl DbArgs {
    /// The database path. `--db ''` is a usage error (typically an unset
    /// shell variable); a `.env` file that exists but cannot be read is a
    /// warning, as in the server.
    pub fn resolve(&self, prog: &str, quiet: bool) -> Result<PathBuf, Error> {
        if self.db.as_deref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(Error::usage(
                "resolve database: --db: empty path",
                Some("give a path, or leave --db out to use MEMORY_DB_PATH or the default"),
            ));
        }
        let mut env = Env::from_process();
        if let Some(path) = &self.env_file {
            match resolve::read_dotenv(path) {
                Ok(DotenvOutcome::Loaded(pairs)) => env = env.with_dotenv(pairs),
                Ok(DotenvOutcome::Missing) => {}
                Err(e) if !quiet => eprintln!("{prog}: warning: {e}"),
                Err(_) => {}
            }
        }
        let exe_dir = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf));
        let resolved = resolve::resolve_db_path(self.db.as_deref(), &env, exe_dir.as_deref(), std::env::current_dir)?;
        Ok(resolved.path)
    }
}

/// The STEM of a timestamped backup's name, from the database's file name:
/// `memory` for `memory.db`. Leading dots go (the name would be hidden and
/// never counted), control characters become `_`; `backup` if nothing is left.
pub fn stem(db: &Path) -> String {
    let name = db.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match name.strip_suffix(".db") {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => name,
    };
    let clean: String = name.trim_start_matches('.').chars().map(|c| if c.is_control() { '_' } else { c }).collect();
    if clean.is_empty() {
        "backup".to_string()
    } else {
        clean
    }
}
