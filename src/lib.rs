//! toolgate: a policy compiler and decision engine for AI agents' tool calls.

pub mod diagnostic;
pub mod source;
pub mod yaml;
