//! Wiring the stages into a graph: `after` and kind references to other
//! stages' outputs, edges inferred from one stage's `outs` being another's
//! `deps`, one producer per output, and a topological order (a cycle is
//! named).

use std::collections::BTreeMap;

use tuneflow_stages::{suggest, OutputRef, Spanned};

use super::error::Diagnostic;
use super::plan::{Draft, Input, PlannedStage};

/// Resolves references and inferred edges, checks outputs, sorts the graph.
pub(super) fn wire(drafts: Vec<Draft>, diags: &mut Vec<Diagnostic>) -> Option<Vec<PlannedStage>> {
    let before = diags.len();
    let by_name: BTreeMap<&str, usize> = drafts
        .iter()
        .enumerate()
        .map(|(i, d)| (d.name.value.as_str(), i))
        .collect();
    let producers = check_outs(&drafts, diags);
    let mut inputs: Vec<BTreeMap<String, Input>> = vec![BTreeMap::new(); drafts.len()];
    let mut upstream: Vec<Vec<usize>> = vec![Vec::new(); drafts.len()];
    for (i, d) in drafts.iter().enumerate() {
        for r in &d.after {
            if let Some((j, names)) = wire_ref(d, r, &drafts, &by_name, diags) {
                upstream[i].push(j);
                for (name, output) in names {
                    inputs[i].insert(name, Input::Output { stage: j, output });
                }
            }
        }
        for u in &d.uses {
            if let Some((j, output)) = wire_use(d, u, &drafts, &by_name, diags) {
                upstream[i].push(j);
                inputs[i].insert(u.value.clone(), Input::Output { stage: j, output });
            }
        }
        for dep in &d.deps {
            wire_dep(i, &dep.value, &producers, &mut inputs[i], &mut upstream[i]);
        }
    }
    let order = topo_order(&drafts, &upstream, diags)?;
    if diags.len() > before {
        return None;
    }
    let mut position = vec![0; drafts.len()];
    for (pos, &i) in order.iter().enumerate() {
        position[i] = pos;
    }
    let mut drafts: Vec<Option<Draft>> = drafts.into_iter().map(Some).collect();
    let stages = order
        .iter()
        .map(|&i| {
            let d = drafts[i].take().expect("the order holds each stage once");
            let mut up: Vec<usize> = upstream[i].iter().map(|&j| position[j]).collect();
            up.sort_unstable();
            up.dedup();
            let inputs = inputs[i]
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Input::Output { stage, output } => Input::Output {
                            stage: position[*stage],
                            output: output.clone(),
                        },
                        file => file.clone(),
                    };
                    (k.clone(), v)
                })
                .collect();
            PlannedStage {
                name: d.name.value,
                stage: d.stage,
                inputs,
                outs: d.outs.into_iter().map(|o| o.value).collect(),
                outputs: d.outputs,
                upstream: up,
                resources: d.resources,
            }
        })
        .collect();
    Some(stages)
}

