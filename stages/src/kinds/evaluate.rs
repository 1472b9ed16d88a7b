//! The `evaluate` kind: identification and verification metrics from
//! embeddings artifacts (`extract`), optionally against a baseline on the
//! same trials, plus ROC, DET and training-curve PNGs. It needs no
//! libtorch: it reads the f32 matrices directly.

use std::collections::BTreeMap;
use std::path::Path;

use crate::eval::metrics::{self, Point};
use crate::eval::plots;
use crate::formats::embeddings::{load, Embeddings};
use crate::params::{input_name, output_ref, ParamReader, Spanned};
use crate::rng::Rng;
use crate::stage::{BuildContext, Inputs, Kind, StageContext, StageDecl, StageError, StageOutputs};

/// The most trials `trials = "all"` may generate.
const MAX_TRIALS: usize = 5_000_000;

/// A configured `evaluate` stage.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Evaluate {
    embeddings: String,
    enroll: Option<String>,
    baseline: Option<String>,
    baseline_enroll: Option<String>,
    training: Vec<String>,
    trials: String,
    /// A trial list in the pipeline folder (`label enroll test`, by id).
    trials_file: Option<String>,
    /// Metric families to report (empty: all).
    metrics: Vec<String>,
    labels: (String, String),
}

/// Metric families for `metrics = [...]`, and the keys each covers.
const FAMILIES: &[(&str, &[&str])] = &[
    ("accuracy", &["top1", "top5", "centroid_acc"]),
    ("eer", &["eer"]),
    ("min-dcf", &["min_dcf_0.01", "min_dcf_0.05"]),
    ("tar-at-far", &["tar_at_far_1e-2", "tar_at_far_1e-3"]),
    ("auc", &["auc"]),
    ("10-fold", &["accuracy_10fold", "accuracy_10fold_std"]),
];

fn embeddings_ref(r: &ParamReader<'_>, key: &str, required: bool) -> Option<Spanned<String>> {
    let v = if required {
        r.required_str(key, "embeddings: an `extract` stage")?
    } else {
        r.str(key)?
    };
    Some(output_ref(v, "embeddings"))
}

fn input(s: &Spanned<String>) -> String {
    input_name(&s.value)
}

/// Builds an `evaluate` stage from its params.
pub fn build(_cx: &BuildContext<'_>, r: &ParamReader<'_>) -> Option<StageDecl> {
    let embeddings = embeddings_ref(r, "embeddings", true);
    let enroll = embeddings_ref(r, "enroll", false);
    let baseline = embeddings_ref(r, "baseline", false);
    let baseline_enroll = embeddings_ref(r, "baseline-enroll", false);
    let training: Vec<Spanned<String>> = r
        .str_list("training")
        .into_iter()
        .map(|t| output_ref(t, "model"))
        .collect();
    let (trials, trials_file) = match r.str("trials") {
        None => ("auto".to_owned(), None),
        Some(t) if ["auto", "file", "all", "balanced"].contains(&t.value.as_str()) => {
            (t.value, None)
        }
        Some(t) => ("path".to_owned(), Some(t)),
    };
    let families: Vec<&str> = FAMILIES.iter().map(|f| f.0).collect();
    let metrics: Vec<String> = r
        .str_list("metrics")
        .into_iter()
        .filter_map(|m| {
            if families.contains(&m.value.as_str()) {
                return Some(m.value);
            }
            r.error(crate::params::Diagnostic {
                message: format!("unknown metric `{}`", m.value),
                span: m.span,
                label: format!("expected one of: {}", families.join(", ")),
                help: crate::params::suggest(&m.value, families.iter().copied())
                    .map(|c| format!("did you mean `{c}`?")),
            });
            None
        })
        .collect();
    let label = r
        .str("label")
        .map_or_else(|| "model".to_owned(), |l| l.value);
    let baseline_label = r
        .str("baseline-label")
        .map_or_else(|| "baseline".to_owned(), |l| l.value);
    let embeddings = embeddings?;
    let stage = Evaluate {
        embeddings: input(&embeddings),
        enroll: enroll.as_ref().map(input),
        baseline: baseline.as_ref().map(input),
        baseline_enroll: baseline_enroll.as_ref().map(input),
        training: training.iter().map(input).collect(),
        trials,
        trials_file: trials_file.as_ref().map(|t| t.value.clone()),
        metrics,
        labels: (label, baseline_label),
    };
    let mut refs = vec![embeddings];
    refs.extend(enroll);
    refs.extend(baseline);
    refs.extend(baseline_enroll);
    refs.extend(training);
    Some(StageDecl {
        stage: Box::new(stage),
        refs,
        deps: trials_file.into_iter().collect(),
        outs: vec![],
        outputs: vec!["metrics".into(), "plots".into()],
        uses: vec![],
    })
}

