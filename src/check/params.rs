//! `params.<arg>` rules: compiled once, checked for satisfiability, applied
//! to argument values at decision time.

use regex::{Regex, RegexBuilder};
use serde_json::Value;

use crate::ast::{JsonType, ParamSchema, Spanned};
use crate::condition::Type;
use crate::diagnostic::{Code, Diagnostic, Diagnostics};

/// The compiled rules for one argument value.
#[derive(Clone, Debug, Default)]
pub struct ParamCheck {
    pub(crate) types: Option<Vec<JsonType>>,
    pub(crate) enumeration: Option<Vec<Value>>,
    pub(crate) constant: Option<Value>,
    pub(crate) minimum: Option<f64>,
    pub(crate) maximum: Option<f64>,
    pub(crate) exclusive_minimum: Option<f64>,
    pub(crate) exclusive_maximum: Option<f64>,
    pub(crate) min_length: Option<u64>,
    pub(crate) max_length: Option<u64>,
    pub(crate) pattern: Option<(Box<str>, Regex)>,
    pub(crate) items: Option<Box<ParamCheck>>,
    pub(crate) min_items: Option<u64>,
    pub(crate) max_items: Option<u64>,
}

/// Why an argument value breaks its rules.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Violation<'p> {
    /// It has none of the allowed types.
    Type(&'p [JsonType]),
    /// It is not one of the `enum` values.
    NotInEnum,
    /// It is not the `const` value.
    NotConst,
    /// It is below `minimum`.
    BelowMinimum(f64),
    /// It is above `maximum`.
    AboveMaximum(f64),
    /// It is not above `exclusiveMinimum`.
    NotAbove(f64),
    /// It is not below `exclusiveMaximum`.
    NotBelow(f64),
    /// It is shorter than `minLength`.
    TooShort(u64),
    /// It is longer than `maxLength`.
    TooLong(u64),
    /// It does not match `pattern`.
    PatternMismatch(&'p str),
    /// It has fewer than `minItems` items.
    TooFewItems(u64),
    /// It has more than `maxItems` items.
    TooManyItems(u64),
}

impl std::fmt::Display for Violation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::Type(types) => {
                let names: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
                write!(f, "is not of type {}", names.join(" or "))
            }
            Violation::NotInEnum => f.write_str("is not one of the allowed values"),
            Violation::NotConst => f.write_str("is not the required value"),
            Violation::BelowMinimum(m) => write!(f, "is below the minimum {m}"),
            Violation::AboveMaximum(m) => write!(f, "is above the maximum {m}"),
            Violation::NotAbove(m) => write!(f, "is not above {m}"),
            Violation::NotBelow(m) => write!(f, "is not below {m}"),
            Violation::TooShort(n) => write!(f, "is shorter than {n} characters"),
            Violation::TooLong(n) => write!(f, "is longer than {n} characters"),
            Violation::PatternMismatch(p) => write!(f, "does not match the pattern `{p}`"),
            Violation::TooFewItems(n) => write!(f, "has fewer than {n} items"),
            Violation::TooManyItems(n) => write!(f, "has more than {n} items"),
        }
    }
}

impl ParamCheck {
    /// Compiles a schema, reporting invalid patterns and unsatisfiable rules.
    pub fn compile(schema: &ParamSchema, arg: &str, diagnostics: &mut Diagnostics) -> ParamCheck {
        let value = |s: &Option<Spanned<f64>>| s.as_ref().map(|s| s.value);
        let count = |s: &Option<Spanned<u64>>| s.as_ref().map(|s| s.value);
        let pattern = schema.pattern.as_ref().and_then(|p| {
            match RegexBuilder::new(&p.value).size_limit(crate::condition::REGEX_SIZE_LIMIT).build() {
                Ok(regex) => Some((p.value.as_str().into(), regex)),
                Err(error) => {
                    diagnostics.push(
                        Diagnostic::new(Code::InvalidRegex, format!("invalid `pattern` for argument `{arg}`"), p.location)
                            .with_label(crate::condition::regex_error_text(&error))
                            .with_help("patterns use the syntax of the Rust `regex` crate (RE2-like, no look-around or backreferences)"),
                    );
                    None
                }
            }
        });
        let check = ParamCheck {
            types: schema.types.as_ref().map(|t| t.value.clone()),
            enumeration: schema.enumeration.as_ref().map(|e| e.value.clone()),
            constant: schema.constant.as_ref().map(|c| c.value.clone()),
            minimum: value(&schema.minimum),
            maximum: value(&schema.maximum),
            exclusive_minimum: value(&schema.exclusive_minimum),
            exclusive_maximum: value(&schema.exclusive_maximum),
            min_length: count(&schema.min_length),
            max_length: count(&schema.max_length),
            pattern,
            items: schema.items.as_ref().map(|items| Box::new(ParamCheck::compile(items, arg, diagnostics))),
            min_items: count(&schema.min_items),
            max_items: count(&schema.max_items),
        };
        satisfiable(schema, &check, arg, diagnostics);
        check
    }

