//! Condition text → [`Expr`], through the pest grammar in `grammar/condition.pest`.

use std::sync::LazyLock;

use pest::Parser;
use pest::iterators::{Pair, Pairs};
use pest::pratt_parser::{Assoc, Op, PrattParser};

use super::ConditionError;
use super::syntax::{BinaryOp, Expr, ExprKind, UnaryOp};
use crate::diagnostic::Code;
use crate::source::Span;

/// The longest condition accepted, in bytes.
pub const MAX_CONDITION_BYTES: usize = 4096;

/// The deepest nesting of brackets and prefix operators accepted.
pub const MAX_NESTING: usize = 32;

/// `-i64::MIN` as a float: the one integer literal only its negation makes valid.
const I64_MIN_MAGNITUDE: f64 = 9_223_372_036_854_775_808.0;

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/condition.pest"]
struct ConditionParser;

static PRATT: LazyLock<PrattParser<Rule>> = LazyLock::new(|| {
    PrattParser::new()
        .op(Op::infix(Rule::or, Assoc::Left))
        .op(Op::infix(Rule::and, Assoc::Left))
        .op(Op::infix(Rule::eq, Assoc::Left)
            | Op::infix(Rule::ne, Assoc::Left)
            | Op::infix(Rule::lt, Assoc::Left)
            | Op::infix(Rule::le, Assoc::Left)
            | Op::infix(Rule::gt, Assoc::Left)
            | Op::infix(Rule::ge, Assoc::Left)
            | Op::infix(Rule::in_op, Assoc::Left))
        .op(Op::infix(Rule::add, Assoc::Left) | Op::infix(Rule::sub, Assoc::Left))
        .op(Op::infix(Rule::mul, Assoc::Left)
            | Op::infix(Rule::div, Assoc::Left)
            | Op::infix(Rule::rem, Assoc::Left))
        .op(Op::prefix(Rule::not) | Op::prefix(Rule::neg))
        .op(Op::postfix(Rule::member) | Op::postfix(Rule::index))
});

/// Parses a condition.
pub fn parse(text: &str) -> Result<Expr, ConditionError> {
    check_bounds(text)?;
    let mut pairs = ConditionParser::parse(Rule::condition, text).map_err(syntax_error)?;
    let expr = pairs.next().and_then(|condition| condition.into_inner().next()).ok_or_else(|| {
        ConditionError::new(Code::ConditionSyntax, "empty condition", Span::new(0, text.len()))
    })?;
    build(expr.into_inner())
}

/// Rejects text whose size or nesting could exhaust the stack, before pest
/// (which recurses) sees it.
fn check_bounds(text: &str) -> Result<(), ConditionError> {
    if text.len() > MAX_CONDITION_BYTES {
        return Err(ConditionError::new(
            Code::ResourceLimit,
            format!("condition is {} bytes long; the limit is {MAX_CONDITION_BYTES}", text.len()),
            Span::new(0, 0),
        )
        .with_help("split it into several constraints"));
    }
    let mut depth = 0usize;
    let mut prefix_run = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if let Some(q) = quote {
            match c {
                _ if escaped => {
                    escaped = false;
                    if !matches!(c, '"' | '\'' | '\\' | 'n' | 't' | 'r' | 'u') {
                        let start = i.saturating_sub(1);
                        return Err(ConditionError::new(
                            Code::ConditionSyntax,
                            format!("unknown escape `\\{c}` in a string"),
                            Span::new(start, i + c.len_utf8()),
                        )
                        .with_help(format!(
                            "write `\\\\{c}` for a backslash followed by `{c}`, e.g. in a pattern"
                        )));
                    }
                }
                '\\' => escaped = true,
                _ if c == q => quote = None,
                _ => {}
            }
            continue;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '(' | '[' => depth += 1,
            ')' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        prefix_run = match c {
            '!' | '-' => prefix_run + 1,
            c if c.is_whitespace() => prefix_run,
            _ => 0,
        };
        if depth + prefix_run > MAX_NESTING {
            return Err(ConditionError::new(
                Code::ResourceLimit,
                format!("condition nests deeper than {MAX_NESTING} levels"),
                Span::new(i, i + 1),
            )
            .with_help("simplify the expression"));
        }
    }
    Ok(())
}