/// A trial: (row i, row j, same class).
pub type Trial = (usize, usize, bool);

/// The trials to score, and where they came from.
pub fn trials(
    e: &Embeddings,
    mode: &str,
    file: Option<&Path>,
) -> Result<(Vec<Trial>, String), String> {
    if let Some(path) = file {
        return trials_by_id(e, path);
    }
    let use_file = match mode {
        "file" => true,
        "auto" => e.trials.is_some(),
        _ => false,
    };
    if use_file {
        return trials_from_list(e);
    }
    let n = e.meta.count;
    let labels = &e.meta.labels;
    let pairs = n * n.saturating_sub(1) / 2;
    if mode != "balanced" && pairs > MAX_TRIALS {
        return Err(format!(
            "all pairs of {n} items are {pairs} trials (at most {MAX_TRIALS}); use `trials = \"balanced\"`"
        ));
    }
    let mut all = Vec::new();
    let mut negatives = Vec::new();
    for i in 0..n {
        for j in i + 1..n {
            let same = labels[i] == labels[j];
            if mode == "balanced" && !same {
                negatives.push((i, j, false));
            } else {
                all.push((i, j, same));
            }
        }
    }
    // Generated trials are shuffled (seeded), so that the 10 folds of the
    // k-fold accuracy each hold a fair share of both kinds.
    let mut rng = Rng::from_parts(&[0x7472_6961_6c73]);
    let source = if mode == "balanced" {
        rng.shuffle(&mut negatives);
        negatives.truncate(all.len());
        all.extend(negatives);
        "balanced (every positive pair, as many random negatives)"
    } else {
        "all pairs"
    };
    rng.shuffle(&mut all);
    Ok((all, source.into()))
}

/// The data's own trial list (`label i j`, dataset indices).
fn trials_from_list(e: &Embeddings) -> Result<(Vec<Trial>, String), String> {
    let text = e
        .trials
        .as_ref()
        .ok_or("`trials = \"file\"`, but the data came with no trial list")?;
    let row: BTreeMap<u32, usize> = e
        .meta
        .indices
        .iter()
        .enumerate()
        .map(|(r, &i)| (i, r))
        .collect();
    let mut out = Vec::new();
    let mut outside = 0;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let parse = |s: &str| s.parse::<u32>().ok();
        let (Some(l), Some(a), Some(b)) = (
            f.first().and_then(|s| parse(s)),
            f.get(1).and_then(|s| parse(s)),
            f.get(2).and_then(|s| parse(s)),
        ) else {
            return Err(format!("bad trial line `{line}`"));
        };
        match (row.get(&a), row.get(&b)) {
            (Some(&i), Some(&j)) => out.push((i, j, l == 1)),
            _ => outside += 1,
        }
    }
    if out.is_empty() {
        return Err(format!(
            "none of the {outside} trials name items in these embeddings (extract the split the trials use)"
        ));
    }
    let note = if outside > 0 {
        format!("file ({outside} trials name items outside this split and were left out)")
    } else {
        "file".into()
    };
    Ok((out, note))
}

