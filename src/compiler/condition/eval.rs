//! Evaluating compiled conditions against a request.
//!
//! Evaluation borrows from the request and the compiled policy and allocates
//! only where a result is new text or a new list (`+` on strings or lists).
//! Any failure is an [`EvalError`]; the engine turns it into the fail-closed
//! answer (a constraint fails, a gate applies).

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::ir::{Const, Ir, Root, StrMethod};
use super::syntax::BinaryOp;

/// Read access to the counters of the caller's session; `None` when the
/// request names no session (a condition reading it then fails).
pub trait SessionView {
    /// Allowed calls in this session so far, all tools.
    fn calls(&self) -> Option<u64>;
    /// Allowed calls of one tool in this session so far.
    fn calls_of(&self, tool: &str) -> Option<u64>;
}

/// The view of a request that names no session.
pub struct NoSession;

impl SessionView for NoSession {
    fn calls(&self) -> Option<u64> {
        None
    }
    fn calls_of(&self, _tool: &str) -> Option<u64> {
        None
    }
}

/// What a condition can see of a request.
pub struct Scope<'a> {
    /// The calling agent.
    pub agent: &'a str,
    /// The called tool.
    pub tool: &'a str,
    /// The call's arguments.
    pub args: &'a Map<String, Value>,
    /// Who the agent acts for, if the request says.
    pub principal: Option<&'a Value>,
    /// Free-form context, if the request carries it.
    pub context: Option<&'a Value>,
    /// The session's counters.
    pub session: &'a dyn SessionView,
}

/// Why a condition could not be evaluated on a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalError {
    /// A field or element the condition reads is absent.
    Missing,
    /// A value has a type the operation cannot take.
    Type,
    /// Integer arithmetic overflowed.
    Overflow,
    /// Division or remainder by zero.
    DivisionByZero,
    /// A path cannot be placed: it is empty, has a NUL byte, or its `..`
    /// climb above its start.
    NotAPath,
}

impl EvalError {
    /// A short description for decision reasons.
    pub fn describe(self) -> &'static str {
        match self {
            EvalError::Missing => "a value it reads is missing",
            EvalError::Type => "a value has the wrong type",
            EvalError::Overflow => "integer overflow",
            EvalError::DivisionByZero => "division by zero",
            EvalError::NotAPath => "a path cannot be placed",
        }
    }
}

