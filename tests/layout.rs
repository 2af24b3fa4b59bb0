//! The core's layout keeps telling its story: the stages under `src/core/` may use each other
//! in one direction only. Two stages that import each other are one tangled stage, the thing
//! the regrouping undid (runtime ↔ delivery, runtime ↔ lookup, http ↔ delivery,
//! click_to_call ↔ engine); this test stops a new cycle at review time. No PBX needed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The stage a file of `src/core/` belongs to: its first folder, or its own name.
fn stage(core: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(core).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    (name != "mod").then(|| name.to_string())
}

/// Which stages each stage names as `crate::core::<stage>` outside its tests and doc comments.
fn uses(core: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    sources(core, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(from) = stage(core, &file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for line in code.lines() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            for (i, _) in line.match_indices("crate::core::") {
                let to: String = line[i + "crate::core::".len()..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !to.is_empty() && to != from {
                    graph.entry(from.clone()).or_default().insert(to);
                }
            }
        }
    }
    graph
}

#[test]
fn no_two_stages_of_the_core_import_each_other() {
    let core = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
    let graph = uses(&core);
    assert!(
        graph.get("runtime").is_some_and(|u| u.contains("delivery")),
        "the scan reads the sources: {graph:?}"
    );
    let mut cycles = Vec::new();
    for (a, tos) in &graph {
        for b in tos {
            if a < b && graph.get(b).is_some_and(|u| u.contains(a)) {
                cycles.push(format!("{a} <-> {b}"));
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "stages that import each other: {cycles:?}"
    );
}

#[test]
fn the_core_names_no_host() {
    let core = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
    let mut files = Vec::new();
    sources(&core, &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for needle in ["crate::asterisk", "unsafe "] {
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            assert!(
                !code
                    .lines()
                    .any(|l| !l.trim_start().starts_with("//") && l.contains(needle)),
                "{} uses `{needle}`: the core is host-neutral and safe (the adapter holds both)",
                file.display()
            );
        }
    }
}