/// Resolves one `stage` or `stage.output` reference of `d`: the upstream
/// stage and (input name, output) for each output it reads.
fn wire_ref(
    d: &Draft,
    r: &Spanned<String>,
    drafts: &[Draft],
    by_name: &BTreeMap<&str, usize>,
    diags: &mut Vec<Diagnostic>,
) -> Option<(usize, Vec<(String, String)>)> {
    let written = OutputRef::parse(&r.value);
    let stage = written.stage.as_str();
    let Some(&j) = by_name.get(stage) else {
        diags.push(Diagnostic {
            message: format!(
                "stage `{}` refers to a missing stage `{stage}`",
                d.name.value
            ),
            span: r.span.clone(),
            label: "no stage has this name".into(),
            help: suggest(stage, by_name.keys().copied()).map(|s| format!("did you mean `{s}`?")),
        });
        return None;
    };
    let outs: Vec<&str> = drafts[j]
        .outs
        .iter()
        .map(|o| o.value.as_str())
        .chain(drafts[j].outputs.iter().map(String::as_str))
        .collect();
    let output = written.output.as_str();
    if !output.is_empty() && !outs.contains(&output) {
        // A command's typed output, by its name or its type.
        let aliases = drafts[j].stage.aliases();
        if let Some((_, path)) = aliases.iter().find(|(a, _)| a == output) {
            return Some((j, vec![(written.input_name(), path.clone())]));
        }
        let names: Vec<&str> = outs
            .iter()
            .copied()
            .chain(aliases.iter().map(|(a, _)| a.as_str()))
            .collect();
        diags.push(Diagnostic {
            message: format!("stage `{stage}` has no output `{output}`"),
            span: r.span.clone(),
            label: "unknown output".into(),
            help: Some(format!("its outputs are: {}", names.join(", "))),
        });
        return None;
    }
    let mut names: Vec<(String, String)> = outs
        .iter()
        .filter(|o| output.is_empty() || **o == output)
        .map(|o| {
            let r = OutputRef {
                stage: stage.to_owned(),
                output: (*o).to_owned(),
            };
            (r.input_name(), r.output)
        })
        .collect();
    if output.is_empty() {
        // The whole stage: its typed outputs under their other names too
        // (a kind reads `convert/dataset` for a bare `data = "convert"`).
        for (alias, path) in drafts[j].stage.aliases() {
            let r = OutputRef {
                stage: stage.to_owned(),
                output: alias,
            };
            names.push((r.input_name(), path));
        }
    }
    Some((j, names))
}

/// Resolves a reference to one output (`${stage.output}`, or `${stage}`:
/// its only output, or its kind's main one).
fn wire_use(
    d: &Draft,
    u: &Spanned<String>,
    drafts: &[Draft],
    by_name: &BTreeMap<&str, usize>,
    diags: &mut Vec<Diagnostic>,
) -> Option<(usize, String)> {
    let (j, names) = wire_ref(d, u, drafts, by_name, diags)?;
    if names.len() == 1 {
        return names.into_iter().next().map(|(_, o)| (j, o));
    }
    let main = tuneflow_stages::kinds::find(drafts[j].stage.kind()).and_then(|k| k.main);
    if let Some((_, o)) = names.iter().find(|(_, o)| Some(o.as_str()) == main) {
        return Some((j, o.clone()));
    }
    let outs: Vec<&str> = names.iter().map(|(_, o)| o.as_str()).collect();
    diags.push(Diagnostic {
        message: format!(
            "stage `{}` has outputs {}; name one",
            u.value,
            outs.join(", ")
        ),
        span: u.span.clone(),
        label: "which output?".into(),
        help: Some(format!("write `${{{}.OUTPUT}}`", u.value)),
    });
    None
}

/// A dep equal to, or inside, another stage's out reads that output; a dep
/// folder that contains outs is hashed after those stages finish. Lookups
/// go through the sorted producer map (ancestors of the dep, then the range
/// of paths below it), so planning stays near-linear in the stage count.
fn wire_dep(
    i: usize,
    dep: &str,
    producers: &BTreeMap<String, usize>,
    inputs: &mut BTreeMap<String, Input>,
    upstream: &mut Vec<usize>,
) {
    let mut as_file = true;
    for prefix in ancestors_and_self(dep) {
        if let Some((out, &j)) = producers.get_key_value(prefix) {
            if j != i {
                upstream.push(j);
                inputs.insert(
                    dep.to_owned(),
                    Input::Output {
                        stage: j,
                        output: out.clone(),
                    },
                );
                as_file = false;
            }
        }
    }
    for (_, &j) in below(producers, dep) {
        if j != i {
            upstream.push(j);
        }
    }
    if as_file {
        inputs.insert(dep.to_owned(), Input::File(dep.to_owned()));
    }
}

/// `a/b/c`, `a/b`, `a`: the path and each folder above it.
fn ancestors_and_self(path: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(path), |p| p.rfind('/').map(|at| &p[..at]))
}

/// Entries of `map` strictly below the folder `dir` (`dir/...`).
fn below<'a, V>(
    map: &'a BTreeMap<String, V>,
    dir: &str,
) -> impl Iterator<Item = (&'a String, &'a V)> {
    // '0' is the character after '/', so this range is exactly `dir/...`.
    map.range(format!("{dir}/")..format!("{dir}0"))
}