/// A value during evaluation.
#[derive(Clone, Debug)]
enum Val<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Array(&'a [Value]),
    Map(&'a Map<String, Value>),
    List(Vec<Val<'a>>),
}

type Result<T> = std::result::Result<T, EvalError>;

impl<'a> Val<'a> {
    fn from_json(value: &'a Value) -> Self {
        match value {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Val::Int(i),
                None => Val::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => Val::Str(Cow::Borrowed(s)),
            Value::Array(items) => Val::Array(items),
            Value::Object(map) => Val::Map(map),
        }
    }

    fn from_const(constant: &'a Const) -> Self {
        match constant {
            Const::Null => Val::Null,
            Const::Bool(b) => Val::Bool(*b),
            Const::Int(i) => Val::Int(*i),
            Const::Float(f) => Val::Float(*f),
            Const::Str(s) => Val::Str(Cow::Borrowed(s)),
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            Val::Int(i) => Some(*i as f64),
            Val::Float(f) => Some(*f),
            _ => None,
        }
    }

    fn items(&self) -> Option<Vec<Val<'a>>> {
        match self {
            Val::List(items) => Some(items.clone()),
            Val::Array(items) => Some(items.iter().map(Val::from_json).collect()),
            _ => None,
        }
    }
}

/// Evaluates a compiled boolean condition.
pub fn eval_bool(ir: &Ir, scope: &Scope<'_>) -> Result<bool> {
    match eval(ir, scope)? {
        Val::Bool(b) => Ok(b),
        _ => Err(EvalError::Type),
    }
}

fn eval<'a>(ir: &'a Ir, scope: &Scope<'a>) -> Result<Val<'a>> {
    Ok(match ir {
        Ir::Const(c) => Val::from_const(c),
        Ir::List(items) => Val::List(items.iter().map(|i| eval(i, scope)).collect::<Result<_>>()?),
        Ir::Path(root, path) => walk(scope, *root, path)?,
        Ir::Has(root, path) => Val::Bool(has(scope, *root, path)),
        Ir::HasField(target, field) => match eval(target, scope)? {
            Val::Map(map) => Val::Bool(map.contains_key(&**field)),
            _ => return Err(EvalError::Type),
        },
        Ir::Agent => Val::Str(Cow::Borrowed(scope.agent)),
        Ir::Tool => Val::Str(Cow::Borrowed(scope.tool)),
        Ir::SessionCalls => Val::Int(clamp(scope.session.calls().ok_or(EvalError::Missing)?)),
        Ir::SessionCallsOf(tool) => match eval(tool, scope)? {
            Val::Str(tool) => Val::Int(clamp(scope.session.calls_of(&tool).ok_or(EvalError::Missing)?)),
            _ => return Err(EvalError::Type),
        },
        Ir::Field(target, field) => match eval(target, scope)? {
            Val::Map(map) => map.get(&**field).map(Val::from_json).ok_or(EvalError::Missing)?,
            _ => return Err(EvalError::Type),
        },
        Ir::Index(target, index) => index_into(eval(target, scope)?, eval(index, scope)?)?,
        Ir::Size(target) => Val::Int(clamp(match eval(target, scope)? {
            Val::Str(s) => s.chars().count() as u64,
            Val::Array(items) => items.len() as u64,
            Val::List(items) => items.len() as u64,
            Val::Map(map) => map.len() as u64,
            _ => return Err(EvalError::Type),
        })),
        Ir::StrMethod(method, target, arg) => {
            let (Val::Str(s), Val::Str(a)) = (eval(target, scope)?, eval(arg, scope)?) else {
                return Err(EvalError::Type);
            };
            Val::Bool(match method {
                StrMethod::StartsWith => s.starts_with(&*a),
                StrMethod::EndsWith => s.ends_with(&*a),
                StrMethod::Contains => s.contains(&*a),
            })
        }
        Ir::Matches(target, regex) => match eval(target, scope)? {
            Val::Str(s) => Val::Bool(regex.is_match(&s)),
            _ => return Err(EvalError::Type),
        },
        Ir::PathWithin(target, root) => match eval(target, scope)? {
            Val::Str(s) => {
                Val::Bool(root.holds(&crate::compiler::path::normalize(&s).ok_or(EvalError::NotAPath)?))
            }
            _ => return Err(EvalError::Type),
        },
        Ir::Not(operand) => match eval(operand, scope)? {
            Val::Bool(b) => Val::Bool(!b),
            _ => return Err(EvalError::Type),
        },
        Ir::Neg(operand) => match eval(operand, scope)? {
            Val::Int(i) => Val::Int(i.checked_neg().ok_or(EvalError::Overflow)?),
            Val::Float(f) => Val::Float(-f),
            _ => return Err(EvalError::Type),
        },
        Ir::And(left, right) => logic(eval(left, scope), || eval(right, scope), false)?,
        Ir::Or(left, right) => logic(eval(left, scope), || eval(right, scope), true)?,
        Ir::Binary(op, left, right) => binary(*op, eval(left, scope)?, eval(right, scope)?)?,
    })
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// CEL's commutative `&&`/`||`: a deciding value on either side wins over an
/// error on the other.
fn logic<'a>(
    left: Result<Val<'a>>,
    right: impl FnOnce() -> Result<Val<'a>>,
    decisive: bool,
) -> Result<Val<'a>> {
    let left = match left {
        Ok(Val::Bool(b)) if b == decisive => return Ok(Val::Bool(b)),
        Ok(Val::Bool(_)) => Ok(()),
        Ok(_) => Err(EvalError::Type),
        Err(e) => Err(e),
    };
    match right()? {
        Val::Bool(b) if b == decisive => Ok(Val::Bool(b)),
        Val::Bool(b) => left.map(|()| Val::Bool(b)),
        _ => Err(EvalError::Type),
    }
}

fn root_value<'a>(scope: &Scope<'a>, root: Root) -> Result<Val<'a>> {
    match root {
        Root::Args => Ok(Val::Map(scope.args)),
        Root::Principal => scope.principal.map(Val::from_json).ok_or(EvalError::Missing),
        Root::Context => scope.context.map(Val::from_json).ok_or(EvalError::Missing),
    }
}

fn walk<'a>(scope: &Scope<'a>, root: Root, path: &[Box<str>]) -> Result<Val<'a>> {
    let mut current = root_value(scope, root)?;
    for segment in path {
        current = match current {
            Val::Map(map) => map.get(&**segment).map(Val::from_json).ok_or(EvalError::Missing)?,
            _ => return Err(EvalError::Type),
        };
    }
    Ok(current)
}

fn has(scope: &Scope<'_>, root: Root, path: &[Box<str>]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    match walk(scope, root, parents) {
        Ok(Val::Map(map)) => map.contains_key(&**last),
        _ => false,
    }
}