fn syntax_error(error: pest::error::Error<Rule>) -> ConditionError {
    use pest::error::{ErrorVariant, InputLocation};
    let span = match error.location {
        InputLocation::Pos(p) => Span::new(p, p),
        InputLocation::Span((a, b)) => Span::new(a, b),
    };
    let message = match &error.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            let mut expected: Vec<&str> = positives.iter().filter_map(|r| describe(*r)).collect();
            expected.sort_unstable();
            expected.dedup();
            match expected.as_slice() {
                [] => String::from("unexpected character in condition"),
                [one] => format!("expected {one}"),
                many => format!("expected one of {}", many.join(", ")),
            }
        }
        ErrorVariant::CustomError { message } => message.clone(),
    };
    ConditionError::new(Code::ConditionSyntax, message, span)
        .with_help("conditions use CEL syntax, e.g. `args.amount < 100 && has(args.reason)`")
}

/// How a grammar rule is named in "expected ..." messages.
fn describe(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::EOI => "end of condition",
        Rule::expr | Rule::ident | Rule::call | Rule::float | Rule::int | Rule::string | Rule::list => {
            "a value"
        }
        Rule::true_lit | Rule::false_lit | Rule::null_lit => "a value",
        Rule::or | Rule::and => "`&&` or `||`",
        Rule::eq | Rule::ne | Rule::lt | Rule::le | Rule::gt | Rule::ge | Rule::in_op => "a comparison",
        Rule::add | Rule::sub | Rule::mul | Rule::div | Rule::rem => "an operator",
        Rule::member | Rule::index => "`.` or `[`",
        Rule::call_args => "`(`",
        _ => return None,
    })
}

fn span_of(pair: &Pair<'_, Rule>) -> Span {
    let s = pair.as_span();
    Span::new(s.start(), s.end())
}

fn join(a: Span, b: Span) -> Span {
    Span { start: a.start.min(b.start), end: a.end.max(b.end) }
}

fn build(pairs: Pairs<'_, Rule>) -> Result<Expr, ConditionError> {
    PRATT
        .map_primary(primary)
        .map_prefix(|op, operand| {
            let operand = operand?;
            let span = join(span_of(&op), operand.span);
            let op = if op.as_rule() == Rule::not { UnaryOp::Not } else { UnaryOp::Neg };
            // Fold `-<number>` into a literal, so `-9223372036854775808` is representable.
            Ok(match (op, operand.kind) {
                (UnaryOp::Neg, ExprKind::Int(i)) => Expr { kind: ExprKind::Int(-i), span },
                (UnaryOp::Neg, ExprKind::Float(f)) if f == I64_MIN_MAGNITUDE => {
                    Expr { kind: ExprKind::Int(i64::MIN), span }
                }
                (UnaryOp::Neg, ExprKind::Float(f)) => Expr { kind: ExprKind::Float(-f), span },
                (op, kind) => Expr {
                    kind: ExprKind::Unary { op, operand: Box::new(Expr { kind, span: operand.span }) },
                    span,
                },
            })
        })
        .map_postfix(|target, op| {
            let target = target?;
            let span = join(target.span, span_of(&op));
            match op.as_rule() {
                Rule::member => {
                    let mut inner = op.into_inner();
                    let name = inner.next().ok_or_else(|| internal(span))?;
                    let function_span = span_of(&name);
                    let field = name.as_str().to_owned();
                    match inner.next() {
                        Some(args) => Ok(Expr {
                            kind: ExprKind::Call {
                                function: field,
                                function_span,
                                receiver: Some(Box::new(target)),
                                args: arguments(args)?,
                            },
                            span,
                        }),
                        None => Ok(Expr { kind: ExprKind::Member { target: Box::new(target), field }, span }),
                    }
                }
                _ => {
                    let index = op.into_inner().next().ok_or_else(|| internal(span))?;
                    let index = build(index.into_inner())?;
                    Ok(Expr {
                        kind: ExprKind::Index { target: Box::new(target), index: Box::new(index) },
                        span,
                    })
                }
            }
        })
        .map_infix(|left, op, right| {
            let (left, right) = (left?, right?);
            let op = match op.as_rule() {
                Rule::or => BinaryOp::Or,
                Rule::and => BinaryOp::And,
                Rule::eq => BinaryOp::Eq,
                Rule::ne => BinaryOp::Ne,
                Rule::lt => BinaryOp::Lt,
                Rule::le => BinaryOp::Le,
                Rule::gt => BinaryOp::Gt,
                Rule::ge => BinaryOp::Ge,
                Rule::in_op => BinaryOp::In,
                Rule::add => BinaryOp::Add,
                Rule::sub => BinaryOp::Sub,
                Rule::mul => BinaryOp::Mul,
                Rule::div => BinaryOp::Div,
                _ => BinaryOp::Rem,
            };
            let span = join(left.span, right.span);
            Ok(Expr { kind: ExprKind::Binary { op, left: Box::new(left), right: Box::new(right) }, span })
        })
        .parse(pairs)
}

