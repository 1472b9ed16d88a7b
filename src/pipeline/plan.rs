//! The validated pipeline: stages resolved, edges known (explicit `after`
//! references and one stage's `outs` being another's `deps`), cycles and
//! duplicate outputs rejected, and every error in the file reported at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tuneflow_stages::paths::{normalize_dep, normalize_rel, resolve, within, Resolver};
use tuneflow_stages::{
    build_stage, BuildContext, Device, ParamReader, Resources, Spanned, Stage, Table, ValueKind,
};

use super::error::{Diagnostic, PipelineError};
use super::executor::ExecutorConfig;
use super::spec::PipelineSpec;

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

/// `[cache]`: which remote the pipeline's results are shared through (a
/// URL; see docs/remote.md) and whether a run pushes each result it
/// computes. Neither enters a key.
#[derive(Debug, Clone, Default)]
pub struct RemoteSettings {
    /// `remote`.
    pub url: Option<String>,
    /// `push` (write-through), default false.
    pub push: bool,
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
    pub device: Device,
    /// `[pipeline] cache`, resolved against the folder.
    pub cache_dir: Option<PathBuf>,
    /// `[cache]`: the shared remote cache.
    pub remote: RemoteSettings,
    /// The `--set` overrides applied, as given.
    pub overrides: Vec<String>,
    /// BLAKE3 (hex) of the pipeline file's bytes.
    pub source_digest: String,
    /// The stages, upstream before downstream.
    pub stages: Vec<PlannedStage>,
    /// `[executor]`: local threads or Slurm jobs.
    pub executor: ExecutorConfig,
}

impl Plan {
    /// The index of the stage called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }

    /// Every (stage, out) that is, contains or lies inside `path`, on
    /// disk (symlinks and `..` resolved): a run writing or deleting it
    /// would touch `path`.
    pub fn outs_touching(&self, path: &Path) -> Vec<(String, String)> {
        let path = resolve(path);
        let mut resolver = Resolver::default();
        let mut out = Vec::new();
        for s in &self.stages {
            for o in &s.outs {
                let full = resolver.resolve(&self.dir.join(o));
                if within(&full, &path) || within(&path, &full) {
                    out.push((s.name.clone(), o.clone()));
                }
            }
        }
        out
    }
}

/// Outputs are written, and deleted before their stage runs: none may be,
/// contain or lie inside the pipeline file or the cache folder (compared on
/// disk: symlinks and `..` resolved), and none may pass through a symlink
/// (it could lead out of the pipeline folder).
fn check_outs_are_safe(
    drafts: &[Draft],
    dir: &Path,
    file: &Path,
    cache: Option<&str>,
    diags: &mut Vec<Diagnostic>,
) {
    let mut reserved: Vec<(PathBuf, &str)> =
        vec![(resolve(&dir.join(".tuneflow")), "the cache folder")];
    if let Some(c) = cache {
        reserved.push((resolve(&dir.join(c)), "the cache folder"));
    }
    reserved.push((resolve(file), "the pipeline file"));
    let mut resolver = Resolver::default();
    for d in drafts {
        for out in &d.outs {
            let o = out.value.as_str();
            let full = resolver.resolve(&dir.join(o));
            let clash = reserved
                .iter()
                .find(|(r, _)| within(&full, r) || within(r, &full));
            if let Some((r, what)) = clash {
                diags.push(Diagnostic {
                    message: format!(
                        "output `{o}` of stage `{}` overlaps {what} `{}`",
                        d.name.value,
                        r.strip_prefix(resolve(dir)).unwrap_or(r).display()
                    ),
                    span: out.span.clone(),
                    label: "a run deletes and rewrites its outputs".into(),
                    help: Some("write outputs to their own files or folders".into()),
                });
                continue;
            }
            if let Some(link) = resolver.symlinked_component(dir, o) {
                diags.push(Diagnostic {
                    message: format!(
                        "output `{o}` of stage `{}` goes through the symlink `{link}`",
                        d.name.value
                    ),
                    span: out.span.clone(),
                    label: "outputs must be written inside the pipeline's folder".into(),
                    help: Some("use a real folder, or a path without the link".into()),
                });
            }
        }
    }
}

/// Loads, overrides and validates a pipeline file.
pub fn load(path: &Path, overrides: &[String]) -> Result<Plan, PipelineError> {
    let mut spec = PipelineSpec::load(path)?;
    spec.apply_overrides(overrides)?;
    let plan = plan(&spec).map(|mut p| {
        p.overrides = overrides.to_vec();
        p
    });
    let large = spec.source.len() > super::spec::LARGE;
    super::keep_to_exit(spec, large);
    plan
}

