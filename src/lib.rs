//! toolgate: a policy compiler and decision engine for AI agents' tool calls.
//!
//! # Layout
//!
//! Each folder is a layer; a layer imports only the ones listed before it.
//!
//! - [`source`], [`hash`], [`diagnostic`]: policy text with positions, hashing,
//!   typed findings rendered only at the edge.
//! - [`compiler`]: policy sources → spanned YAML → AST → [`CheckedPolicySet`].
//! - [`state`]: what decisions read and write besides the policy (session
//!   counters, kills, approvals, the clock), behind traits; memory and redb.
//! - [`engine`]: the decision table and `decide`.
//! - [`audit`]: the hash-chained audit trail, its writer, sink and verifier.
//! - [`protocol`]: the JSON Lines wire format, typed operations and framing.
//! - [`service`]: the running gateway core, transport-free: decide, approvals,
//!   audit records, metrics, admin operations, reload.
//! - [`server`]: the Unix-socket transport of the service.
//! - [`proxy`]: the MCP stdio intermediary, deciding calls through the service.
//! - [`console`]: the approvals console and the Prometheus endpoint (HTTP).
//! - [`authoring`]: tools for policy authors (lint, tests, diff, Rego export
//!   and the differential oracle).
//!
//! The binary (`main.rs`, `cli/`) turns command lines into settings and
//! calls these layers; it holds no logic of its own beyond exit statuses.
//!
//! # Example
//!
//! ```
//! use toolgate::{NoFiles, PolicySource, compile, engine::{Engine, Outcome, Request}, state::State};
//!
//! let source = PolicySource {
//!     name: "policy.yaml".into(),
//!     bytes: b"agentPolicies:\n  bot:\n    allowedTools: [search]\n".to_vec(),
//! };
//! let checked = compile(vec![source], &NoFiles);
//! let engine = Engine::new(checked.policy.expect("no errors"), State::in_memory());
//! let request = Request { agent: "bot".into(), tool: "search".into(), ..Request::default() };
//! assert_eq!(engine.decide(&request).outcome, Outcome::Allow);
//! ```

pub mod audit;
pub mod authoring;
pub mod compiler;
pub mod console;
pub mod diagnostic;
pub mod engine;
pub mod hash;
pub mod output;
pub mod protocol;
pub mod proxy;
pub mod server;
pub mod service;
pub mod source;
pub mod state;

pub use compiler::{CheckedPolicySet, DiskFiles, FileReader, NoFiles, PolicySource, compile};
