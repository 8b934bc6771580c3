//! toolgate: a policy compiler and decision engine for AI agents' tool calls.

pub mod ast;
pub mod check;
pub mod condition;
pub mod diagnostic;
pub mod load;
pub mod pattern;
pub mod source;
pub mod yaml;
