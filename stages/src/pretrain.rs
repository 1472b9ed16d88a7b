//! The `pretrain` kind: trains a backbone and a softmax head on a dataset
//! (from `ingest` or `augment`) in the `tuneflow-torch` worker, reporting an
//! `epoch` event per epoch and checkpointing every epoch, so a rerun after a
//! kill continues from the last finished epoch.

use std::collections::BTreeMap;

use crate::params::ParamReader;
use crate::registry::BuildContext;
use crate::stage::{Inputs, Stage, StageContext, StageDecl, StageError, StageOutputs};
use crate::train_config::TrainConfig;
use crate::train_params::{dataset_ref, key_params, model, train_config};
use crate::worker::{run_training, WorkerSpec};

/// A configured `pretrain` stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Pretrain {
    /// The stage's own device, if set.
    device: Option<String>,
    config: TrainConfig,
    /// Input names: the dataset, optional validation data and policy.
    data: String,
    val: Option<String>,
    policy: Option<String>,
    seed: i64,
    name: String,
}

/// Builds a `pretrain` stage from its params.
pub fn build(cx: &BuildContext<'_>, r: &ParamReader<'_>) -> Option<StageDecl> {
    let data = dataset_ref(r, "data", true);
    let val = dataset_ref(r, "val", false);
    let config = train_config(r, model(r));
    let data = data?;
    let mut refs = vec![data.written];
    let val = val.map(|v| {
        refs.push(v.written);
        v.data
    });
    let stage = Pretrain {
        device: crate::train_params::device(r),
        config: config?,
        data: data.data,
        val,
        policy: data.policy,
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
        2
    }

    fn params(&self) -> BTreeMap<String, String> {
        key_params(&self.config, self.seed, &self.name)
    }

    fn run(&self, cx: &StageContext, inputs: &Inputs) -> Result<StageOutputs, StageError> {
        let spec = WorkerSpec {
            kind: "pretrain".into(),
            stage: self.name.clone(),
            config: serde_json::to_value(&self.config).expect("configs serialize"),
            train: inputs.tree(&self.data)?,
            val: self.val.as_deref().map(|v| inputs.tree(v)).transpose()?,
            policy: self
                .policy
                .as_ref()
                .and_then(|p| inputs.paths.get(p).cloned()),
            model: None,
            init: None,
            out: cx.scratch.join("model"),
            checkpoints: cx.checkpoints.clone(),
            seed: self.seed,
            device: self.device.clone().unwrap_or_else(|| cx.device.clone()),
        };
        run_training(cx, &spec)
    }
}
