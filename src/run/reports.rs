//! The metrics a result reports, read from its manifest's summary:
//! `evaluate`'s report, and each typed `metrics` output of a command, as
//! `tuneflow metrics`, `tuneflow runs` and the run record show them.

use std::collections::BTreeMap;

use tuneflow_stages::formats::artifact::flatten_metrics;

/// The reports in a manifest's summary, by label suffix: `evaluate`'s
/// (suffix ""), and each typed `metrics` output of a command (`.NAME`),
/// as a one-column report of its numbers flattened to dotted names.
pub fn reports_in(summary: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
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

/// Flattens `{"model": {"eer": ..}, "diff": {..}}` to `model.eer` -> value.
pub fn flatten(report: &serde_json::Value) -> BTreeMap<String, f64> {
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
