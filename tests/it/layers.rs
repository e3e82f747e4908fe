//! The module layers of docs/architecture.md, checked: every `crate::<module>` reference in
//! src/ (outside `#[cfg(test)]` code) points to a strictly lower layer, so imports flow one
//! way and no two modules import each other.

use std::collections::BTreeSet;
use std::path::Path;

/// Each top-level module and its layer; a module may only use modules of lower layers.
const LAYERS: &[(&str, u8)] = &[
    ("types", 0),
    ("cli", 1),
    ("config", 1),
    ("state", 1),
    ("supervisor", 1),
    ("fetch", 2),
    ("output", 3),
    ("services", 3),
    ("console", 4),
    ("error", 5),
    ("settings", 6),
    ("stack", 7),
    ("commands", 8),
    ("lib", 9),
    ("main", 9),
];

fn layer(module: &str) -> u8 {
    LAYERS
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(_, layer)| *layer)
        .unwrap_or_else(|| panic!("src/{module} has no layer in tests/it/layers.rs: add it there and to docs/architecture.md"))
}

fn references(dir: &Path, out: &mut Vec<(String, String, String)>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            references(&path, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let relative = path.strip_prefix(repo()).unwrap_or(&path);
        let module = relative
            .components()
            .nth(1)
            .and_then(|c| c.as_os_str().to_str())
            .map(|c| c.trim_end_matches(".rs").to_string())
            .expect("a module name");
        let text = std::fs::read_to_string(&path).expect("read a source file");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (line_no, line) in code.lines().enumerate() {
            for (at, _) in line.match_indices("crate::") {
                let used: String = line[at + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !used.is_empty() && used != module {
                    out.push((
                        module.clone(),
                        used,
                        format!("{}:{}", relative.display(), line_no + 1),
                    ));
                }
            }
        }
    }
}

#[test]
fn every_import_points_to_a_lower_layer() {
    let src = repo().join("src");
    let mut found = Vec::new();
    references(&src, &mut found);
    assert!(found.len() > 50, "too few references found: {found:?}");
    let upward: BTreeSet<String> = found
        .iter()
        .filter(|(from, to, _)| layer(to) >= layer(from))
        .map(|(from, to, at)| {
            format!(
                "{at}: {from} (layer {}) uses {to} (layer {})",
                layer(from),
                layer(to)
            )
        })
        .collect();
    assert!(
        upward.is_empty(),
        "imports against the layers of docs/architecture.md:\n{}",
        upward.into_iter().collect::<Vec<_>>().join("\n")
    );
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}