/// A VoxCeleb-style list (`label enroll test`, items by id) from a file.
fn trials_by_id(e: &Embeddings, path: &Path) -> Result<(Vec<Trial>, String), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("failed to read trials `{}`: {err}", path.display()))?;
    let row: BTreeMap<&str, usize> = e
        .meta
        .ids
        .iter()
        .enumerate()
        .map(|(r, id)| (id.as_str(), r))
        .collect();
    let mut out = Vec::new();
    let mut outside = 0;
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(label), Some(a), Some(b)) = (f.first(), f.get(1), f.get(2)) else {
            return Err(format!(
                "{}:{}: expected `label enroll test`, found `{line}`",
                path.display(),
                n + 1
            ));
        };
        let same = match *label {
            "1" => true,
            "0" => false,
            other => {
                return Err(format!(
                    "{}:{}: the label must be 0 or 1, not `{other}`",
                    path.display(),
                    n + 1
                ))
            }
        };
        match (row.get(a), row.get(b)) {
            (Some(&i), Some(&j)) => out.push((i, j, same)),
            _ => outside += 1,
        }
    }
    if out.is_empty() {
        return Err(format!(
            "none of the {outside} trials in `{}` name items of these embeddings (ids look like `{}`)",
            path.display(),
            e.meta.ids.first().map_or("", String::as_str)
        ));
    }
    Ok((
        out,
        format!("{} ({outside} trials outside these items)", path.display()),
    ))
}

/// Every metric of one embeddings artifact, and its ROC.
pub fn score(
    e: &Embeddings,
    enroll: Option<&Embeddings>,
    list: &[Trial],
) -> Result<(serde_json::Map<String, serde_json::Value>, Vec<Point>), String> {
    let mut m = serde_json::Map::new();
    let dim = e.meta.dim;
    if let (Some(scores), Some(head)) = (&e.scores, &e.meta.head_classes) {
        if *head == e.meta.classes {
            for k in [1, 5] {
                let v = metrics::top_k(scores, head.len(), &e.meta.labels, k);
                m.insert(format!("top{k}"), v.into());
            }
        }
    }
    if let Some(en) = enroll {
        if en.meta.classes != e.meta.classes || en.meta.dim != dim {
            return Err("the enrolment embeddings come from other classes or another model".into());
        }
        let acc =
            metrics::centroid_accuracy(&en.matrix, &en.meta.labels, &e.matrix, &e.meta.labels, dim);
        m.insert("centroid_acc".into(), acc.into());
    }
    let norms = metrics::row_norms(&e.matrix, dim);
    let scored: Vec<(f64, bool)> = list
        .iter()
        .map(|&(i, j, same)| (metrics::cosine_rows(&e.matrix, dim, &norms, i, j), same))
        .collect();
    let positives = scored.iter().filter(|t| t.1).count();
    if positives == 0 || positives == scored.len() {
        return Err("the trials need both same-class and different-class pairs".into());
    }
    let roc = metrics::roc(&scored);
    m.insert("eer".into(), metrics::eer(&roc).into());
    m.insert("min_dcf_0.01".into(), metrics::min_dcf(&roc, 0.01).into());
    m.insert("min_dcf_0.05".into(), metrics::min_dcf(&roc, 0.05).into());
    m.insert(
        "tar_at_far_1e-2".into(),
        metrics::tar_at_far(&roc, 1e-2).into(),
    );
    m.insert(
        "tar_at_far_1e-3".into(),
        metrics::tar_at_far(&roc, 1e-3).into(),
    );
    m.insert("auc".into(), metrics::auc(&roc).into());
    if let Some((mean, std)) = metrics::kfold_accuracy(&scored, 10) {
        m.insert("accuracy_10fold".into(), mean.into());
        m.insert("accuracy_10fold_std".into(), std.into());
    }
    Ok((m, roc))
}

impl Evaluate {
    fn load(&self, inputs: &Inputs, name: &str) -> Result<Embeddings, StageError> {
        load(&inputs.tree(name)?, name).map_err(StageError::Other)
    }

