//! `toolgate detectors`: the built-in output rules, from their own
//! definitions (what the book's catalogue shows).

use toolgate::output::catalogue::{BUILTIN, Validation};

use super::Exit;

/// Prints the catalogue as a Markdown table, or as JSON.
pub fn run(json: bool) -> Exit {
    if json {
        let rules: Vec<serde_json::Value> = BUILTIN
            .iter()
            .map(|rule| {
                serde_json::json!({
                    "id": rule.id, "setting": rule.class.name(), "finds": rule.title,
                    "keywords": rule.keywords, "pattern": rule.pattern,
                    "checksum": checksum(rule.validation), "examples": rule.examples,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rules));
        return Exit::Ok;
    }
    println!("| Rule | Setting | Finds | Checked by |");
    println!("| --- | --- | --- | --- |");
    for rule in BUILTIN {
        let check = checksum(rule.validation).unwrap_or("the pattern");
        println!("| `{}` | `{}` | {} | {check} |", rule.id, rule.class.name(), rule.title);
    }
    Exit::Ok
}

fn checksum(validation: Validation) -> Option<&'static str> {
    match validation {
        Validation::None => None,
        Validation::Luhn => Some("the pattern and the Luhn checksum"),
        Validation::Iban => Some("the pattern and the mod-97 checksum"),
    }
}