    /// The condition-language type of values that pass these rules.
    pub fn static_type(&self) -> Type {
        match self.types.as_deref() {
            Some([JsonType::String]) => Type::String,
            Some([JsonType::Integer]) => Type::Int,
            Some([JsonType::Number]) => Type::Double,
            Some([JsonType::Boolean]) => Type::Bool,
            Some([JsonType::Array]) => Type::List,
            Some([JsonType::Object]) => Type::Map,
            Some([JsonType::Null]) => Type::Null,
            _ => Type::Dyn,
        }
    }

    /// Checks one value; `Err` carries the first broken rule and, inside a
    /// list, the index of the offending item.
    pub fn validate<'p>(&'p self, value: &Value) -> Result<(), (Option<usize>, Violation<'p>)> {
        self.validate_here(value).map_err(|v| (None, v))?;
        if let (Some(items), Value::Array(values)) = (&self.items, value) {
            for (i, item) in values.iter().enumerate() {
                items.validate(item).map_err(|(_, v)| (Some(i), v))?;
            }
        }
        Ok(())
    }

    fn validate_here<'p>(&'p self, value: &Value) -> Result<(), Violation<'p>> {
        if let Some(types) = &self.types
            && !types.iter().any(|t| t.admits(value))
        {
            return Err(Violation::Type(types));
        }
        if let Some(allowed) = &self.enumeration
            && !allowed.iter().any(|a| json_equal(a, value))
        {
            return Err(Violation::NotInEnum);
        }
        if let Some(constant) = &self.constant
            && !json_equal(constant, value)
        {
            return Err(Violation::NotConst);
        }
        match value {
            Value::Number(n) => {
                // serde_json numbers are always finite and convertible.
                let x = n.as_f64().unwrap_or_default();
                if let Some(m) = self.minimum.filter(|m| x < *m) {
                    return Err(Violation::BelowMinimum(m));
                }
                if let Some(m) = self.maximum.filter(|m| x > *m) {
                    return Err(Violation::AboveMaximum(m));
                }
                if let Some(m) = self.exclusive_minimum.filter(|m| x <= *m) {
                    return Err(Violation::NotAbove(m));
                }
                if let Some(m) = self.exclusive_maximum.filter(|m| x >= *m) {
                    return Err(Violation::NotBelow(m));
                }
            }
            Value::String(s) => {
                // A string has at most as many characters as bytes: when the
                // byte length already fits both bounds, counting is not needed.
                let fits_by_bytes = self.min_length.is_none_or(|n| n == 0)
                    && self.max_length.is_none_or(|n| s.len() as u64 <= n);
                if !fits_by_bytes && (self.min_length.is_some() || self.max_length.is_some()) {
                    let length = s.chars().count() as u64;
                    if let Some(n) = self.min_length.filter(|n| length < *n) {
                        return Err(Violation::TooShort(n));
                    }
                    if let Some(n) = self.max_length.filter(|n| length > *n) {
                        return Err(Violation::TooLong(n));
                    }
                }
                if let Some((text, regex)) = &self.pattern
                    && !regex.is_match(s)
                {
                    return Err(Violation::PatternMismatch(text));
                }
            }
            Value::Array(items) => {
                let length = items.len() as u64;
                if let Some(n) = self.min_items.filter(|n| length < *n) {
                    return Err(Violation::TooFewItems(n));
                }
                if let Some(n) = self.max_items.filter(|n| length > *n) {
                    return Err(Violation::TooManyItems(n));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// JSON equality where `1` and `1.0` are the same number, as in JSON Schema.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(p), Some(q)) => p == q,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equal(p, q))
        }
        _ => a == b,
    }
}

