//! Type checking and lowering: [`Expr`] → [`Ir`].
//!
//! Types are checked as far as the policy declares them: `args.<name>` has
//! the type of its `params.<name>.type` when one is given, and is dynamic
//! otherwise; `principal` and `context` are always dynamic.

use std::collections::HashMap;

use regex::RegexBuilder;

use super::ConditionError;
use super::ir::{Const, Ir, Root, StrMethod};
use super::syntax::{BinaryOp, Expr, ExprKind, UnaryOp};
use crate::diagnostic::Code;

/// The most memory one compiled regular expression may take.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The static type of an expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    /// A boolean.
    Bool,
    /// An integer.
    Int,
    /// A floating-point number (integers convert).
    Double,
    /// A string.
    String,
    /// Only `null`.
    Null,
    /// A list.
    List,
    /// A map (JSON object).
    Map,
    /// Not known until the request arrives.
    Dyn,
    /// The `session` object, usable only through its members.
    Session,
}

impl Type {
    /// How messages name it.
    pub fn describe(self) -> &'static str {
        match self {
            Type::Bool => "a boolean",
            Type::Int => "an integer",
            Type::Double => "a number",
            Type::String => "a string",
            Type::Null => "null",
            Type::List => "a list",
            Type::Map => "a map",
            Type::Dyn => "a value",
            Type::Session => "`session`",
        }
    }

    fn is_numeric(self) -> bool {
        matches!(self, Type::Int | Type::Double | Type::Dyn)
    }

    fn fits(self, wanted: Type) -> bool {
        self == wanted || self == Type::Dyn || (wanted == Type::Double && self == Type::Int)
    }
}

/// What the checker knows about the names a condition may use.
#[derive(Clone, Debug, Default)]
pub struct TypeEnv {
    /// Declared types of arguments (from `params.<name>.type` or the tool's
    /// `inputSchema`).
    pub args: HashMap<String, Type>,
    /// The only argument names the tool takes, when a catalog says so.
    pub known_args: Option<Vec<String>>,
}

const VARIABLES: [&str; 6] = ["args", "agent", "tool", "session", "principal", "context"];
const FUNCTIONS: [&str; 3] = ["has", "size", "pathWithin"];
const METHODS: [&str; 5] = ["startsWith", "endsWith", "contains", "matches", "size"];

/// Checks an expression and lowers it; the result must be a boolean.
pub fn lower(expr: &Expr, env: &TypeEnv) -> Result<Ir, Vec<ConditionError>> {
    let mut lowerer = Lowerer { env, errors: Vec::new() };
    let (ir, ty) = lowerer.expr(expr);
    if !ty.fits(Type::Bool) && lowerer.errors.is_empty() {
        lowerer.errors.push(
            ConditionError::new(
                Code::ConditionType,
                format!("condition is {}, not a boolean", ty.describe()),
                expr.span,
            )
            .with_help("a condition must be true or false, e.g. `args.amount > 100`"),
        );
    }
    if lowerer.errors.is_empty() { Ok(ir) } else { Err(lowerer.errors) }
}

struct Lowerer<'e> {
    env: &'e TypeEnv,
    errors: Vec<ConditionError>,
}

