//! Where plaintext waits, and the one rule that chooses where.
//!
//! - memory, for `VACUUM INTO`: SQLite's `memdb` VFS, kept alive by a holder
//!   connection and read back in place ([`memdb`]);
//! - disk, for `VACUUM INTO`: an unnamed file through the `wmspool` VFS ([`vfs`]);
//! - memory or disk, for a page stream that must not hold its read lock while
//!   a slow consumer drains it: plain buffers or an unnamed file ([`image`]);
//! - memory or disk, for a decrypted backup being verified ([`plain`]),
//!   opened hardened and within bounds of memory and time ([`guard`]).
//!
//! No spool ever has a name in a directory, so none can outlive the process.
//! [`Place`] is the only place that decides between memory and disk.

pub mod guard;
pub mod image;
pub mod memdb;
pub mod plain;
pub mod vfs;

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::platform;

/// Reads of a spool and writes to the output go in pieces this big.
pub const IO_CHUNK: usize = 1 << 20;
/// Head-room on top of the database size before we call memory "comfortable".
const MEMORY_MARGIN: u64 = 64 << 20;
/// The most SQLite allocates in one piece (`SQLITE_MAX_ALLOCATION_SIZE` of
/// the bundled build): a memory spool is one allocation (memdb's store, or
/// the buffer a decrypted backup is checked in), so no image bigger than
/// this can be one.
pub const MAX_ONE_ALLOCATION: u64 = 2_147_483_391;

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpoolMode {
    #[default]
    Auto,
    Memory,
    Disk,
}

/// What was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolKind {
    Memory,
    Disk,
}

impl fmt::Display for SpoolKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpoolKind::Memory => "memory",
            SpoolKind::Disk => "disk",
        })
    }
}

/// The spool settings of a run: the mode asked for and the directory of a
/// disk spool (`None`: `$TMPDIR`, else `/tmp`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Place {
    pub mode: SpoolMode,
    pub tmpdir: Option<PathBuf>,
}

/// A disk spool's directory that cannot hold one.
#[derive(Debug)]
pub struct Unusable {
    pub dir: PathBuf,
    pub source: io::Error,
}

impl Place {
    /// The one rule. `auto` takes memory when the plaintext, of about
    /// `estimate` bytes, can be one SQLite allocation (plus 64 MiB, within
    /// [`MAX_ONE_ALLOCATION`]) and fits comfortably (plus 64 MiB, within half
    /// of the available memory: `MemAvailable` on Linux, see
    /// [`platform::mem_available`], and never more than the process's own
    /// limits allow, see [`platform::memory_limit`]), else disk; an unknown
    /// size or unknown memory means disk.
    pub fn choose(&self, estimate: Option<u64>) -> SpoolKind {
        let available = platform::mem_available().map(|a| platform::memory_limit().map_or(a, |l| a.min(l)));
        self.choose_with(estimate, available)
    }

    /// [`Place::choose`] with the available memory given.
    fn choose_with(&self, estimate: Option<u64>, available: Option<u64>) -> SpoolKind {
        match (self.mode, estimate) {
            (SpoolMode::Memory, _) => SpoolKind::Memory,
            (SpoolMode::Disk, _) => SpoolKind::Disk,
            (SpoolMode::Auto, None | Some(0)) => SpoolKind::Disk,
            (SpoolMode::Auto, Some(bytes)) => {
                let need = bytes.saturating_add(MEMORY_MARGIN);
                match available {
                    Some(avail) if need <= MAX_ONE_ALLOCATION && need <= avail / 2 => SpoolKind::Memory,
                    _ => SpoolKind::Disk,
                }
            }
        }
    }

    /// The directory a disk spool goes in.
    pub fn dir(&self) -> PathBuf {
        self.tmpdir.clone().unwrap_or_else(std::env::temp_dir)
    }

    /// Where a spool of `kind` lives, for messages: "memory" or the directory.
    pub fn location(&self, kind: SpoolKind) -> PathBuf {
        match kind {
            SpoolKind::Memory => PathBuf::from("memory"),
            SpoolKind::Disk => self.dir(),
        }
    }

    /// Fails now, not after a long run, when the disk spool's directory is
    /// unusable: an explicit directory always, the default one when a disk
    /// spool is asked for. Creating (and dropping) an unnamed file there is
    /// the only honest test of "writable".
    pub fn validate(&self) -> Result<(), Unusable> {
        if self.tmpdir.is_none() && self.mode != SpoolMode::Disk {
            return Ok(());
        }
        let dir = self.dir();
        vfs::unnamed_file(&dir).map(drop).map_err(|source| Unusable { dir, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_modes_win_and_auto_without_a_size_takes_disk() {
        let place = |mode| Place { mode, tmpdir: None };
        assert_eq!(place(SpoolMode::Memory).choose(None), SpoolKind::Memory);
        assert_eq!(place(SpoolMode::Disk).choose(Some(1)), SpoolKind::Disk);
        assert_eq!(place(SpoolMode::Auto).choose(None), SpoolKind::Disk);
        assert_eq!(place(SpoolMode::Auto).choose(Some(0)), SpoolKind::Disk);
        assert_eq!(place(SpoolMode::Auto).choose(Some(u64::MAX)), SpoolKind::Disk);
    }

    #[test]
    fn auto_takes_disk_for_an_image_that_cannot_be_one_allocation_or_lacks_memory() {
        let auto = Place { mode: SpoolMode::Auto, tmpdir: None };
        let plenty = Some(64u64 << 30);
        assert_eq!(auto.choose_with(Some(1 << 30), plenty), SpoolKind::Memory);
        assert_eq!(auto.choose_with(Some(MAX_ONE_ALLOCATION - MEMORY_MARGIN), plenty), SpoolKind::Memory);
        assert_eq!(auto.choose_with(Some(MAX_ONE_ALLOCATION - MEMORY_MARGIN + 1), plenty), SpoolKind::Disk);
        assert_eq!(auto.choose_with(Some(2_200_000_000), plenty), SpoolKind::Disk);
        // Memory short: half of what is available must hold it.
        assert_eq!(auto.choose_with(Some(100 << 20), Some(400 << 20)), SpoolKind::Memory);
        assert_eq!(auto.choose_with(Some(100 << 20), Some(200 << 20)), SpoolKind::Disk);
        assert_eq!(auto.choose_with(Some(100 << 20), None), SpoolKind::Disk);
        // An explicit memory spool is taken as asked; it then fails with a message.
        let memory = Place { mode: SpoolMode::Memory, tmpdir: None };
        assert_eq!(memory.choose_with(Some(2_200_000_000), plenty), SpoolKind::Memory);
    }
}
