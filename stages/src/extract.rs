//! The `extract` kind: embeddings of a trained model for every item of a
//! dataset split, computed in the `tuneflow-torch` worker. The output is an
//! embeddings artifact that `evaluate` reads and `tuneflow export` turns
//! into `.npy` or `.safetensors`.

use std::collections::BTreeMap;

use crate::params::{input_name, output_ref, ParamReader, Spanned};
use crate::registry::BuildContext;
use crate::stage::{Inputs, Stage, StageContext, StageDecl, StageError, StageOutputs};
use crate::train_params::dataset_ref;
use crate::worker::{run_worker, WorkerSpec};

/// How to extract.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ExtractConfig {
    /// L2-normalise each embedding.
    pub normalize: bool,
    /// Images: average with the horizontally flipped image.
    pub flip: bool,
    /// Spectrograms: average over windows of this many frames (0: pool the
    /// whole utterance at once).
    pub segment: u32,
    /// Items per batch (images).
    pub batch: usize,
}

/// `items.json` of an embeddings artifact: row `r` of `embeddings.f32`
/// (`count x dim`, f32 little-endian) is item `ids[r]`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct EmbeddingsMeta {
    /// Rows.
    pub count: usize,
    /// Columns.
    pub dim: usize,
    /// Item ids.
    pub ids: Vec<String>,
    /// Class label of each row (an index into `classes`).
    pub labels: Vec<u32>,
    /// Each row's index in the whole dataset (what `trials.txt` refers to).
    pub indices: Vec<u32>,
    /// The data's class names.
    pub classes: Vec<String>,
    /// The head's class names when `scores.f32` (`count x classes`) exists.
    pub head_classes: Option<Vec<String>>,
    /// Whether rows are L2-normalised.
    pub normalized: bool,
}

/// A configured `extract` stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Extract {
    /// The stage's own device, if set.
    device: Option<String>,
    config: ExtractConfig,
    model: String,
    data: String,
}

/// `"stage"` -> `"stage.model"`.
pub fn model_ref(r: &ParamReader<'_>, key: &str) -> Option<Spanned<String>> {
    let m = r.required_str(key, "a trained model: `stage` or `stage.model`")?;
    Some(output_ref(m, "model"))
}

/// Builds an `extract` stage from its params.
pub fn build(_cx: &BuildContext<'_>, r: &ParamReader<'_>) -> Option<StageDecl> {
    let model = model_ref(r, "model");
    let data = dataset_ref(r, "data", true);
    let config = ExtractConfig {
        normalize: r.bool("normalize").is_none_or(|v| v.value),
        flip: r.bool("flip").is_some_and(|v| v.value),
        segment: r.uint("segment").map_or(0, |v| v.value as u32),
        batch: r.uint("batch").map_or(64, |v| v.value.max(1) as usize),
    };
    let (model, data) = (model?, data?);
    let stage = Extract {
        device: crate::train_params::device(r),
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
    })
}

impl Stage for Extract {
    fn kind(&self) -> &'static str {
        "extract"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> BTreeMap<String, String> {
        let json = serde_json::to_value(&self.config).expect("configs serialize");
        json.as_object()
            .expect("a struct")
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect()
    }

    fn run(&self, cx: &StageContext, inputs: &Inputs) -> Result<StageOutputs, StageError> {
        let out = cx.scratch.join("embeddings");
        std::fs::create_dir_all(&out).map_err(|e| StageError::io("create", &out, e))?;
        let spec = WorkerSpec {
            kind: "extract".into(),
            stage: cx.name.clone(),
            config: serde_json::to_value(&self.config).expect("configs serialize"),
            train: inputs.tree(&self.data)?,
            val: None,
            policy: None,
            model: Some(inputs.tree(&self.model)?),
            init: None,
            out: out.clone(),
            checkpoints: cx.checkpoints.clone(),
            seed: 0,
            device: self.device.clone().unwrap_or_else(|| cx.device.clone()),
        };
        let summary = run_worker(cx, &spec)?;
        Ok(StageOutputs {
            paths: vec![("embeddings".into(), out)],
            summary,
            reexports: vec![],
        })
    }
}
