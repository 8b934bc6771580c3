//! Conditions as Rego: each node of a compiled condition becomes one rule
//! `<prefix>_<n>` whose value is the node's value and which is *undefined*
//! exactly when evaluating the node is an error. Errors therefore behave as
//! in the engine: `&&` and `||` are commutative (a deciding side wins over
//! an error on the other), comparisons need both sides numbers or both
//! strings, and so on.
//!
//! Counters come from the input: `session.calls` is `input.session_calls`,
//! `session.calls_of(t)` is `input.session_calls_of[t]` (0 when absent).

use std::fmt::Write;

use super::ir::{Const, Ir, Root, StrMethod};
use super::syntax::BinaryOp;

/// Rules computing a condition; `value` names the rule holding its result.
pub struct RegoCondition {
    /// The rules, one per line group.
    pub rules: String,
    /// The name of the rule with the condition's value.
    pub value: String,
}

/// A Rego string literal (JSON's escapes are Rego's).
pub fn string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

/// Translates a condition; rule names start with `prefix`.
pub fn translate(ir: &Ir, prefix: &str) -> RegoCondition {
    let mut translator = Translator { prefix, rules: String::new(), next: 0 };
    let value = translator.node(ir);
    RegoCondition { rules: translator.rules, value }
}

struct Translator<'p> {
    prefix: &'p str,
    rules: String,
    next: usize,
}

