//! Reading the params the training kinds (`pretrain`, `fine-tune`) share:
//! dataset references, the model, loss, optimizer, schedule and loop
//! settings, the seed and the device. Nested tables go through the spanned
//! serde reader, so an unknown key at any depth is a located error.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::device::Device;
use crate::formats::model::ModelConfig;
use crate::params::{Diagnostic, OutputRef, ParamReader, Spanned};
use crate::stage::{BuildContext, Inputs, StageContext, StageError};
use crate::train::config::{EarlyStopping, LossConfig, OptimizerConfig, TrainConfig};
use crate::train::schedule::Shape;
use crate::worker::TrainJob;

/// A dataset reference, resolved to input names.
pub struct DataRef {
    /// What was written (for the planner).
    pub written: Spanned<String>,
    /// The dataset input: `stage/output`.
    pub data: String,
    /// The augmentation policy input, when a bare stage was named.
    pub policy: Option<String>,
}

/// A dataset reference: `stage.output` names one output (input
/// `stage/output`); a bare `stage` reads all of its outputs and uses
/// `dataset` (and `policy`, from an `augment` stage).
pub fn dataset_ref(r: &ParamReader<'_>, key: &str, required: bool) -> Option<DataRef> {
    let v = if required {
        r.required_str(key, "a dataset: `stage` or `stage.output`")?
    } else {
        r.str(key)?
    };
    let written = OutputRef::parse(&v.value);
    Some(if written.output.is_empty() {
        let stage = written.stage;
        DataRef {
            data: OutputRef {
                stage: stage.clone(),
                output: "dataset".into(),
            }
            .input_name(),
            policy: Some(
                OutputRef {
                    stage,
                    output: "policy".into(),
                }
                .input_name(),
            ),
            written: v,
        }
    } else {
        DataRef {
            data: written.input_name(),
            policy: None,
            written: v,
        }
    })
}

/// The `model = { ... }` table (default: a ResNet-10).
pub fn model(r: &ParamReader<'_>) -> Option<ModelConfig> {
    if r.raw("model").is_none() {
        return Some(ModelConfig::resnet(10));
    }
    r.typed("model")
}

/// `optimizer = { kind = ..., lr = ..., ... }`: the learning rate sits in
/// the same table as the optimizer's own settings.
#[derive(serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
struct OptimizerTable {
    #[serde(default = "default_lr")]
    lr: f64,
    #[serde(flatten)]
    config: OptimizerConfig,
}

fn default_lr() -> f64 {
    0.1
}

fn optimizer(r: &ParamReader<'_>) -> Option<(OptimizerConfig, f64)> {
    if r.raw("optimizer").is_none() {
        return Some((OptimizerConfig::sgd(0.9), default_lr()));
    }
    let t: OptimizerTable = r.typed("optimizer")?;
    Some((t.config, t.lr))
}

/// The `loss = { kind = ..., ... }` table, defaults resolved per kind.
pub fn loss(r: &ParamReader<'_>) -> Option<LossConfig> {
    let Some(read) = r.nested("loss", |l| {
        let kind = l.required_choice("kind", &["softmax", "arcface", "cosface", "triplet"]);
        let scale = l.float("scale");
        let margin = l.float("margin");
        let easy = l.bool("easy-margin");
        let smoothing = l.float("label-smoothing");
        let per_class = l.uint("per-class");
        let mut c = LossConfig::with_defaults(&kind?.value);
        if let Some(s) = scale {
            c.scale = s.value;
        }
        if let Some(m) = margin {
            c.margin = m.value;
        }
        if let Some(e) = easy {
            c.easy_margin = e.value;
        }
        if let Some(ls) = smoothing {
            if !(0.0..1.0).contains(&ls.value) {
                l.error(Diagnostic {
                    message: format!("`label-smoothing` must be in [0, 1), not {}", ls.value),
                    span: ls.span,
                    label: "out of range".into(),
                    help: None,
                });
                return None;
            }
            c.label_smoothing = ls.value;
        }
        if let Some(k) = per_class {
            c.per_class = (k.value as usize).max(2);
        }
        Some(c)
    }) else {
        return Some(LossConfig::softmax());
    };
    read
}

fn early_stopping(r: &ParamReader<'_>) -> Option<Option<EarlyStopping>> {
    let Some(read) = r.nested("early-stopping", |e| {
        let metric = e
            .choice("metric", &["val-acc", "val-loss", "val_acc", "val_loss"])
            .map_or_else(|| "val_acc".to_owned(), |m| m.value.replace('-', "_"));
        EarlyStopping {
            metric,
            patience: e.uint("patience").map_or(3, |p| p.value),
            min_delta: e.float("min-delta").map_or(0.0, |d| d.value),
        }
    }) else {
        return Some(None);
    };
    Some(Some(read))
}

