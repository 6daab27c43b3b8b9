//! Which database `--db` and `--env-file` name, by the workmem server's rules.

use std::path::{Path, PathBuf};

use wmbackup::sqlite::resolve::{self, DotenvOutcome, Env};
use wmbackup::Error;

/// A resolver of the library: the database to read, or the one to write.
pub type Resolver = fn(
    Option<&Path>,
    &Env,
    Option<&Path>,
    fn() -> std::io::Result<PathBuf>,
) -> Result<resolve::Resolved, resolve::ResolveError>;

/// `--db` (or `MEMORY_DB_PATH` from the environment or `env_file`, or the
/// defaults), by `rule`: the database to read, or the one to write.
pub fn resolve(
    db: Option<&Path>,
    env_file: Option<&Path>,
    prog: &str,
    quiet: bool,
    rule: Resolver,
) -> Result<PathBuf, Error> {
    if db.is_some_and(|p| p.as_os_str().is_empty()) {
        return Err(Error::usage(
            "resolve database: --db: empty path",
            Some("give a path, or leave --db out to use MEMORY_DB_PATH or the default"),
        ));
    }
    let mut env = Env::from_process();
    if let Some(path) = env_file {
        match resolve::read_dotenv(path) {
            Ok(DotenvOutcome::Loaded(pairs)) => env = env.with_dotenv(pairs),
            Ok(DotenvOutcome::Missing) => {}
            Err(e) if !quiet => crate::common::say(&format!("{prog}: warning: {e}")),
            Err(_) => {}
        }
    }
    let exe_dir = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf));
    let resolved = rule(db, &env, exe_dir.as_deref(), std::env::current_dir)?;
    Ok(resolved.path)
}
