//! `tuneflow report PIPELINE [RUN]`: one self-contained HTML page for a
//! recorded run (the latest by default), written to the cache's
//! `reports/` folder (or `-o FILE`), with the pages of the other runs it
//! links to. Everything comes from the run record and the cache; nothing
//! runs.
#![expect(clippy::print_stdout, reason = "the command prints where it wrote")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tuneflow_cache::{BlobDigest, CacheError, Manifest, OutputKind, RunRecord, StageDigest, Tree};

use super::report_data as data;
use super::runs::{find_run, open_runs, run_metrics, runs_of};
use crate::cli::ReportArgs;
use crate::error::{exit, RunError};
use crate::html::{self, graph::Node, Report};
use crate::pipeline::{self, PipelineError, Plan};
use crate::run::cache::Cache;
use crate::run::history::utc_stamp;

/// Runs `tuneflow report`.
pub fn report(args: &ReportArgs, flag: Option<&Path>) -> Result<i32, RunError> {
    let (cache, file) = open_runs(&args.pipeline, flag)?;
    let all = runs_of(&cache.index, &file)?;
    let Some(latest) = all.last() else {
        return Err(PipelineError::Usage(format!(
            "no recorded run of `{file}`: run it first (`tuneflow run {}`)",
            args.pipeline.display()
        ))
        .into());
    };
    let (id, _) = match &args.run {
        Some(wanted) => find_run(&all, wanted)?,
        None => latest,
    };
    let dir = cache.layout.root().join("reports");
    let target = args
        .output
        .clone()
        .unwrap_or_else(|| dir.join(html::page_name(id)));
    let mut pages = Pages {
        cache: &cache,
        file: &file,
        all: &all,
        plans: BTreeMap::new(),
        pipeline: &args.pipeline,
    };
    let logs = if args.output.is_some() {
        LogLinks::Absolute
    } else {
        LogLinks::Relative
    };
    let page = pages.page(id, logs)?;
    write_page(&target, &page, args.output.is_some())?;
    // The other runs' pages, so that the links between runs work.
    let mut others = 0;
    if args.output.is_none() {
        for (other, _) in &all {
            let path = dir.join(html::page_name(other));
            if other != id && !path.exists() {
                write_page(&path, &pages.page(other, LogLinks::Relative)?, false)?;
                others += 1;
            }
        }
    }
    println!("{}", target.display());
    if others > 0 {
        tracing::info!("also wrote {others} other runs' pages beside it");
    }
    Ok(exit::SUCCESS)
}

/// How a page links to stage logs.
#[derive(Clone, Copy, PartialEq)]
enum LogLinks {
    /// `../runs/ID/STAGE.log` (a page in the cache's `reports/`).
    Relative,
    /// `file:///...` (a page elsewhere).
    Absolute,
}

/// Builds pages, planning the pipeline once per set of overrides.
struct Pages<'a> {
    cache: &'a Cache,
    file: &'a str,
    all: &'a [(String, RunRecord)],
    plans: BTreeMap<Vec<String>, Option<Plan>>,
    pipeline: &'a Path,
}

impl Pages<'_> {
    fn page(&mut self, id: &str, logs: LogLinks) -> Result<String, RunError> {
        let (_, run) = self
            .all
            .iter()
            .find(|(i, _)| i == id)
            .expect("a listed run");
        let plan = self
            .plans
            .entry(run.overrides.clone())
            .or_insert_with(|| pipeline::load(self.pipeline, &run.overrides).ok())
            .as_ref();
        let report = build(self.cache, self.file, self.all, (id, run), plan, logs);
        Ok(html::render(&report))
    }
}

fn build(
    cache: &Cache,
    file: &str,
    all: &[(String, RunRecord)],
    (id, run): (&str, &RunRecord),
    plan: Option<&Plan>,
    logs: LogLinks,
) -> Report {
    let mut notes = Vec::new();
    match plan {
        None => notes.push(
            "The pipeline file does not load now, so the graph and the stage kinds are missing."
                .to_owned(),
        ),
        Some(p) if p.source_digest != run.pipeline_digest => notes.push(
            "The pipeline file has changed since this run: the graph and kinds are drawn from the file as it is now."
                .to_owned(),
        ),
        Some(_) => {}
    }
    let plan = plan.filter(|p| {
        let same = p.stages.len() == run.stages.len()
            && p.stages.iter().all(|s| run.stages.contains_key(&s.name));
        if !same {
            notes.push("The pipeline's stages have changed since this run: no graph.".to_owned());
        }
        same
    });
    let manifests = manifests(cache, run);
    let relative = logs == LogLinks::Relative;
    let stages = data::stage_rows(cache, file, (id, run), plan, &manifests, relative);
    // Training curves of the stages that train (a `freeze` stage's model
    // carries its upstream's curves), in the pipeline's order.
    let trained: Vec<&str> = stages
        .iter()
        .filter(|s| matches!(s.kind.as_str(), "pretrain" | "fine-tune" | ""))
        .map(|s| s.name.as_str())
        .collect();
    let ordered: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
    let mut report = Report {
        name: plan.map_or_else(|| stem(file), |p| p.name.clone()),
        pipeline: file.to_owned(),
        run: run_info(id, run),
        metrics: data::metrics_tables(&run_metrics(&cache.index, run), &manifests),
        training: data::training(cache, &manifests, &trained),
        curves: data::curve_sets(cache, &manifests, &ordered),
        sweep: data::sweep_view(&cache.index, all, run),
        runs: data::run_links(all, id),
        generated: utc_stamp(std::time::SystemTime::now()),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        graph: plan.and_then(|p| graph(p, run)),
        stages,
        notes,
    };
    let missing: Vec<&str> = run
        .stages
        .iter()
        .filter(|(name, s)| {
            matches!(s.outcome.as_str(), "ran" | "cached") && !manifests.contains_key(*name)
        })
        .map(|(n, _)| n.as_str())
        .collect();
    if !missing.is_empty() {
        report.notes.push(format!(
            "No longer in the cache (garbage-collected?), so their curves and details are missing: {}.",
            missing.join(", ")
        ));
    }
    report
}

