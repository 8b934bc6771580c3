//! The JSON Schema of the policy format (for editors) agrees with the
//! compiler: it accepts every example policy and rejects what the loader
//! rejects for its shape.

use serde_json::Value;

use crate::util::root;

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join("schema/toolgate-policy.schema.json")).expect("schema");
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::validator_for(&schema).expect("schema compiles")
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).expect("YAML")
}

#[test]
fn the_schema_accepts_every_example_policy() {
    let validator = validator();
    let sources =
        toolgate::compiler::files::read_policies(&[root().join("policies"), root().join("tests/seed.yaml")])
            .expect("policies");
    assert!(sources.len() >= 4);
    for source in sources {
        let value = yaml(std::str::from_utf8(&source.bytes).expect("UTF-8"));
        let errors: Vec<String> =
            validator.iter_errors(&value).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", source.name);
    }
}

#[test]
fn the_schema_rejects_what_the_compiler_rejects_for_its_shape() {
    let validator = validator();
    let invalid = [
        "agentPolicies:\n  bot:\n    alowedTools: [a]\n",
        "agentPolicies:\n  bot:\n    allowedTools: a\n",
        "agentPolicies:\n  bot:\n    auditLevel: verbose\n",
        "agentPolicies:\n  bot:\n    constraints:\n      t:\n        maxPerSession: -1\n",
        "agentPolicies:\n  bot:\n    constraints:\n      t:\n        rateLimit: fast\n",
        "agentPolicies:\n  bot:\n    constraints:\n      t:\n        params:\n          n: {type: integr}\n",
        "agentPolicies:\n  bot:\n    approvalGates:\n      t:\n        approver: finance\n",
        "agentPolicies:\n  bot:\n    session:\n      maxToolCals: 3\n",
        "agents:\n  bot: {}\n",
    ];
    for text in invalid {
        assert!(!validator.is_valid(&yaml(text)), "the schema accepts:\n{text}");
        let checked = toolgate::compile(
            vec![toolgate::compiler::PolicySource { name: "p.yaml".into(), bytes: text.as_bytes().to_vec() }],
            &toolgate::NoFiles,
        );
        assert!(checked.policy.is_none(), "the compiler accepts:\n{text}");
    }
}
