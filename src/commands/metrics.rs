//! `tuneflow metrics PIPELINE [--diff]`: the metrics the `evaluate` stages
//! (and the typed `metrics` outputs of command stages) of the pipeline as
//! it is now report (the results the same decision as
//! `run` resolves to, never a stale "latest run"); with `--diff`, next to
//! the most recent earlier run whose result for that stage differs.
#![expect(clippy::print_stdout, reason = "the command prints a report")]

use std::collections::BTreeMap;
use std::path::Path;

use tuneflow_cache::{Index, StageDigest};

use crate::cli::MetricsArgs;
use crate::error::{exit, RunError};
use crate::pipeline::{self, PipelineError};
use crate::run::cache::{layout_for, Cache};
use crate::run::lookup::{resolve, Decision, Lookup, Resolved};
use crate::run::prefetch::{Prefetch, ResultStats};
use crate::run::reports::{flatten, reports_in};

use super::runs;

/// Report label (`stage`, or `stage.output` for a command's metrics) ->
/// the stage's key and the report.
type Reports = BTreeMap<String, (StageDigest, serde_json::Value)>;

/// The reports of the pipeline as it resolves now.
fn current(plan: &pipeline::Plan, resolved: &[Resolved]) -> Reports {
    let mut out = Reports::new();
    for (ps, r) in plan.stages.iter().zip(resolved) {
        if let Resolved::Decided(Decision::Hit {
            record, manifest, ..
        }) = r
        {
            for (suffix, report) in reports_in(&manifest.summary) {
                out.insert(format!("{}{suffix}", ps.name), (record.key, report));
            }
        }
    }
    out
}

/// The report `label` of `stage` in the most recent recorded run of this
/// pipeline whose result for it is not `key`.
fn previous(
    index: &Index,
    file: &str,
    (stage, label): (&str, &str),
    key: &StageDigest,
) -> Result<Option<serde_json::Value>, RunError> {
    let suffix = &label[stage.len()..];
    for (_, run) in index.runs()?.iter().rev() {
        if run.pipeline != file {
            continue;
        }
        let Some(k) = run.keys.get(stage).filter(|k| *k != key) else {
            continue;
        };
        if let Some(m) = index.result(k)? {
            if let Some((_, r)) = reports_in(&m.summary)
                .into_iter()
                .find(|(s, _)| s == suffix)
            {
                return Ok(Some(r));
            }
        }
    }
    Ok(None)
}

/// Runs `tuneflow metrics`.
pub fn metrics(args: &MetricsArgs, cache_flag: Option<&Path>) -> Result<i32, RunError> {
    let named: Vec<&str> = args
        .run
        .iter()
        .chain(args.diff.iter().flatten())
        .map(String::as_str)
        .collect();
    if !named.is_empty() {
        return recorded(args, cache_flag, &named);
    }
    let prefetch = Prefetch::start(cache_flag, &args.pipeline, ResultStats::Read);
    let plan = pipeline::load(&args.pipeline, &args.set)?;
    let layout = layout_for(cache_flag, Some(&plan), Some(&args.pipeline));
    let prefetched = prefetch.take(layout.root(), &plan);
    let cache = Cache::open_shared(layout)?;
    let lookup = Lookup::prefetched(&plan, &cache.index, &cache.store, prefetched);
    let now = current(&plan, &resolve(&lookup)?);
    if now.is_empty() {
        return Err(PipelineError::Usage(format!(
            "no `evaluate` stage (or command with a `metrics` output) of `{}` has a result for the pipeline as it is now; run it first",
            args.pipeline.display()
        ))
        .into());
    }
    let file = plan.file.display().to_string();
    for (label, (key, report)) in &now {
        let stage = plan
            .stages
            .iter()
            .map(|s| s.name.as_str())
            .find(|s| label == s || label.starts_with(&format!("{s}.")))
            .unwrap_or(label);
        let stage = &stage.to_owned();
        let before = if args.diff.is_some() {
            previous(&cache.index, &file, (stage, label), key)?
        } else {
            None
        };
        if args.json {
            let line = serde_json::json!({
                "event": "metrics", "stage": stage, "report": label, "metrics": report,
                "previous": before,
            });
            println!("{line}");
        } else {
            let previous = before.as_ref().map(flatten);
            if args.diff.is_some() && previous.is_none() {
                println!("{label}: no earlier run with a different result to compare with");
            }
            print_table(label, &flatten(report), previous.as_ref(), report);
        }
    }
    Ok(exit::SUCCESS)
}

