//! `tuneflow metrics PIPELINE [--diff]`: the metrics the `evaluate` stages
//! (and the typed `metrics` outputs of command stages) of the pipeline as
//! it is now report (the results the same decision as
//! `run` resolves to, never a stale "latest run"); with `--diff`, next to
//! the most recent earlier run whose result for that stage differs.
#![expect(clippy::print_stdout, reason = "the command prints a report")]

use std::collections::BTreeMap;
use std::path::Path;

use tuneflow_cache::{Index, StageDigest};
use tuneflow_stages::formats::artifact::flatten_metrics;

use crate::cli::MetricsArgs;
use crate::error::{exit, RunError};
use crate::pipeline::{self, PipelineError};
use crate::run::cache::{layout_for, Cache};
use crate::run::lookup::{resolve, Decision, Lookup, Resolved};
use crate::run::prefetch::{Prefetch, ResultStats};

/// Report label (`stage`, or `stage.output` for a command's metrics) ->
/// the stage's key and the report.
type Reports = BTreeMap<String, (StageDigest, serde_json::Value)>;

/// The reports in a manifest's summary, by label suffix: `evaluate`'s
/// (suffix ""), and each typed `metrics` output of a command (`.NAME`),
/// as a one-column report of its numbers flattened to dotted names.
fn reports_in(summary: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    if let Some(report) = summary.get("evaluate") {
        out.push((String::new(), report.clone()));
    }
    for (name, value) in summary
        .get("metrics")
        .and_then(|m| m.as_object())
        .into_iter()
        .flatten()
    {
        // Checked when its stage committed.
        let flat = flatten_metrics(value).unwrap_or_default();
        let report = serde_json::json!({
            "columns": ["value"],
            "value": flat,
            "source": format!("the command's `{name}` output"),
        });
        out.push((format!(".{name}"), report));
    }
    out
}

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

/// Flattens `{"model": {"eer": ..}, "diff": {..}}` to `model.eer` -> value.
fn flatten(report: &serde_json::Value) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    if let Some(o) = report.as_object() {
        for (group, v) in o {
            if group == "trials" || group == "columns" || group == "source" {
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
        let before = if args.diff {
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
            if args.diff && previous.is_none() {
                println!("{label}: no earlier run with a different result to compare with");
            }
            print_table(label, &flatten(report), previous.as_ref(), report);
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