    fn curves(&self, inputs: &Inputs) -> Result<Vec<(String, plots::Series)>, StageError> {
        let mut out = Vec::new();
        for t in &self.training {
            let files = inputs.tree(t)?;
            let Some(path) = files.get("metrics.json") else {
                return Err(StageError::Other(format!(
                    "`{t}` has no metrics.json (is it a training stage's model?)"
                )));
            };
            let v: serde_json::Value = serde_json::from_slice(
                &std::fs::read(path).map_err(|e| StageError::io("read", path, e))?,
            )
            .map_err(|e| StageError::Other(format!("`{t}`: bad metrics.json: {e}")))?;
            let mut series = plots::series_of(&v);
            series.retain(|(_, p)| !p.is_empty());
            out.push((t.split('/').next().unwrap_or(t).to_owned(), series));
        }
        Ok(out)
    }
}

impl Kind for Evaluate {
    const NAME: &'static str = "evaluate";
    // 3: the plots' fixed axes and legends, and `plots/curves.json` (the
    // operating points, for reports).
    const VERSION: u32 = 3;

    fn run(&self, cx: &StageContext, inputs: &Inputs) -> Result<StageOutputs, StageError> {
        let e = self.load(inputs, &self.embeddings)?;
        let enroll = self
            .enroll
            .as_ref()
            .map(|n| self.load(inputs, n))
            .transpose()?;
        let file = self.trials_file.as_ref().map(|f| cx.workdir.join(f));
        let (list, source) =
            trials(&e, &self.trials, file.as_deref()).map_err(StageError::Other)?;
        let (mut mine, roc) = score(&e, enroll.as_ref(), &list).map_err(StageError::Other)?;
        self.keep_selected(&mut mine);
        let mut report = serde_json::json!({
            self.labels.0.clone(): mine,
            "trials": { "count": list.len(), "positives": list.iter().filter(|t| t.2).count(), "source": source },
            "columns": [self.labels.0.clone()],
        });
        let mut curves: Vec<(&str, &[Point])> = vec![(self.labels.0.as_str(), &roc)];
        let base_roc;
        if let Some(b) = &self.baseline {
            let base = self.load(inputs, b)?;
            if base.meta.indices != e.meta.indices {
                return Err(StageError::Other(format!(
                    "baseline `{b}` holds other items than `{}`: extract the same split",
                    self.embeddings
                )));
            }
            let benroll = self
                .baseline_enroll
                .as_ref()
                .map(|n| self.load(inputs, n))
                .transpose()?;
            let (mut theirs, roc) =
                score(&base, benroll.as_ref(), &list).map_err(StageError::Other)?;
            self.keep_selected(&mut theirs);
            let diff: serde_json::Map<String, serde_json::Value> = report[&self.labels.0]
                .as_object()
                .expect("an object")
                .iter()
                .filter_map(|(k, v)| {
                    Some((k.clone(), (v.as_f64()? - theirs.get(k)?.as_f64()?).into()))
                })
                .collect();
            report[&self.labels.1] = theirs.into();
            report["diff"] = diff.into();
            report["columns"] = serde_json::json!([self.labels.0, self.labels.1, "diff"]);
            base_roc = roc;
            curves.push((self.labels.1.as_str(), &base_roc));
        }
        let out = cx.scratch.join("plots");
        std::fs::create_dir_all(&out).map_err(|e| StageError::io("create", &out, e))?;
        let path = cx.scratch.join("metrics.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&report).expect("json"))
            .map_err(|e| StageError::io("write", &path, e))?;
        write_curves(&out.join(crate::formats::artifact::CURVES), &curves)?;
        let plotted = self.plot(&out, &curves, inputs)?;
        Ok(StageOutputs {
            paths: vec![("metrics".into(), path), ("plots".into(), out)],
            summary: serde_json::json!({ "evaluate": report, "plots": plotted }),
            reexports: vec![],
        })
    }
}

/// The ROC of each model as `{"curves": [{"label", "points": [[far,
/// frr], ...]}]}`, thinned to the points that move either rate by at
/// least 0.1 % on a log or probit scale, so a report can draw ROC and DET
/// without millions of points.
fn write_curves(path: &Path, curves: &[(&str, &[Point])]) -> Result<(), StageError> {
    let json: Vec<serde_json::Value> = curves
        .iter()
        .map(|(label, points)| serde_json::json!({"label": label, "points": thin(points)}))
        .collect();
    let bytes = serde_json::to_vec(&serde_json::json!({ "curves": json })).expect("json");
    std::fs::write(path, bytes).map_err(|e| StageError::io("write", path, e))
}

/// Keeps the first and last point, and each point at least `STEP` from the
/// last kept one in any of log10(FAR), probit(FAR), probit(FRR).
pub fn thin(points: &[Point]) -> Vec<[f64; 2]> {
    const STEP: f64 = 0.004;
    let coords = |p: &Point| {
        [
            p.far.max(1e-9).log10() / 9.0,
            plots::probit(p.far) / 12.0,
            plots::probit(p.frr) / 12.0,
        ]
    };
    let mut out: Vec<[f64; 2]> = Vec::new();
    let mut last: Option<[f64; 3]> = None;
    for (i, p) in points.iter().enumerate() {
        let c = coords(p);
        let far_enough = match last {
            None => true,
            Some(l) => l.iter().zip(&c).any(|(a, b)| (a - b).abs() >= STEP),
        };
        if far_enough || i + 1 == points.len() {
            out.push([p.far, p.frr]);
            last = Some(c);
        }
    }
    out
}

impl Evaluate {
    /// Drops metrics outside the families `metrics = [...]` names.
    fn keep_selected(&self, m: &mut serde_json::Map<String, serde_json::Value>) {
        if self.metrics.is_empty() {
            return;
        }
        let keep: Vec<&str> = FAMILIES
            .iter()
            .filter(|(f, _)| self.metrics.iter().any(|m| m == f))
            .flat_map(|(_, keys)| keys.iter().copied())
            .collect();
        m.retain(|k, _| keep.contains(&k.as_str()));
    }

