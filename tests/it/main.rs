//! The integration tests: one crate (one binary to build and link), one
//! module per tool or suite, all sharing one harness.
//!
//! `cargo test --test it wm_seal::` runs one module; `make reliability` runs
//! the three `reliability` modules at full counts.

mod fixture;
mod harness;

mod forget;
mod hostile_dirs;
mod hostile_images;
// The second-user race needs inotify, renameat2(RENAME_EXCHANGE) and /proc.
#[cfg(target_os = "linux")]
mod hostile_race;
mod interop_go;
mod interop_pq;
mod json_schema;
mod launchd;
mod man;
mod messages;
mod powerloss;
mod prune_restic;
mod reliability;
mod reliability_faults;
mod reliability_inputs;
mod reliability_large;
mod reliability_restore;
mod remote;
mod restore_copies;
mod secrets;
mod verify_history;
mod wm_keygen;
mod wm_prune;
mod wm_restore;
mod wm_seal;
mod wm_snapshot;
mod wm_verify;
mod workmem_backup;
