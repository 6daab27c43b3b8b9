//! The library behind `wm-snapshot`, `wm-seal`, `workmem-backup` and `wm-verify`.
//!
//! Data flows one way, and each floor only uses the floors below it:
//!
//! 1. [`stop`], [`buffer`], [`platform`]: the ground every module stands on
//!    (how a run stops, how causes are worded, the [`stop::Failure`] trait;
//!    where Linux and the other Unixes differ, written once); [`harden`]:
//!    no core dump of a process that holds keys or plaintext.
//! 2. [`signals`], [`progress`], then [`run`]: one run's context.
//! 3. [`report`]: what the tools report, as plain serde data.
//! 4. [`sqlite`]: find the database, open it read-only, take a consistent
//!    image ([`sqlite::snapshot`]) through a [`spool`] when it must.
//! 5. [`age`]: encrypt a stream for recipients ([`age::seal`]); read an age
//!    file back and place every failure ([`age::open`]).
//! 6. [`output`]: standard output, or a durable atomic file, never the source;
//!    [`hash`]: the SHA-256 of what was written, for reports.
//! 7. [`verify`]: prove that a backup restores, in memory or an unnamed spool.
//!    [`prune`]: the names of timestamped backups and the retention policy
//!    that keeps some of them (uses [`clock`]); [`metrics`]: the
//!    textfile-collector report of a backup run (uses [`output`]).
//! 8. [`error`]: the aggregate the binaries report; no library module uses it.
//!
//! The library never prints, parses arguments or exits.

pub mod age;
pub mod buffer;
pub mod check;
pub mod clock;
pub mod error;
pub mod harden;
pub mod hash;
pub mod metrics;
pub mod output;
pub mod platform;
pub mod progress;
pub mod prune;
pub mod report;
pub mod restore;
pub mod run;
pub mod signals;
pub mod spool;
pub mod sqlite;
pub mod stop;
pub mod verify;

pub use error::Error;
