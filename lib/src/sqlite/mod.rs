//! Everything that reads SQLite: where the database is ([`resolve`]), its
//! header ([`header`]), opening it read-only ([`source`]) and taking a
//! consistent image of it ([`snapshot`]).

pub mod header;
pub mod lock;
pub mod resolve;
pub mod snapshot;
pub mod source;
