//! Plays a workmem server that crashes mid-work, for `make demo`: opens the
//! database in WAL mode, deletes half of the observations in one committed
//! transaction (left in the `-wal`, never checkpointed), and dies without
//! closing anything, as a killed process does.
//!
//! usage: crash-writer DB

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path] = args.as_slice() else {
        eprintln!("usage: crash-writer DB");
        return ExitCode::from(2);
    };
    // The connection must still be open when the process dies: closing it
    // would checkpoint the WAL and remove it, as a clean shutdown does.
    let run = || -> rusqlite::Result<(rusqlite::Connection, i64)> {
        let c = rusqlite::Connection::open(path)?;
        c.execute_batch("PRAGMA wal_autocheckpoint = 0; DELETE FROM observations WHERE id % 2 = 0;")?;
        let left = c.query_row("SELECT count(*) FROM observations", [], |r| r.get(0))?;
        Ok((c, left))
    };
    match run() {
        Ok((_open, left)) => {
            println!("{left} observations left when it crashed");
            // No close, no checkpoint: the WAL stays behind, as after a SIGKILL.
            std::process::abort()
        }
        Err(e) => {
            eprintln!("crash-writer: {path}: {e}");
            ExitCode::from(1)
        }
    }
}
