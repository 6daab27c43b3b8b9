//! The age v1 format: its constants, keys and header ([`format`]), who can
//! decrypt ([`recipients`], [`identity`]), the parallel STREAM writer
//! ([`seal`]) and the reader that places every failure ([`open`]).

#[cfg(test)]
mod differential;
pub mod format;
#[cfg(test)]
mod fuzz;
pub mod hostile;
pub mod identity;
pub mod keygen;
pub mod open;
pub mod pq;
pub mod recipients;
pub mod seal;
#[cfg(test)]
mod testkit;
mod xwing;
