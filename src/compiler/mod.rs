//! The compiler: policy sources → a [`CheckedPolicySet`], every problem
//! reported as a located [`crate::diagnostic::Diagnostic`].
//!
//! ```text
//! bytes ──yaml──▶ Node tree ──load──▶ ast::PolicyFile ──check──▶ CheckedPolicySet
//! ```
//!
//! No stage does I/O except through the [`FileReader`] the caller hands to
//! [`compile`]; nothing here knows about decisions, state or transports.

pub mod approvers;
pub mod ast;
pub mod catalog;
pub mod check;
pub mod checked;
pub mod condition;
pub mod files;
pub mod load;
pub mod names;
pub mod params;
pub mod path;
pub mod pattern;
pub mod privacy;
pub mod rego_bounds;
pub mod rego_vm;
pub mod yaml;

pub use check::CheckResult;
pub use checked::CheckedPolicySet;
pub use files::{DiskFiles, FileReader, NoFiles, PolicySource};

/// Compiles policy sources: loads and checks them, reading the tool
/// catalogs and Rego modules they name through `files` ([`DiskFiles`] from
/// disk, [`NoFiles`] for a policy that names none).
pub fn compile(sources: Vec<PolicySource>, files: &dyn FileReader) -> CheckResult {
    check::check(load::load(sources), files)
}
