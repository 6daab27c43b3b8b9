//! Creates a workmem-shaped sample database (for `make demo` and `make bench`).
//!
//! usage: make-sample PATH [SIZE_MIB] [--rollback]

#[path = "../tests/it/fixture.rs"]
mod fixture;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first().map(PathBuf::from) else {
        eprintln!("usage: make-sample PATH [SIZE_MIB] [--rollback]");
        return ExitCode::from(2);
    };
    let mib: u64 = match args.get(1).filter(|a| !a.starts_with("--")).map(|s| s.parse()) {
        None => 2,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!("make-sample: SIZE_MIB must be a number of MiB");
            return ExitCode::from(2);
        }
    };
    let wal = !args.iter().any(|a| a == "--rollback");
    if path.exists() {
        eprintln!("make-sample: {}: already exists; remove it first", path.display());
        return ExitCode::from(1);
    }
    match fixture::create(&path, mib << 20, wal, 42) {
        Ok(c) => {
            println!(
                "{}: {} entities, {} observations, {} relations, {} events, {} embeddings",
                path.display(),
                c.entities,
                c.observations,
                c.relations,
                c.events,
                c.embeddings
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("make-sample: {}: {e}", path.display());
            ExitCode::from(1)
        }
    }
}