/// `metrics RUN`, `metrics --diff A B` (or `RUN --diff B`), and
/// `metrics --diff A` (the pipeline now against run A).
fn recorded(args: &MetricsArgs, flag: Option<&Path>, named: &[&str]) -> Result<i32, RunError> {
    if named.len() > 2 {
        return Err(PipelineError::Usage(
            "`metrics` compares at most two runs: `metrics PIPELINE --diff A B`".into(),
        )
        .into());
    }
    let (cache, file) = runs::open_runs(&args.pipeline, flag)?;
    let all = runs::runs_of(&cache.index, &file)?;
    let (a_id, a) = runs::find_run(&all, named[0])?;
    let a_metrics = runs::run_metrics(&cache.index, a);
    let b = match named.get(1) {
        Some(b) => {
            let (id, r) = runs::find_run(&all, b)?;
            Some((id.clone(), runs::run_metrics(&cache.index, r)))
        }
        None if args.diff.is_some() => {
            let plan = pipeline::load(&args.pipeline, &args.set)?;
            let lookup = Lookup::new(&plan, &cache.index, &cache.store);
            let now = current(&plan, &resolve(&lookup)?)
                .into_iter()
                .map(|(label, (_, report))| (label, flatten(&report)))
                .collect();
            Some(("now".to_owned(), now))
        }
        None => None,
    };
    runs::print_metrics(
        (a_id, &a_metrics),
        b.as_ref().map(|(n, m)| (n.as_str(), m)),
        args.json,
    );
    Ok(exit::SUCCESS)
}

fn print_table(
    stage: &str,
    latest: &BTreeMap<String, f64>,
    previous: Option<&BTreeMap<String, f64>>,
    report: &serde_json::Value,
) {
    let trials = &report["trials"];
    match report["source"].as_str() {
        Some(source) => println!("{stage}  ({source})"),
        None => println!(
            "{stage}  ({} trials, {} same-class; {})",
            trials["count"],
            trials["positives"],
            trials["source"].as_str().unwrap_or("")
        ),
    }
    // Columns: the model, the baseline and their difference (in the order
    // the report gives); one row per metric.
    let mut groups: Vec<&str> = report["columns"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str())
        .collect();
    if groups.is_empty() {
        groups = latest
            .keys()
            .filter_map(|k| k.split_once('.'))
            .map(|(g, _)| g)
            .collect();
        groups.dedup();
    }
    let mut rows: Vec<&str> = Vec::new();
    for k in latest.keys() {
        let m = k.split_once('.').map_or(k.as_str(), |(_, m)| m);
        if !rows.contains(&m) {
            rows.push(m);
        }
    }
    let mut header = format!("  {:<20}", "metric");
    for g in &groups {
        header.push_str(&format!(" {g:>12}"));
        if previous.is_some() {
            header.push_str(&format!(" {:>12} {:>9}", "previous", "change"));
        }
    }
    println!("{header}");
    for m in rows {
        let mut line = format!("  {m:<20}");
        for g in &groups {
            let key = format!("{g}.{m}");
            line.push_str(&cell(latest.get(&key)));
            if let Some(p) = previous {
                let old = p.get(&key);
                line.push_str(&cell(old));
                let change = latest.get(&key).zip(old).map(|(a, b)| a - b);
                line.push_str(&match change {
                    Some(c) => format!(" {c:>+9.4}"),
                    None => format!(" {:>9}", "-"),
                });
            }
        }
        println!("{line}");
    }
}

fn cell(v: Option<&f64>) -> String {
    match v {
        Some(x) => format!(" {x:>12.4}"),
        None => format!(" {:>12}", "-"),
    }
}
