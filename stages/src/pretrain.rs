//! The `pretrain` kind: trains a backbone and a softmax head on a dataset
//! (from `ingest` or `augment`) in the `tuneflow-torch` worker, reporting an
//! `epoch` event per epoch and checkpointing every epoch, so a rerun after a
//! kill continues from the last finished epoch.

use std::collections::BTreeMap;

use crate::params::ParamReader;
use crate::registry::BuildContext;
use crate::stage::{Inputs, Stage, StageContext, StageDecl, StageError, StageOutputs};
use crate::train_params::{dataset_ref, model, train_config, Training};
use crate::worker::run_training;

/// A configured `pretrain` stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Pretrain {
    training: Training,
}

/// Builds a `pretrain` stage from its params.
pub fn build(cx: &BuildContext<'_>, r: &ParamReader<'_>) -> Option<StageDecl> {
    let data = dataset_ref(r, "data", true);
    let val = dataset_ref(r, "val", false);
    let config = train_config(r, model(r));
    let mut refs = Vec::new();
    let training = Training::new(cx, r, config, data?, val, &mut refs)?;
    Some(StageDecl {
        stage: Box::new(Pretrain { training }),
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
        self.training.key_params()
    }

    fn run(&self, cx: &StageContext, inputs: &Inputs) -> Result<StageOutputs, StageError> {
        let spec = self.training.spec("pretrain", cx, inputs, None, None)?;
        run_training(cx, &spec)
    }
}
