//! The `pretrain` kind: trains a backbone and a softmax head on a dataset
//! (from `ingest` or `augment`) in the `tuneflow-torch` worker, reporting an
//! `epoch` event per epoch and checkpointing every epoch, so a rerun after a
//! kill continues from the last finished epoch.

use std::collections::BTreeMap;

use crate::params::{ParamError, ParamReader, Spanned, Value};
use crate::registry::BuildContext;
use crate::schedule::Shape;
use crate::stage::{Inputs, Stage, StageContext, StageDecl, StageError, StageOutputs};
use crate::train_config::{ModelConfig, OptimizerConfig, TrainConfig};
use crate::worker::{run_worker, WorkerSpec};

/// A configured `pretrain` stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Pretrain {
    config: TrainConfig,
    /// Input names: the dataset, optional validation data and policy.
    data: String,
    val: Option<String>,
    policy: Option<String>,
    seed: i64,
    name: String,
}

/// A dataset reference: `stage.output` names one output (input
/// `stage/output`); a bare `stage` reads all of its outputs and uses
/// `dataset` (and `policy`, from an `augment` stage).
fn dataset_ref(
    r: &ParamReader<'_>,
    key: &str,
    required: bool,
) -> Option<(Spanned<String>, String, Option<String>)> {
    let v = if required {
        r.required_str(key, "a dataset: `stage` or `stage.output`")?
    } else {
        r.str(key)?
    };
    Some(match v.value.split_once('.') {
        Some((stage, output)) => {
            let input = format!("{stage}/{output}");
            (v, input, None)
        }
        None => {
            let (data, policy) = (
                format!("{}/dataset", v.value),
                format!("{}/policy", v.value),
            );
            (v, data, Some(policy))
        }
    })
}

fn typed<T: serde::de::DeserializeOwned>(
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

/// Builds a `pretrain` stage from its params.
pub fn build(cx: &BuildContext<'_>, r: &ParamReader<'_>) -> Option<StageDecl> {
    let data = dataset_ref(r, "data", true);
    let val = dataset_ref(r, "val", false);
    let model: Option<ModelConfig> = typed(
        r,
        "model",
        r.raw("model"),
        serde_json::json!({ "depth": 10 }),
    );
    let optimizer_raw = r.raw("optimizer");
    let mut optimizer_json = optimizer_raw.map_or(
        serde_json::json!({ "kind": "sgd", "momentum": 0.9 }),
        Value::to_json,
    );
    let lr = optimizer_json
        .as_object_mut()
        .and_then(|o| o.remove("lr"))
        .and_then(|v| v.as_f64())
        .unwrap_or(0.1);
    let optimizer: Option<OptimizerConfig> = serde_json::from_value(optimizer_json)
        .map_err(|e| {
            r.error(ParamError {
                message: format!("invalid `optimizer`: {e}"),
                span: optimizer_raw.and_then(|v| v.span.clone()),
                label: "here".into(),
                help: None,
            })
        })
        .ok();
    let schedule: Option<Shape> = typed(
        r,
        "schedule",
        r.raw("schedule"),
        serde_json::json!({ "kind": "constant" }),
    );
    let loss = r
        .nested("loss", |l| l.choice("kind", &["softmax"]).map(|k| k.value))
        .flatten()
        .unwrap_or_else(|| "softmax".into());
    let config = TrainConfig {
        model: model?,
        loss,
        optimizer: optimizer?,
        lr,
        schedule: schedule?,
        warmup_epochs: r.uint("warmup-epochs").map_or(0, |v| v.value),
        epochs: r.uint("epochs").map_or(10, |v| v.value),
        batch: r.uint("batch").map_or(32, |v| v.value as usize),
        frames: r.uint("frames").map_or(100, |v| v.value as u32),
        clip_grad: r.float("clip-grad").map(|v| v.value),
    };
    let (data_ref, data, policy) = data?;
    let mut refs = vec![data_ref];
    let val = val.map(|(v, input, _)| {
        refs.push(v);
        input
    });
    let stage = Pretrain {
        config,
        data,
        val,
        policy,
        seed: cx.seed,
        name: cx.name.to_owned(),
    };
    Some(StageDecl {
        stage: Box::new(stage),
        refs,
        deps: vec![],
        outs: vec![],
        outputs: vec!["model".into()],
    })
}

impl Stage for Pretrain {
    fn kind(&self) -> &'static str {
        "pretrain"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> BTreeMap<String, String> {
        let mut p = BTreeMap::new();
        let config = serde_json::to_value(&self.config).expect("configs serialize");
        for (k, v) in config.as_object().expect("a struct") {
            p.insert(k.clone(), v.to_string());
        }
        p.insert("seed".into(), self.seed.to_string());
        p.insert("stage".into(), self.name.clone());
        p
    }

    fn run(&self, cx: &StageContext, inputs: &Inputs) -> Result<StageOutputs, StageError> {
        let tree = |name: &str| {
            inputs
                .trees
                .get(name)
                .cloned()
                .ok_or_else(|| StageError::Other(format!("input `{name}` is not a dataset")))
        };
        let out = cx.scratch.join("model");
        std::fs::create_dir_all(&out).map_err(|e| StageError::io("create", &out, e))?;
        let spec = WorkerSpec {
            kind: "pretrain".into(),
            stage: self.name.clone(),
            config: serde_json::to_value(&self.config).expect("configs serialize"),
            train: tree(&self.data)?,
            val: self.val.as_deref().map(tree).transpose()?,
            policy: self
                .policy
                .as_ref()
                .and_then(|p| inputs.paths.get(p).cloned()),
            out: out.clone(),
            checkpoints: cx.checkpoints.clone(),
            seed: self.seed,
            device: cx.device.clone(),
        };
        let result = run_worker(cx, &spec)?;
        Ok(StageOutputs {
            paths: vec![("model".into(), out)],
            summary: result,
            reexports: vec![],
        })
    }
}
