//! `params.<arg>` rules as compiled: checked against argument values at
//! decision time.

use regex::Regex;
use serde_json::Value;

use super::ast::JsonType;
use super::condition::Type;
use super::path::PathRoot;

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
    pub(crate) path_within: Option<Vec<PathRoot>>,
    pub(crate) path_not_within: Option<Vec<PathRoot>>,
    pub(crate) properties: Vec<(Box<str>, ParamCheck)>,
}

/// A step from an argument's value to the part of it that broke a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step<'p> {
    /// An item of a list.
    Item(usize),
    /// A field of an object.
    Field(&'p str),
}

/// The steps from an argument's value to the part that broke a rule
/// (empty: the value itself).
pub type Steps<'p> = Vec<Step<'p>>;

/// Writes `name` followed by `steps`: `files[2].path`.
pub fn write_steps(f: &mut impl std::fmt::Write, name: &str, steps: &[Step<'_>]) -> std::fmt::Result {
    f.write_str(name)?;
    for step in steps {
        match step {
            Step::Item(i) => write!(f, "[{i}]")?,
            Step::Field(field) => write!(f, ".{field}")?,
        }
    }
    Ok(())
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
    /// It is not a path within any `pathWithin` root.
    NotWithin(&'p [PathRoot]),
    /// It is a path within a `pathNotWithin` directory.
    Within(&'p str),
    /// A `pathNotWithin` rule applies, and it is not a path whose place can
    /// be told.
    NotAPath,
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
            Violation::NotWithin(roots) => {
                let roots: Vec<String> = roots.iter().map(|r| format!("`{}`", r.text)).collect();
                write!(f, "is not a path within {}", roots.join(" or "))
            }
            Violation::Within(dir) => write!(f, "is a path within `{dir}`"),
            Violation::NotAPath => f.write_str(
                "is not a path that can be placed (a string without NUL, not climbing above its start)",
            ),
        }
    }
}

impl ParamCheck {
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

    /// Checks one value; `Err` carries the first broken rule and the steps
    /// to the part of the value that broke it. The value's own rules come
    /// first, then its items in order, then its `properties` in order.
    pub fn validate<'p>(&'p self, value: &Value) -> Result<(), (Steps<'p>, Violation<'p>)> {
        self.validate_here(value).map_err(|v| (Vec::new(), v))?;
        if let (Some(items), Value::Array(values)) = (&self.items, value) {
            for (i, item) in values.iter().enumerate() {
                items.validate(item).map_err(|(steps, v)| (prepend(Step::Item(i), steps), v))?;
            }
        }
        if let Value::Object(fields) = value {
            for (name, check) in &self.properties {
                if let Some(field) = fields.get(&**name) {
                    check.validate(field).map_err(|(steps, v)| (prepend(Step::Field(name), steps), v))?;
                }
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
        self.validate_path(value)
    }

    /// `pathWithin` and `pathNotWithin`, which, unlike the JSON Schema
    /// keywords, fail for a value that is not a string: a path rule must
    /// not be passed by sending a number or a list instead.
    fn validate_path<'p>(&'p self, value: &Value) -> Result<(), Violation<'p>> {
        let path = value.as_str();
        if let Some(roots) = &self.path_within
            && !path.is_some_and(|p| roots.iter().any(|root| root.contains(p)))
        {
            return Err(Violation::NotWithin(roots));
        }
        if let Some(dirs) = &self.path_not_within {
            let Some(path) = path.filter(|p| super::path::normalize(p).is_some()) else {
                return Err(Violation::NotAPath);
            };
            if let Some(dir) = dirs.iter().find(|dir| dir.contains(path)) {
                return Err(Violation::Within(&dir.text));
            }
        }
        Ok(())
    }
}

fn prepend<'p>(step: Step<'p>, mut steps: Steps<'p>) -> Steps<'p> {
    steps.insert(0, step);
    steps
}

/// JSON equality where `1` and `1.0` are the same number, as in JSON Schema.
pub(crate) fn json_equal(a: &Value, b: &Value) -> bool {
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
