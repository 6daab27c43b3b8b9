//! `--spool`: where plaintext waits, as the library's [`Place`].

use std::path::PathBuf;

use clap::ValueEnum;
use wmbackup::spool::{Place, SpoolMode};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SpoolArg {
    /// memory when the snapshot fits comfortably in available memory, else disk
    Auto,
    /// SQLite's memdb: the plaintext never touches disk
    Memory,
    /// an unnamed temporary file under --tmpdir
    Disk,
}

/// The spool settings `--spool` and `--tmpdir` name.
pub fn place(spool: SpoolArg, tmpdir: Option<&PathBuf>) -> Place {
    let mode = match spool {
        SpoolArg::Auto => SpoolMode::Auto,
        SpoolArg::Memory => SpoolMode::Memory,
        SpoolArg::Disk => SpoolMode::Disk,
    };
    Place { mode, tmpdir: tmpdir.cloned() }
}
