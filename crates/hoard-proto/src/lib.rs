//! Wire types of the GitHub Actions cache protocol, as hoard speaks it.
//!
//! Everything here is pure: parsing and rendering of what crosses the wire, no I/O.
//! Each parser takes untrusted input and answers with a typed error, never a panic.

pub mod azure;
pub mod blocklist;
pub mod range;
pub mod twirp;
pub mod twirp_error;
pub mod v1;
