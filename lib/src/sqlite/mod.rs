//! Everything that reads SQLite: where the database is ([`resolve`]), its
//! header ([`header`]), opening it read-only ([`source`]), taking a
//! consistent image of it ([`snapshot`]), and opening an untrusted image
//! within bounds ([`guard`]).

pub mod guard;
pub mod header;
pub mod lock;
pub mod resolve;
pub mod snapshot;
pub mod source;
