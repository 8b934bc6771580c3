//! The compiled form of a condition: names resolved, paths flattened,
//! regular expressions compiled. Only [`super::lower`] builds it.

use regex::Regex;

use super::syntax::BinaryOp;

/// A compiled expression.
#[derive(Clone, Debug)]
pub enum Ir {
    /// A constant.
    Const(Const),
    /// A list literal.
    List(Box<[Ir]>),
    /// A fixed path below a request object: `args.a["b"]`.
    Path(Root, Box<[Box<str>]>),
    /// `has(<root>.a.b)`.
    Has(Root, Box<[Box<str>]>),
    /// `has(<expr>.field)` on a computed value.
    HasField(Box<Ir>, Box<str>),
    /// The calling agent's name.
    Agent,
    /// The called tool's name.
    Tool,
    /// `session.calls`.
    SessionCalls,
    /// `session.calls_of(tool)`.
    SessionCallsOf(Box<Ir>),
    /// `x.field` on a computed value.
    Field(Box<Ir>, Box<str>),
    /// `x[i]` with a computed index.
    Index(Box<Ir>, Box<Ir>),
    /// `size(x)`.
    Size(Box<Ir>),
    /// A string method with one string argument.
    StrMethod(StrMethod, Box<Ir>, Box<Ir>),
    /// `x.matches('re')`.
    Matches(Box<Ir>, Box<Regex>),
    /// `pathWithin(x, 'root')`.
    PathWithin(Box<Ir>, Box<crate::compiler::path::PathRoot>),
    /// `!x`.
    Not(Box<Ir>),
    /// `-x`.
    Neg(Box<Ir>),
    /// `a && b`.
    And(Box<Ir>, Box<Ir>),
    /// `a || b`.
    Or(Box<Ir>, Box<Ir>),
    /// Every other infix operator.
    Binary(BinaryOp, Box<Ir>, Box<Ir>),
}

/// A constant value.
#[derive(Clone, Debug, PartialEq)]
pub enum Const {
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(Box<str>),
}

/// The objects a request carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Root {
    /// `args`.
    Args,
    /// `principal`.
    Principal,
    /// `context`.
    Context,
}

/// String methods taking one string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrMethod {
    /// `startsWith`.
    StartsWith,
    /// `endsWith`.
    EndsWith,
    /// `contains`.
    Contains,
}
