//! `tuneflow metrics PIPELINE [--diff]`: the metrics the `evaluate` stages
//! of the pipeline as it is now report (the results the same decision as
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

/// Stage -> its key and `evaluate` report.
type Reports = BTreeMap<String, (StageDigest, serde_json::Value)>;

/// The `evaluate` reports of the pipeline as it resolves now.
fn current(plan: &pipeline::Plan, resolved: &[Resolved]) -> Reports {
    let mut out = Reports::new();
    for (ps, r) in plan.stages.iter().zip(resolved) {
        if let Resolved::Decided(Decision::Hit {
            record, manifest, ..
        }) = r
        {
            if let Some(report) = manifest.summary.get("evaluate") {
                out.insert(ps.name.clone(), (record.key, report.clone()));
            }
        }
    }
    out
}

/// The report of `stage` in the most recent recorded run of this pipeline
/// whose result for it is not `key`.
fn previous(
    index: &Index,
    file: &str,
    stage: &str,
    key: &StageDigest,
) -> Result<Option<serde_json::Value>, RunError> {
    for (_, run) in index.runs()?.iter().rev() {
        if run.pipeline != file {
            continue;
        }
        let Some(k) = run.keys.get(stage).filter(|k| *k != key) else {
            continue;
        };
        if let Some(m) = index.result(k)? {
            if let Some(r) = m.summary.get("evaluate") {
                return Ok(Some(r.clone()));
            }
        }
    }
    Ok(None)
}

/// Flattens `{"model": {"eer": ..}, "diff": {..}}` to `model.eer` -> value.
fn flatten(report: &serde_json::Value) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    if let Some(o) = report.as_object() {
        for (group, v) in o {
            if group == "trials" || group == "columns" {
                continue;
            }
            for (k, x) in v.as_object().into_iter().flatten() {
                if let Some(x) = x.as_f64() {
                    out.insert(format!("{group}.{k}"), x);
                }
            }
        }
    }
    out
}

/// Runs `tuneflow metrics`.
pub fn metrics(args: &MetricsArgs, cache_flag: Option<&Path>) -> Result<i32, RunError> {
    let plan = pipeline::load(&args.pipeline, &args.set)?;
    let layout = layout_for(cache_flag, Some(&plan), Some(&args.pipeline));
    let cache = Cache::open_shared(layout)?;
    let lookup = Lookup::new(&plan, &cache.index, &cache.store);
    let now = current(&plan, &resolve(&lookup)?);
    if now.is_empty() {
        return Err(PipelineError::Usage(format!(
            "no `evaluate` stage of `{}` has a result for the pipeline as it is now; run it first",
            args.pipeline.display()
        ))
        .into());
    }
    let file = plan.file.display().to_string();
    for (stage, (key, report)) in &now {
        let before = if args.diff {
            previous(&cache.index, &file, stage, key)?
        } else {
            None
        };
        if args.json {
            let line = serde_json::json!({
                "event": "metrics", "stage": stage, "metrics": report,
                "previous": before,
            });
            println!("{line}");
        } else {
            let previous = before.as_ref().map(flatten);
            if args.diff && previous.is_none() {
                println!("{stage}: no earlier run with a different result to compare with");
            }
            print_table(stage, &flatten(report), previous.as_ref(), report);
        }
    }
    Ok(exit::SUCCESS)
}

fn print_table(
    stage: &str,
    latest: &BTreeMap<String, f64>,
    previous: Option<&BTreeMap<String, f64>>,
    report: &serde_json::Value,
) {
    let trials = &report["trials"];
    println!(
        "{stage}  ({} trials, {} same-class; {})",
        trials["count"],
        trials["positives"],
        trials["source"].as_str().unwrap_or("")
    );
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
