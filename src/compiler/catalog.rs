//! MCP tool catalogs: the `tools/list` results a policy is checked against.
//!
//! A catalog is the JSON result object of an MCP `tools/list` call,
//! `{"tools": [{"name", "inputSchema", "annotations", ...}]}`. A policy names
//! its catalogs under `catalogs:`; with a `server`, the catalog's tool
//! `create_issue` is `github/create_issue` in the policy. This module parses
//! catalogs and answers questions about them; reading the files is the
//! caller's business (see [`crate::compiler::FileReader`]).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// An MCP tool annotation that policies can select tools by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hint {
    /// `readOnlyHint`: the tool does not modify its environment.
    ReadOnly,
    /// `destructiveHint`: the tool may delete or overwrite.
    Destructive,
    /// `idempotentHint`: repeating a call has no further effect.
    Idempotent,
    /// `openWorldHint`: the tool reaches outside systems.
    OpenWorld,
}

impl Hint {
    /// Every hint with its MCP name.
    pub const ALL: [(&'static str, Hint); 4] = [
        ("readOnlyHint", Hint::ReadOnly),
        ("destructiveHint", Hint::Destructive),
        ("idempotentHint", Hint::Idempotent),
        ("openWorldHint", Hint::OpenWorld),
    ];

    /// The MCP name, e.g. `readOnlyHint`.
    pub fn as_str(self) -> &'static str {
        Self::ALL.iter().find(|(_, h)| *h == self).map_or("?", |(name, _)| name)
    }
}

/// A tool's annotations with the MCP defaults applied: a tool that says
/// nothing is not read-only, destructive, not idempotent and open-world;
/// `destructiveHint` and `idempotentHint` only mean something for tools
/// that are not read-only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hints {
    read_only: bool,
    destructive: bool,
    idempotent: bool,
    open_world: bool,
}

impl Hints {
    /// The hints of MCP annotations (`None`, or a missing or non-boolean
    /// member: its default).
    pub fn from_annotations(annotations: Option<&Map<String, Value>>) -> Hints {
        let flag = |name: &str| annotations.and_then(|a| a.get(name)).and_then(Value::as_bool);
        let read_only = flag("readOnlyHint").unwrap_or(false);
        Hints {
            read_only,
            destructive: !read_only && flag("destructiveHint").unwrap_or(true),
            idempotent: read_only || flag("idempotentHint").unwrap_or(false),
            open_world: flag("openWorldHint").unwrap_or(true),
        }
    }

    /// The hints of a tool that has no annotations: the MCP defaults.
    pub fn unannotated() -> Hints {
        Hints::from_annotations(None)
    }

    /// The annotations these hints stand for, every member explicit.
    pub fn to_annotations(self) -> Map<String, Value> {
        Hint::ALL.iter().map(|(name, hint)| ((*name).to_owned(), Value::Bool(self.has(*hint)))).collect()
    }

    /// Whether the tool has the hint.
    pub fn has(self, hint: Hint) -> bool {
        match hint {
            Hint::ReadOnly => self.read_only,
            Hint::Destructive => self.destructive,
            Hint::Idempotent => self.idempotent,
            Hint::OpenWorld => self.open_world,
        }
    }
}

/// One tool of a catalog.
#[derive(Clone, Debug)]
pub struct CatalogTool {
    /// The name as policies write it (`github/create_issue`).
    pub name: String,
    /// The tool's `inputSchema`.
    pub input_schema: Value,
    /// Its annotations.
    pub hints: Hints,
}

impl CatalogTool {
    /// The argument names the schema declares (`inputSchema.properties`).
    pub fn arguments(&self) -> impl Iterator<Item = &str> {
        self.properties().into_iter().flat_map(|p| p.keys().map(String::as_str))
    }

    /// The schema of one argument.
    pub fn argument(&self, name: &str) -> Option<&Value> {
        self.properties().and_then(|p| p.get(name))
    }

    fn properties(&self) -> Option<&Map<String, Value>> {
        self.input_schema.get("properties").and_then(Value::as_object)
    }
}

/// Why a catalog file is not a catalog.
#[derive(Clone, Debug, PartialEq)]
pub struct CatalogError(pub String);

/// Parses one `tools/list` result, qualifying names with `server/`.
pub fn parse(bytes: &[u8], server: Option<&str>) -> Result<Vec<CatalogTool>, CatalogError> {
    let root: Value = serde_json::from_slice(bytes).map_err(|e| CatalogError(format!("not JSON: {e}")))?;
    let tools = root
        .get("tools")
        .and_then(Value::as_array)
        .ok_or_else(|| CatalogError(String::from("not a `tools/list` result: no `tools` list")))?;
    tools
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            let name = tool
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| CatalogError(format!("tool {i} has no `name`")))?;
            let input_schema = match tool.get("inputSchema") {
                Some(schema @ Value::Object(_)) => schema.clone(),
                _ => return Err(CatalogError(format!("tool `{name}` has no `inputSchema` object"))),
            };
            Ok(CatalogTool {
                name: match server {
                    Some(server) => format!("{server}/{name}"),
                    None => name.to_owned(),
                },
                input_schema,
                hints: Hints::from_annotations(tool.get("annotations").and_then(Value::as_object)),
            })
        })
        .collect()
}