pub(super) struct Draft {
    pub(super) name: Spanned<String>,
    pub(super) header: Option<std::ops::Range<usize>>,
    pub(super) stage: Arc<dyn Stage>,
    pub(super) after: Vec<Spanned<String>>,
    pub(super) uses: Vec<Spanned<String>>,
    pub(super) deps: Vec<Spanned<String>>,
    pub(super) outs: Vec<Spanned<String>>,
    pub(super) outputs: Vec<String>,
    pub(super) resources: Resources,
}

/// Validates a parsed pipeline.
pub fn plan(spec: &PipelineSpec) -> Result<Plan, PipelineError> {
    let mut diags = Vec::new();
    let top = ParamReader::new(&spec.root, None);
    let empty = Table::default();
    let pipeline = top.table("pipeline").unwrap_or(&empty);
    let params = top.table("params").unwrap_or(&empty);
    let stages = top.table("stage").unwrap_or(&empty);
    let executor_table = top.table("executor").unwrap_or(&empty);
    // `[sweep]` is read by `run` (pipeline::sweep::from_file); a plan is
    // one variant.
    let _ = top.table("sweep");
    let remote = read_cache_table(top.table("cache").unwrap_or(&empty), &mut diags);
    diags.extend(top.finish());
    let spec_dir = std::path::absolute(&spec.path)
        .ok()
        .and_then(|f| f.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let (executor, errors) = super::executor::read(executor_table, &spec_dir);
    diags.extend(errors);
    let header = read_pipeline_table(pipeline, &mut diags);
    let mut drafts = Vec::new();
    let names: Vec<String> = stages
        .entries
        .iter()
        .map(|(k, _)| k.value.clone())
        .collect();
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
        let shared = Shared {
            params,
            seed: header.seed,
            stages: &names,
        };
        if let Some(d) = draft_stage(name, value.span.clone(), table, &shared, &mut diags) {
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
    check_outs_are_safe(
        &drafts,
        &spec_dir,
        &spec.path,
        header.cache.as_deref(),
        &mut diags,
    );
    let wired = super::wire::wire(drafts, &mut diags);
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
    // A relative folder remote is the pipeline's, as `cache` is.
    let remote = RemoteSettings {
        url: remote
            .url
            .map(|u| match u.contains("://") || Path::new(&u).is_absolute() {
                true => u,
                false if u.trim().is_empty() => u,
                false => dir.join(u.trim()).display().to_string(),
            }),
        ..remote
    };
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
        remote,
        overrides: Vec::new(),
        source_digest: blake3::hash(spec.source.as_bytes()).to_hex().to_string(),
        stages: wired.expect("no diagnostics means the graph was wired"),
        executor,
    })
}

fn read_cache_table(t: &Table, diags: &mut Vec<Diagnostic>) -> RemoteSettings {
    let r = ParamReader::new(t, None);
    let url = r.str("remote").map(|s| s.value);
    let push = r.bool("push").is_some_and(|b| b.value);
    diags.extend(r.finish());
    RemoteSettings { url, push }
}

struct Header {
    name: Option<String>,
    seed: i64,
    device: Device,
    cache: Option<String>,
}

fn read_pipeline_table(t: &Table, diags: &mut Vec<Diagnostic>) -> Header {
    let r = ParamReader::new(t, None);
    let name = r.str("name").map(|s| s.value);
    let seed = match r.raw("seed").map(|v| (&v.kind, v.span.clone())) {
        Some((ValueKind::Int(i), _)) => *i,
        Some((other, span)) => {
            r.error(Diagnostic {
                message: format!("`seed` must be an integer, not {}", other.type_name()),
                span,
                label: "expected an integer".into(),
                help: None,
            });
            0
        }
        None => 0,
    };
    let device = r.str("device").and_then(|d| match d.value.parse() {
        Ok(device) => Some(device),
        Err(e) => {
            r.error(Diagnostic {
                message: format!("{e}"),
                span: d.span.clone(),
                label: "expected auto, cpu, cuda or cuda:N".into(),
                help: None,
            });
            None
        }
    });
    let cache = r.str("cache").map(|c| c.value);
    diags.extend(r.finish());
    Header {
        name,
        seed,
        device: device.unwrap_or_default(),
        cache,
    }
}

/// What every stage's builder sees besides its own table.
struct Shared<'a> {
    params: &'a Table,
    seed: i64,
    stages: &'a [String],
}

fn draft_stage(
    name: &Spanned<String>,
    header: Option<std::ops::Range<usize>>,
    table: &Table,
    shared: &Shared<'_>,
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
            params: shared.params,
            seed: shared.seed,
            stages: shared.stages,
        };
        build_stage(kind, &cx, &r)
    });
    let known_kind = kind
        .as_ref()
        .and_then(|k| tuneflow_stages::kinds::find(&k.value))
        .is_some_and(|k| k.available());
    let errors = r.finish();
    // An unknown kind makes every other key "unknown"; report the kind only.
    diags.extend(
        errors
            .into_iter()
            .filter(|e| known_kind || !e.message.starts_with("unknown key")),
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
        uses: decl.uses,
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
