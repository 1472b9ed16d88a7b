//! The validated pipeline: stages resolved, edges known (explicit `after`
//! references and one stage's `outs` being another's `deps`), cycles and
//! duplicate outputs rejected, and every error in the file reported at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tuneflow_stages::{
    build_stage, suggest, BuildContext, ParamReader, Resources, Spanned, Stage, Table, ValueKind,
    KINDS,
};

use crate::error::{Diagnostic, PipelineError};
use crate::spec::PipelineSpec;
use tuneflow_stages::paths::{normalize_dep, normalize_rel};

/// Where a stage's input comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A file or folder in the pipeline folder, hashed when the stage's key
    /// is computed (after every upstream stage has finished).
    File(String),
    /// An output of an upstream stage, by its digest in that stage's manifest.
    Output {
        /// Index of the upstream stage in [`Plan::stages`].
        stage: usize,
        /// The output's name.
        output: String,
    },
}

/// A stage ready to run.
pub struct PlannedStage {
    /// Its name.
    pub name: String,
    /// The kind implementation.
    pub stage: Arc<dyn Stage>,
    /// Input name -> where it comes from (sorted by name).
    pub inputs: BTreeMap<String, Input>,
    /// Declared workspace outputs (restored on a cache hit).
    pub outs: Vec<String>,
    /// Named outputs kept in the cache only.
    pub outputs: Vec<String>,
    /// Indices of the stages this one waits for.
    pub upstream: Vec<usize>,
    /// What it holds while it runs.
    pub resources: Resources,
}

/// A validated pipeline, stages in topological order.
pub struct Plan {
    /// `[pipeline] name`, default the file stem.
    pub name: String,
    /// The pipeline file, absolute.
    pub file: PathBuf,
    /// The pipeline's folder: relative paths resolve here.
    pub dir: PathBuf,
    /// `[pipeline] seed`.
    pub seed: i64,
    /// `[pipeline] device`.
    pub device: String,
    /// `[pipeline] cache`, resolved against the folder.
    pub cache_dir: Option<PathBuf>,
    /// The stages, upstream before downstream.
    pub stages: Vec<PlannedStage>,
    /// `[executor]`: local threads or Slurm jobs.
    pub executor: crate::slurm::ExecutorConfig,
}

impl Plan {
    /// The index of the stage called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }
}

/// Loads, overrides and validates a pipeline file.
pub fn load(path: &Path, overrides: &[String]) -> Result<Plan, PipelineError> {
    let mut spec = PipelineSpec::load(path)?;
    spec.apply_overrides(overrides)?;
    plan(&spec)
}

struct Draft {
    name: Spanned<String>,
    header: Option<std::ops::Range<usize>>,
    stage: Arc<dyn Stage>,
    after: Vec<Spanned<String>>,
    deps: Vec<Spanned<String>>,
    outs: Vec<Spanned<String>>,
    outputs: Vec<String>,
    resources: Resources,
}

