//! Output policy: what an allowed call's result may carry before the model
//! sees it. Built-in detectors (credentials, personal data, prompt
//! injection) and a policy's own patterns find things in the text; each
//! rule's action redacts them, withholds the result, flags it, or also
//! kills the session; budgets in bytes and estimated tokens truncate or
//! withhold what is too large.
//!
//! This layer knows MCP tool results as JSON and nothing of policies'
//! files or of the engine: the compiler builds [`OutputRules`] and a
//! [`Scanner`] per agent, and the service applies them.

pub mod apply;
pub mod budget;
pub mod catalogue;
pub mod check;
pub mod content;
pub mod rules;
pub mod scan;

pub use apply::{Applied, Finding, OUTPUT_META, Verdict, apply};
pub use catalogue::{BUILTIN, BuiltinRule, Class, PersonalKind};
pub use rules::{Action, OutputRules, Oversize};
pub use scan::{PolicyPattern, Scanner};
