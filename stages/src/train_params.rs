//! Reading the params the training kinds (`pretrain`, `fine-tune`) share:
//! dataset references, the model, loss, optimizer, schedule and loop
//! settings. Every error is recorded with its span, as for other kinds.

use crate::params::{ParamError, ParamReader, Spanned, Value};
use crate::schedule::Shape;
use crate::train_config::{EarlyStopping, LossConfig, ModelConfig, OptimizerConfig, TrainConfig};

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
    Some(match v.value.split_once('.') {
        Some((stage, output)) => DataRef {
            data: format!("{stage}/{output}"),
            policy: None,
            written: v,
        },
        None => DataRef {
            data: format!("{}/dataset", v.value),
            policy: Some(format!("{}/policy", v.value)),
            written: v,
        },
    })
}

/// `value` (or `default`) deserialized as `T`, or an error on `key`.
pub fn typed<T: serde::de::DeserializeOwned>(
    r: &ParamReader<'_>,
    key: &str,
    value: Option<&Value>,
    default: serde_json::Value,
) -> Option<T> {
    let json = value.map_or(default, Value::to_json);
    serde_json::from_value(json)
        .map_err(|e| {
            r.error(ParamError {
                message: format!("invalid `{key}`: {e}"),
                span: value.and_then(|v| v.span.clone()),
                label: "here".into(),
                help: None,
            });
        })
        .ok()
}

/// The `model = { ... }` table.
pub fn model(r: &ParamReader<'_>) -> Option<ModelConfig> {
    typed(
        r,
        "model",
        r.raw("model"),
        serde_json::json!({ "depth": 10 }),
    )
}

fn optimizer(r: &ParamReader<'_>) -> Option<(OptimizerConfig, f64)> {
    let raw = r.raw("optimizer");
    let mut json = raw.map_or(
        serde_json::json!({ "kind": "sgd", "momentum": 0.9 }),
        Value::to_json,
    );
    let lr = json
        .as_object_mut()
        .and_then(|o| o.remove("lr"))
        .and_then(|v| v.as_f64())
        .unwrap_or(0.1);
    let config = typed(r, "optimizer", raw, json)?;
    Some((config, lr))
}

/// The `loss = { kind = ..., ... }` table, defaults resolved per kind.
pub fn loss(r: &ParamReader<'_>) -> Option<LossConfig> {
    let Some(read) = r.nested("loss", |l| {
        let kind = l.choice("kind", &["softmax", "arcface", "cosface", "triplet"])?;
        let mut c = LossConfig::with_defaults(&kind.value);
        if let Some(s) = l.float("scale") {
            c.scale = s.value;
        }
        if let Some(m) = l.float("margin") {
            c.margin = m.value;
        }
        if let Some(e) = l.bool("easy-margin") {
            c.easy_margin = e.value;
        }
        if let Some(ls) = l.float("label-smoothing") {
            if !(0.0..1.0).contains(&ls.value) {
                l.error(ParamError {
                    message: format!("`label-smoothing` must be in [0, 1), not {}", ls.value),
                    span: ls.span,
                    label: "out of range".into(),
                    help: None,
                });
                return None;
            }
            c.label_smoothing = ls.value;
        }
        if let Some(k) = l.uint("per-class") {
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
    let schedule: Option<Shape> = typed(
        r,
        "schedule",
        r.raw("schedule"),
        serde_json::json!({ "kind": "constant" }),
    );
    let precision = r
        .choice("precision", &["fp32", "bf16"])
        .map_or_else(|| "fp32".to_owned(), |p| p.value);
    let loss = loss(r);
    let warmup_epochs = r.uint("warmup-epochs").map_or(0, |v| v.value);
    let epochs = r.uint("epochs").map_or(10, |v| v.value);
    let batch = r.uint("batch").map_or(32, |v| v.value as usize);
    let frames = r.uint("frames").map_or(100, |v| v.value as u32);
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

/// A training stage's key params: the config, flattened, plus seed and name.
pub fn key_params(
    config: &TrainConfig,
    seed: i64,
    name: &str,
) -> std::collections::BTreeMap<String, String> {
    let mut p = std::collections::BTreeMap::new();
    let json = serde_json::to_value(config).expect("configs serialize");
    for (k, v) in json.as_object().expect("a struct") {
        p.insert(k.clone(), v.to_string());
    }
    p.insert("seed".into(), seed.to_string());
    p.insert("stage".into(), name.to_owned());
    p
}

/// A stage's own `device` (`auto`, `cpu`, `cuda`, `cuda:N`), overriding
/// `[pipeline] device`. Not part of the key: on CPU results are exact, and
/// where a rerun happens is not what it computes.
pub fn device(r: &ParamReader<'_>) -> Option<String> {
    let d = r.str("device")?;
    let valid = matches!(d.value.as_str(), "auto" | "cpu" | "cuda")
        || d.value
            .strip_prefix("cuda:")
            .is_some_and(|n| n.parse::<u32>().is_ok());
    if !valid {
        r.error(ParamError {
            message: format!("unknown device `{}`", d.value),
            span: d.span,
            label: "expected auto, cpu, cuda or cuda:N".into(),
            help: None,
        });
        return None;
    }
    Some(d.value)
}

/// What `pretrain` and `fine-tune` both hold: the config, the data inputs,
/// and what seeds and places the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Training {
    /// The typed config the worker trains with.
    pub config: TrainConfig,
    /// Input names: the dataset, optional validation data and policy.
    pub data: String,
    /// Validation data.
    pub val: Option<String>,
    /// The augmentation policy (from a bare `augment` stage reference).
    pub policy: Option<String>,
    /// `[pipeline] seed`.
    pub seed: i64,
    /// The stage's name (seeds the data order).
    pub name: String,
    /// The stage's own device, if set.
    pub device: Option<String>,
}

impl Training {
    /// Reads the stage's `device` and wires `data` and `val` into `refs`;
    /// `None` when the config had errors (already recorded).
    pub fn new(
        cx: &crate::registry::BuildContext<'_>,
        r: &ParamReader<'_>,
        config: Option<TrainConfig>,
        data: DataRef,
        val: Option<DataRef>,
        refs: &mut Vec<Spanned<String>>,
    ) -> Option<Self> {
        let device = device(r);
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
            seed: cx.seed,
            name: cx.name.to_owned(),
            device,
        })
    }

    /// The worker spec for `kind`, starting from `model` or `init` weights.
    pub fn spec(
        &self,
        kind: &str,
        cx: &crate::stage::StageContext,
        inputs: &crate::stage::Inputs,
        model: Option<std::collections::BTreeMap<String, std::path::PathBuf>>,
        init: Option<std::path::PathBuf>,
    ) -> Result<crate::worker::WorkerSpec, crate::stage::StageError> {
        Ok(crate::worker::WorkerSpec {
            kind: kind.into(),
            stage: self.name.clone(),
            config: serde_json::to_value(&self.config).expect("configs serialize"),
            train: inputs.tree(&self.data)?,
            val: self.val.as_deref().map(|v| inputs.tree(v)).transpose()?,
            policy: self
                .policy
                .as_ref()
                .and_then(|p| inputs.paths.get(p).cloned()),
            model,
            init,
            out: cx.scratch.join("model"),
            checkpoints: cx.checkpoints.clone(),
            seed: self.seed,
            device: self.device.clone().unwrap_or_else(|| cx.device.clone()),
        })
    }

    /// The key params: the config, flattened, plus seed and name.
    pub fn key_params(&self) -> std::collections::BTreeMap<String, String> {
        key_params(&self.config, self.seed, &self.name)
    }
}
