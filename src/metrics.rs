//! `tuneflow metrics PIPELINE [--diff]`: the metrics that `evaluate` stages
//! reported in the latest run of a pipeline, as a table; with `--diff`,
//! next to the previous run's.
#![expect(clippy::print_stdout, reason = "the command prints a report")]

use std::collections::BTreeMap;
use std::path::Path;

use tuneflow_cache::{Index, RunRecord};

use crate::cli::MetricsArgs;
use crate::commands::{cache_layout, open_cache};
use crate::error::{exit, PipelineError, RunError};
use crate::plan;

/// Stage -> its `evaluate` report, for one run.
type Reports = BTreeMap<String, serde_json::Value>;

fn reports(index: &Index, run: &RunRecord) -> Result<Reports, RunError> {
    let mut out = Reports::new();
    for (stage, key) in &run.keys {
        if let Some(m) = index.result(key)? {
            if let Some(r) = m.summary.get("evaluate") {
                out.insert(stage.clone(), r.clone());
            }
        }
    }
    Ok(out)
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
    let plan = plan::load(&args.pipeline, &[])?;
    let layout = cache_layout(cache_flag, Some(&plan), Some(&args.pipeline));
    let (_lock, index) = open_cache(&layout)?;
    let file = plan.file.display().to_string();
    let runs: Vec<RunRecord> = index
        .runs()?
        .into_iter()
        .filter(|r| r.pipeline == file)
        .collect();
    let Some(latest) = runs.last() else {
        return Err(PipelineError::Usage(format!(
            "`{}` has not been run yet",
            args.pipeline.display()
        ))
        .into());
    };
    let now = reports(&index, latest)?;
    if now.is_empty() {
        return Err(
            PipelineError::Usage("the latest run has no `evaluate` results".to_owned()).into(),
        );
    }
    let before = match runs.len().checked_sub(2).map(|i| &runs[i]) {
        Some(prev) if args.diff => Some(reports(&index, prev)?),
        None if args.diff => {
            return Err(PipelineError::Usage(
                "there is no previous run of this pipeline to compare with".to_owned(),
            )
            .into())
        }
        _ => None,
    };
    for (stage, report) in &now {
        let latest = flatten(report);
        let previous = before.as_ref().and_then(|b| b.get(stage)).map(flatten);
        if args.json {
            let line = serde_json::json!({
                "event": "metrics", "stage": stage, "metrics": report,
                "previous": before.as_ref().and_then(|b| b.get(stage)),
            });
            println!("{line}");
        } else {
            print_table(stage, &latest, previous.as_ref(), report);
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