/// Everything a training stage shares; `model` is read by the caller
/// (fine-tune may take it from its upstream instead). Every key is read
/// before any error stops the build, so each mistake is reported once and
/// no valid key is called unknown.
pub fn train_config(r: &ParamReader<'_>, model: Option<ModelConfig>) -> Option<TrainConfig> {
    let optimizer = optimizer(r);
    let schedule: Option<Shape> = if r.raw("schedule").is_some() {
        r.typed("schedule")
    } else {
        Some(Shape::Constant)
    };
    let precision = r
        .choice("precision", &["fp32", "bf16"])
        .map_or_else(|| "fp32".to_owned(), |p| p.value);
    let loss = loss(r);
    let warmup_epochs = r.uint("warmup-epochs").map_or(0, |v| v.value);
    let epochs = r.uint("epochs").map_or(10, |v| v.value);
    let batch = r.uint("batch").map_or(32, |v| v.value.max(1) as usize);
    let frames = r.uint("frames").map_or(100, |v| v.value.max(1) as u32);
    let clip_grad = r.float("clip-grad").map(|v| v.value);
    let early_stopping = early_stopping(r);
    let (optimizer, lr) = optimizer?;
    Some(TrainConfig {
        model: model?,
        loss: loss?,
        optimizer,
        lr,
        schedule: schedule?,
        warmup_epochs,
        epochs,
        batch,
        frames,
        clip_grad,
        early_stopping: early_stopping?,
        precision,
        transfer: None,
    })
}

/// A stage's own `device`, overriding `[pipeline] device`. Not part of
/// the key: on CPU results are exact, and where a rerun happens is not what
/// it computes.
pub fn device(r: &ParamReader<'_>) -> Option<Device> {
    let d = r.str("device")?;
    match d.value.parse() {
        Ok(device) => Some(device),
        Err(e) => {
            r.error(Diagnostic {
                message: e.to_string(),
                span: d.span,
                label: "expected auto, cpu, cuda or cuda:N".into(),
                help: None,
            });
            None
        }
    }
}

/// The seed of a training stage's random choices (initial weights, data
/// order, sampling): the stage's `seed` param, else one derived from the
/// pipeline seed and the stage's name (see [`derived_seed`]).
pub fn seed(r: &ParamReader<'_>, cx: &BuildContext<'_>) -> i64 {
    match r.raw("seed") {
        Some(v) => match v.kind {
            crate::params::ValueKind::Int(i) => i,
            ref other => {
                r.error(Diagnostic {
                    message: format!("`seed` must be an integer, not {}", other.type_name()),
                    span: v.span.clone(),
                    label: "expected an integer".into(),
                    help: None,
                });
                0
            }
        },
        None => derived_seed(cx.seed, cx.name),
    }
}

/// The default seed of training stage `name` in a pipeline with seed
/// `pipeline`: two stages with the same config but different names start
/// from different weights. Non-negative, so it reads back as the same
/// `seed = N` a user could write.
pub fn derived_seed(pipeline: i64, name: &str) -> i64 {
    let mut rng = crate::rng::Rng::from_parts(&[pipeline as u64, crate::rng::hash_str(name)]);
    (rng.next_u64() >> 1) as i64
}

/// What `pretrain` and `fine-tune` both hold: the config, the data inputs,
/// and what seeds and places the run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Training {
    /// The typed config the worker trains with.
    pub config: TrainConfig,
    /// Input names: the dataset, optional validation data and policy.
    pub data: String,
    /// Validation data.
    pub val: Option<String>,
    /// The augmentation policy (from a bare `augment` stage reference).
    pub policy: Option<String>,
    /// The seed of every random choice (see [`seed`]).
    pub seed: i64,
    /// The stage's name (seeds the data order).
    pub name: String,
    /// The stage's own device, if set (not in the key).
    pub device: Option<Device>,
}

impl Training {
    /// Reads the stage's `seed` and `device` and wires `data` and `val`
    /// into `refs`; `None` when the config had errors (already recorded).
    pub fn new(
        cx: &BuildContext<'_>,
        r: &ParamReader<'_>,
        config: Option<TrainConfig>,
        data: DataRef,
        val: Option<DataRef>,
        refs: &mut Vec<Spanned<String>>,
    ) -> Option<Self> {
        let device = device(r);
        let seed = seed(r, cx);
        refs.push(data.written);
        let val = val.map(|v| {
            refs.push(v.written);
            v.data
        });
        Some(Self {
            config: config?,
            data: data.data,
            val,
            policy: data.policy,
            seed,
            name: cx.name.to_owned(),
            device,
        })
    }

    /// The worker job, starting from `model` or `init` weights; it writes
    /// the model folder to `out`.
    pub fn job(
        &self,
        cx: &StageContext,
        inputs: &Inputs,
        model: Option<BTreeMap<String, PathBuf>>,
        init: Option<PathBuf>,
        out: PathBuf,
    ) -> Result<TrainJob, StageError> {
        Ok(TrainJob {
            stage: self.name.clone(),
            config: self.config.clone(),
            train: inputs.tree(&self.data)?,
            val: self.val.as_deref().map(|v| inputs.tree(v)).transpose()?,
            policy: self
                .policy
                .as_ref()
                .and_then(|p| inputs.paths.get(p).cloned()),
            model,
            init,
            out,
            checkpoints: cx.checkpoints.clone(),
            seed: self.seed,
            device: self.device.unwrap_or(cx.device),
        })
    }
}