fn index_into<'a>(target: Val<'a>, index: Val<'a>) -> Result<Val<'a>> {
    match (target, index) {
        (Val::Map(map), Val::Str(key)) => map.get(&*key).map(Val::from_json).ok_or(EvalError::Missing),
        (Val::Array(items), Val::Int(i)) => {
            usize::try_from(i).ok().and_then(|i| items.get(i)).map(Val::from_json).ok_or(EvalError::Missing)
        }
        (Val::List(items), Val::Int(i)) => {
            usize::try_from(i).ok().and_then(|i| items.into_iter().nth(i)).ok_or(EvalError::Missing)
        }
        _ => Err(EvalError::Type),
    }
}

fn equal(a: &Val<'_>, b: &Val<'_>) -> bool {
    match (a, b) {
        (Val::Null, Val::Null) => true,
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Int(x), Val::Int(y)) => x == y,
        (Val::Str(x), Val::Str(y)) => x == y,
        (Val::Int(_) | Val::Float(_), Val::Int(_) | Val::Float(_)) => a.as_f64() == b.as_f64(),
        (Val::Map(x), Val::Map(y)) => x == y,
        (Val::Array(_) | Val::List(_), Val::Array(_) | Val::List(_)) => match (a.items(), b.items()) {
            (Some(x), Some(y)) => x.len() == y.len() && x.iter().zip(&y).all(|(p, q)| equal(p, q)),
            _ => false,
        },
        _ => false,
    }
}

fn order(a: &Val<'_>, b: &Val<'_>) -> Result<Ordering> {
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => Ok(x.cmp(y)),
        (Val::Str(x), Val::Str(y)) => Ok(x.cmp(y)),
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x.partial_cmp(&y).ok_or(EvalError::Type),
            _ => Err(EvalError::Type),
        },
    }
}

fn binary<'a>(op: BinaryOp, left: Val<'a>, right: Val<'a>) -> Result<Val<'a>> {
    use BinaryOp::*;
    Ok(match op {
        Eq => Val::Bool(equal(&left, &right)),
        Ne => Val::Bool(!equal(&left, &right)),
        Lt => Val::Bool(order(&left, &right)? == Ordering::Less),
        Le => Val::Bool(order(&left, &right)? != Ordering::Greater),
        Gt => Val::Bool(order(&left, &right)? == Ordering::Greater),
        Ge => Val::Bool(order(&left, &right)? != Ordering::Less),
        In => Val::Bool(match &right {
            Val::List(_) | Val::Array(_) => {
                right.items().unwrap_or_default().iter().any(|item| equal(&left, item))
            }
            Val::Map(map) => match &left {
                Val::Str(key) => map.contains_key(&**key),
                _ => return Err(EvalError::Type),
            },
            _ => return Err(EvalError::Type),
        }),
        Add => match (left, right) {
            (Val::Int(x), Val::Int(y)) => Val::Int(x.checked_add(y).ok_or(EvalError::Overflow)?),
            (Val::Str(x), Val::Str(y)) => Val::Str(Cow::Owned(format!("{x}{y}"))),
            (l @ (Val::List(_) | Val::Array(_)), r @ (Val::List(_) | Val::Array(_))) => {
                let mut items = l.items().unwrap_or_default();
                items.extend(r.items().unwrap_or_default());
                Val::List(items)
            }
            (l, r) => Val::Float(float_op(&l, &r, |x, y| x + y)?),
        },
        Sub | Mul | Div | Rem => match (left, right) {
            (Val::Int(x), Val::Int(y)) => Val::Int(
                match op {
                    Sub => x.checked_sub(y),
                    Mul => x.checked_mul(y),
                    Div if y == 0 => return Err(EvalError::DivisionByZero),
                    Div => x.checked_div(y),
                    Rem if y == 0 => return Err(EvalError::DivisionByZero),
                    _ => x.checked_rem(y),
                }
                .ok_or(EvalError::Overflow)?,
            ),
            (_, _) if op == Rem => return Err(EvalError::Type),
            (l, r) => Val::Float(match op {
                Sub => float_op(&l, &r, |x, y| x - y)?,
                Mul => float_op(&l, &r, |x, y| x * y)?,
                _ if r.as_f64() == Some(0.0) => return Err(EvalError::DivisionByZero),
                _ => float_op(&l, &r, |x, y| x / y)?,
            }),
        },
        And | Or => return Err(EvalError::Type),
    })
}

fn float_op(left: &Val<'_>, right: &Val<'_>, f: impl Fn(f64, f64) -> f64) -> Result<f64> {
    match (left.as_f64(), right.as_f64()) {
        (Some(x), Some(y)) => {
            let result = f(x, y);
            if result.is_finite() { Ok(result) } else { Err(EvalError::Overflow) }
        }
        _ => Err(EvalError::Type),
    }
}
