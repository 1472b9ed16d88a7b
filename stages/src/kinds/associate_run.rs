//! Running an `associate` stage: the split, the worker job, and the
//! measures on the test identities.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{identities, split_identities, Associate, Identity};
use crate::eval::assoc::{self, Modal};
use crate::eval::metrics::{self, Point};
use crate::eval::plots;
use crate::formats::embeddings::{load, Embeddings};
use crate::stage::{Inputs, StageContext, StageError, StageOutputs};
use crate::worker::client::run_worker;
use crate::worker::{AssociateJob, WorkerJob};

type Metrics = serde_json::Map<String, serde_json::Value>;

pub(super) fn run(
    s: &Associate,
    cx: &StageContext,
    inputs: &Inputs,
) -> Result<StageOutputs, StageError> {
    let other = StageError::Other;
    let (files_a, files_b) = (inputs.tree(&s.a)?, inputs.tree(&s.b)?);
    let ea = load(&files_a, &s.a).map_err(other)?;
    let eb = load(&files_b, &s.b).map_err(other)?;
    let link_text = match &s.link {
        Some(l) => {
            let p = cx.workdir.join(l);
            let text = std::fs::read_to_string(&p).map_err(|e| StageError::io("read", &p, e))?;
            Some((PathBuf::from(l), text))
        }
        None => None,
    };
    let link = link_text.as_ref().map(|(p, t)| (p.as_path(), t.as_str()));
    let ids = identities(link, &ea, &eb).map_err(other)?;
    let [train, dev, test] = split_identities(&ids, s.dev, s.test, s.split_seed).map_err(other)?;
    if test.len() < s.candidates {
        return Err(other(format!(
            "`candidates = {}` is more than the {} test identities",
            s.candidates,
            test.len()
        )));
    }
    let out = cx.scratch.join("model");
    std::fs::create_dir_all(&out).map_err(|e| StageError::io("create", &out, e))?;
    let job = WorkerJob::Associate(AssociateJob {
        stage: cx.name.clone(),
        config: s.config.clone(),
        a: files_a,
        b: files_b,
        train: train.clone(),
        dev: dev.clone(),
        out: out.clone(),
        checkpoints: cx.checkpoints.clone(),
        seed: s.seed,
        device: s.device.unwrap_or(cx.device),
    });
    let result = run_worker(cx, &job)?;
    let dim = s.config.dim;
    let pa = read_f32(&out.join("a.f32"), ea.meta.count * dim)?;
    let pb = read_f32(&out.join("b.f32"), eb.meta.count * dim)?;
    let sets = Sets {
        raw: (&ea, &eb),
        joint: (&pa, &pb),
        dim,
    };
    let (measures, curves) = measure(s, &sets, &dev, &test).map_err(other)?;
    let unseen = format!(
        "{} test identities never seen in training ({} train, {} development)",
        test.len(),
        train.len(),
        dev.len()
    );
    let report = serde_json::json!({
        "columns": ["unseen"],
        "unseen": measures,
        "source": unseen,
        "identities": { "train": train, "dev": dev, "test": test },
    });
    let path = cx.scratch.join("metrics.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report).expect("json"))
        .map_err(|e| StageError::io("write", &path, e))?;
    let plots_dir = cx.scratch.join("plots");
    std::fs::create_dir_all(&plots_dir).map_err(|e| StageError::io("create", &plots_dir, e))?;
    let plotted = plot(&plots_dir, &curves, &out.join("metrics.json"), &cx.name)?;
    let mut summary_report = report.clone();
    if let Some(o) = summary_report.as_object_mut() {
        o.remove("identities");
    }
    Ok(StageOutputs {
        paths: vec![
            ("metrics".into(), path),
            ("plots".into(), plots_dir),
            ("model".into(), out),
        ],
        summary: serde_json::json!({
            "evaluate": summary_report,
            "training": result.summary(),
            "plots": plotted,
        }),
        reexports: vec![],
    })
}

fn read_f32(path: &Path, len: usize) -> Result<Vec<f32>, StageError> {
    let bytes = std::fs::read(path).map_err(|e| StageError::io("read", path, e))?;
    if bytes.len() != len * 4 {
        return Err(StageError::Other(format!(
            "`{}` holds {} bytes, not {}",
            path.display(),
            bytes.len(),
            len * 4
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect())
}

/// Both modalities, as extracted and as projected.
struct Sets<'a> {
    raw: (&'a Embeddings, &'a Embeddings),
    joint: (&'a [f32], &'a [f32]),
    dim: usize,
}

impl Sets<'_> {
    /// Each modality's rows of `ids`: (raw a, raw b, joint a, joint b).
    fn modal(&self, ids: &[Identity]) -> [Modal; 4] {
        let rows = |e: &Embeddings, pick: fn(&Identity) -> &str| -> Vec<Vec<usize>> {
            let mut by_class: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
            for (r, &l) in e.meta.labels.iter().enumerate() {
                if let Some(c) = e.meta.classes.get(l as usize) {
                    by_class.entry(c.as_str()).or_default().push(r);
                }
            }
            ids.iter()
                .map(|i| by_class.get(pick(i)).cloned().unwrap_or_default())
                .collect()
        };
        let (ra, rb) = (rows(self.raw.0, |i| &i.0), rows(self.raw.1, |i| &i.1));
        [
            Modal::new(&self.raw.0.matrix, self.raw.0.meta.dim, ra.clone()),
            Modal::new(&self.raw.1.matrix, self.raw.1.meta.dim, rb.clone()),
            Modal::new(self.joint.0, self.dim, ra),
            Modal::new(self.joint.1, self.dim, rb),
        ]
    }
}

/// The curves to plot: label and ROC.
type Curves = Vec<(String, Vec<Point>)>;

fn put(m: &mut Metrics, key: String, v: f64) {
    m.insert(key, v.into());
}

/// Every measure on the test identities; fusion weights from `dev`.
fn measure(
    s: &Associate,
    sets: &Sets<'_>,
    dev: &[Identity],
    test: &[Identity],
) -> Result<(Metrics, Curves), String> {
    let (a, b) = (&s.names.0, &s.names.1);
    let [raw_a, raw_b, ja, jb] = sets.modal(test);
    let seed = s.split_seed as u64;
    let mut m = Metrics::new();
    let mut curves = Curves::new();
    for (q, c, key) in [
        (&ja, &jb, format!("{a}2{b}")),
        (&jb, &ja, format!("{b}2{a}")),
    ] {
        let acc = assoc::matching_1_of_2(q, c, seed).ok_or("too few test identities")?;
        put(&mut m, format!("{key}_match"), acc);
        let top = assoc::retrieval(q, c, s.candidates, &[1, 5], seed)
            .ok_or("too few test identities for retrieval")?;
        put(&mut m, format!("{key}_top1"), top[0]);
        put(&mut m, format!("{key}_top5"), top[1]);
    }
    put(&mut m, "candidates".into(), s.candidates as f64);
    let cross = assoc::cross_trials(&ja, &jb);
    let (eer, auc) = assoc::eer_auc(&cross).ok_or("no cross-modal trials")?;
    put(&mut m, "cross_eer".into(), eer);
    put(&mut m, "cross_auc".into(), auc);
    curves.push((format!("{a}-{b} (cross-modal)"), metrics::roc(&cross)));
    let [dev_a, dev_b, dev_ja, dev_jb] = sets.modal(dev);
    let dev_trials = assoc::fused_trials((&dev_a, &dev_b), (&dev_ja, &dev_jb));
    let test_trials = assoc::fused_trials((&raw_a, &raw_b), (&ja, &jb));
    let w = assoc::fusion_weight(&dev_trials)
        .ok_or("the development identities give no fusion trials")?;
    put(&mut m, format!("fusion_weight_{a}"), w);
    let joint: Vec<(f64, bool)> = test_trials.iter().map(|t| (t.joint, t.same)).collect();
    let modes: [(String, Vec<(f64, bool)>); 4] = [
        (a.clone(), assoc::fuse(&test_trials, 1.0)),
        (b.clone(), assoc::fuse(&test_trials, 0.0)),
        ("score".into(), assoc::fuse(&test_trials, w)),
        ("feature".into(), joint),
    ];
    for (name, trials) in modes {
        let (eer, auc) = assoc::eer_auc(&trials).ok_or("no fusion trials")?;
        put(&mut m, format!("fused_{name}_eer"), eer);
        put(&mut m, format!("fused_{name}_auc"), auc);
        curves.push((fusion_label(&name, a, b), metrics::roc(&trials)));
    }
    Ok((m, curves))
}

fn fusion_label(mode: &str, a: &str, b: &str) -> String {
    match mode {
        "score" => format!("{a}+{b} (score fusion)"),
        "feature" => format!("{a}+{b} (feature fusion)"),
        only => format!("{only} only"),
    }
}

/// ROC and DET of every curve, and the heads' training curves.
fn plot(
    out: &Path,
    curves: &Curves,
    history: &Path,
    stage: &str,
) -> Result<serde_json::Value, StageError> {
    if !plots::font_available() {
        return Ok("skipped: no DejaVu Sans font (install fonts-dejavu-core)".into());
    }
    let refs: Vec<(&str, &[Point])> = curves
        .iter()
        .map(|(l, p)| (l.as_str(), p.as_slice()))
        .collect();
    plots::roc(&out.join("roc.png"), &refs).map_err(StageError::Other)?;
    plots::det(&out.join("det.png"), &refs).map_err(StageError::Other)?;
    let v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(history).map_err(|e| StageError::io("read", history, e))?,
    )
    .map_err(|e| StageError::Other(format!("bad heads metrics.json: {e}")))?;
    let series = plots::series_of(&v);
    plots::training(
        &out.join("training.png"),
        &[plots::Curves { stage, series }],
    )
    .map_err(StageError::Other)?;
    Ok(serde_json::json!(["roc.png", "det.png", "training.png"]))
}