impl Translator<'_> {
    fn name(&mut self) -> String {
        self.next += 1;
        format!("{}_{}", self.prefix, self.next)
    }

    fn rule(&mut self, text: String) {
        self.rules.push_str(&text);
        self.rules.push('\n');
    }

    /// Emits the rules of a node; returns the name of the rule with its value.
    fn node(&mut self, ir: &Ir) -> String {
        let name = self.name();
        let n = &name;
        match ir {
            Ir::Const(c) => self.rule(format!("{n} := {}", constant(c))),
            Ir::List(items) => {
                let names: Vec<String> = items.iter().map(|i| self.node(i)).collect();
                self.rule(format!("{n} := [{}]", names.join(", ")));
            }
            Ir::Path(root, path) => {
                // Every step must be an object: `input.args.a.b` alone would
                // also index into arrays and strings.
                let mut body = Vec::new();
                let mut current = root_expr(*root).to_owned();
                for segment in path.iter() {
                    body.push(format!("is_object({current})"));
                    current = format!("{current}[{}]", string(segment));
                }
                body.push(format!("x := {current}"));
                self.rule(format!("{n} := x if {{ {} }}", body.join("; ")));
            }
            Ir::Has(root, path) => match path.split_last() {
                None => self.rule(format!("{n} := false")),
                Some((last, parents)) => {
                    let mut current = root_expr(*root).to_owned();
                    let mut body = Vec::new();
                    for segment in parents {
                        body.push(format!("is_object({current})"));
                        current = format!("{current}[{}]", string(segment));
                    }
                    body.push(format!("is_object({current})"));
                    body.push(format!("_ = {current}[{}]", string(last)));
                    self.rule(format!("{n} := true if {{ {} }} else := false", body.join("; ")));
                }
            },
            Ir::HasField(target, field) => {
                let t = self.node(target);
                let f = string(field);
                self.rule(format!(
                    "{n} := true if {{ is_object({t}); _ = {t}[{f}] }} else := false if {{ is_object({t}) }}"
                ));
            }
            Ir::Agent => self.rule(format!("{n} := input.agent")),
            Ir::Tool => self.rule(format!("{n} := input.tool")),
            Ir::SessionCalls => {
                self.rule(format!("{n} := input.session_calls if {{ is_number(input.session_calls) }}"))
            }
            Ir::SessionCallsOf(tool) => {
                let t = self.node(tool);
                self.rule(format!(
                    "{n} := object.get(input.session_calls_of, {t}, 0) if {{ is_string({t}); is_number(input.session_calls) }}"
                ));
            }
            Ir::Field(target, field) => {
                let t = self.node(target);
                self.rule(format!("{n} := {t}[{}] if {{ is_object({t}) }}", string(field)));
            }
            Ir::Index(target, index) => {
                let (t, i) = (self.node(target), self.node(index));
                self.rule(format!(
                    "{n} := {t}[{i}] if {{ is_object({t}); is_string({i}) }} else := {t}[{i}] if {{ is_array({t}); is_number({i}); {i} == floor({i}) }}"
                ));
            }
            Ir::Size(target) => {
                let t = self.node(target);
                self.rule(format!(
                    "{n} := count({t}) if {{ is_string({t}) }} else := count({t}) if {{ is_array({t}) }} else := count({t}) if {{ is_object({t}) }}"
                ));
            }
            Ir::StrMethod(method, target, arg) => {
                let (t, a) = (self.node(target), self.node(arg));
                let builtin = match method {
                    StrMethod::StartsWith => "startswith",
                    StrMethod::EndsWith => "endswith",
                    StrMethod::Contains => "contains",
                };
                self.rule(format!(
                    "{n} := true if {{ is_string({t}); is_string({a}); {builtin}({t}, {a}) }} else := false if {{ is_string({t}); is_string({a}) }}"
                ));
            }
            Ir::Matches(target, regex) => {
                let t = self.node(target);
                let r = string(regex.as_str());
                self.rule(format!(
                    "{n} := true if {{ is_string({t}); regex.match({r}, {t}) }} else := false if {{ is_string({t}) }}"
                ));
            }
            Ir::PathWithin(target, root) => {
                let t = self.node(target);
                let r = string(&root.text);
                // Undefined (an evaluation error) for a value that is not a
                // path that can be placed, as in the engine.
                self.rule(format!(
                    "{n} := true if {{ toolgate_path_within({t}, {r}) }} else := false if {{ toolgate_path({t}) }}"
                ));
            }
            Ir::Not(operand) => {
                let o = self.node(operand);
                self.rule(format!("{n} := false if {{ {o} == true }} else := true if {{ {o} == false }}"));
            }
            Ir::Neg(operand) => {
                let o = self.node(operand);
                self.rule(format!("{n} := 0 - {o} if {{ is_number({o}) }}"));
            }
            Ir::And(left, right) => {
                let (l, r) = (self.node(left), self.node(right));
                self.rule(format!(
                    "{n} := false if {{ {l} == false }} else := false if {{ {r} == false }} else := true if {{ {l} == true; {r} == true }}"
                ));
            }
            Ir::Or(left, right) => {
                let (l, r) = (self.node(left), self.node(right));
                self.rule(format!(
                    "{n} := true if {{ {l} == true }} else := true if {{ {r} == true }} else := false if {{ {l} == false; {r} == false }}"
                ));
            }
            Ir::Binary(op, left, right) => {
                let (l, r) = (self.node(left), self.node(right));
                self.binary(n, *op, &l, &r);
            }
        }
        name
    }

    fn binary(&mut self, n: &str, op: BinaryOp, l: &str, r: &str) {
        use BinaryOp::*;
        let comparable = format!("toolgate_comparable({l}, {r})");
        let numbers = format!("is_number({l}); is_number({r})");
        let integers = format!("{numbers}; {l} == floor({l}); {r} == floor({r})");
        let text = match op {
            Eq => format!("{n} := true if {{ {l} == {r} }} else := false if {{ _ = {l}; _ = {r} }}"),
            Ne => format!("{n} := false if {{ {l} == {r} }} else := true if {{ _ = {l}; _ = {r} }}"),
            Lt | Le | Gt | Ge => {
                let symbol = match op {
                    Lt => "<",
                    Le => "<=",
                    Gt => ">",
                    _ => ">=",
                };
                format!(
                    "{n} := true if {{ {comparable}; {l} {symbol} {r} }} else := false if {{ {comparable} }}"
                )
            }
            In => format!(
                // `l in r`, not `some x in r; x == l`: regorus's VM (0.14.1)
                // did not fall through to `else` when that iteration failed.
                "{n} := true if {{ is_array({r}); {l} in {r} }} else := false if {{ is_array({r}); _ = {l} }} \
                 else := true if {{ is_object({r}); is_string({l}); _ = {r}[{l}] }} else := false if {{ is_object({r}); is_string({l}) }}"
            ),
            // Integer arithmetic beyond 64 bits is an error in the engine:
            // undefined here (Rego has no 64-bit integers to overflow).
            Add => format!(
                "{n} := v if {{ {numbers}; v := {l} + {r}; toolgate_in_range({l}, {r}, v) }} else := concat(\"\", [{l}, {r}]) if {{ is_string({l}); is_string({r}) }} \
                 else := array.concat({l}, {r}) if {{ is_array({l}); is_array({r}) }}"
            ),
            Sub => format!("{n} := v if {{ {numbers}; v := {l} - {r}; toolgate_in_range({l}, {r}, v) }}"),
            Mul => format!("{n} := v if {{ {numbers}; v := {l} * {r}; toolgate_in_range({l}, {r}, v) }}"),
            // Integer division truncates toward zero, as in the engine.
            Div => format!(
                "{n} := ({l} - ({l} % {r})) / {r} if {{ {integers}; {r} != 0 }} else := {l} / {r} if {{ {numbers}; {r} != 0; not {l} == floor({l}) }} \
                 else := {l} / {r} if {{ {numbers}; {r} != 0; not {r} == floor({r}) }}"
            ),
            Rem => format!("{n} := {l} % {r} if {{ {integers}; {r} != 0 }}"),
            And | Or => String::new(),
        };
        self.rule(text);
    }
}

