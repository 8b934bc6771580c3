//! State: what decisions read and write besides the policy — session
//! counters, kills and approvals.

pub mod approval;
pub mod atomic_file;
pub mod durable;
pub mod kill;
pub mod session;
