//! The integration tests: one crate (one binary to build and link), one
//! module per tool or suite, all sharing one harness.
//!
//! `cargo test --test it wm_seal::` runs one module; `make reliability` runs
//! the three `reliability` modules at full counts.

mod fixture;
mod harness;

mod interop_go;
mod interop_pq;
mod launchd;
mod man;
mod powerloss;
mod reliability;
mod reliability_faults;
mod reliability_inputs;
mod reliability_restore;
mod secrets;
mod wm_prune;
mod wm_restore;
mod wm_seal;
mod wm_snapshot;
mod wm_verify;
mod workmem_backup;