/// Reports rules that no value can meet.
fn satisfiable(schema: &ParamSchema, check: &ParamCheck, arg: &str, diagnostics: &mut Diagnostics) {
    let report = |diagnostics: &mut Diagnostics, location, message: String, help: &str| {
        diagnostics
            .push(Diagnostic::new(Code::UnsatisfiableParams, message, location).with_help(help.to_owned()));
    };
    if let Some(e) = schema.enumeration.as_ref().filter(|e| e.value.is_empty()) {
        report(
            diagnostics,
            e.location,
            format!("`enum` of argument `{arg}` is empty; no value can pass"),
            "list the allowed values, or deny the tool",
        );
    }
    let bounds = [
        (&schema.minimum, &schema.maximum, false),
        (&schema.exclusive_minimum, &schema.maximum, true),
        (&schema.minimum, &schema.exclusive_maximum, true),
        (&schema.exclusive_minimum, &schema.exclusive_maximum, true),
    ];
    for (low, high, strict) in bounds {
        if let (Some(low), Some(high)) = (low, high)
            && (low.value > high.value || (strict && low.value >= high.value))
        {
            let message = format!("no number of argument `{arg}` is within {} and {}", low.value, high.value);
            diagnostics.push(
                Diagnostic::new(Code::UnsatisfiableParams, message, low.location)
                    .with_label("lower bound")
                    .with_secondary(high.location, "upper bound")
                    .with_help("the lower bound must be below the upper bound"),
            );
        }
    }
    for (low, high, what) in [
        (&schema.min_length, &schema.max_length, "length"),
        (&schema.min_items, &schema.max_items, "item count"),
    ] {
        if let (Some(low), Some(high)) = (low, high)
            && low.value > high.value
        {
            diagnostics.push(
                Diagnostic::new(
                    Code::UnsatisfiableParams,
                    format!(
                        "no {what} of argument `{arg}` is at least {} and at most {}",
                        low.value, high.value
                    ),
                    low.location,
                )
                .with_secondary(high.location, "upper bound")
                .with_help("the minimum must not exceed the maximum"),
            );
        }
    }
    if let Some(types) = schema.types.as_ref().filter(|t| !t.value.is_empty()) {
        let literal_checks = [
            (schema.constant.as_ref().map(|c| (c.location, vec![c.value.clone()])), "`const`"),
            (schema.enumeration.as_ref().map(|e| (e.location, e.value.clone())), "`enum`"),
        ];
        for (values, key) in literal_checks {
            if let Some((location, values)) = values
                && !values.is_empty()
                && values.iter().all(|v| !types.value.iter().any(|t| t.admits(v)))
            {
                report(
                    diagnostics,
                    location,
                    format!("{key} of argument `{arg}` has no value of its declared type"),
                    "make the values match `type`, or change `type`",
                );
            }
        }
    }
    if let (Some(c), Some(e)) = (&check.constant, &check.enumeration)
        && !e.is_empty()
        && !e.iter().any(|v| json_equal(v, c))
        && let Some(location) = schema.constant.as_ref().map(|c| c.location)
    {
        report(
            diagnostics,
            location,
            format!("`const` of argument `{arg}` is not in its `enum`"),
            "remove one of the two, or add the value to `enum`",
        );
    }
}

/// Which way a change to a rule moves what is allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// More calls are allowed (or allowed with less oversight) than before.
    Widened,
    /// Fewer calls are allowed than before.
    Narrowed,
    /// Different, in a way toolgate cannot order: review it.
    Changed,
}