/// Validates a parsed pipeline.
pub fn plan(spec: &PipelineSpec) -> Result<Plan, PipelineError> {
    let mut diags = Vec::new();
    let top = ParamReader::new(&spec.root, None);
    let pipeline = top.table("pipeline").cloned().unwrap_or_default();
    let params = top.table("params").cloned().unwrap_or_default();
    let stages = top.table("stage").cloned().unwrap_or_default();
    let executor_table = top.table("executor").cloned().unwrap_or_default();
    diags.extend(top.finish().into_iter().map(Diagnostic::from));
    let spec_dir = std::path::absolute(&spec.path)
        .ok()
        .and_then(|f| f.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let (executor, errors) = crate::slurm::config::read(&executor_table, &spec_dir);
    diags.extend(errors.into_iter().map(Diagnostic::from));
    let header = read_pipeline_table(&pipeline, spec, &mut diags);
    let mut drafts = Vec::new();
    for (name, value) in &stages.entries {
        let ValueKind::Table(table) = &value.kind else {
            diags.push(Diagnostic {
                message: format!("`stage.{}` must be a table", name.value),
                span: value.span.clone(),
                label: "expected a [stage.NAME] table".into(),
                help: None,
            });
            continue;
        };
        if let Some(d) = draft_stage(
            name,
            value.span.clone(),
            table,
            &params,
            header.seed,
            &mut diags,
        ) {
            drafts.push(d);
        }
    }
    if stages.entries.is_empty() {
        diags.push(Diagnostic {
            message: "the pipeline has no stages".into(),
            span: None,
            label: String::new(),
            help: Some("add a `[stage.NAME]` table with a `kind`".into()),
        });
    }
    let wired = wire(&drafts, &mut diags);
    if !diags.is_empty() {
        return Err(PipelineError::Invalid {
            path: spec.path.clone(),
            text: spec.source.clone(),
            diagnostics: diags,
        });
    }
    let file = std::path::absolute(&spec.path).unwrap_or_else(|_| spec.path.clone());
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let cache_dir = header.cache.map(|c| dir.join(c));
    Ok(Plan {
        name: header.name.unwrap_or_else(|| {
            spec.path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        }),
        file,
        dir,
        seed: header.seed,
        device: header.device,
        cache_dir,
        stages: wired.expect("no diagnostics means the graph was wired"),
        executor,
    })
}

struct Header {
    name: Option<String>,
    seed: i64,
    device: String,
    cache: Option<String>,
}

fn read_pipeline_table(t: &Table, _spec: &PipelineSpec, diags: &mut Vec<Diagnostic>) -> Header {
    let r = ParamReader::new(t, None);
    let name = r.str("name").map(|s| s.value);
    let seed = match r.raw("seed").map(|v| (&v.kind, v.span.clone())) {
        Some((ValueKind::Int(i), _)) => *i,
        Some((other, span)) => {
            r.error(tuneflow_stages::ParamError {
                message: format!("`seed` must be an integer, not {}", other.type_name()),
                span,
                label: "expected an integer".into(),
                help: None,
            });
            0
        }
        None => 0,
    };
    let device = r.str("device");
    if let Some(d) = &device {
        if !valid_device(&d.value) {
            r.error(tuneflow_stages::ParamError {
                message: format!("unknown device `{}`", d.value),
                span: d.span.clone(),
                label: "expected auto, cpu, cuda or cuda:N".into(),
                help: None,
            });
        }
    }
    let cache = r.str("cache").map(|c| c.value);
    diags.extend(r.finish().into_iter().map(Diagnostic::from));
    Header {
        name,
        seed,
        device: device.map_or_else(|| "auto".to_owned(), |d| d.value),
        cache,
    }
}

fn valid_device(d: &str) -> bool {
    matches!(d, "auto" | "cpu" | "cuda")
        || d.strip_prefix("cuda:")
            .is_some_and(|n| n.parse::<u32>().is_ok())
}

fn draft_stage(
    name: &Spanned<String>,
    header: Option<std::ops::Range<usize>>,
    table: &Table,
    params: &Table,
    seed: i64,
    diags: &mut Vec<Diagnostic>,
) -> Option<Draft> {
    if name.value.is_empty()
        || !name
            .value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        diags.push(Diagnostic {
            message: format!("invalid stage name `{}`", name.value),
            span: name.span.clone(),
            label: "use letters, digits, `_` and `-`".into(),
            help: None,
        });
    }
    let r = ParamReader::new(table, name.span.clone().or(header.clone()));
    let kind = r.required_str("kind", "one of the built-in stage kinds");
    let after = r.str_list("after");
    let resources = read_resources(&r);
    let built = kind.as_ref().and_then(|kind| {
        let cx = BuildContext {
            name: &name.value,
            params,
            seed,
        };
        let built = build_stage(&kind.value, &cx, &r);
        if built.is_none() && !KINDS.contains(&kind.value.as_str()) {
            unknown_kind(&r, kind);
        }
        built
    });
    let known_kind = kind
        .as_ref()
        .is_some_and(|k| KINDS.contains(&k.value.as_str()));
    let errors = r.finish();
    // An unknown kind makes every other key "unknown"; report the kind only.
    diags.extend(
        errors
            .into_iter()
            .filter(|e| known_kind || !e.message.starts_with("unknown key"))
            .map(Diagnostic::from),
    );
    let decl = built?;
    let mut deps = decl.deps;
    let mut outs = decl.outs;
    for p in deps.iter_mut() {
        match normalize_dep(&p.value) {
            Ok(n) => p.value = n,
            Err(why) => diags.push(Diagnostic {
                message: format!("dependency `{}` {why}", p.value),
                span: p.span.clone(),
                label: "expected a file or folder".into(),
                help: None,
            }),
        }
    }
    for p in outs.iter_mut() {
        match normalize_rel(&p.value) {
            Ok(n) => p.value = n,
            Err(why) => diags.push(Diagnostic {
                message: format!("path `{}` {why}", p.value),
                span: p.span.clone(),
                label: "outputs must stay inside the pipeline's folder".into(),
                help: Some("use a path relative to the pipeline file, without `..`".into()),
            }),
        }
    }
    let mut after = after;
    after.extend(decl.refs);
    Some(Draft {
        name: name.clone(),
        header,
        stage: Arc::from(decl.stage),
        after,
        deps,
        outs,
        outputs: decl.outputs,
        resources,
    })
}