    fn plot(
        &self,
        out: &Path,
        curves: &[(&str, &[Point])],
        inputs: &Inputs,
    ) -> Result<serde_json::Value, StageError> {
        if !plots::font_available() {
            return Ok("skipped: no DejaVu Sans font (install fonts-dejavu-core)".into());
        }
        plots::roc(&out.join("roc.png"), curves).map_err(StageError::Other)?;
        plots::det(&out.join("det.png"), curves).map_err(StageError::Other)?;
        let mut written = vec!["roc.png", "det.png"];
        let training = self.curves(inputs)?;
        if !training.is_empty() {
            written.push("training.png");
            let stages: Vec<plots::Curves<'_>> = training
                .iter()
                .map(|(stage, series)| plots::Curves {
                    stage,
                    series: series.clone(),
                })
                .collect();
            plots::training(&out.join("training.png"), &stages).map_err(StageError::Other)?;
        }
        Ok(serde_json::json!(written))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_the_ends_and_the_low_far_detail() {
        let n = 200_000;
        let pts: Vec<Point> = (0..=n)
            .map(|i| {
                let far = f64::from(i) / f64::from(n);
                Point {
                    threshold: 0.0,
                    far,
                    frr: 1.0 - far.sqrt(),
                }
            })
            .collect();
        let t = thin(&pts);
        assert!(t.len() > 200 && t.len() < 5000, "{}", t.len());
        assert_eq!(t[0], [0.0, 1.0]);
        assert_eq!(*t.last().unwrap(), [1.0, 0.0]);
        // Every decade of FAR down to 1e-5 keeps points.
        for lo in [1e-5, 1e-4, 1e-3, 1e-2] {
            assert!(t.iter().any(|p| p[0] >= lo && p[0] < lo * 10.0), "{lo}");
        }
        assert!(t.windows(2).all(|w| w[0][0] <= w[1][0]));
    }
}
