//! The library behind `wm-snapshot`, `wm-seal`, `workmem-backup` and `wm-verify`.
//!
//! Data flows one way: [`source`] finds the database, [`snapshot`] takes a
//! consistent image of it (through a [`spool`] when it must), [`seal`]
//! encrypts a stream with age for [`recipients`], and [`output`] lands the
//! result durably and atomically. Back the other way, for checking only:
//! [`unseal`] opens an age file with [`identity`] files (or the file key
//! [`seal`] kept) and says exactly what is wrong with a bad one, and
//! [`verify`] proves the database inside restores, in memory or an unnamed
//! spool. [`signals`] turns SIGINT/SIGTERM into a value every stage checks.
//! The library never prints, parses arguments or exits: the binaries do
//! that, all through [`error::Error`].

pub mod error;
pub mod header;
pub mod identity;
pub mod output;
pub mod progress;
pub mod recipients;
pub mod seal;
pub mod signals;
pub mod snapshot;
pub mod source;
pub mod spool;
pub mod unseal;
pub mod verify;
mod vfs;

pub use error::{Error, Stop};
