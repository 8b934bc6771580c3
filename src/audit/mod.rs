//! The audit trail: an append-only JSON Lines file in which every record
//! carries the hash of the one before it (see [`chain`]), so that any edit,
//! removal or reordering is detected by [`verify`].

pub mod chain;
pub mod key;
pub mod record;
pub mod sink;
pub mod verify;
pub mod writer;

pub use chain::Sealer;
pub use key::{AuditKey, KeyError};
pub use sink::{AuditSink, Sync};
pub use verify::{Break, BreakAt, TrailError, Verified, Verifier, verify_trail};
pub use writer::{AuditWriter, rotated_name, trail_files};
