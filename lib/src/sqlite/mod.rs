//! Everything that reads SQLite: where the database is ([`resolve`]), its
//! header ([`header`]), opening it read-only ([`source`]), taking a
//! consistent image of it ([`snapshot`]). Opening an untrusted image
//! within bounds is the spool's ([`crate::spool::guard`]).

pub mod header;
pub mod lock;
pub mod resolve;
pub mod snapshot;
pub mod source;