fn root_expr(root: Root) -> &'static str {
    match root {
        Root::Args => "input.args",
        Root::Principal => "input.principal",
        Root::Context => "input.context",
    }
}

fn constant(c: &Const) -> String {
    match c {
        Const::Null => String::from("null"),
        Const::Bool(b) => b.to_string(),
        Const::Int(i) => i.to_string(),
        Const::Float(f) => {
            let mut text = String::new();
            let _ = write!(text, "{f:?}");
            text
        }
        Const::Str(s) => string(s),
    }
}

/// Helpers every exported module with conditions needs.
pub const PRELUDE: &str = "\
toolgate_comparable(a, b) if { is_number(a); is_number(b) }
toolgate_comparable(a, b) if { is_string(a); is_string(b) }
toolgate_integer(x) if { is_number(x); x == floor(x) }
toolgate_has(o, k) if { _ = o[k] }
toolgate_in_range(a, b, _) if { not toolgate_integer(a) }
toolgate_in_range(a, b, _) if { not toolgate_integer(b) }
toolgate_in_range(_, _, v) if { v >= -9223372036854775808; v <= 9223372036854775807 }
toolgate_valid_name(name) if { is_string(name); regex.match(`^[A-Za-z0-9_./-]{1,256}$`, name) }
toolgate_path_dotdots(parts) := count([s | some s in parts; s == \"..\"])
toolgate_path_climbs(raw) if { some j, _ in raw; prefix := array.slice(raw, 0, j + 1); 2 * toolgate_path_dotdots(prefix) > count(prefix) }
toolgate_path_popped(raw, i) if { some j, _ in raw; j > i; after := array.slice(raw, i + 1, j + 1); 2 * toolgate_path_dotdots(after) > count(after) }
toolgate_path(p) := {\"absolute\": startswith(p, \"/\"), \"parts\": [s | some i, s in raw; s != \"..\"; not toolgate_path_popped(raw, i)]} if { is_string(p); p != \"\"; not contains(p, \"\\u0000\"); raw := [s | some s in split(p, \"/\"); s != \"\"; s != \".\"]; not toolgate_path_climbs(raw) }
toolgate_path_within(p, root) if { n := toolgate_path(p); r := toolgate_path(root); n.absolute == r.absolute; count(n.parts) >= count(r.parts); array.slice(n.parts, 0, count(r.parts)) == r.parts }
toolgate_path_within_any(p, roots) if { some root in roots; toolgate_path_within(p, root) }
";
