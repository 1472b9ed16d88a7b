//! What `tuneflow report` puts on a page, read from a run record and the
//! results it names: the stage rows, the metrics tables, training curves,
//! ROC/DET points, the sweep and the other runs.

use std::collections::BTreeMap;

use tuneflow_cache::{Index, Manifest, RunRecord};

use super::report::read_in_output;
use super::runs::RunMetrics;
use super::sweeps;
use crate::html::{self, CurveSet, Epoch, MetricsTable, RunLink, StageRow, SweepRow, SweepView};
use crate::pipeline::Plan;
use crate::run::cache::Cache;
use crate::run::reports::reports_in;

/// One row per stage, in the plan's order when it is known.
pub(super) fn stage_rows(
    cache: &Cache,
    file: &str,
    (id, run): (&str, &RunRecord),
    plan: Option<&Plan>,
    manifests: &BTreeMap<String, Manifest>,
    relative_logs: bool,
) -> Vec<StageRow> {
    let records = cache.index.stage_records(file).unwrap_or_default();
    let order: Vec<(String, String)> = match plan {
        Some(p) => p
            .stages
            .iter()
            .map(|s| (s.name.clone(), s.stage.kind().to_owned()))
            .collect(),
        None => run
            .stages
            .keys()
            .map(|n| (n.clone(), String::new()))
            .collect(),
    };
    let run_dir = cache.index.run_dir(id);
    order
        .into_iter()
        .filter_map(|(name, kind)| {
            let s = run.stages.get(&name)?;
            let m = manifests.get(&name);
            let params = records
                .get(&name)
                .filter(|st| Some(st.record.key.to_hex()) == s.key)
                .map(|st| serde_json::json!(st.record.params));
            let log_file = run_dir.join(format!("{name}.log"));
            let log = log_file.is_file().then(|| {
                if relative_logs {
                    format!("../runs/{id}/{name}.log")
                } else {
                    format!("file://{}", log_file.display())
                }
            });
            Some(StageRow {
                kind: if kind.is_empty() {
                    records
                        .get(&name)
                        .map(|st| st.record.kind.clone())
                        .unwrap_or_default()
                } else {
                    kind
                },
                outcome: s.outcome.clone(),
                reason: s.reason.clone(),
                seconds: s.seconds,
                computed_seconds: m.map(|m| m.seconds),
                peak_rss_kib: m.and_then(|m| m.peak_rss_kib),
                key: s.key.clone(),
                params,
                log,
                name,
            })
        })
        .collect()
}

/// A report's label split into its stage and its suffix (`e` -> (`e`,
/// ``); `train.metrics` -> (`train`, `.metrics`)).
fn stage_of(label: &str) -> (&str, &str) {
    label.find('.').map_or((label, ""), |i| label.split_at(i))
}

/// One table per report the run resolved to.
pub(super) fn metrics_tables(
    metrics: &RunMetrics,
    manifests: &BTreeMap<String, Manifest>,
) -> Vec<MetricsTable> {
    metrics
        .iter()
        .map(|(label, flat)| {
            let (stage, suffix) = stage_of(label);
            let report = manifests.get(stage).and_then(|m| {
                reports_in(&m.summary)
                    .into_iter()
                    .find(|(s, _)| s == suffix)
                    .map(|(_, r)| r)
            });
            table(label, flat, report.as_ref())
        })
        .collect()
}

