//! The `extract` kind: embeddings of a trained model for every item of a
//! dataset split, computed in the `tuneflow-torch` worker. The output is an
//! embeddings artifact (`formats::embeddings`) that `evaluate` reads and
//! `tuneflow export` turns into `.npy` or `.safetensors`.

use crate::device::Device;
use crate::params::{input_name, output_ref, ParamReader};
use crate::stage::{BuildContext, Inputs, Kind, StageContext, StageDecl, StageError, StageOutputs};
use crate::train::read::{dataset_ref, device};
use crate::worker::client::run_worker;
use crate::worker::{ExtractConfig, ExtractJob, WorkerJob};

/// A configured `extract` stage.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Extract {
    /// The stage's own device, if set (not in the key).
    device: Option<Device>,
    config: ExtractConfig,
    model: String,
    data: String,
}

/// Builds an `extract` stage from its params.
pub fn build(_cx: &BuildContext<'_>, r: &ParamReader<'_>) -> Option<StageDecl> {
    let model = r
        .required_str("model", "a trained model: `stage` or `stage.model`")
        .map(|m| output_ref(m, "model"));
    let data = dataset_ref(r, "data", true);
    let config = ExtractConfig {
        normalize: r.bool("normalize").is_none_or(|v| v.value),
        flip: r.bool("flip").is_some_and(|v| v.value),
        segment: r.uint("segment").map_or(0, |v| v.value as u32),
        batch: r.uint("batch").map_or(64, |v| v.value.max(1) as usize),
    };
    let device = device(r);
    let (model, data) = (model?, data?);
    let stage = Extract {
        device,
        config,
        model: input_name(&model.value),
        data: data.data,
    };
    Some(StageDecl {
        stage: Box::new(stage),
        refs: vec![model, data.written],
        deps: vec![],
        outs: vec![],
        outputs: vec!["embeddings".into()],
        uses: vec![],
    })
}

impl Kind for Extract {
    const NAME: &'static str = "extract";
    const VERSION: u32 = 2;
    const NOT_IN_KEY: &'static [&'static str] = &["device"];

    fn run(&self, cx: &StageContext, inputs: &Inputs) -> Result<StageOutputs, StageError> {
        let out = cx.scratch.join("embeddings");
        std::fs::create_dir_all(&out).map_err(|e| StageError::io("create", &out, e))?;
        let job = WorkerJob::Extract(ExtractJob {
            stage: cx.name.clone(),
            config: self.config.clone(),
            data: inputs.tree(&self.data)?,
            model: inputs.tree(&self.model)?,
            out: out.clone(),
            device: self.device.unwrap_or(cx.device),
        });
        let result = run_worker(cx, &job)?;
        Ok(StageOutputs {
            paths: vec![("embeddings".into(), out)],
            summary: result.summary(),
            reexports: vec![],
        })
    }
}
