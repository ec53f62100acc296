//! The proxy's modules form layers: each names only modules below it, so no two modules import
//! each other, directly or round a loop. A loop means a layer cannot be changed or understood
//! without the ones above it (the HTTP/1 server naming the pipeline, say); this test finds one
//! from the sources and names the modules in it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`h1_server::response`) → source, tests and comments left out.
fn modules(root: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(root).unwrap().with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] {
                continue; // the crate root wires modules together; it is above all of them
            }
            let source = std::fs::read_to_string(&path).unwrap();
            let code = source.split("#[cfg(test)]").next().unwrap_or("");
            let code: String = code
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .map(|l| format!("{l}\n"))
                .collect();
            found.insert(parts.join("::"), code);
        }
    }
    found
}

/// The longest module path that `segments` starts with.
fn resolve(segments: &[&str], names: &BTreeSet<String>) -> Option<String> {
    (1..=segments.len())
        .rev()
        .map(|n| segments[..n].join("::"))
        .find(|candidate| names.contains(candidate))
}

fn path_segments(text: &str) -> Vec<&str> {
    text.split("::")
        .map(|s| s.trim_matches(|c: char| !(c.is_alphanumeric() || c == '_')))
        .take_while(|s| !s.is_empty())
        .collect()
}

/// The modules each module names through `crate::` or `super::` paths, `use` groups included.
fn imports(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    let mut edges = BTreeMap::new();
    for (module, code) in modules {
        let parent: Vec<&str> = module.split("::").collect();
        let parent = &parent[..parent.len() - 1];
        let mut targets = BTreeSet::new();
        let mut add = |segments: Vec<&str>| {
            if let Some(t) = resolve(&segments, &names)
                && t != *module
                && !module.starts_with(&format!("{t}::"))
            {
                targets.insert(t);
            }
        };
        for (keyword, base) in [("crate::", vec![]), ("super::", parent.to_vec())] {
            for (at, _) in code.match_indices(keyword) {
                let before = code[..at].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                    continue;
                }
                let rest = &code[at + keyword.len()..];
                if let Some(group) = rest.strip_prefix('{') {
                    let group = &group[..group.find("};").unwrap_or(group.len())];
                    for item in group.split(',') {
                        let mut segments = base.clone();
                        segments.extend(path_segments(item.trim()));
                        add(segments);
                    }
                } else {
                    let mut segments = base.clone();
                    segments.extend(path_segments(rest));
                    add(segments);
                }
            }
        }
        edges.insert(module.clone(), targets);
    }
    edges
}

/// Strongly connected components with more than one module (Tarjan).
fn loops(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !state.index.contains_key(v.as_str()) {
            visit(&mut state, v);
        }
    }
    state.found
}

/// The same arrows between top-level modules (a layer and everything inside it).
fn between_layers(edges: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, BTreeSet<String>> {
    let top = |m: &str| m.split("::").next().unwrap_or(m).to_owned();
    let mut layers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, targets) in edges {
        let from = top(module);
        let entry = layers.entry(from.clone()).or_default();
        entry.extend(targets.iter().map(|t| top(t)).filter(|t| *t != from));
    }
    layers
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = modules(&root);
    let edges = imports(&modules);
    // The finder must see the arrows it is meant to judge.
    assert!(edges["pipeline"].contains("forward"), "pipeline -> forward not found");
    assert!(edges["server"].contains("h1_server"), "server -> h1_server not found");
    assert!(edges["h1_server::response"].contains("headers::raw"));
    assert_no_loops(&edges);
    // Between layers too: `upstream::pool` naming `body` while `body` names `upstream` is a
    // loop, though no single file imports another that imports it back.
    assert_no_loops(&between_layers(&edges));
}

fn assert_no_loops(edges: &BTreeMap<String, BTreeSet<String>>) {
    let found = loops(edges);
    let described: Vec<String> = found
        .iter()
        .map(|component| {
            let arrows: Vec<String> = component
                .iter()
                .map(|m| {
                    let inside: Vec<&str> = edges[m]
                        .iter()
                        .filter(|t| component.contains(t))
                        .map(String::as_str)
                        .collect();
                    format!("  {m} -> {}", inside.join(", "))
                })
                .collect();
            arrows.join("\n")
        })
        .collect();
    assert!(found.is_empty(), "import loops:\n{}", described.join("\n\n"));
}

#[test]
fn the_http1_server_and_the_upstream_client_know_nothing_above_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = imports(&modules(&root));
    let above = [
        "pipeline",
        "forward",
        "ws_tunnel",
        "body",
        "server",
        "admin_api",
        "auth",
        "error_page",
    ];
    for (module, targets) in &edges {
        if !(module.starts_with("h1_server") || module.starts_with("upstream") || module.starts_with("http1")) {
            continue;
        }
        for t in targets {
            let top = t.split("::").next().unwrap_or(t);
            assert!(!above.contains(&top), "{module} imports {t}, a layer above it");
        }
    }
}
