//! What a policy says about tool output: size budgets and an action per
//! detector class or rule, as written on an agent (`output:`) or on the
//! tools of a constraint (`constraints.<tool>.output:`), and how they
//! combine into the settings of one call.

use std::collections::BTreeMap;

use super::catalogue::{Class, PersonalKind};
use super::scan::{Governed, Scanner};

/// What happens to a result in which a rule finds something.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// The rule does not run.
    Off,
    /// The result passes unchanged; the finding is recorded.
    Flag,
    /// Each match is replaced by `[REDACTED:<rule>]`.
    Redact,
    /// The whole result is withheld; the model gets an explanation.
    Deny,
    /// Withheld, and the session is killed.
    Kill,
}

impl Action {
    /// Every action with its policy keyword.
    pub const ALL: [(&'static str, Action); 5] = [
        ("off", Action::Off),
        ("flag", Action::Flag),
        ("redact", Action::Redact),
        ("deny", Action::Deny),
        ("kill", Action::Kill),
    ];

    /// The policy keyword.
    pub fn as_str(self) -> &'static str {
        Self::ALL.iter().find(|(_, a)| *a == self).map_or("?", |(name, _)| name)
    }

    /// The action of a keyword.
    pub fn named(name: &str) -> Option<Action> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
    }
}

/// What happens to a result over its budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Oversize {
    /// Keep a prefix within the budget, with a marker and the sizes.
    Truncate,
    /// Withhold the whole result.
    Deny,
}

/// Output rules as one place of a policy writes them; every field may be
/// unset there.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OutputRules {
    /// `maxBytes`: the text the model receives, in UTF-8 bytes.
    pub max_bytes: Option<u64>,
    /// `maxTokens`: the same text in estimated tokens
    /// ([`super::budget::estimate_tokens`]).
    pub max_tokens: Option<u64>,
    /// `onOversize`.
    pub oversize: Option<Oversize>,
    /// `secrets`, `personalData.<kind>`, `injection`.
    pub classes: BTreeMap<Class, Action>,
    /// `rules.<id>`: one rule's action, over its class's; also the actions
    /// of the policy's own patterns.
    pub rules: BTreeMap<String, Action>,
}

impl OutputRules {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == OutputRules::default()
    }

    /// The stricter of two sets, field by field: the smaller budget, the
    /// stronger action (how an agent's rules combine with those it
    /// inherits, and the rules of several constraints on one tool).
    pub fn strictest(mut self, other: &OutputRules) -> OutputRules {
        let smaller = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max_bytes = smaller(self.max_bytes, other.max_bytes);
        self.max_tokens = smaller(self.max_tokens, other.max_tokens);
        self.oversize = self.oversize.max(other.oversize);
        for (class, action) in &other.classes {
            let entry = self.classes.entry(*class).or_insert(*action);
            *entry = (*entry).max(*action);
        }
        for (rule, action) in &other.rules {
            let entry = self.rules.entry(rule.clone()).or_insert(*action);
            *entry = (*entry).max(*action);
        }
        self
    }

    /// These rules with `over`'s fields put over them (a tool's rules over
    /// its agent's).
    pub fn overridden_by(mut self, over: &OutputRules) -> OutputRules {
        self.max_bytes = over.max_bytes.or(self.max_bytes);
        self.max_tokens = over.max_tokens.or(self.max_tokens);
        self.oversize = over.oversize.or(self.oversize);
        self.classes.extend(over.classes.iter().map(|(c, a)| (*c, *a)));
        self.rules.extend(over.rules.iter().map(|(r, a)| (r.clone(), *a)));
        self
    }

    /// The action of each of the scanner's rules under these settings.
    pub fn actions(&self, scanner: &Scanner) -> Vec<Action> {
        scanner
            .rules()
            .iter()
            .map(|rule| {
                let own = self.rules.get(&*rule.id).copied();
                let class = match rule.governed {
                    Governed::Builtin(class) => self.classes.get(&class).copied(),
                    Governed::Policy => None,
                };
                own.or(class).unwrap_or(Action::Off)
            })
            .collect()
    }

    /// The rules as the decision's `obligations.output` shows them:
    /// budgets, and each action that is not `off` by class or rule.
    pub fn summary(&self) -> serde_json::Value {
        let mut summary = serde_json::Map::new();
        let budgets = [("maxBytes", self.max_bytes), ("maxTokens", self.max_tokens)];
        for (key, value) in budgets {
            if let Some(value) = value {
                summary.insert(key.into(), value.into());
            }
        }
        if self.max_bytes.is_some() || self.max_tokens.is_some() {
            let oversize = match self.oversize {
                Some(Oversize::Deny) => "deny",
                _ => "truncate",
            };
            summary.insert("onOversize".into(), oversize.into());
        }
        let on = |a: &&Action| **a != Action::Off;
        let classes: serde_json::Map<String, serde_json::Value> =
            self.classes.iter().filter(|(_, a)| on(a)).map(|(c, a)| (c.name(), a.as_str().into())).collect();
        if !classes.is_empty() {
            summary.insert("detectors".into(), classes.into());
        }
        let rules: serde_json::Map<String, serde_json::Value> =
            self.rules.iter().map(|(r, a)| (r.clone(), a.as_str().into())).collect();
        if !rules.is_empty() {
            summary.insert("rules".into(), rules.into());
        }
        serde_json::Value::Object(summary)
    }

    /// Whether these rules can change or withhold a result.
    pub fn applies(&self) -> bool {
        self.max_bytes.is_some()
            || self.max_tokens.is_some()
            || self.classes.values().chain(self.rules.values()).any(|a| *a != Action::Off)
    }
}

/// The class of a policy key under `output:` (`secrets`, `injection`) or
/// under `personalData:` (`email`, ...).
pub fn personal_kind(key: &str) -> Option<PersonalKind> {
    PersonalKind::ALL.iter().find(|(k, _)| *k == key).map(|(_, kind)| *kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictest_takes_the_smaller_budget_and_the_stronger_action() {
        let a = OutputRules {
            max_bytes: Some(100),
            classes: [(Class::Secret, Action::Flag)].into(),
            ..OutputRules::default()
        };
        let b = OutputRules {
            max_bytes: Some(50),
            max_tokens: Some(10),
            classes: [(Class::Secret, Action::Deny), (Class::Injection, Action::Flag)].into(),
            ..OutputRules::default()
        };
        let both = a.clone().strictest(&b);
        assert_eq!((both.max_bytes, both.max_tokens), (Some(50), Some(10)));
        assert_eq!(both.classes[&Class::Secret], Action::Deny);
        let over = b.overridden_by(&a);
        assert_eq!(over.max_bytes, Some(100));
        assert_eq!(over.classes[&Class::Secret], Action::Flag);
        assert_eq!(over.classes[&Class::Injection], Action::Flag);
    }
}
