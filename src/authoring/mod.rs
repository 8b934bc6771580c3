//! Tools for policy authors, working on a checked policy set: lint rules,
//! the `*.test.yaml` runner, the semantic diff, the Rego export and the
//! differential oracle that runs it. (Not `tools/`: in toolgate a "tool"
//! is an MCP tool.)

pub mod diff;
pub mod export;
pub mod lint;
pub mod rego_oracle;
pub mod testing;