fn stem(file: &str) -> String {
    Path::new(file)
        .file_stem()
        .map_or_else(|| file.to_owned(), |s| s.to_string_lossy().into_owned())
}

fn run_info(id: &str, run: &RunRecord) -> html::RunInfo {
    let at = |ns: u64| std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns);
    html::RunInfo {
        id: id.to_owned(),
        outcome: run.outcome.clone(),
        started: utc_stamp(at(run.started)),
        seconds: run.ended.saturating_sub(run.started) as f64 / 1e9,
        git: run
            .git
            .as_ref()
            .map(|g| format!("{}{}", g.commit, if g.dirty { " (dirty)" } else { "" })),
        digest: run.pipeline_digest.clone(),
        overrides: run.overrides.clone(),
        sweep: run.sweep.as_ref().map(|s| {
            format!(
                "{}, variant {} of {} ({})",
                s.id,
                s.index + 1,
                s.of,
                s.keys.join(", ")
            )
        }),
    }
}

fn graph(plan: &Plan, run: &RunRecord) -> Option<Vec<Node>> {
    if plan.stages.len() > html::graph::MAX_NODES {
        return None;
    }
    Some(
        plan.stages
            .iter()
            .map(|ps| Node {
                name: ps.name.clone(),
                kind: ps.stage.kind().to_owned(),
                state: run
                    .stages
                    .get(&ps.name)
                    .map_or_else(|| "pending".to_owned(), |s| s.outcome.clone()),
                upstream: ps.upstream.clone(),
            })
            .collect(),
    )
}

/// The manifest of every stage of the run whose result is still cached.
fn manifests(cache: &Cache, run: &RunRecord) -> BTreeMap<String, Manifest> {
    run.stages
        .iter()
        .filter_map(|(name, s)| {
            let key = StageDigest::from_hex(s.key.as_deref()?)?;
            let m = cache.index.result(&key).ok().flatten()?;
            Some((name.clone(), m))
        })
        .collect()
}

/// The bytes of `path` inside folder output `output` of a result (each
/// object verified), when it is there.
pub(super) fn read_in_output(
    cache: &Cache,
    manifest: &Manifest,
    output: &str,
    path: &str,
) -> Option<Vec<u8>> {
    let entry = manifest.output(output)?;
    let digest: BlobDigest = match entry.kind {
        OutputKind::Tree => {
            let tree = Tree::load(&cache.store, &entry.digest).ok()?;
            tree.entries.iter().find(|e| e.path == path)?.digest
        }
        OutputKind::File if path.is_empty() => entry.digest,
        OutputKind::File => return None,
    };
    cache.store.read_verified(&digest).ok()
}

/// Writes `page` to `path` through a temporary file and a rename. An
/// existing file is replaced only when it is a tuneflow report.
fn write_page(path: &Path, page: &str, user_path: bool) -> Result<(), RunError> {
    if user_path {
        if let Ok(old) = std::fs::read(path) {
            let head = &old[..old.len().min(512)];
            if !String::from_utf8_lossy(head).contains(html::GENERATOR) {
                return Err(PipelineError::Usage(format!(
                    "`{}` exists and is not a tuneflow report; choose another path (it is left as it is)",
                    path.display()
                ))
                .into());
            }
        } else if path.is_dir() {
            return Err(PipelineError::Usage(format!(
                "`{}` is a folder; give a file name",
                path.display()
            ))
            .into());
        }
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| CacheError::io("create", dir, e))?;
    let tmp: PathBuf = dir.join(format!(
        ".{}.tuneflow-report-{}",
        path.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        std::process::id()
    ));
    let written = std::fs::write(&tmp, page)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| CacheError::io("write", path, e));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(written?)
}