/// Every catalog of a policy set.
#[derive(Clone, Debug, Default)]
pub struct Catalogs {
    tools: BTreeMap<String, CatalogTool>,
    /// The servers the catalogs describe; `None` for a catalog without prefix.
    servers: Vec<Option<String>>,
    /// The servers whose catalogs say `onDrift: deny`.
    deny_drift: Vec<Option<String>>,
}

impl Catalogs {
    /// Adds one parsed catalog; returns the names already defined by another.
    pub fn add(&mut self, server: Option<&str>, tools: Vec<CatalogTool>) -> Vec<String> {
        let server = server.map(str::to_owned);
        if !self.servers.contains(&server) {
            self.servers.push(server);
        }
        let mut clashes = Vec::new();
        for tool in tools {
            match self.tools.get(&tool.name) {
                Some(known) if known.input_schema != tool.input_schema || known.hints != tool.hints => {
                    clashes.push(tool.name);
                }
                Some(_) => {}
                None => {
                    self.tools.insert(tool.name.clone(), tool);
                }
            }
        }
        clashes
    }

    /// Marks a server's catalog `onDrift: deny`.
    pub fn deny_drift(&mut self, server: Option<&str>) {
        self.deny_drift.push(server.map(str::to_owned));
    }

    /// Whether calls to a server's drifted tools are denied.
    pub fn denies_drift(&self, server: Option<&str>) -> bool {
        self.deny_drift.iter().any(|s| s.as_deref() == server)
    }

    /// Whether there is no catalog at all.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// Whether a catalog is responsible for this name or pattern: its text
    /// before the first `/` names a catalog's server, or it has no `/` and
    /// a catalog has no server.
    pub fn covers(&self, pattern: &str) -> bool {
        let server = pattern.split_once('/').map(|(server, _)| server);
        self.servers.iter().any(|s| s.as_deref() == server)
    }

    /// The tool of this exact name.
    pub fn get(&self, name: &str) -> Option<&CatalogTool> {
        self.tools.get(name)
    }

    /// Every tool, by name.
    pub fn tools(&self) -> impl Iterator<Item = &CatalogTool> {
        self.tools.values()
    }

    /// The servers, for messages.
    pub fn servers(&self) -> impl Iterator<Item = Option<&str>> {
        self.servers.iter().map(Option::as_deref)
    }
}

/// How a server's live tools differ from its catalog.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Drift {
    /// Tools the server lists that the catalog does not (policy names).
    pub added: Vec<String>,
    /// Catalogued tools the server no longer lists.
    pub removed: Vec<String>,
    /// Tools whose `inputSchema` or annotations changed, with what changed.
    pub changed: Vec<Changed>,
}

/// One changed tool.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Changed {
    /// The tool, as policies name it.
    pub name: String,
    /// `inputSchema`, `annotations`, or both.
    pub what: Vec<&'static str>,
}

impl Drift {
    /// Whether the live tools are the catalog's.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

impl Catalogs {
    /// How `live` (a `server`'s whole `tools/list`, parsed with the same
    /// server) differs from the catalog for that server; `None` when no
    /// catalog describes the server.
    pub fn drift(&self, server: Option<&str>, live: &[CatalogTool]) -> Option<Drift> {
        if !self.servers.iter().any(|s| s.as_deref() == server) {
            return None;
        }
        let mut drift = Drift::default();
        let mut listed = std::collections::HashSet::new();
        for tool in live {
            if !listed.insert(tool.name.as_str()) {
                continue;
            }
            match self.tools.get(&tool.name) {
                None => drift.added.push(tool.name.clone()),
                Some(known) => {
                    let mut what = Vec::new();
                    if known.input_schema != tool.input_schema {
                        what.push("inputSchema");
                    }
                    if known.hints != tool.hints {
                        what.push("annotations");
                    }
                    if !what.is_empty() {
                        drift.changed.push(Changed { name: tool.name.clone(), what });
                    }
                }
            }
        }
        let prefix = server.map(|server| format!("{server}/"));
        let of_server = |name: &str| match &prefix {
            Some(prefix) => name.starts_with(prefix.as_str()),
            None => !name.contains('/'),
        };
        drift.removed = self
            .tools
            .keys()
            .filter(|name| of_server(name) && !listed.contains(name.as_str()))
            .cloned()
            .collect();
        Some(drift)
    }
}

/// A tool selector: `<glob> where [not] <hint> [and [not] <hint>]...`.
#[derive(Clone, Debug, PartialEq)]
pub struct Selector<'a> {
    /// The glob before `where`.
    pub glob: &'a str,
    /// Each hint with whether the tool must have it (`true`) or lack it.
    pub terms: Vec<(Hint, bool)>,
}