fn table(
    label: &str,
    flat: &BTreeMap<String, f64>,
    report: Option<&serde_json::Value>,
) -> MetricsTable {
    let mut columns: Vec<String> = report
        .and_then(|r| r["columns"].as_array())
        .map(|c| {
            c.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    // Without the report: the groups of the flattened names, `diff` last.
    if columns.is_empty() {
        let mut groups: Vec<String> = flat
            .keys()
            .filter_map(|k| k.split_once('.').map(|(g, _)| g.to_owned()))
            .collect();
        groups.dedup();
        groups.sort_by_key(|g| (g == "diff", g.clone()));
        columns = groups;
    }
    let mut rows: Vec<(String, Vec<Option<f64>>)> = Vec::new();
    for (key, v) in flat {
        let Some((col, metric)) = columns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| Some((i, key.strip_prefix(c.as_str())?.strip_prefix('.')?)))
            .max_by_key(|(i, _)| columns[*i].len())
        else {
            continue;
        };
        let row = match rows.iter().position(|(m, _)| m == metric) {
            Some(r) => r,
            None => {
                rows.push((metric.to_owned(), vec![None; columns.len()]));
                rows.len() - 1
            }
        };
        rows[row].1[col] = Some(*v);
    }
    let trials = report.and_then(|r| {
        let t = r.get("trials")?;
        Some(format!(
            "{} trials, {} of them same-class ({})",
            t["count"].as_u64()?,
            t["positives"].as_u64()?,
            t["source"].as_str().unwrap_or("?")
        ))
    });
    MetricsTable {
        label: label.to_owned(),
        columns,
        rows,
        trials,
    }
}

/// The per-epoch numbers of every training stage (its model's
/// `metrics.json`).
pub(super) fn training(
    cache: &Cache,
    manifests: &BTreeMap<String, Manifest>,
    stages: &[&str],
) -> Vec<html::TrainingCurves> {
    stages
        .iter()
        .filter_map(|&stage| {
            let m = manifests.get(stage)?;
            let bytes = read_in_output(cache, m, "model", "metrics.json")?;
            let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
            let epochs = v["epochs"]
                .as_array()?
                .iter()
                .filter_map(|e| {
                    Some(Epoch {
                        epoch: e["epoch"].as_f64()?,
                        train_loss: e["train_loss"].as_f64(),
                        val_loss: e["val_loss"].as_f64(),
                        train_acc: e["train_acc"].as_f64(),
                        val_acc: e["val_acc"].as_f64(),
                    })
                })
                .collect();
            Some(html::TrainingCurves {
                stage: stage.to_owned(),
                epochs,
            })
        })
        .collect()
}

/// The ROC points each `evaluate` stage kept (`plots/curves.json`).
pub(super) fn curve_sets(
    cache: &Cache,
    manifests: &BTreeMap<String, Manifest>,
    stages: &[&str],
) -> Vec<CurveSet> {
    stages
        .iter()
        .filter_map(|&stage| {
            let m = manifests.get(stage)?;
            let bytes = read_in_output(cache, m, "plots", "curves.json")?;
            let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
            let curves = v["curves"]
                .as_array()?
                .iter()
                .filter_map(|c| {
                    let points = c["points"]
                        .as_array()?
                        .iter()
                        .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
                        .collect();
                    Some((c["label"].as_str()?.to_owned(), points))
                })
                .collect();
            Some(CurveSet {
                stage: stage.to_owned(),
                curves,
            })
        })
        .collect()
}

/// The sweep the run is a variant of.
pub(super) fn sweep_view(
    index: &Index,
    all: &[(String, RunRecord)],
    run: &RunRecord,
) -> Option<SweepView> {
    let tag = run.sweep.as_ref()?;
    let sweep = sweeps::collect(index, all, &tag.id).ok()?;
    let metrics: Vec<String> = sweep.names.iter().cloned().collect();
    let rows = sweep
        .variants
        .iter()
        .zip(&sweep.rows)
        .map(|((id, _), (values, outcome, got))| SweepRow {
            run: id.clone(),
            values: values.clone(),
            outcome: (*outcome).to_owned(),
            metrics: metrics
                .iter()
                .map(|n| {
                    let v = got.iter().find(|(k, _)| k == n)?.1;
                    Some((v, sweep.best(n) == Some(v)))
                })
                .collect(),
        })
        .collect();
    Some(SweepView {
        id: sweep.id.clone(),
        keys: sweep.keys.clone(),
        metrics,
        rows,
    })
}

/// Every run of the pipeline, oldest first.
pub(super) fn run_links(all: &[(String, RunRecord)], current: &str) -> Vec<RunLink> {
    all.iter()
        .map(|(id, r)| {
            let count = |w: &str| r.stages.values().filter(|s| s.outcome == w).count();
            RunLink {
                id: id.clone(),
                outcome: r.outcome.clone(),
                overrides: r.overrides.clone(),
                ran: count("ran"),
                cached: count("cached"),
                current: id == current,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattened_metrics_become_columns_even_with_dotted_names() {
        let flat: BTreeMap<String, f64> = [
            ("model.eer", 0.05),
            ("model.min_dcf_0.01", 0.3),
            ("base.line.eer", 0.4),
            ("diff.eer", -0.35),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let report = serde_json::json!({"columns": ["model", "base.line", "diff"],
            "trials": {"count": 10, "positives": 5, "source": "balanced"}});
        let t = table("e", &flat, Some(&report));
        assert_eq!(t.columns, ["model", "base.line", "diff"]);
        let eer = t.rows.iter().find(|r| r.0 == "eer").unwrap();
        assert_eq!(eer.1, [Some(0.05), Some(0.4), Some(-0.35)]);
        let dcf = t.rows.iter().find(|r| r.0 == "min_dcf_0.01").unwrap();
        assert_eq!(dcf.1, [Some(0.3), None, None]);
        assert_eq!(
            t.trials.as_deref(),
            Some("10 trials, 5 of them same-class (balanced)")
        );
        // No report (an old record): groups from the names, diff last.
        let t = table("e", &flat, None);
        assert_eq!(t.columns.last().map(String::as_str), Some("diff"));
    }

    #[test]
    fn labels_split_into_stage_and_output() {
        assert_eq!(stage_of("evaluate"), ("evaluate", ""));
        assert_eq!(stage_of("train.metrics"), ("train", ".metrics"));
    }
}
