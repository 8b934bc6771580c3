//! toolgate: a policy compiler and decision engine for AI agents' tool calls.
//!
//! # Layout
//!
//! The compiler is a pipeline of stages, each a module with a typed boundary:
//!
//! ```text
//! bytes ──yaml──▶ Node tree ──load──▶ ast::PolicyFile ──check──▶ CheckedPolicySet
//!       ──table──▶ DecisionTable ──engine──▶ Engine::decide(&Request) -> Decision
//! ```
//!
//! - [`yaml`]: YAML text → spanned node tree (safety limits, duplicate keys).
//! - [`load`]: node tree → [`ast`], every problem reported with its location.
//! - [`condition`]: the `when` language (pest grammar, type checker, evaluator).
//! - [`check`]: joins files, resolves `extends`, compiles patterns, params and
//!   conditions; warns about dead and shadowed rules.
//! - [`table`]: lays the checked set out for constant-time lookup.
//! - [`engine`]: decides requests; [`session`] holds the counters behind a trait.
//! - [`diagnostic`]: typed findings, rendered only at the edge.
//! - [`wire`]: the JSON Lines protocol of `eval` and the decision socket.
//! - [`files`]: reading policy paths from disk (the compiler's only I/O).
//!
//! # Example
//!
//! ```
//! use toolgate::{compile, engine::{Engine, Outcome, Request}, load::PolicySource};
//!
//! let source = PolicySource {
//!     name: "policy.yaml".into(),
//!     bytes: b"agentPolicies:\n  bot:\n    allowedTools: [search]\n".to_vec(),
//! };
//! let checked = compile(vec![source]);
//! let engine = Engine::new(checked.policy.expect("no errors"));
//! let request = Request { agent: "bot".into(), tool: "search".into(), ..Request::default() };
//! assert_eq!(engine.decide(&request).outcome, Outcome::Allow);
//! ```

pub mod approval;
pub mod ast;
pub mod atomic_file;
pub mod audit;
pub mod catalog;
pub mod check;
pub mod condition;
pub mod diagnostic;
pub mod diff;
pub mod durable;
pub mod engine;
pub mod export;
mod fast_map;
pub mod files;
pub mod kill;
pub mod lint;
pub mod load;
pub mod pattern;
pub mod rego;
pub mod server;
pub mod session;
pub mod source;
pub mod table;
pub mod testing;
pub mod wire;
pub mod yaml;

/// Loads and checks policy sources: the whole compiler front end. A policy
/// that names tool catalogs fails to compile here; use [`compile_with`].
pub fn compile(sources: Vec<load::PolicySource>) -> check::Checked {
    compile_with(sources, &load::NoFiles)
}

/// Loads and checks policy sources, reading the tool catalogs they name
/// with `catalogs` (e.g. [`files::DiskFiles`]).
pub fn compile_with(sources: Vec<load::PolicySource>, catalogs: &dyn load::FileReader) -> check::Checked {
    check::check(load::load(sources), catalogs)
}
