//! The architecture, checked: the runner's top-level modules only use the
//! ones below them (see `src/lib.rs`), no two files of a crate import each
//! other in a circle, and stage kinds never import each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The module path of every `.rs` file below `src` (`run/engine.rs` ->
/// `run::engine`, `run/mod.rs` -> `run`), and its code without comments.
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().map_or(true, |x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            let code: String = std::fs::read_to_string(&p)
                .unwrap()
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .map(|l| format!("{l}\n"))
                .collect();
            out.insert(parts.join("::"), code);
        }
    }
    out
}

/// Each file's imports of other files of the crate, by `crate::a::b`
/// (resolved to the longest module path that exists).
fn edges(mods: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, code) in mods {
        let deps = out.entry(name.clone()).or_default();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let path: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
            let target = (1..=parts.len())
                .rev()
                .map(|n| parts[..n].join("::"))
                .find(|m| mods.contains_key(m));
            if let Some(t) = target.filter(|t| t != name && !name.starts_with(&format!("{t}::"))) {
                deps.insert(t);
            }
        }
    }
    out
}

fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_owned(), 1);
        path.push(n.to_owned());
        for m in g.get(n).into_iter().flatten() {
            match state.get(m).copied().unwrap_or(0) {
                1 => {
                    let at = path.iter().position(|p| p == m).unwrap();
                    let mut cycle = path[at..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, g, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(n.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if state.get(n).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, g, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn no_file_imports_another_in_a_circle() {
    for src in [
        root().join("src"),
        root().join("stages/src"),
        root().join("cache/src"),
        root().join("torch/src"),
    ] {
        let g = edges(&modules(&src));
        if let Some(cycle) = find_cycle(&g) {
            panic!("{}: import circle {}", src.display(), cycle.join(" -> "));
        }
    }
}

#[test]
fn runner_modules_only_use_the_ones_below_them() {
    // src/lib.rs documents this order.
    let rank = |m: &str| match m.split("::").next().unwrap() {
        "" | "commands" => 6,
        "cli" | "report" | "html" | "fixtures" | "slurm" => 5,
        "error" => 4,
        "remote" => 3,
        "run" => 2,
        "pipeline" => 1,
        other => {
            panic!("module `{other}` has no place in the layers: add it here and to src/lib.rs")
        }
    };
    let g = edges(&modules(&root().join("src")));
    for (from, deps) in &g {
        for to in deps {
            let top = |m: &str| m.split("::").next().unwrap().to_owned();
            let allowed = rank(from) > rank(to)
                || top(from) == top(to)
                || (top(from) == "cli" && top(to) == "fixtures");
            assert!(allowed, "`{from}` uses `{to}`, which is above or beside it");
        }
    }
}

#[test]
fn kinds_never_import_each_other() {
    let g = edges(&modules(&root().join("stages/src")));
    for (from, deps) in &g {
        for to in deps.iter().filter(|t| t.starts_with("kinds")) {
            assert!(
                from == "kinds" || from.is_empty(),
                "`{from}` imports `{to}`: kinds share code through params, formats, train, worker, eval or data"
            );
        }
    }
}
