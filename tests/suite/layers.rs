//! The architecture, enforced: each top-level module of `src/` imports
//! only the layers below it (ARCHITECTURE.md has the picture).

use std::collections::BTreeSet;
use std::path::Path;

use crate::util::root;

/// Each layer and what it may import, lowest first.
const LAYERS: &[(&str, &[&str])] = &[
    ("source", &[]),
    ("hash", &[]),
    ("diagnostic", &["source"]),
    ("output", &[]),
    ("compiler", &["source", "hash", "diagnostic", "output"]),
    ("state", &["hash"]),
    ("engine", &["source", "hash", "diagnostic", "output", "compiler", "state"]),
    ("audit", &["hash", "compiler", "state", "engine"]),
    ("protocol", &["diagnostic", "output", "compiler", "engine", "state"]),
    ("service", &["hash", "diagnostic", "output", "compiler", "state", "engine", "audit", "protocol"]),
    ("server", &["protocol", "service"]),
    ("proxy", &["output", "compiler", "state", "protocol", "service"]),
    ("console", &["hash", "compiler", "state", "audit", "protocol", "service"]),
    ("authoring", &["source", "diagnostic", "output", "compiler", "state", "engine", "protocol", "service"]),
];

fn imports(path: &Path, found: &mut BTreeSet<String>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("read dir") {
            imports(&entry.expect("entry").path(), found);
        }
        return;
    }
    let text = std::fs::read_to_string(path).expect("read");
    for (at, _) in text.match_indices("crate::") {
        let name: String = text[at + "crate::".len()..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        found.insert(name);
    }
}

#[test]
fn every_layer_imports_only_the_layers_below_it() {
    let src = root().join("src");
    // Every folder and loose file but the binary's (`cli/`, `main.rs`) and the map (`lib.rs`).
    let mut modules: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(&src)
        .expect("src")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name().is_some_and(|n| !["cli", "main.rs", "lib.rs"].contains(&n.to_str().unwrap_or("")))
        })
        .map(|p| (p.file_stem().expect("name").to_string_lossy().into_owned(), p))
        .collect();
    modules.sort();
    for (module, path) in &modules {
        let Some((_, allowed)) = LAYERS.iter().find(|(name, _)| name == module) else {
            panic!(
                "`src/{module}/` is not in the layer table of tests/suite/layers.rs (and ARCHITECTURE.md)"
            );
        };
        let mut found = BTreeSet::new();
        imports(path, &mut found);
        found.remove(module.as_str());
        let stray: Vec<&String> = found.iter().filter(|name| !allowed.contains(&name.as_str())).collect();
        assert!(stray.is_empty(), "`{module}` imports {stray:?}, which it may not");
    }
}

#[test]
fn the_top_of_src_holds_at_most_four_files() {
    let loose: Vec<String> = std::fs::read_dir(root().join("src"))
        .expect("src")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    assert!(loose.len() <= 4, "{loose:?}");
}
