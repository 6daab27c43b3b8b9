//! Makes a throwaway age identity (X25519) for `make demo`, as
//! `age-keygen -o PATH` would, so that the demo needs no age CLI: writes the
//! identity to PATH (mode 0600; an existing PATH is refused) and prints its
//! recipient on standard output.
//!
//! usage: make-key PATH

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::process::ExitCode;

use age::secrecy::ExposeSecret;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path] = args.as_slice() else {
        eprintln!("usage: make-key PATH");
        return ExitCode::from(2);
    };
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let text = format!("# public key: {recipient}\n{}\n", identity.to_string().expose_secret());
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
