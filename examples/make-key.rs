//! Makes a throwaway age identity for `make demo`, as `age-keygen -o PATH`
//! (or, with `--pq`, Go age 1.3's `age-keygen -pq -o PATH`) would, so that
//! the demo needs no age CLI: writes the identity to PATH (mode 0600; an
//! existing PATH is refused) and prints its recipient on standard output.
//!
//! usage: make-key [--pq] PATH

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::process::ExitCode;

use age::secrecy::ExposeSecret;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (pq, path) = match args.as_slice() {
        [flag, path] if flag == "--pq" => (true, path),
        [path] if !path.starts_with('-') => (false, path),
        _ => {
            eprintln!("usage: make-key [--pq] PATH");
            return ExitCode::from(2);
        }
    };
    let (recipient, secret) = if pq {
        let id = wmbackup::age::pq::HybridIdentity::generate();
        (id.to_public().to_string(), id.to_string())
    } else {
        let id = age::x25519::Identity::generate();
        (id.to_public().to_string(), id.to_string())
    };
    let text = format!("# public key: {recipient}\n{}\n", secret.expose_secret());
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()));
    match written {
        Ok(()) => {
            println!("{recipient}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("make-key: {path}: {e}");
            ExitCode::from(1)
        }
    }
}
