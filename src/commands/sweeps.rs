//! `tuneflow runs PIPELINE --sweep [ID]`: one row per variant of a sweep,
//! its swept values and its metrics, the best value of each metric marked.
#![expect(clippy::print_stdout, reason = "the command prints a report")]

use std::collections::BTreeSet;

use tuneflow_cache::{Index, RunRecord};

use super::runs::run_metrics;
use crate::error::{exit, RunError};
use crate::pipeline::PipelineError;

/// Whether a smaller value of metric `name` is better (error rates,
/// losses, costs); else a larger one is.
pub(super) fn lower_is_better(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    // `label:group.metric`, and a metric name may hold a dot (`min_dcf_0.01`).
    let metric = n.split_once(':').map_or(n.as_str(), |(_, m)| m);
    let metric = metric.split_once('.').map_or(metric, |(_, m)| m);
    if metric.ends_with("std") {
        return true;
    }
    // Acceptance rates (TAR@FAR), accuracies and areas go up.
    if ["tar", "acc", "auc", "top", "precision", "recall"]
        .iter()
        .any(|w| metric.contains(w))
    {
        return false;
    }
    [
        "eer", "dcf", "loss", "far", "frr", "fnr", "fpr", "err", "seconds", "time",
    ]
    .iter()
    .any(|w| metric.contains(w))
}

/// The id of the sweep to show: the latest, or the one whose id contains
/// `wanted`.
fn pick(all: &[(String, RunRecord)], wanted: &str) -> Result<String, RunError> {
    let ids: BTreeSet<&str> = all
        .iter()
        .filter_map(|(_, r)| r.sweep.as_ref().map(|s| s.id.as_str()))
        .filter(|id| id.contains(wanted))
        .collect();
    match (ids.len(), wanted.is_empty()) {
        (0, _) => Err(PipelineError::Usage(format!(
            "no recorded sweep of this pipeline{}; run one with `--set stage.key=a,b,c`",
            if wanted.is_empty() {
                String::new()
            } else {
                format!(" has an id containing `{wanted}`")
            }
        ))
        .into()),
        (1, _) | (_, true) => Ok(ids.last().expect("not empty").to_string()),
        (n, false) => Err(PipelineError::Usage(format!(
            "`{wanted}` matches {n} sweeps; give more of the id"
        ))
        .into()),
    }
}

/// A variant's swept values, outcome and metrics (`label:metric`).
type Row<'a> = (Vec<String>, &'a str, Vec<(String, f64)>);

/// A sweep's variants, in order, with their values and metrics.
pub(super) struct Sweep<'a> {
    /// The sweep's id.
    pub id: String,
    /// The swept keys.
    pub keys: Vec<String>,
    /// Each variant's run.
    pub variants: Vec<&'a (String, RunRecord)>,
    /// Each variant's row.
    pub rows: Vec<Row<'a>>,
    /// Every metric any variant has.
    pub names: BTreeSet<String>,
}

impl Sweep<'_> {
    /// The best value of metric `name` over the variants.
    pub fn best(&self, name: &str) -> Option<f64> {
        let vals = self
            .rows
            .iter()
            .filter_map(|r| r.2.iter().find(|(k, _)| k == name).map(|(_, v)| *v));
        if lower_is_better(name) {
            vals.reduce(f64::min)
        } else {
            vals.reduce(f64::max)
        }
    }
}

/// The sweep `wanted` names (the latest when empty).
pub(super) fn collect<'a>(
    index: &Index,
    all: &'a [(String, RunRecord)],
    wanted: &str,
) -> Result<Sweep<'a>, RunError> {
    let id = pick(all, wanted)?;
    let mut variants: Vec<&(String, RunRecord)> = all
        .iter()
        .filter(|(_, r)| r.sweep.as_ref().is_some_and(|s| s.id == id))
        .collect();
    variants.sort_by_key(|(_, r)| r.sweep.as_ref().map_or(0, |s| s.index));
    let keys = variants
        .first()
        .and_then(|(_, r)| r.sweep.as_ref())
        .map(|s| s.keys.clone())
        .unwrap_or_default();
    let rows: Vec<Row<'_>> = variants
        .iter()
        .map(|(_, r)| {
            let values = keys.iter().map(|k| value_of(r, k)).collect();
            let metrics = run_metrics(index, r)
                .into_iter()
                .flat_map(|(label, m)| m.into_iter().map(move |(k, v)| (format!("{label}:{k}"), v)))
                .collect();
            (values, r.outcome.as_str(), metrics)
        })
        .collect();
    let names = rows
        .iter()
        .flat_map(|r| r.2.iter().map(|(k, _)| k.clone()))
        .collect();
    Ok(Sweep {
        id,
        keys,
        variants,
        rows,
        names,
    })
}

/// Prints the sweep table.
pub fn table(
    index: &Index,
    all: &[(String, RunRecord)],
    wanted: &str,
    json: bool,
) -> Result<i32, RunError> {
    let sweep = collect(index, all, wanted)?;
    let Sweep {
        id,
        keys,
        variants,
        rows,
        names,
    } = &sweep;
    let best = |name: &str| sweep.best(name);
    if json {
        for ((run_id, _), (values, outcome, metrics)) in variants.iter().zip(rows) {
            let line = serde_json::json!({"event": "sweep-row", "sweep": id, "run": run_id,
                "values": keys.iter().zip(values).collect::<std::collections::BTreeMap<_, _>>(),
                "outcome": outcome,
                "metrics": metrics.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                "best": metrics.iter().filter(|(k, v)| best(k) == Some(*v)).map(|(k, _)| k).collect::<Vec<_>>()});
            println!("{line}");
        }
        return Ok(exit::SUCCESS);
    }
    println!(
        "sweep {id}: {} variants (best of each metric marked *)",
        rows.len()
    );
    let mut header: Vec<String> = keys.clone();
    header.push("outcome".into());
    header.extend(names.iter().map(|n| n.to_string()));
    println!(
        "{}",
        header
            .iter()
            .map(|h| format!("{h:>14}"))
            .collect::<String>()
    );
    for (values, outcome, metrics) in rows {
        let mut line: String = values.iter().map(|v| format!("{v:>14}")).collect();
        line.push_str(&format!("{outcome:>14}"));
        for n in names {
            let cell = metrics.iter().find(|(k, _)| k == n).map_or_else(
                || "—".to_owned(),
                |(_, v)| format!("{v:.4}{}", if best(n) == Some(*v) { "*" } else { " " }),
            );
            line.push_str(&format!("{cell:>14}"));
        }
        println!("{line}");
    }
    Ok(exit::SUCCESS)
}

/// The value a run's overrides give `key`.
fn value_of(r: &RunRecord, key: &str) -> String {
    r.overrides
        .iter()
        .rev()
        .find_map(|o| o.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
        .unwrap_or("-")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_rates_and_losses_are_lower_is_better() {
        for n in [
            "evaluate:model.eer",
            "m:value.loss",
            "e:model.min_dcf_0.01",
            "e:m.accuracy_10fold_std",
        ] {
            assert!(lower_is_better(n), "{n}");
        }
        for n in [
            "evaluate:model.top1",
            "m:value.acc",
            "e:model.auc",
            "x:model.tar_at_far_1e-3",
        ] {
            assert!(!lower_is_better(n), "{n}");
        }
    }
}
