//! How an argument's `params` rules changed between two policies.

use regex::Regex;
use serde_json::Value;

use super::Direction;
use crate::compiler::ast::JsonType;
use crate::compiler::params::ParamCheck;
use crate::compiler::path::PathRoot;

/// How each keyword of an argument's rules changed from `old` to `new`,
/// described for people.
pub(super) fn compare(old: &ParamCheck, new: &ParamCheck) -> Vec<(Direction, String)> {
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
    upper("maximum", old.maximum, new.maximum);
    upper("exclusiveMaximum", old.exclusive_maximum, new.exclusive_maximum);
    upper("maxLength", count(old.max_length), count(new.max_length));
    upper("maxItems", count(old.max_items), count(new.max_items));
    // A lower bound: negated, it is an upper bound.
    let neg = |v: Option<f64>| v.map(|x| -x);
    let mut lower = |name: &str, old: Option<f64>, new: Option<f64>| match (neg(old), neg(new)) {
        (Some(o), Some(n)) if n > o => out.push((Widened, format!("{name} lowered from {} to {}", -o, -n))),
        (Some(o), Some(n)) if n < o => out.push((Narrowed, format!("{name} raised from {} to {}", -o, -n))),
        (Some(o), None) => out.push((Widened, format!("{name} {} removed", -o))),
        (None, Some(n)) => out.push((Narrowed, format!("{name} {} added", -n))),
        _ => {}
    };
    lower("minimum", old.minimum, new.minimum);
    lower("exclusiveMinimum", old.exclusive_minimum, new.exclusive_minimum);
    lower("minLength", count(old.min_length), count(new.min_length));
    lower("minItems", count(old.min_items), count(new.min_items));
    // A set of allowed values (`excluding`: of excluded ones, where more
    // values admit less).
    let mut set_of =
        |name: &str, old: Option<Vec<String>>, new: Option<Vec<String>>, excluding: bool| match (old, new) {
            (Some(o), Some(n)) if o != n => {
                let added: Vec<&String> = n.iter().filter(|v| !o.contains(v)).collect();
                let removed: Vec<&String> = o.iter().filter(|v| !n.contains(v)).collect();
                let (more, fewer) = if excluding { (Narrowed, Widened) } else { (Widened, Narrowed) };
                let direction = match (added.is_empty(), removed.is_empty()) {
                    (false, true) => more,
                    (true, false) => fewer,
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
    let roots = |r: &Option<Vec<PathRoot>>| r.as_ref().map(|r| r.iter().map(PathRoot::normal).collect());
    set_of("pathWithin", roots(&old.path_within), roots(&new.path_within), false);
    set_of("pathNotWithin", roots(&old.path_not_within), roots(&new.path_not_within), true);
    let mut set =
        |name: &str, old: Option<Vec<String>>, new: Option<Vec<String>>| set_of(name, old, new, false);
    let texts =
        |values: &Option<Vec<Value>>| values.as_ref().map(|v| v.iter().map(Value::to_string).collect());
    set("enum", texts(&old.enumeration), texts(&new.enumeration));
    let types =
        |t: &Option<Vec<JsonType>>| t.as_ref().map(|t| t.iter().map(|t| t.as_str().to_owned()).collect());
    set("type", types(&old.types), types(&new.types));
    let one = |v: &Option<Value>| v.as_ref().map(|v| vec![v.to_string()]);
    set("const", one(&old.constant), one(&new.constant));
    let pattern = |p: &Option<(Box<str>, Regex)>| p.as_ref().map(|(text, _)| vec![text.to_string()]);
    set("pattern", pattern(&old.pattern), pattern(&new.pattern));
    match (&old.items, &new.items) {
        (Some(o), Some(n)) => {
            out.extend(compare(o, n).into_iter().map(|(d, text)| (d, format!("items: {text}"))));
        }
        (Some(_), None) => out.push((Widened, String::from("rules for items removed"))),
        (None, Some(_)) => out.push((Narrowed, String::from("rules for items added"))),
        (None, None) => {}
    }
    for (field, o) in &old.properties {
        match new.properties.iter().find(|(f, _)| f == field) {
            Some((_, n)) => {
                out.extend(
                    compare(o, n).into_iter().map(|(d, text)| (d, format!("field `{field}`: {text}"))),
                );
            }
            None => out.push((Widened, format!("rules for field `{field}` removed"))),
        }
    }
    for (field, _) in new.properties.iter().filter(|(f, _)| !old.properties.iter().any(|(o, _)| o == f)) {
        out.push((Narrowed, format!("rules for field `{field}` added")));
    }
    out
}
