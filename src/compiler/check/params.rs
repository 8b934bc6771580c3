//! `params.<arg>` rules: compiled once and checked for satisfiability.

use regex::RegexBuilder;

use crate::compiler::ast::{ParamSchema, Spanned};
use crate::compiler::params::{ParamCheck, json_equal};
use crate::compiler::path::PathRoot;
use crate::diagnostic::{Code, Diagnostic, Diagnostics};

/// Compiles a schema, reporting invalid patterns and unsatisfiable rules.
pub fn compile(schema: &ParamSchema, arg: &str, diagnostics: &mut Diagnostics) -> ParamCheck {
    let value = |s: &Option<Spanned<f64>>| s.as_ref().map(|s| s.value);
    let count = |s: &Option<Spanned<u64>>| s.as_ref().map(|s| s.value);
    let pattern = schema.pattern.as_ref().and_then(|p| {
        match RegexBuilder::new(&p.value).size_limit(crate::compiler::condition::REGEX_SIZE_LIMIT).build() {
            Ok(regex) => Some((p.value.as_str().into(), regex)),
            Err(error) => {
                diagnostics.push(
                    Diagnostic::new(Code::InvalidRegex, format!("invalid `pattern` for argument `{arg}`"), p.location)
                        .with_label(crate::compiler::condition::regex_error_text(&error))
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
        items: schema.items.as_ref().map(|items| Box::new(compile(items, arg, diagnostics))),
        min_items: count(&schema.min_items),
        max_items: count(&schema.max_items),
        path_within: roots(&schema.path_within, "pathWithin", arg, diagnostics),
        path_not_within: roots(&schema.path_not_within, "pathNotWithin", arg, diagnostics),
        properties: schema
            .properties
            .iter()
            .flatten()
            .map(|field| {
                let name = format!("{arg}.{}", field.name.value);
                (field.name.value.as_str().into(), compile(&field.schema, &name, diagnostics))
            })
            .collect(),
    };
    satisfiable(schema, &check, arg, diagnostics);
    check
}

/// The roots of a path rule; each must be a path with a normal form.
fn roots(
    list: &Option<Spanned<Vec<Spanned<String>>>>,
    key: &str,
    arg: &str,
    diagnostics: &mut Diagnostics,
) -> Option<Vec<PathRoot>> {
    let list = list.as_ref()?;
    if list.value.is_empty() {
        diagnostics.push(
            Diagnostic::new(
                Code::UnsatisfiableParams,
                format!("`{key}` of argument `{arg}` is empty"),
                list.location,
            )
            .with_help("list the directories, e.g. `/srv/docs`"),
        );
    }
    let roots = list
        .value
        .iter()
        .filter_map(|root| match PathRoot::new(&root.value) {
            Some(normal) => Some(normal),
            None => {
                diagnostics.push(
                    Diagnostic::new(
                        Code::InvalidValue,
                        format!("`{}` in `{key}` of argument `{arg}` is not a path toolgate can place", root.value),
                        root.location,
                    )
                    .with_help("write a directory without `..` above its start, e.g. `/srv/docs` or `.github/workflows`"),
                );
                None
            }
        })
        .collect();
    Some(roots)
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