/// Parses a selector; `None` when `text` has no `where`.
pub fn parse_selector(text: &str) -> Option<Result<Selector<'_>, String>> {
    let (glob, condition) = text.split_once(" where ")?;
    let terms = condition
        .split(" and ")
        .map(|term| {
            let term = term.trim();
            let (wanted, name) = match term.strip_prefix("not ") {
                Some(name) => (false, name.trim()),
                None => (true, term),
            };
            Hint::ALL.iter().find(|(n, _)| *n == name).map(|(_, hint)| (*hint, wanted)).ok_or_else(|| {
                let names = Hint::ALL.map(|(n, _)| n);
                match crate::diagnostic::suggest(name, names) {
                    Some(best) => format!("unknown annotation `{name}`; did you mean `{best}`?"),
                    None => format!("unknown annotation `{name}`; use one of {}", names.join(", ")),
                }
            })
        })
        .collect::<Result<Vec<_>, _>>();
    Some(terms.map(|terms| Selector { glob: glob.trim(), terms }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_names_added_removed_and_changed_tools_of_the_server_only() {
        let catalog = br#"{"tools": [
            {"name": "read", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true}},
            {"name": "write", "inputSchema": {"type": "object"}},
            {"name": "gone", "inputSchema": {"type": "object"}}]}"#;
        let mut catalogs = Catalogs::default();
        catalogs.add(Some("fs"), parse(catalog, Some("fs")).expect("catalog"));
        catalogs.add(
            Some("gh"),
            parse(br#"{"tools": [{"name": "x", "inputSchema": {}}]}"#, Some("gh")).expect("catalog"),
        );
        let live = br#"{"tools": [
            {"name": "read", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": false}},
            {"name": "write", "inputSchema": {"type": "object", "required": ["path"]}},
            {"name": "new", "inputSchema": {"type": "object"}}]}"#;
        let drift = catalogs.drift(Some("fs"), &parse(live, Some("fs")).expect("live")).expect("catalogued");
        assert_eq!(drift.added, ["fs/new"]);
        assert_eq!(drift.removed, ["fs/gone"], "not gh/x: another server's tool");
        let changed: Vec<(&str, &[&str])> =
            drift.changed.iter().map(|c| (c.name.as_str(), &c.what[..])).collect();
        assert_eq!(changed, [("fs/read", &["annotations"][..]), ("fs/write", &["inputSchema"][..])]);
        assert_eq!(catalogs.drift(Some("mail"), &[]), None, "no catalog for this server");
        let same = catalogs.drift(
            Some("gh"),
            &parse(br#"{"tools": [{"name": "x", "inputSchema": {}}]}"#, Some("gh")).expect("live"),
        );
        assert_eq!(same.map(|d| d.is_empty()), Some(true));
    }

    #[test]
    fn annotations_take_the_mcp_defaults() {
        let tools = parse(
            br#"{"tools": [
                {"name": "a", "inputSchema": {"type": "object"}},
                {"name": "b", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true, "destructiveHint": true}},
                {"name": "c", "inputSchema": {"type": "object"}, "annotations": {"destructiveHint": false, "openWorldHint": false}}
            ]}"#,
            Some("s"),
        )
        .expect("catalog");
        let hints: Vec<(&str, [bool; 4])> =
            tools.iter().map(|t| (t.name.as_str(), Hint::ALL.map(|(_, h)| t.hints.has(h)))).collect();
        assert_eq!(
            hints,
            [
                ("s/a", [false, true, false, true]),
                ("s/b", [true, false, true, true]),
                ("s/c", [false, false, false, false]),
            ]
        );
    }

    #[test]
    fn malformed_catalogs_say_what_is_wrong() {
        assert!(parse(b"[]", None).unwrap_err().0.contains("no `tools` list"));
        assert!(parse(b"{", None).unwrap_err().0.starts_with("not JSON"));
        assert!(
            parse(br#"{"tools": [{"name": "x"}]}"#, None).unwrap_err().0.contains("`x` has no `inputSchema`")
        );
    }

    #[test]
    fn selectors_parse_hints_and_negations() {
        let selector =
            parse_selector("github/* where not readOnlyHint and destructiveHint").expect("selector");
        assert_eq!(
            selector,
            Ok(Selector {
                glob: "github/*",
                terms: vec![(Hint::ReadOnly, false), (Hint::Destructive, true)]
            })
        );
        assert_eq!(parse_selector("github/*"), None);
        let error = parse_selector("github/* where readOnly").expect("selector").unwrap_err();
        assert!(error.contains("did you mean `readOnlyHint`"), "{error}");
    }

    #[test]
    fn coverage_follows_the_server_prefix() {
        let mut catalogs = Catalogs::default();
        catalogs.add(Some("github"), Vec::new());
        assert!(catalogs.covers("github/get_me"));
        assert!(catalogs.covers("github/*"));
        assert!(!catalogs.covers("gitlab/get_me"));
        assert!(!catalogs.covers("refund"));
        catalogs.add(None, Vec::new());
        assert!(catalogs.covers("refund"));
    }
}
