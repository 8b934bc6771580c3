//! Requests: the engine's input.

use serde_json::{Map, Value};

/// One tool call an agent wants to make.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Request {
    /// The calling agent's name.
    pub agent: String,
    /// The tool, optionally server-qualified (`github/create_issue`).
    pub tool: String,
    /// The call's arguments.
    pub args: Map<String, Value>,
    /// The session id; needed when the agent has caps.
    pub session: Option<String>,
    /// Who the agent acts for (free-form).
    pub principal: Option<Value>,
    /// Anything else the gateway knows (free-form).
    pub context: Option<Value>,
    /// A granted approval for exactly this call (from an earlier
    /// `require_approval` answer).
    pub approval: Option<String>,
    /// The tool's MCP annotations as its server lists them, for `where`
    /// selectors on servers no catalog describes: the server's claims.
    /// `None`: the call carries none, and the MCP defaults apply.
    pub annotations: Option<crate::compiler::catalog::Hints>,
}

impl Request {
    /// The call as an approval is bound to it.
    pub fn call(&self) -> crate::state::approval::Call<'_> {
        crate::state::approval::Call {
            agent: &self.agent,
            session: self.session.as_deref(),
            tool: &self.tool,
            args: &self.args,
            principal: self.principal.as_ref(),
            context: self.context.as_ref(),
        }
    }

    /// The input a `rego:` rule sees: the request's fields (`agent`, `tool`,
    /// `args`, and `principal`, `context`, `session` and `annotations` when
    /// given; annotations with every member explicit).
    pub fn rego_input(&self) -> Value {
        let mut input = Map::new();
        input.insert(String::from("agent"), Value::from(self.agent.as_str()));
        input.insert(String::from("tool"), Value::from(self.tool.as_str()));
        input.insert(String::from("args"), Value::Object(self.args.clone()));
        let optional = [
            ("principal", self.principal.clone()),
            ("context", self.context.clone()),
            ("session", self.session.clone().map(Value::String)),
            ("annotations", self.annotations.map(|hints| Value::Object(hints.to_annotations()))),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                input.insert(key.to_owned(), value);
            }
        }
        Value::Object(input)
    }
}