fn read_resources(r: &ParamReader<'_>) -> Resources {
    let Some(t) = r.table("resources") else {
        return Resources::default();
    };
    let inner = ParamReader::new(t, None);
    let gpu = inner.uint("gpu").map_or(0, |g| g.value as u32);
    let cpus = inner.uint("cpus").map(|c| c.value.max(1) as u32);
    let mem = inner.str("mem").map(|m| m.value);
    let time = inner.str("time").map(|t| t.value);
    for e in inner.finish() {
        r.error(e);
    }
    Resources {
        gpu,
        cpus,
        mem,
        time,
    }
}

/// The error for a kind this build does not have: a tensor kind in a build
/// without libtorch, or a name that is no kind at all.
fn unknown_kind(r: &ParamReader<'_>, kind: &Spanned<String>) {
    let error = if tuneflow_stages::TORCH_KINDS.contains(&kind.value.as_str()) {
        tuneflow_stages::ParamError {
            message: format!(
                "stage kind `{}` needs libtorch, and this tuneflow was built without the `torch` feature",
                kind.value
            ),
            span: kind.span.clone(),
            label: "a tensor stage kind".into(),
            help: Some("build with the default features (`cargo build`)".into()),
        }
    } else {
        tuneflow_stages::ParamError {
            message: format!("unknown stage kind `{}`", kind.value),
            span: kind.span.clone(),
            label: "not a built-in stage kind".into(),
            help: Some(match suggest(&kind.value, KINDS.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("built-in kinds are: {}", KINDS.join(", ")),
            }),
        }
    };
    r.error(error);
}

/// Resolves references and inferred edges, checks outputs, sorts the graph.
fn wire(drafts: &[Draft], diags: &mut Vec<Diagnostic>) -> Option<Vec<PlannedStage>> {
    let before = diags.len();
    let by_name: BTreeMap<&str, usize> = drafts
        .iter()
        .enumerate()
        .map(|(i, d)| (d.name.value.as_str(), i))
        .collect();
    let producers = check_outs(drafts, diags);
    let mut inputs: Vec<BTreeMap<String, Input>> = vec![BTreeMap::new(); drafts.len()];
    let mut upstream: Vec<Vec<usize>> = vec![Vec::new(); drafts.len()];
    for (i, d) in drafts.iter().enumerate() {
        for r in &d.after {
            let (stage, output) = r.value.split_once('.').unwrap_or((&r.value, ""));
            let Some(&j) = by_name.get(stage) else {
                diags.push(Diagnostic {
                    message: format!(
                        "stage `{}` refers to a missing stage `{stage}`",
                        d.name.value
                    ),
                    span: r.span.clone(),
                    label: "no stage has this name".into(),
                    help: suggest(stage, by_name.keys().copied())
                        .map(|s| format!("did you mean `{s}`?")),
                });
                continue;
            };
            let outs: Vec<&str> = drafts[j]
                .outs
                .iter()
                .map(|o| o.value.as_str())
                .chain(drafts[j].outputs.iter().map(String::as_str))
                .collect();
            if !output.is_empty() && !outs.contains(&output) {
                diags.push(Diagnostic {
                    message: format!("stage `{stage}` has no output `{output}`"),
                    span: r.span.clone(),
                    label: "unknown output".into(),
                    help: Some(format!("its outputs are: {}", outs.join(", "))),
                });
                continue;
            }
            upstream[i].push(j);
            for o in outs.iter().filter(|o| output.is_empty() || **o == output) {
                inputs[i].insert(
                    format!("{stage}/{o}"),
                    Input::Output {
                        stage: j,
                        output: (*o).to_owned(),
                    },
                );
            }
        }
        for dep in &d.deps {
            wire_dep(i, &dep.value, &producers, &mut inputs[i], &mut upstream[i]);
        }
    }
    let order = topo_order(drafts, &upstream, diags)?;
    if diags.len() > before {
        return None;
    }
    let mut position = vec![0; drafts.len()];
    for (pos, &i) in order.iter().enumerate() {
        position[i] = pos;
    }
    let stages = order
        .iter()
        .map(|&i| {
            let d = &drafts[i];
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
                name: d.name.value.clone(),
                stage: d.stage.clone(),
                inputs,
                outs: d.outs.iter().map(|o| o.value.clone()).collect(),
                outputs: d.outputs.clone(),
                upstream: up,
                resources: d.resources.clone(),
            }
        })
        .collect();
    Some(stages)
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