impl Lowerer<'_> {
    /// The type of `args.<name>`; an error if the tool takes no such argument.
    fn arg_type(&mut self, name: &str, span: crate::source::Span) -> Type {
        if let Some(known) = &self.env.known_args
            && !known.iter().any(|k| k == name)
        {
            let mut error = ConditionError::new(
                Code::UnknownArgument,
                format!("the tool takes no argument `{name}`"),
                span,
            )
            .with_help(format!(
                "its inputSchema names: {}",
                known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
            ));
            error = error.with_suggestion(name, known.iter().map(String::as_str));
            self.errors.push(error);
        }
        self.env.args.get(name).copied().unwrap_or(Type::Dyn)
    }

    fn error(&mut self, error: ConditionError) -> (Ir, Type) {
        self.errors.push(error);
        (Ir::Const(Const::Null), Type::Dyn)
    }

    fn expect(&mut self, expr: &Expr, wanted: Type, role: &str) -> Ir {
        let (ir, ty) = self.expr(expr);
        if !ty.fits(wanted) {
            self.errors.push(ConditionError::new(
                Code::ConditionType,
                format!("{role} must be {}, found {}", wanted.describe(), ty.describe()),
                expr.span,
            ));
        }
        ir
    }

    fn expr(&mut self, expr: &Expr) -> (Ir, Type) {
        match &expr.kind {
            ExprKind::Null => (Ir::Const(Const::Null), Type::Null),
            ExprKind::Bool(b) => (Ir::Const(Const::Bool(*b)), Type::Bool),
            ExprKind::Int(i) => (Ir::Const(Const::Int(*i)), Type::Int),
            ExprKind::Float(f) => (Ir::Const(Const::Float(*f)), Type::Double),
            ExprKind::Str(s) => (Ir::Const(Const::Str(s.as_str().into())), Type::String),
            ExprKind::List(items) => {
                let items = items.iter().map(|i| self.expr(i).0).collect();
                (Ir::List(items), Type::List)
            }
            ExprKind::Ident(name) => self.ident(name, expr),
            ExprKind::Member { target, field } => self.member(target, field, expr),
            ExprKind::Index { target, index } => self.index(target, index),
            ExprKind::Call { function, function_span, receiver, args } => match receiver {
                Some(receiver) => self.method(function, *function_span, receiver, args, expr),
                None => self.function(function, *function_span, args, expr),
            },
            ExprKind::Unary { op: UnaryOp::Not, operand } => {
                (Ir::Not(Box::new(self.expect(operand, Type::Bool, "the operand of `!`"))), Type::Bool)
            }
            ExprKind::Unary { op: UnaryOp::Neg, operand } => {
                let (ir, ty) = self.expr(operand);
                if !ty.is_numeric() {
                    return self.error(ConditionError::new(
                        Code::ConditionType,
                        format!("`-` needs a number, found {}", ty.describe()),
                        operand.span,
                    ));
                }
                (Ir::Neg(Box::new(ir)), ty)
            }
            ExprKind::Binary { op, left, right } => self.binary(*op, left, right, expr),
        }
    }

    fn ident(&mut self, name: &str, expr: &Expr) -> (Ir, Type) {
        match name {
            "agent" => (Ir::Agent, Type::String),
            "tool" => (Ir::Tool, Type::String),
            "args" => (Ir::Path(Root::Args, Box::new([])), Type::Map),
            "principal" => (Ir::Path(Root::Principal, Box::new([])), Type::Map),
            "context" => (Ir::Path(Root::Context, Box::new([])), Type::Map),
            "session" => (Ir::Const(Const::Null), Type::Session),
            _ => {
                let mut error = ConditionError::new(
                    Code::UnknownVariable,
                    format!("unknown variable `{name}`"),
                    expr.span,
                )
                .with_help(format!("conditions can use {}", VARIABLES.map(|v| format!("`{v}`")).join(", ")));
                error = error.with_suggestion(name, VARIABLES);
                self.error(error)
            }
        }
    }

    fn member(&mut self, target: &Expr, field: &str, expr: &Expr) -> (Ir, Type) {
        let (ir, ty) = self.expr(target);
        match (ir, ty) {
            (_, Type::Session) => match field {
                "calls" => (Ir::SessionCalls, Type::Int),
                _ => self.error(
                    ConditionError::new(
                        Code::UnknownVariable,
                        format!("`session` has no field `{field}`"),
                        expr.span,
                    )
                    .with_help("use `session.calls` or `session.calls_of(\"<tool>\")`"),
                ),
            },
            (Ir::Path(root, path), _) => {
                let ty = match (root, path.is_empty()) {
                    (Root::Args, true) => self.arg_type(field, expr.span),
                    _ => Type::Dyn,
                };
                let mut path = path.into_vec();
                path.push(field.into());
                (Ir::Path(root, path.into()), ty)
            }
            (ir, Type::Map | Type::Dyn) => (Ir::Field(Box::new(ir), field.into()), Type::Dyn),
            (_, ty) => self.error(ConditionError::new(
                Code::ConditionType,
                format!("`.{field}` needs a map, but this is {}", ty.describe()),
                target.span,
            )),
        }
    }

    fn index(&mut self, target: &Expr, index: &Expr) -> (Ir, Type) {
        let (target_ir, target_ty) = self.expr(target);
        if let ExprKind::Str(key) = &index.kind
            && let Some(member) = self.static_member(&target_ir, key, index.span)
        {
            return member;
        }
        let (index_ir, index_ty) = self.expr(index);
        let wanted = match target_ty {
            Type::List => Type::Int,
            Type::Map => Type::String,
            Type::Dyn => Type::Dyn,
            ty => {
                return self.error(ConditionError::new(
                    Code::ConditionType,
                    format!("`[]` needs a list or a map, but this is {}", ty.describe()),
                    target.span,
                ));
            }
        };
        if !index_ty.fits(wanted) && wanted != Type::Dyn {
            return self.error(ConditionError::new(
                Code::ConditionType,
                format!("index must be {}, found {}", wanted.describe(), index_ty.describe()),
                index.span,
            ));
        }
        (Ir::Index(Box::new(target_ir), Box::new(index_ir)), Type::Dyn)
    }

    /// `args["odd-name"]` is the same path as `args.odd-name` would be.
    fn static_member(&mut self, target: &Ir, key: &str, span: crate::source::Span) -> Option<(Ir, Type)> {
        let Ir::Path(root, path) = target else {
            return None;
        };
        let ty = if *root == Root::Args && path.is_empty() { self.arg_type(key, span) } else { Type::Dyn };
        let mut path = path.to_vec();
        path.push(key.into());
        Some((Ir::Path(*root, path.into()), ty))
    }

    fn arity(&mut self, name: &str, args: &[Expr], wanted: usize, expr: &Expr) -> bool {
        if args.len() == wanted {
            return true;
        }
        self.errors.push(ConditionError::new(
            Code::ConditionType,
            format!(
                "`{name}` takes {wanted} argument{}, found {}",
                if wanted == 1 { "" } else { "s" },
                args.len()
            ),
            expr.span,
        ));
        false
    }

    fn function(
        &mut self,
        name: &str,
        name_span: crate::source::Span,
        args: &[Expr],
        expr: &Expr,
    ) -> (Ir, Type) {
        match name {
            "has" => {
                if !self.arity(name, args, 1, expr) {
                    return (Ir::Const(Const::Null), Type::Bool);
                }
                let ExprKind::Member { target, field } = &args[0].kind else {
                    return self.error(
                        ConditionError::new(
                            Code::ConditionType,
                            "`has` needs a field selection",
                            args[0].span,
                        )
                        .with_help("write it as `has(args.field)`"),
                    );
                };
                match self.expr(target) {
                    (Ir::Path(root, path), _) => {
                        if root == Root::Args && path.is_empty() {
                            self.arg_type(field, args[0].span);
                        }
                        let mut path = path.into_vec();
                        path.push(field.as_str().into());
                        (Ir::Has(root, path.into()), Type::Bool)
                    }
                    (_, Type::Session) => self.error(ConditionError::new(
                        Code::ConditionType,
                        "`has` cannot test `session`",
                        args[0].span,
                    )),
                    (ir, _) => (Ir::HasField(Box::new(ir), field.as_str().into()), Type::Bool),
                }
            }
            "size" => {
                if !self.arity(name, args, 1, expr) {
                    return (Ir::Const(Const::Null), Type::Int);
                }
                self.size(&args[0])
            }
            "pathWithin" => {
                if !self.arity(name, args, 2, expr) {
                    return (Ir::Const(Const::Null), Type::Bool);
                }
                let target = self.expect(&args[0], Type::String, "the path of `pathWithin`");
                let ExprKind::Str(root) = &args[1].kind else {
                    return self.error(
                        ConditionError::new(
                            Code::ConditionType,
                            "`pathWithin` needs a directory in quotes",
                            args[1].span,
                        )
                        .with_help(
                            "the directory is fixed by the policy, e.g. `pathWithin(args.path, '/srv/docs')`",
                        ),
                    );
                };
                match crate::compiler::path::PathRoot::new(root) {
                    Some(root) => (Ir::PathWithin(Box::new(target), Box::new(root)), Type::Bool),
                    None => self.error(
                        ConditionError::new(Code::InvalidValue, format!("`{root}` is not a directory toolgate can place"), args[1].span)
                            .with_help("write a directory without `..` above its start, e.g. `/srv/docs` or `.github/workflows`"),
                    ),
                }
            }
            _ => {
                let mut error = ConditionError::new(
                    Code::UnknownFunction,
                    format!("unknown function `{name}`"),
                    name_span,
                )
                .with_help(format!(
                    "functions are {}; methods are {}",
                    FUNCTIONS.map(|f| format!("`{f}`")).join(", "),
                    METHODS.map(|m| format!("`.{m}`")).join(", ")
                ));
                error = error.with_suggestion(name, FUNCTIONS.into_iter().chain(METHODS));
                self.error(error)
            }
        }
    }

    fn size(&mut self, arg: &Expr) -> (Ir, Type) {
        let (ir, ty) = self.expr(arg);
        match ty {
            Type::String | Type::List | Type::Map | Type::Dyn => (Ir::Size(Box::new(ir)), Type::Int),
            ty => self.error(ConditionError::new(
                Code::ConditionType,
                format!("`size` needs a string, list or map, found {}", ty.describe()),
                arg.span,
            )),
        }
    }

    fn method(
        &mut self,
        name: &str,
        name_span: crate::source::Span,
        receiver: &Expr,
        args: &[Expr],
        expr: &Expr,
    ) -> (Ir, Type) {
        if let ExprKind::Ident(root) = &receiver.kind
            && root == "session"
        {
            return self.session_method(name, name_span, args, expr);
        }
        let method = match name {
            "startsWith" => Some(StrMethod::StartsWith),
            "endsWith" => Some(StrMethod::EndsWith),
            "contains" => Some(StrMethod::Contains),
            _ => None,
        };
        match (name, method) {
            (_, Some(method)) => {
                let target = self.expect(receiver, Type::String, &format!("the receiver of `{name}`"));
                if !self.arity(name, args, 1, expr) {
                    return (Ir::Const(Const::Null), Type::Bool);
                }
                let arg = self.expect(&args[0], Type::String, &format!("the argument of `{name}`"));
                (Ir::StrMethod(method, Box::new(target), Box::new(arg)), Type::Bool)
            }
            ("matches", None) => {
                let target = self.expect(receiver, Type::String, "the receiver of `matches`");
                if !self.arity(name, args, 1, expr) {
                    return (Ir::Const(Const::Null), Type::Bool);
                }
                let ExprKind::Str(pattern) = &args[0].kind else {
                    return self.error(
                        ConditionError::new(
                            Code::ConditionType,
                            "`matches` needs a string literal",
                            args[0].span,
                        )
                        .with_help(
                            "patterns are compiled once, with the policy; write the pattern in quotes",
                        ),
                    );
                };
                match RegexBuilder::new(pattern).size_limit(REGEX_SIZE_LIMIT).build() {
                    Ok(regex) => (Ir::Matches(Box::new(target), Box::new(regex)), Type::Bool),
                    Err(error) => self.error(
                        ConditionError::new(Code::InvalidRegex, "invalid regular expression", args[0].span)
                            .with_label(regex_error_text(&error))
                            .with_help("patterns use the syntax of the Rust `regex` crate (RE2-like, no look-around or backreferences)"),
                    ),
                }
            }
            ("size", None) => {
                if !self.arity(name, args, 0, expr) {
                    return (Ir::Const(Const::Null), Type::Int);
                }
                self.size(receiver)
            }
            _ => {
                let mut error =
                    ConditionError::new(Code::UnknownFunction, format!("unknown method `{name}`"), name_span)
                        .with_help(format!("methods are {}", METHODS.map(|m| format!("`.{m}`")).join(", ")));
                error = error.with_suggestion(name, METHODS);
                self.error(error)
            }
        }
    }

    fn session_method(
        &mut self,
        name: &str,
        name_span: crate::source::Span,
        args: &[Expr],
        expr: &Expr,
    ) -> (Ir, Type) {
        if name != "calls_of" {
            let mut error = ConditionError::new(
                Code::UnknownFunction,
                format!("`session` has no method `{name}`"),
                name_span,
            )
            .with_help("use `session.calls` or `session.calls_of(\"<tool>\")`");
            error = error.with_suggestion(name, ["calls_of"]);
            return self.error(error);
        }
        if !self.arity(name, args, 1, expr) {
            return (Ir::Const(Const::Null), Type::Int);
        }
        let tool = self.expect(&args[0], Type::String, "the argument of `calls_of`");
        (Ir::SessionCallsOf(Box::new(tool)), Type::Int)
    }

    fn binary(&mut self, op: BinaryOp, left: &Expr, right: &Expr, expr: &Expr) -> (Ir, Type) {
        use BinaryOp::*;
        match op {
            And | Or => {
                let role = format!("each side of `{}`", op.as_str());
                let l = Box::new(self.expect(left, Type::Bool, &role));
                let r = Box::new(self.expect(right, Type::Bool, &role));
                (if op == And { Ir::And(l, r) } else { Ir::Or(l, r) }, Type::Bool)
            }
            Eq | Ne => {
                let (l, lt) = self.expr(left);
                let (r, rt) = self.expr(right);
                let comparable = lt == rt
                    || [lt, rt].contains(&Type::Dyn)
                    || [lt, rt].contains(&Type::Null)
                    || (lt.is_numeric() && rt.is_numeric());
                if !comparable {
                    let verb = if op == Eq { "never equal" } else { "always different" };
                    return self.error(
                        ConditionError::new(
                            Code::ConditionType,
                            format!(
                                "`{}` compares {} with {}; they are {verb}",
                                op.as_str(),
                                lt.describe(),
                                rt.describe()
                            ),
                            expr.span,
                        )
                        .with_help("compare values of the same type"),
                    );
                }
                (Ir::Binary(op, Box::new(l), Box::new(r)), Type::Bool)
            }
            Lt | Le | Gt | Ge => {
                let (l, lt) = self.expr(left);
                let (r, rt) = self.expr(right);
                let ordered =
                    (lt.is_numeric() && rt.is_numeric()) || (lt.fits(Type::String) && rt.fits(Type::String));
                if !ordered {
                    return self.error(
                        ConditionError::new(
                            Code::ConditionType,
                            format!("`{}` cannot order {} and {}", op.as_str(), lt.describe(), rt.describe()),
                            expr.span,
                        )
                        .with_help("compare numbers with numbers and strings with strings"),
                    );
                }
                (Ir::Binary(op, Box::new(l), Box::new(r)), Type::Bool)
            }
            In => {
                let (l, _) = self.expr(left);
                let (r, rt) = self.expr(right);
                if !matches!(rt, Type::List | Type::Map | Type::Dyn) {
                    return self.error(ConditionError::new(
                        Code::ConditionType,
                        format!("`in` needs a list or a map on its right, found {}", rt.describe()),
                        right.span,
                    ));
                }
                (Ir::Binary(op, Box::new(l), Box::new(r)), Type::Bool)
            }
            Add | Sub | Mul | Div | Rem => {
                let (l, lt) = self.expr(left);
                let (r, rt) = self.expr(right);
                let ty = match (op, lt, rt) {
                    (_, Type::Int, Type::Int) => Type::Int,
                    (Rem, a, b) if a.fits(Type::Int) && b.fits(Type::Int) => Type::Dyn,
                    (Rem, _, _) => Type::Null,
                    (_, a, b) if a.is_numeric() && b.is_numeric() => {
                        if a == Type::Dyn || b == Type::Dyn {
                            Type::Dyn
                        } else {
                            Type::Double
                        }
                    }
                    (Add, Type::String, Type::String) => Type::String,
                    (Add, Type::List, Type::List) => Type::List,
                    (Add, a, b)
                        if [a, b].contains(&Type::Dyn)
                            && [a, b].iter().all(|t| matches!(t, Type::String | Type::List | Type::Dyn)) =>
                    {
                        Type::Dyn
                    }
                    _ => Type::Null,
                };
                if ty == Type::Null {
                    return self.error(ConditionError::new(
                        Code::ConditionType,
                        format!("`{}` cannot combine {} and {}", op.as_str(), lt.describe(), rt.describe()),
                        expr.span,
                    ));
                }
                (Ir::Binary(op, Box::new(l), Box::new(r)), ty)
            }
        }
    }
}

/// The last line of a `regex` error, which says what is wrong.
pub fn regex_error_text(error: &regex::Error) -> String {
    match error {
        regex::Error::CompiledTooBig(_) => String::from("the compiled pattern is too large"),
        other => other
            .to_string()
            .lines()
            .last()
            .unwrap_or("invalid pattern")
            .trim()
            .trim_start_matches("error: ")
            .to_owned(),
    }
}
