//! The age v1 format: its constants, keys and header ([`format`]), who can
//! decrypt ([`recipients`], [`identity`]), the parallel STREAM writer
//! ([`seal`]) and the reader that places every failure ([`open`]).

pub mod format;
pub mod identity;
pub mod open;
pub mod pq;
pub mod recipients;
pub mod seal;
mod xwing;