impl ParamCheck {
    /// How each keyword changed from `self` to `new`, described for people.
    pub(crate) fn compare(&self, new: &ParamCheck) -> Vec<(Direction, String)> {
        use Direction::*;
        let mut out = Vec::new();
        // An upper bound: a higher or missing bound admits more.
        let mut upper = |name: &str, old: Option<f64>, new: Option<f64>| match (old, new) {
            (Some(o), Some(n)) if n > o => out.push((Widened, format!("{name} raised from {o} to {n}"))),
            (Some(o), Some(n)) if n < o => out.push((Narrowed, format!("{name} lowered from {o} to {n}"))),
            (Some(o), None) => out.push((Widened, format!("{name} {o} removed"))),
            (None, Some(n)) => out.push((Narrowed, format!("{name} {n} added"))),
            _ => {}
        };
        let count = |v: Option<u64>| v.map(|n| n as f64);
        upper("maximum", self.maximum, new.maximum);
        upper("exclusiveMaximum", self.exclusive_maximum, new.exclusive_maximum);
        upper("maxLength", count(self.max_length), count(new.max_length));
        upper("maxItems", count(self.max_items), count(new.max_items));
        // A lower bound: negated, it is an upper bound.
        let neg = |v: Option<f64>| v.map(|x| -x);
        let mut lower = |name: &str, old: Option<f64>, new: Option<f64>| match (neg(old), neg(new)) {
            (Some(o), Some(n)) if n > o => {
                out.push((Widened, format!("{name} lowered from {} to {}", -o, -n)))
            }
            (Some(o), Some(n)) if n < o => {
                out.push((Narrowed, format!("{name} raised from {} to {}", -o, -n)))
            }
            (Some(o), None) => out.push((Widened, format!("{name} {} removed", -o))),
            (None, Some(n)) => out.push((Narrowed, format!("{name} {} added", -n))),
            _ => {}
        };
        lower("minimum", self.minimum, new.minimum);
        lower("exclusiveMinimum", self.exclusive_minimum, new.exclusive_minimum);
        lower("minLength", count(self.min_length), count(new.min_length));
        lower("minItems", count(self.min_items), count(new.min_items));
        let mut set = |name: &str, old: Option<Vec<String>>, new: Option<Vec<String>>| match (old, new) {
            (Some(o), Some(n)) if o != n => {
                let added: Vec<&String> = n.iter().filter(|v| !o.contains(v)).collect();
                let removed: Vec<&String> = o.iter().filter(|v| !n.contains(v)).collect();
                let direction = match (added.is_empty(), removed.is_empty()) {
                    (false, true) => Widened,
                    (true, false) => Narrowed,
                    _ => Changed,
                };
                let join = |v: &[&String]| v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
                let mut text = format!("{name}:");
                if !added.is_empty() {
                    text.push_str(&format!(" added {}", join(&added)));
                }
                if !removed.is_empty() {
                    text.push_str(&format!(" removed {}", join(&removed)));
                }
                out.push((direction, text));
            }
            (Some(_), None) => out.push((Widened, format!("{name} removed"))),
            (None, Some(_)) => out.push((Narrowed, format!("{name} added"))),
            _ => {}
        };
        let texts =
            |values: &Option<Vec<Value>>| values.as_ref().map(|v| v.iter().map(Value::to_string).collect());
        set("enum", texts(&self.enumeration), texts(&new.enumeration));
        let types =
            |t: &Option<Vec<JsonType>>| t.as_ref().map(|t| t.iter().map(|t| t.as_str().to_owned()).collect());
        set("type", types(&self.types), types(&new.types));
        let one = |v: &Option<Value>| v.as_ref().map(|v| vec![v.to_string()]);
        set("const", one(&self.constant), one(&new.constant));
        let pattern = |p: &Option<(Box<str>, Regex)>| p.as_ref().map(|(text, _)| vec![text.to_string()]);
        set("pattern", pattern(&self.pattern), pattern(&new.pattern));
        match (&self.items, &new.items) {
            (Some(o), Some(n)) => {
                out.extend(o.compare(n).into_iter().map(|(d, text)| (d, format!("items: {text}"))));
            }
            (Some(_), None) => out.push((Widened, String::from("rules for items removed"))),
            (None, Some(_)) => out.push((Narrowed, String::from("rules for items added"))),
            (None, None) => {}
        }
        out
    }
}
