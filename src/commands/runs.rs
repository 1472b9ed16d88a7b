//! `tuneflow runs PIPELINE`: the recorded runs of a pipeline, and what
//! `tuneflow metrics RUN` and `metrics --diff A B` read from them.
#![expect(clippy::print_stdout, reason = "the command prints a report")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tuneflow_cache::{Index, RunRecord};

use crate::cli::{RunStatus, RunsArgs};
use crate::error::{exit, RunError};
use crate::pipeline::{self, PipelineError};
use crate::run::cache::{layout_for, Cache};
use crate::run::reports::{flatten, reports_in};

/// Report label -> metric -> value.
pub(super) type RunMetrics = BTreeMap<String, BTreeMap<String, f64>>;

/// The cache and the absolute pipeline path of `pipeline` (a file that no
/// longer plans still lists its runs, from the default cache folder).
pub(super) fn open_runs(pipeline: &Path, flag: Option<&Path>) -> Result<(Cache, String), RunError> {
    let plan = pipeline::load(pipeline, &[]).ok();
    let layout = layout_for(flag, plan.as_ref(), Some(pipeline));
    let file = plan.map_or_else(
        || std::path::absolute(pipeline).unwrap_or_else(|_| PathBuf::from(pipeline)),
        |p| p.file,
    );
    Ok((Cache::open_shared(layout)?, file.display().to_string()))
}

/// The runs of pipeline `file`, oldest first.
/// (However its path was written when it ran: `../x/p.toml`, through a
/// symlink.)
pub(super) fn runs_of(index: &Index, file: &str) -> Result<Vec<(String, RunRecord)>, RunError> {
    let real = |p: &str| std::fs::canonicalize(p).unwrap_or_else(|_| PathBuf::from(p));
    let wanted = real(file);
    Ok(index
        .runs()?
        .into_iter()
        .filter(|(_, r)| r.pipeline == file || real(&r.pipeline) == wanted)
        .collect())
}

/// The run whose id is `wanted`, or the only one whose id contains it.
pub(super) fn find_run<'a>(
    runs: &'a [(String, RunRecord)],
    wanted: &str,
) -> Result<&'a (String, RunRecord), RunError> {
    if let Some(r) = runs.iter().find(|(id, _)| id == wanted) {
        return Ok(r);
    }
    let matching: Vec<_> = runs.iter().filter(|(id, _)| id.contains(wanted)).collect();
    match matching.as_slice() {
        [one] => Ok(one),
        [] => Err(PipelineError::Usage(format!(
            "no recorded run of this pipeline has an id containing `{wanted}` (`tuneflow runs PIPELINE` lists them)"
        ))
        .into()),
        many => Err(PipelineError::Usage(format!(
            "`{wanted}` matches {} runs ({}...); give more of the id",
            many.len(),
            many.iter().take(3).map(|(id, _)| id.as_str()).collect::<Vec<_>>().join(", ")
        ))
        .into()),
    }
}

/// A run's metrics: as recorded, else (a record from before runs kept
/// them) from the results its keys name, while they are cached.
pub(super) fn run_metrics(index: &Index, run: &RunRecord) -> RunMetrics {
    let mut out = RunMetrics::new();
    if !run.metrics.is_empty() {
        for (label, v) in &run.metrics {
            let m = v
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, x)| Some((k.clone(), x.as_f64()?)))
                .collect();
            out.insert(label.clone(), m);
        }
        return out;
    }
    for (stage, key) in &run.keys {
        if let Ok(Some(m)) = index.result(key) {
            for (suffix, report) in reports_in(&m.summary) {
                out.insert(format!("{stage}{suffix}"), flatten(&report));
            }
        }
    }
    out
}

fn matches(args: &RunsArgs, run: &RunRecord) -> bool {
    let status = args.status.map(|s| match s {
        RunStatus::Success => "success",
        RunStatus::Failed => "failed",
        RunStatus::Interrupted => "interrupted",
    });
    status.map_or(true, |s| run.outcome == s)
        && args.param.iter().all(|p| run.overrides.contains(p))
        && args.stage.as_ref().map_or(true, |s| {
            run.stages.get(s).is_some_and(|st| st.outcome == "ran")
        })
}