fn internal(span: Span) -> ConditionError {
    ConditionError::new(Code::ConditionSyntax, "malformed condition", span)
}

fn arguments(pair: Pair<'_, Rule>) -> Result<Vec<Expr>, ConditionError> {
    pair.into_inner().map(|arg| build(arg.into_inner())).collect()
}

fn primary(pair: Pair<'_, Rule>) -> Result<Expr, ConditionError> {
    let span = span_of(&pair);
    let kind = match pair.as_rule() {
        Rule::expr => return build(pair.into_inner()),
        Rule::null_lit => ExprKind::Null,
        Rule::true_lit => ExprKind::Bool(true),
        Rule::false_lit => ExprKind::Bool(false),
        Rule::int => match pair.as_str().parse::<i64>() {
            Ok(i) => ExprKind::Int(i),
            // Only `-9223372036854775808` needs the magnitude; the prefix folds it back.
            Err(_) if pair.as_str() == "9223372036854775808" => ExprKind::Float(I64_MIN_MAGNITUDE),
            Err(_) => {
                return Err(ConditionError::new(Code::ConditionSyntax, "integer literal is too large", span)
                    .with_help("integers range from -9223372036854775808 to 9223372036854775807"));
            }
        },
        Rule::float => match pair.as_str().parse::<f64>() {
            Ok(f) if f.is_finite() => ExprKind::Float(f),
            _ => {
                return Err(ConditionError::new(
                    Code::ConditionSyntax,
                    "number literal is out of range",
                    span,
                ));
            }
        },
        Rule::string => ExprKind::Str(unescape(pair)?),
        Rule::list => {
            ExprKind::List(pair.into_inner().map(|item| build(item.into_inner())).collect::<Result<_, _>>()?)
        }
        Rule::ident => ExprKind::Ident(pair.as_str().to_owned()),
        Rule::call => {
            let mut inner = pair.into_inner();
            let name = inner.next().ok_or_else(|| internal(span))?;
            let args = inner.next().ok_or_else(|| internal(span))?;
            ExprKind::Call {
                function: name.as_str().to_owned(),
                function_span: span_of(&name),
                receiver: None,
                args: arguments(args)?,
            }
        }
        _ => return Err(internal(span)),
    };
    Ok(Expr { kind, span })
}

