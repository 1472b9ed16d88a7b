//! The page: a [`Report`] as one HTML document.

use std::fmt::Write as _;

use super::svg::{chart, Axis, Chart, Series};
use super::{esc, graph, page_name, CurveSet, MetricsTable, Report, TrainingCurves, GENERATOR};

const STYLE: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1180px;padding:18px 24px;color:#1b1f24;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:3px}
h3{font-size:15px;margin:16px 0 6px}
dl.run{display:grid;grid-template-columns:max-content auto;gap:2px 14px;margin:8px 0}dl.run dt{color:#555}dl.run dd{margin:0;font-family:ui-monospace,monospace}
table{border-collapse:collapse;margin:6px 0 12px}th,td{padding:3px 9px;border-bottom:1px solid #e4e4e4;text-align:left;vertical-align:top}
th{background:#f5f6f8;cursor:pointer;user-select:none}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.best{font-weight:700;background:#eaf6ea}tr.current td{background:#fff8dc}
.note{background:#fff4e5;border-left:4px solid #f0a020;padding:6px 10px;margin:6px 0}
.charts{display:flex;flex-wrap:wrap;gap:10px}.scroll{overflow-x:auto}
svg text{font:12px system-ui,sans-serif;fill:#222}svg .ct{font-size:14px;font-weight:600;text-anchor:middle}
svg .tk{font-size:11px;fill:#444}svg .al{font-size:12px}svg .lg{font-size:12px}svg .grid{stroke:#e6e6e6}
svg .edge{fill:none;stroke:#888;stroke-width:1.5}svg.graph{max-width:100%;height:auto}
svg .node rect{stroke:#333;stroke-width:1}svg .nn{font-weight:600}svg .nk{font-size:11px;fill:#333}
.ran rect{fill:#c9ecc9}.cached rect{fill:#d6e4f5}.failed rect{fill:#f6c4c4}
.skipped rect{fill:#eee}.interrupted rect{fill:#fde3a7}.pending rect{fill:#fff}
.sw-ran{background:#c9ecc9}.sw-cached{background:#d6e4f5}.sw-failed{background:#f6c4c4}
.sw-skipped{background:#eee}.sw-interrupted{background:#fde3a7}
.sw{display:inline-block;width:12px;height:12px;border:1px solid #333;margin:0 4px 0 12px;vertical-align:-1px}
.outcome-failed,.outcome-interrupted{color:#b00020;font-weight:600}
details summary{cursor:pointer;color:#0550ae}pre{background:#f6f8fa;padding:6px;overflow-x:auto;max-width:760px;margin:4px 0}
footer{margin-top:30px;color:#777;font-size:12px}a{color:#0550ae}
"#;

// Click a column header to sort by it (numbers by their data-value).
const SCRIPT: &str = r#"
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.title = 'sort';
    th.addEventListener('click', function () {
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var up = th.getAttribute('data-dir') !== 'up';
      th.setAttribute('data-dir', up ? 'up' : 'down');
      var key = function (row) {
        var cell = row.cells[col];
        if (!cell) return '';
        var v = cell.getAttribute('data-value');
        return v !== null && v !== '' && !isNaN(Number(v)) ? Number(v) : cell.textContent;
      };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        var c = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y));
        return up ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
document.documentElement.setAttribute('data-ready', 'yes');
"#;

/// The page.
pub fn render(r: &Report) -> String {
    let mut s = String::with_capacity(64 * 1024);
    let _ = write!(
        s,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{GENERATOR}<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{} · run {}</title><style>{STYLE}</style></head><body>"#,
        esc(&r.name),
        esc(&r.run.id)
    );
    header(&mut s, r);
    if let Some(nodes) = &r.graph {
        s.push_str("<h2 id=\"graph\">Stages</h2><p>");
        for state in ["ran", "cached", "failed", "skipped", "interrupted"] {
            let _ = write!(s, r#"<span class="sw sw-{state}"></span>{state}"#);
        }
        let _ = write!(s, "</p><div class=\"scroll\">{}</div>", graph::graph(nodes));
    } else {
        s.push_str("<h2 id=\"graph\">Stages</h2>");
    }
    stage_table(&mut s, r);
    metrics(&mut s, &r.metrics);
    curves(&mut s, &r.curves);
    training(&mut s, &r.training);
    sweep(&mut s, r);
    runs(&mut s, r);
    let _ = writeln!(
        s,
        "<footer>Written by tuneflow {} at {}. Regenerate with <code>tuneflow report {} {}</code>.</footer><script>{SCRIPT}</script></body></html>",
        esc(&r.version),
        esc(&r.generated),
        esc(&r.pipeline),
        esc(&r.run.id)
    );
    s
}

fn header(s: &mut String, r: &Report) {
    let run = &r.run;
    let _ = write!(
        s,
        r#"<h1>{}</h1><dl class="run"><dt>run</dt><dd id="run-id">{}</dd><dt>outcome</dt><dd class="outcome-{o}" id="run-outcome">{o}</dd><dt>started</dt><dd>{}</dd><dt>wall time</dt><dd>{:.2} s</dd><dt>pipeline</dt><dd>{}</dd><dt>pipeline digest</dt><dd>{}</dd>"#,
        esc(&r.name),
        esc(&run.id),
        esc(&run.started),
        run.seconds,
        esc(&r.pipeline),
        esc(&run.digest),
        o = esc(&run.outcome),
    );
    if let Some(git) = &run.git {
        let _ = write!(s, "<dt>git</dt><dd>{}</dd>", esc(git));
    }
    let overrides = if run.overrides.is_empty() {
        "none".to_owned()
    } else {
        run.overrides
            .iter()
            .map(|o| format!("<code>--set {}</code>", esc(o)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let _ = write!(
        s,
        r#"<dt>overrides</dt><dd id="overrides">{overrides}</dd>"#
    );
    if let Some(sweep) = &run.sweep {
        let _ = write!(
            s,
            r##"<dt>sweep</dt><dd><a href="#sweep">{}</a></dd>"##,
            esc(sweep)
        );
    }
    s.push_str("</dl>");
    for note in &r.notes {
        let _ = write!(s, r#"<div class="note">{}</div>"#, esc(note));
    }
}

fn memory(kib: Option<u64>) -> (String, String) {
    kib.map_or_else(
        || ("—".to_owned(), String::new()),
        |k| {
            let mib = k as f64 / 1024.0;
            let text = if mib >= 1024.0 {
                format!("{:.2} GiB", mib / 1024.0)
            } else {
                format!("{mib:.0} MiB")
            };
            (text, k.to_string())
        },
    )
}

fn stage_table(s: &mut String, r: &Report) {
    s.push_str(r#"<table class="sortable" id="stages"><thead><tr><th>stage</th><th>kind</th><th>outcome</th><th class="num">seconds</th><th class="num">peak memory</th><th>why / details</th></tr></thead><tbody>"#);
    for st in &r.stages {
        let (mem, mem_v) = memory(st.peak_rss_kib);
        let seconds = match (st.outcome.as_str(), st.computed_seconds) {
            ("cached", Some(c)) => format!("0 <small>(took {c:.2})</small>"),
            _ => format!("{:.2}", st.seconds),
        };
        let _ = write!(
            s,
            r#"<tr id="stage-{n}" data-outcome="{o}"><td>{n}</td><td>{}</td><td class="outcome-{o}">{o}</td><td class="num" data-value="{}">{seconds}</td><td class="num" data-value="{mem_v}">{mem}</td><td>"#,
            esc(&st.kind),
            st.seconds,
            n = esc(&st.name),
            o = esc(&st.outcome),
        );
        if let Some(reason) = &st.reason {
            let _ = write!(s, "{} ", esc(reason));
        }
        if st.key.is_some() || st.params.is_some() || st.log.is_some() {
            s.push_str("<details><summary>key, params, log</summary>");
            if let Some(k) = &st.key {
                let _ = write!(s, "<div>key <code>{}</code></div>", esc(k));
            }
            if let Some(p) = &st.params {
                let text = serde_json::to_string_pretty(p).unwrap_or_default();
                let _ = write!(s, "<pre>{}</pre>", esc(&text));
            }
            if let Some(log) = &st.log {
                let _ = write!(s, r#"<div><a href="{0}">{0}</a></div>"#, esc(log));
            }
            s.push_str("</details>");
        }
        s.push_str("</td></tr>");
    }
    s.push_str("</tbody></table>");
}

fn metrics(s: &mut String, tables: &[MetricsTable]) {
    if tables.is_empty() {
        return;
    }
    s.push_str("<h2 id=\"metrics\">Metrics</h2>");
    for t in tables {
        let _ = write!(s, "<h3>{}</h3>", esc(&t.label));
        if let Some(trials) = &t.trials {
            let _ = write!(s, "<p>{}</p>", esc(trials));
        }
        let _ = write!(
            s,
            r#"<table class="sortable metrics" data-report="{}"><thead><tr><th>metric</th>"#,
            esc(&t.label)
        );
        for c in &t.columns {
            let _ = write!(s, r#"<th class="num">{}</th>"#, esc(c));
        }
        s.push_str("</tr></thead><tbody>");
        for (metric, values) in &t.rows {
            let _ = write!(s, "<tr><td>{}</td>", esc(metric));
            for (c, v) in t.columns.iter().zip(values) {
                let Some(v) = v else {
                    s.push_str(r#"<td class="num">—</td>"#);
                    continue;
                };
                let text = if c == "diff" {
                    format!("{v:+.4}")
                } else {
                    format!("{v:.4}")
                };
                let _ = write!(
                    s,
                    r#"<td class="num" data-metric="{}:{}.{}" data-value="{v}">{text}</td>"#,
                    esc(&t.label),
                    esc(c),
                    esc(metric)
                );
            }
            s.push_str("</tr>");
        }
        s.push_str("</tbody></table>");
    }
}

/// The ROC's low FAR end: the decade below the smallest FAR measured.
fn far_floor(sets: &CurveSet) -> f64 {
    let min = sets
        .curves
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.0))
        .filter(|&f| f > 0.0)
        .fold(1.0, f64::min);
    10f64.powf(min.log10().floor()).clamp(1e-6, 1e-2)
}

fn curves(s: &mut String, sets: &[CurveSet]) {
    if sets.is_empty() {
        return;
    }
    s.push_str("<h2 id=\"curves\">ROC and DET</h2>");
    for (i, set) in sets.iter().enumerate() {
        let _ = write!(s, "<h3>{}</h3><div class=\"charts\">", esc(&set.stage));
        let series = |f: &dyn Fn((f64, f64)) -> (f64, f64)| -> Vec<Series> {
            set.curves
                .iter()
                .enumerate()
                .map(|(j, (name, pts))| Series {
                    name: name.clone(),
                    points: pts.iter().map(|&p| f(p)).collect(),
                    dashed: j > 0,
                    markers: false,
                })
                .collect()
        };
        let roc = Chart {
            id: format!("roc-{i}"),
            title: format!("ROC · {}", set.stage),
            x: Axis::log10("false acceptance rate", far_floor(set), 1.0),
            y: Axis::linear("true acceptance rate", 0.0, 1.0, 5),
            series: series(&|(far, frr)| (far, 1.0 - frr)),
            diagonal: false,
        };
        let det = Chart {
            id: format!("det-{i}"),
            title: format!("DET · {}", set.stage),
            x: Axis::det("false acceptance rate (%)"),
            y: Axis::det("false rejection rate (%)"),
            series: series(&|p| p),
            diagonal: true,
        };
        let _ = write!(s, "{}{}</div>", chart(&roc), chart(&det));
    }
}

fn training(s: &mut String, stages: &[TrainingCurves]) {
    if stages.is_empty() {
        return;
    }
    s.push_str("<h2 id=\"training\">Training</h2>");
    for (i, t) in stages.iter().enumerate() {
        let _ = write!(s, "<h3>{}</h3><div class=\"charts\">", esc(&t.stage));
        let pick = |f: fn(&super::Epoch) -> Option<f64>| -> Vec<(f64, f64)> {
            t.epochs
                .iter()
                .filter_map(|e| Some((e.epoch, f(e)?)))
                .collect()
        };
        let max_epoch = t
            .epochs
            .iter()
            .map(|e| e.epoch)
            .fold(1.0, f64::max)
            .max(2.0);
        for (what, train, val) in [
            ("loss", pick(|e| e.train_loss), pick(|e| e.val_loss)),
            ("accuracy", pick(|e| e.train_acc), pick(|e| e.val_acc)),
        ] {
            let all = train.iter().chain(&val).map(|p| p.1);
            let (lo, hi) = if what == "accuracy" {
                (0.0, 1.0)
            } else {
                let hi = all.fold(0.0, f64::max);
                (0.0, if hi > 0.0 { hi * 1.08 } else { 1.0 })
            };
            let mut series = vec![Series {
                name: format!("train {what}"),
                points: train,
                dashed: false,
                markers: true,
            }];
            if !val.is_empty() {
                series.push(Series {
                    name: format!("validation {what}"),
                    points: val,
                    dashed: true,
                    markers: true,
                });
            }
            let c = Chart {
                id: format!("train-{i}-{what}"),
                title: format!("{what} · {}", t.stage),
                x: Axis::linear("epoch", 1.0, max_epoch, 8),
                y: Axis::linear(what, lo, hi, 5),
                series,
                diagonal: false,
            };
            s.push_str(&chart(&c));
        }
        s.push_str("</div>");
    }
}

fn sweep(s: &mut String, r: &Report) {
    let Some(sw) = &r.sweep else { return };
    let _ = write!(
        s,
        r#"<h2 id="sweep">Sweep {}</h2><p>{} variants; the best value of each metric is in bold.</p><div class="scroll"><table class="sortable" id="sweep-table"><thead><tr><th>run</th>"#,
        esc(&sw.id),
        sw.rows.len()
    );
    for k in sw.keys.iter().chain(std::iter::once(&"outcome".to_owned())) {
        let _ = write!(s, "<th>{}</th>", esc(k));
    }
    for m in &sw.metrics {
        let _ = write!(s, r#"<th class="num">{}</th>"#, esc(m));
    }
    s.push_str("</tr></thead><tbody>");
    for row in &sw.rows {
        let current = if row.run == r.run.id {
            " class=\"current\""
        } else {
            ""
        };
        let _ = write!(
            s,
            r#"<tr{current}><td><a href="{}">{}</a></td>"#,
            esc(&page_name(&row.run)),
            esc(&row.run)
        );
        for v in row.values.iter().chain(std::iter::once(&row.outcome)) {
            let _ = write!(s, "<td>{}</td>", esc(v));
        }
        for (m, v) in sw.metrics.iter().zip(&row.metrics) {
            match v {
                Some((v, best)) => {
                    let _ = write!(
                        s,
                        r#"<td class="num{}" data-sweep-metric="{}" data-value="{v}">{v:.4}</td>"#,
                        if *best { " best" } else { "" },
                        esc(m)
                    );
                }
                None => s.push_str(r#"<td class="num">—</td>"#),
            }
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table></div>");
}

fn runs(s: &mut String, r: &Report) {
    s.push_str(r#"<h2 id="runs">Runs of this pipeline</h2><p>Each id links to that run's report (written beside this one by <code>tuneflow report</code>).</p><table class="sortable" id="runs-table"><thead><tr><th>run</th><th>outcome</th><th class="num">ran</th><th class="num">cached</th><th>overrides</th></tr></thead><tbody>"#);
    for run in &r.runs {
        let current = if run.current {
            " class=\"current\""
        } else {
            ""
        };
        let _ = write!(
            s,
            r#"<tr{current}><td><a href="{}">{}</a></td><td class="outcome-{o}">{o}</td><td class="num" data-value="{ran}">{ran}</td><td class="num" data-value="{cached}">{cached}</td><td>{}</td></tr>"#,
            esc(&page_name(&run.id)),
            esc(&run.id),
            esc(&run.overrides.join(" ")),
            o = esc(&run.outcome),
            ran = run.ran,
            cached = run.cached,
        );
    }
    s.push_str("</tbody></table>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::html::{RunInfo, StageRow};

    #[test]
    fn hostile_text_is_escaped_and_nothing_loads_from_the_network() {
        let r = Report {
            name: "<b>p</b>".into(),
            run: RunInfo {
                id: "r1".into(),
                overrides: vec!["a.b=\"><script>alert(1)</script>".into()],
                ..RunInfo::default()
            },
            stages: vec![StageRow {
                name: "s<1>".into(),
                outcome: "failed".into(),
                reason: Some("</td><img src=x onerror=alert(1)>".into()),
                ..StageRow::default()
            }],
            ..Report::default()
        };
        let html = render(&r);
        assert_eq!(
            html.matches("<script>").count(),
            1,
            "only the page's own script"
        );
        assert!(!html.contains("<img"));
        // The only URLs are SVG's namespace.
        assert_eq!(
            html.matches("http:").count() + html.matches("https:").count(),
            html.matches("http://www.w3.org/2000/svg").count()
        );
        for bad in ["src=\"http", "href=\"http", "@import", "url(http"] {
            assert!(!html.contains(bad), "{bad}");
        }
        assert!(html.contains("default-src 'none'"));
    }

    #[test]
    fn metric_cells_carry_their_exact_values() {
        let r = Report {
            metrics: vec![MetricsTable {
                label: "eval".into(),
                columns: vec!["model".into(), "baseline".into(), "diff".into()],
                rows: vec![("eer".into(), vec![Some(0.048), Some(0.38), Some(-0.332)])],
                trials: None,
            }],
            ..Report::default()
        };
        let html = render(&r);
        assert!(html.contains(r#"data-metric="eval:model.eer" data-value="0.048">0.0480<"#));
        assert!(html.contains(r#"data-metric="eval:diff.eer" data-value="-0.332">-0.3320<"#));
    }
}