/// Runs `tuneflow runs`.
pub fn runs(args: &RunsArgs, flag: Option<&Path>) -> Result<i32, RunError> {
    let (cache, file) = open_runs(&args.pipeline, flag)?;
    let all = runs_of(&cache.index, &file)?;
    if let Some(wanted) = &args.sweep {
        return super::sweeps::table(&cache.index, &all, wanted, args.json);
    }
    let mut shown: Vec<&(String, RunRecord)> =
        all.iter().filter(|(_, r)| matches(args, r)).collect();
    if let Some(n) = args.last {
        shown.drain(..shown.len().saturating_sub(n));
    }
    if args.json {
        for (id, r) in shown {
            let line = serde_json::json!({"event": "run", "id": id, "record": r,
                "metrics": run_metrics(&cache.index, r)});
            println!("{line}");
        }
        return Ok(exit::SUCCESS);
    }
    if shown.is_empty() {
        println!("no recorded run of `{file}` matches");
        return Ok(exit::SUCCESS);
    }
    println!(
        "{:<27} {:<11} {:>4} {:>6} {:>6} {:>8}  {:<10} OVERRIDES",
        "RUN", "OUTCOME", "RAN", "CACHED", "FAILED", "SECONDS", "GIT"
    );
    for (id, r) in shown {
        let count = |w: &str| r.stages.values().filter(|s| s.outcome == w).count();
        let seconds = r.ended.saturating_sub(r.started) as f64 / 1e9;
        let git = r.git.as_ref().map_or_else(
            || "-".to_owned(),
            |g| {
                format!(
                    "{}{}",
                    g.commit.chars().take(8).collect::<String>(),
                    if g.dirty { "+" } else { "" }
                )
            },
        );
        println!(
            "{id:<27} {:<11} {:>4} {:>6} {:>6} {seconds:>8.2}  {git:<10} {}",
            r.outcome,
            count("ran"),
            count("cached"),
            count("failed"),
            if r.overrides.is_empty() {
                "-".to_owned()
            } else {
                r.overrides.join(" ")
            }
        );
    }
    Ok(exit::SUCCESS)
}

/// Prints one run's metrics, or two side by side (`b` minus `a`), saying
/// where one side lacks a report or a metric.
pub(super) fn print_metrics(
    (a_name, a): (&str, &RunMetrics),
    b: Option<(&str, &RunMetrics)>,
    json: bool,
) {
    let labels: std::collections::BTreeSet<&String> = a
        .keys()
        .chain(b.iter().flat_map(|(_, m)| m.keys()))
        .collect();
    for label in labels {
        let (ma, mb) = (a.get(label), b.and_then(|(_, m)| m.get(label)));
        if json {
            let mut line = serde_json::Map::new();
            line.insert("event".into(), "metrics".into());
            line.insert("report".into(), label.as_str().into());
            line.insert(a_name.into(), serde_json::json!(ma));
            if let Some((b_name, _)) = b {
                line.insert(b_name.into(), serde_json::json!(mb));
            }
            println!("{}", serde_json::Value::Object(line));
            continue;
        }
        let Some((b_name, _)) = b else {
            println!("{label}  (run {a_name})");
            for (k, v) in ma.into_iter().flatten() {
                println!("  {k:<28} {v:>10.4}");
            }
            continue;
        };
        match (ma, mb) {
            (None, _) => println!("{label}: only in {b_name} (no such report in {a_name})"),
            (_, None) => println!("{label}: only in {a_name} (no such report in {b_name})"),
            _ => {}
        }
        println!("{label}");
        println!(
            "  {:<28} {:>10} {:>10} {:>10}",
            "metric",
            short(a_name),
            short(b_name),
            "diff"
        );
        let names: std::collections::BTreeSet<&String> = ma
            .into_iter()
            .flatten()
            .chain(mb.into_iter().flatten())
            .map(|(k, _)| k)
            .collect();
        for k in names {
            let (x, y) = (ma.and_then(|m| m.get(k)), mb.and_then(|m| m.get(k)));
            let cell = |v: Option<&f64>| v.map_or_else(|| "—".to_owned(), |v| format!("{v:.4}"));
            let diff = match (x, y) {
                (Some(x), Some(y)) => format!("{:+.4}", y - x),
                (None, _) => format!("not in {}", short(a_name)),
                (_, None) => format!("not in {}", short(b_name)),
            };
            println!("  {k:<28} {:>10} {:>10} {diff:>10}", cell(x), cell(y));
        }
    }
}

/// A run id shortened for a column header: its time of day to the
/// millisecond (`20261129-062440.343-10383` -> `062440.343`).
fn short(name: &str) -> &str {
    name.get(9..19)
        .filter(|t| name.len() > 19 && t.as_bytes().get(6) == Some(&b'.'))
        .unwrap_or(name)
}
