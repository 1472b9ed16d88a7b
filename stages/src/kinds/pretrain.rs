//! The `pretrain` kind: trains a backbone and a head on a dataset (from
//! `ingest` or `augment`) in the `tuneflow-torch` worker, reporting an
//! `epoch` event per epoch and checkpointing every epoch, so a rerun after a
//! kill continues from the last finished epoch.

use crate::params::ParamReader;
use crate::stage::{BuildContext, Inputs, Kind, StageContext, StageDecl, StageError, StageOutputs};
use crate::train::read::{dataset_ref, model, train_config, Training};
use crate::worker::client::run_training;
use crate::worker::WorkerJob;

/// A configured `pretrain` stage.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pretrain {
    #[serde(flatten)]
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
        uses: vec![],
    })
}

impl Kind for Pretrain {
    const NAME: &'static str = "pretrain";
    const VERSION: u32 = 4;
    const NOT_IN_KEY: &'static [&'static str] = &["device"];

    fn run(&self, cx: &StageContext, inputs: &Inputs) -> Result<StageOutputs, StageError> {
        let out = cx.scratch.join("model");
        let job = self.training.job(cx, inputs, None, None, out.clone())?;
        run_training(cx, &WorkerJob::Pretrain(job), &out)
    }
}