fn unescape(pair: Pair<'_, Rule>) -> Result<String, ConditionError> {
    let span = span_of(&pair);
    let inner = pair.into_inner().next().map(|p| p.as_str()).unwrap_or("");
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let c = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32).ok_or_else(|| {
                    ConditionError::new(Code::ConditionSyntax, format!("`\\u{hex}` is not a character"), span)
                })?;
                out.push(c);
            }
            Some(c) => out.push(c),
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(e: &Expr) -> String {
        match &e.kind {
            ExprKind::Null => "null".into(),
            ExprKind::Bool(b) => b.to_string(),
            ExprKind::Int(i) => i.to_string(),
            ExprKind::Float(f) => format!("{f:?}"),
            ExprKind::Str(s) => format!("{s:?}"),
            ExprKind::List(items) => format!("[{}]", items.iter().map(shape).collect::<Vec<_>>().join(", ")),
            ExprKind::Ident(n) => n.clone(),
            ExprKind::Member { target, field } => format!("{}.{field}", shape(target)),
            ExprKind::Index { target, index } => format!("{}[{}]", shape(target), shape(index)),
            ExprKind::Call { function, receiver, args, .. } => {
                let args = args.iter().map(shape).collect::<Vec<_>>().join(", ");
                match receiver {
                    Some(r) => format!("{}.{function}({args})", shape(r)),
                    None => format!("{function}({args})"),
                }
            }
            ExprKind::Unary { op, operand } => {
                format!("({}{})", if *op == UnaryOp::Not { "!" } else { "-" }, shape(operand))
            }
            ExprKind::Binary { op, left, right } => {
                format!("({} {} {})", shape(left), op.as_str(), shape(right))
            }
        }
    }

    #[test]
    fn precedence_follows_cel() {
        let cases = [
            ("a || b && c", "(a || (b && c))"),
            ("a && b == c", "(a && (b == c))"),
            ("1 + 2 * 3 < 10", "((1 + (2 * 3)) < 10)"),
            ("!a.b && -x.y > 2", "((!a.b) && ((-x.y) > 2))"),
            ("args.x in ['a', \"b\"]", "(args.x in [\"a\", \"b\"])"),
            ("'x' in args.list", "(\"x\" in args.list)"),
            ("! a", "(!a)"),
            ("inner in items", "(inner in items)"),
            ("args[\"odd-name\"].size() > 0", "(args[\"odd-name\"].size() > 0)"),
            ("session.calls_of('t') >= 3", "(session.calls_of(\"t\") >= 3)"),
            ("has(args.amount) && size(args.tags) <= 2", "(has(args.amount) && (size(args.tags) <= 2))"),
            ("-9223372036854775808 < 0", "(-9223372036854775808 < 0)"),
            ("a - -1", "(a - -1)"),
            ("index > 1 && inx", "((index > 1) && inx)"),
            ("(a || b) && c", "((a || b) && c)"),
            ("'it\\'s' == \"\\u00e9\"", "(\"it's\" == \"é\")"),
        ];
        for (text, expected) in cases {
            let expr = parse(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
            assert_eq!(shape(&expr), expected, "{text}");
        }
    }

    #[test]
    fn errors_point_at_the_column() {
        let error = parse("args.amount >").expect_err("incomplete");
        assert_eq!(error.code, Code::ConditionSyntax);
        assert_eq!(error.span.start, 13);
        let error = parse("args.x == 'open").expect_err("unclosed string");
        assert_eq!(error.code, Code::ConditionSyntax);
        let error = parse("args.s.matches('\\d+')").expect_err("bad escape");
        assert_eq!((error.span.start, error.message.as_str()), (16, "unknown escape `\\d` in a string"));
        assert!(parse("args.s.matches('\\\\d+')").is_ok());
    }

    #[test]
    fn hostile_nesting_is_refused_before_parsing() {
        for text in ["(".repeat(10_000), "!".repeat(10_000), "-".repeat(100), "[".repeat(40)] {
            assert_eq!(parse(&text).expect_err("too deep").code, Code::ResourceLimit);
        }
        assert_eq!(parse(&"a || ".repeat(2000)).expect_err("too long").code, Code::ResourceLimit);
    }
}
