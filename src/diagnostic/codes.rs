//! The table of diagnostic codes. One row per check; codes never change
//! meaning once released. The book's diagnostics reference lists every row.

use std::fmt;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The policy set is valid but probably not what the author meant.
    Warning,
    /// The policy set does not compile.
    Error,
}

impl Severity {
    /// `error` or `warning`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

macro_rules! codes {
    ($( $(#[doc = $doc:literal])* $variant:ident = ($code:literal, $name:literal, $severity:ident), )*) => {
        /// A stable diagnostic code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl Code {
            /// Every code, in table order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The code as shown to users, e.g. `TG010`.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }

            /// A short kebab-case name, e.g. `unknown-key`.
            pub fn name(self) -> &'static str {
                match self { $(Code::$variant => $name,)* }
            }

            /// The severity of every diagnostic with this code.
            pub fn severity(self) -> Severity {
                match self { $(Code::$variant => Severity::$severity,)* }
            }

            /// One sentence saying what the code means (its row's doc comment).
            pub fn summary(self) -> &'static str {
                match self { $(Code::$variant => concat!($($doc),*).trim_ascii(),)* }
            }
        }
    };
}

codes! {
    /// The file is not valid YAML.
    YamlSyntax = ("TG002", "yaml-syntax", Error),
    /// A mapping has the same key twice.
    DuplicateKey = ("TG003", "duplicate-key", Error),
    /// The file exceeds a safety limit (size, nesting, aliases).
    ResourceLimit = ("TG004", "resource-limit", Error),
    /// The file is not UTF-8 text.
    NotUtf8 = ("TG005", "not-utf8", Error),
    /// The file holds no policy.
    EmptyFile = ("TG006", "empty-file", Error),
    /// A key the policy language does not know.
    UnknownKey = ("TG010", "unknown-key", Error),
    /// A value of the wrong type.
    WrongType = ("TG011", "wrong-type", Error),
    /// A required key is missing.
    MissingKey = ("TG012", "missing-key", Error),
    /// A value of the right type that is not allowed.
    InvalidValue = ("TG013", "invalid-value", Error),
    /// A tool pattern is not a valid glob.
    InvalidGlob = ("TG014", "invalid-glob", Error),
    /// An agent or tool name has characters or a length names may not have.
    InvalidName = ("TG015", "invalid-name", Error),
    /// Two files define the same agent.
    DuplicateAgent = ("TG020", "duplicate-agent", Error),
    /// `extends` names an agent that does not exist.
    UnknownParent = ("TG021", "unknown-parent", Error),
    /// `extends` forms a cycle.
    ExtendsCycle = ("TG022", "extends-cycle", Error),
    /// A gate names an approver the policy set does not declare.
    UnknownApprover = ("TG023", "unknown-approver", Error),
    /// An approver is declared twice.
    DuplicateApprover = ("TG024", "duplicate-approver", Error),
    /// A condition does not parse.
    ConditionSyntax = ("TG030", "condition-syntax", Error),
    /// A condition calls a function that does not exist.
    UnknownFunction = ("TG031", "unknown-function", Error),
    /// A condition names a variable that does not exist.
    UnknownVariable = ("TG032", "unknown-variable", Error),
    /// A condition is not well typed.
    ConditionType = ("TG033", "condition-type", Error),
    /// A regular expression does not compile.
    InvalidRegex = ("TG034", "invalid-regex", Error),
    /// Parameter rules no argument can satisfy.
    UnsatisfiableParams = ("TG040", "unsatisfiable-params", Error),
    /// An approval gate both always applies and has a condition.
    AmbiguousGate = ("TG041", "ambiguous-gate", Error),
    /// A tool catalog cannot be read or is not a `tools/list` result.
    CatalogUnreadable = ("TG050", "catalog-unreadable", Error),
    /// A tool name that its server's catalog does not list.
    UnknownTool = ("TG051", "unknown-tool", Error),
    /// An argument the tool's `inputSchema` does not declare.
    UnknownArgument = ("TG052", "unknown-argument", Error),
    /// A parameter rule that disagrees with the tool's `inputSchema`.
    SchemaMismatch = ("TG053", "schema-mismatch", Error),
    /// A feature that needs a catalog used on tools no catalog describes.
    NeedsCatalog = ("TG054", "needs-catalog", Error),
    /// A Rego module beside the policy does not parse or compile.
    RegoModule = ("TG060", "rego-module", Error),
    /// A `rego:` reference names no rule of the Rego modules.
    UnknownRegoRule = ("TG061", "unknown-rego-rule", Error),
    /// A Rego module calls a builtin, or holds a number, that regorus
    /// would evaluate without bound.
    RegoUnbounded = ("TG062", "rego-unbounded", Error),
    /// An approver is declared under the reserved name `user`.
    ReservedApprover = ("TG063", "reserved-approver", Error),
    /// A tool is both allowed and denied; the allow never takes effect.
    AllowShadowedByDeny = ("TG100", "allow-shadowed-by-deny", Warning),
    /// A constraint or gate on a tool the agent can never call.
    DeadRule = ("TG101", "dead-rule", Warning),
    /// An approval gate that can never apply.
    InactiveGate = ("TG102", "inactive-gate", Warning),
    /// A glob or selector that matches no tool of its catalog.
    MatchesNoTool = ("TG103", "matches-no-tool", Warning),
    /// A wildcard allow covers destructive tools that no approval gate guards.
    UnguardedDestructive = ("TL001", "unguarded-destructive", Warning),
    /// An approval gate names no approver.
    GateWithoutApprover = ("TL002", "gate-without-approver", Warning),
    /// An agent has no cap on its calls per session.
    NoSessionCap = ("TL003", "no-session-cap", Warning),
    /// A deny entry that no allow entry overlaps; default-deny already denies it.
    RedundantDeny = ("TL004", "redundant-deny", Warning),
    /// A list entry that another entry of the same list already covers.
    ShadowedPattern = ("TL005", "shadowed-pattern", Warning),
    /// A path confined by comparing strings (a prefix or an anchored pattern).
    PathPrefix = ("TL006", "path-prefix", Warning),
    /// A `where` selector that reads the annotations a server reports, no catalog pinning them.
    ServerClaims = ("TL007", "server-claims", Warning),
}

impl Code {
    /// Whether the code is a lint rule's (`toolgate lint`) rather than the checker's.
    pub fn is_lint(self) -> bool {
        self.as_str().starts_with("TL")
    }

    /// The lint rule's code with this name (`no-session-cap`) or code (`TL003`).
    pub fn lint_named(name: &str) -> Option<Code> {
        Code::ALL.iter().copied().filter(|c| c.is_lint()).find(|c| c.name() == name || c.as_str() == name)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
