//! The `augment` kind: a deterministic, seeded augmentation policy over a
//! dataset. By default the policy is applied on the fly by the data loader
//! (every epoch differs; a rerun or resume reproduces it), and the dataset
//! passes through unchanged. `copies = N` materialises N augmented copies.

use std::sync::Arc;

use crate::data::augment_ops::Op;
use crate::data::dataset::{DatasetInfo, DatasetReader, DatasetWriter};
use crate::data::loader::{load_item, LoaderConfig};
use crate::formats::policy::AugmentPolicy;
use crate::params::{input_name, output_ref, ParamReader, Spanned};
use crate::rng::hash_str;
use crate::stage::{BuildContext, Inputs, Kind, StageContext, StageDecl, StageError, StageOutputs};

/// A configured `augment` stage.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Augment {
    /// Input name of the dataset (`stage/output`).
    input: String,
    ops: Vec<Op>,
    copies: Option<u64>,
    seed: i64,
    name: String,
}

/// Reads `data = "stage"` or `"stage.output"` (default output `dataset`).
pub fn data_ref(r: &ParamReader<'_>, key: &str) -> Option<Spanned<String>> {
    let data = r.required_str(key, "a dataset: `stage` or `stage.output`")?;
    Some(output_ref(data, "dataset"))
}

/// Builds an `augment` stage from its params.
pub fn build(cx: &BuildContext<'_>, r: &ParamReader<'_>) -> Option<StageDecl> {
    let data = data_ref(r, "data");
    let ops = read_ops(r);
    let copies = r.uint("copies").map(|c| c.value);
    let data = data?;
    // Errors in `ops` are recorded and stop the plan; the stage is still
    // returned so its `data` reference is checked in the same pass.
    let ops = ops.unwrap_or_default();
    let stage = Augment {
        input: input_name(&data.value),
        ops,
        copies,
        seed: cx.seed,
        name: cx.name.to_owned(),
    };
    Some(StageDecl {
        stage: Box::new(stage),
        refs: vec![data],
        deps: vec![],
        outs: vec![],
        outputs: vec!["dataset".into(), "policy".into()],
        uses: vec![],
    })
}

fn read_ops(r: &ParamReader<'_>) -> Option<Vec<Op>> {
    r.typed_list("ops")
}

impl Kind for Augment {
    const NAME: &'static str = "augment";
    const VERSION: u32 = 2;

    fn run(&self, cx: &StageContext, inputs: &Inputs) -> Result<StageOutputs, StageError> {
        let files = inputs
            .trees
            .get(&self.input)
            .ok_or_else(|| StageError::Input {
                input: self.input.clone(),
                message: "is not a dataset".into(),
            })?;
        let data =
            DatasetReader::open(&|rel| files.get(rel).cloned()).map_err(StageError::Other)?;
        let image_data = data.info.kind == "image";
        if let Some(op) = self.ops.iter().find(|op| op.for_images() != image_data) {
            let name = serde_json::to_value(op).expect("ops serialize")["op"]
                .as_str()
                .unwrap_or("?")
                .to_owned();
            return Err(StageError::Other(format!(
                "op `{name}` does not apply to {} data",
                data.info.kind
            )));
        }
        let policy = AugmentPolicy {
            ops: self.ops.clone(),
            seed: self.seed,
            stage: hash_str(&self.name),
        };
        let policy_path = cx.scratch.join("policy.json");
        std::fs::write(
            &policy_path,
            serde_json::to_vec_pretty(&policy).expect("policy serializes"),
        )
        .map_err(|e| StageError::io("write", &policy_path, e))?;
        let mut out = StageOutputs {
            paths: vec![("policy".into(), policy_path)],
            ..Default::default()
        };
        match self.copies {
            None => out.reexports.push(("dataset".into(), self.input.clone())),
            Some(n) => out.paths.push((
                "dataset".into(),
                self.materialize(cx, Arc::new(data), &policy, n)?,
            )),
        }
        Ok(out)
    }
}

impl Augment {
    /// Writes `n` augmented copies of every item (copy k uses epoch k + 1).
    fn materialize(
        &self,
        cx: &StageContext,
        data: Arc<DatasetReader>,
        policy: &AugmentPolicy,
        n: u64,
    ) -> Result<std::path::PathBuf, StageError> {
        let dir = cx.scratch.join("dataset");
        let mut writer =
            DatasetWriter::create(&dir).map_err(|e| StageError::io("create", &dir, e))?;
        let mut shape = data.info.shape.clone();
        for copy in 0..n {
            let cfg = LoaderConfig {
                batch: 1,
                shuffle: false,
                seed: policy.seed as u64,
                stage: policy.stage,
                epoch: copy + 1,
                ops: policy.ops.clone(),
                workers: 1,
                prefetch: 1,
                drop_last: false,
                per_class: None,
            };
            for i in 0..data.len() {
                if cx.cancel.is_cancelled() {
                    return Err(StageError::Cancelled);
                }
                let (values, item_shape) =
                    load_item(&data, i as u32, &cfg).map_err(StageError::Other)?;
                let frames = if item_shape.len() == 2 {
                    item_shape[0] as u32
                } else {
                    1
                };
                if item_shape.len() == 2 {
                    shape = vec![item_shape[1] as u32];
                }
                let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                writer
                    .push(
                        &format!("{}#{copy}", i),
                        data.record(i).label,
                        frames,
                        &bytes,
                    )
                    .map_err(|e| StageError::io("write", &dir, e))?;
            }
        }
        let info = DatasetInfo {
            dtype: "f32".into(),
            shape,
            items: 0,
            splits: Default::default(),
            split: None,
            ..data.info.clone()
        };
        writer
            .finish(info, &[])
            .map_err(|e| StageError::io("write", &dir, e))?;
        Ok(dir)
    }
}