/// Every out is produced by exactly one stage, and no out is inside another.
fn check_outs(drafts: &[Draft], diags: &mut Vec<Diagnostic>) -> BTreeMap<String, usize> {
    let mut producers: BTreeMap<String, usize> = BTreeMap::new();
    for (i, d) in drafts.iter().enumerate() {
        for out in &d.outs {
            let clash = ancestors_and_self(&out.value)
                .find_map(|p| producers.get_key_value(p))
                .or_else(|| below(&producers, &out.value).next());
            if let Some((other, &j)) = clash {
                let other = other.clone();
                diags.push(Diagnostic {
                    message: format!(
                        "output `{}` of stage `{}` overlaps output `{other}` of stage `{}`",
                        out.value, d.name.value, drafts[j].name.value
                    ),
                    span: out.span.clone(),
                    label: "declared by more than one stage".into(),
                    help: Some("each file or folder must have one producing stage".into()),
                });
                continue;
            }
            producers.insert(out.value.clone(), i);
        }
    }
    producers
}

/// Kahn's algorithm, keeping file order among ready stages; on a cycle,
/// names it (`a -> b -> a`).
fn topo_order(
    drafts: &[Draft],
    upstream: &[Vec<usize>],
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<usize>> {
    let n = drafts.len();
    let mut indegree = vec![0usize; n];
    let mut down: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ups) in upstream.iter().enumerate() {
        let mut ups = ups.clone();
        ups.sort_unstable();
        ups.dedup();
        indegree[i] = ups.len();
        for j in ups {
            down[j].push(i);
        }
    }
    let mut ready: std::collections::VecDeque<usize> =
        (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_front() {
        order.push(i);
        for &k in &down[i] {
            indegree[k] -= 1;
            if indegree[k] == 0 {
                ready.push_back(k);
            }
        }
    }
    if order.len() == n {
        return Some(order);
    }
    let cycle = find_cycle(upstream, &indegree);
    let names: Vec<&str> = cycle
        .iter()
        .map(|&i| drafts[i].name.value.as_str())
        .collect();
    let first = &drafts[cycle[0]];
    diags.push(Diagnostic {
        message: format!("the stages form a cycle: {}", names.join(" -> ")),
        span: first.name.span.clone().or(first.header.clone()),
        label: "this stage depends on itself through the cycle".into(),
        help: Some(
            "remove one of the dependencies (`after`, or a dep that is another stage's out)".into(),
        ),
    });
    None
}

/// Follows upstream edges among stages left in the cycle until one repeats.
fn find_cycle(upstream: &[Vec<usize>], indegree: &[usize]) -> Vec<usize> {
    let start = (0..indegree.len())
        .find(|&i| indegree[i] > 0)
        .expect("a cycle exists");
    let mut path = vec![start];
    let mut seen = BTreeMap::new();
    seen.insert(start, 0);
    let mut cur = start;
    loop {
        let next = *upstream[cur]
            .iter()
            .find(|&&j| indegree[j] > 0)
            .expect("cycle members have cyclic upstreams");
        if let Some(&pos) = seen.get(&next) {
            let mut cycle: Vec<usize> = path[pos..].to_vec();
            cycle.reverse();
            cycle.push(cycle[0]);
            return cycle;
        }
        seen.insert(next, path.len());
        path.push(next);
        cur = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_helpers_match_whole_path_components_only() {
        assert_eq!(
            ancestors_and_self("a/b/c").collect::<Vec<_>>(),
            ["a/b/c", "a/b", "a"]
        );
        let mut m = BTreeMap::new();
        for k in ["a", "a/b", "a/b/c", "ab", "a.txt", "a0"] {
            m.insert(k.to_owned(), ());
        }
        let inside: Vec<_> = below(&m, "a").map(|(k, _)| k.as_str()).collect();
        assert_eq!(inside, ["a/b", "a/b/c"]);
    }
}
