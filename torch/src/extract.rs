//! The `extract` kind in the worker: embeddings (the `embedding` layer's
//! output, before the head) for every item of a dataset split, batched,
//! under `no_grad`, in eval mode. Images can be averaged with their
//! horizontal flip; spectrograms are pooled over the whole utterance or
//! averaged over fixed-length segments. Optional L2 normalisation. The
//! head's class scores are kept too, for top-k accuracy.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tch::nn::ModuleT;
use tch::{Device, Kind, Tensor};
use tuneflow_stages::data::augment_ops::Op;
use tuneflow_stages::data::dataset::DatasetReader;
use tuneflow_stages::data::loader::{load_item, Loader, LoaderConfig};
use tuneflow_stages::formats::embeddings::EmbeddingsMeta;
use tuneflow_stages::formats::model::{ModelFolder, ModelFolderConfig};
use tuneflow_stages::worker::progress::{Pace, RunShape};
use tuneflow_stages::worker::{ExtractConfig, ExtractJob, ExtractResult, Phase, WorkerEvent};

use crate::checkpoint::load_into;
use crate::feed::to_tensors;
use crate::train::{device, emit};
use crate::transfer::{build_net, Net};

/// Runs `extract` for `spec`.
pub fn run(spec: &ExtractJob) -> Result<(), String> {
    let cfg = &spec.config;
    let folder = ModelFolder::read(&spec.model, "the model")?;
    let data = Arc::new(DatasetReader::open(&|rel| spec.data.get(rel).cloned())?);
    let head_classes = folder.config.classes.clone();
    let device = device(spec.device);
    let net = model_from(&folder.config, &data, head_classes.len(), device)?;
    load_into(&net.vs, &folder.weights)?;
    let ops = &folder.config.eval_ops;
    let (emb, scores) = tch::no_grad(|| {
        if data.info.kind == "image" {
            images(&net, &data, cfg, ops)
        } else {
            spectrograms(&net, &data, cfg)
        }
    })?;
    let emb = if cfg.normalize {
        &emb / emb.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12)
    } else {
        emb
    };
    write(spec, &data, &emb, scores.as_ref(), &head_classes, cfg)
}

/// The network as trained, from the model folder's `config.json`.
fn model_from(
    config: &ModelFolderConfig,
    data: &DatasetReader,
    classes: usize,
    device: Device,
) -> Result<Net, String> {
    if config.data_shape.first() != data.info.shape.first() {
        return Err(format!(
            "the model was trained on data of shape {:?}, this dataset has {:?}",
            config.data_shape, data.info.shape
        ));
    }
    build_net(
        &config.model,
        &data.info,
        classes.max(1) as i64,
        &config.loss,
        device,
    )
}

/// Progress reports over `batches` batches (one epoch).
fn pace(batches: usize) -> Pace {
    Pace::start(RunShape {
        epochs: 1,
        train: batches as u64,
        val: 0,
    })
}

/// Batch `i` (from 0) is about to run: batches before it are done.
fn report(pace: &mut Pace, i: usize) {
    if i == 0 {
        return;
    }
    if let Some(p) = pace.batch_done(Phase::Extract, 1, i as u64) {
        emit(&WorkerEvent::Progress(p));
    }
}

fn images(
    net: &Net,
    data: &Arc<DatasetReader>,
    cfg: &ExtractConfig,
    ops: &[Op],
) -> Result<(Tensor, Option<Tensor>), String> {
    let loader = Loader::new(
        data.clone(),
        LoaderConfig {
            batch: cfg.batch,
            shuffle: false,
            seed: 0,
            stage: 0,
            epoch: 0,
            ops: ops
                .iter()
                .filter(|o| matches!(o, Op::Normalize { .. }))
                .cloned()
                .collect(),
            workers: crate::feed::loader_workers(net.vs.device()),
            prefetch: 2,
            drop_last: false,
            per_class: None,
        },
    );
    let (mut embs, mut scores) = (Vec::new(), Vec::new());
    let mut pace = pace(loader.len());
    for (i, b) in loader.enumerate() {
        report(&mut pace, i);
        let (x, _) = to_tensors(&b?, net.vs.device());
        let mut e = net.backbone.forward_t(&x, false);
        if cfg.flip {
            e = (e + net.backbone.forward_t(&x.flip([3]), false)) / 2.0;
        }
        if let Some(s) = net.head.logits(&e) {
            scores.push(s);
        }
        embs.push(e);
    }
    Ok(cat(embs, scores))
}

fn spectrograms(
    net: &Net,
    data: &Arc<DatasetReader>,
    cfg: &ExtractConfig,
) -> Result<(Tensor, Option<Tensor>), String> {
    let loader_cfg = LoaderConfig {
        batch: 1,
        shuffle: false,
        seed: 0,
        stage: 0,
        epoch: 0,
        ops: vec![],
        workers: 1,
        prefetch: 1,
        drop_last: false,
        per_class: None,
    };
    let device = net.vs.device();
    let (mut embs, mut scores) = (Vec::new(), Vec::new());
    let mut pace = pace(data.len());
    for i in 0..data.len() {
        report(&mut pace, i);
        let (values, shape) = load_item(data, i as u32, &loader_cfg)?;
        let (frames, bins) = (shape[0] as i64, shape[1] as i64);
        let x = Tensor::from_slice(&values).reshape([frames, bins]);
        let x = match cfg.segment {
            0 => x.unsqueeze(0),
            seg => segments(&x, i64::from(seg)),
        };
        let e = net
            .backbone
            .forward_t(&x.to(device), false)
            .mean_dim(0, true, Kind::Float);
        if let Some(s) = net.head.logits(&e) {
            scores.push(s);
        }
        embs.push(e);
    }
    Ok(cat(embs, scores))
}

/// Windows of `len` frames with hop `len` (`S x len x F`); an utterance
/// shorter than one window is repeated to fill it.
pub fn segments(x: &Tensor, len: i64) -> Tensor {
    let frames = x.size()[0];
    let x = if frames < len {
        x.repeat([(len + frames - 1) / frames, 1]).narrow(0, 0, len)
    } else {
        x.shallow_clone()
    };
    let n = x.size()[0] / len;
    x.narrow(0, 0, n * len).reshape([n, len, -1])
}

fn cat(embs: Vec<Tensor>, scores: Vec<Tensor>) -> (Tensor, Option<Tensor>) {
    let scores = (!scores.is_empty()).then(|| Tensor::cat(&scores, 0));
    (Tensor::cat(&embs, 0), scores)
}

/// `t` as little-endian f32 bytes (the embeddings file format).
pub(crate) fn f32_bytes(t: &Tensor) -> Result<Vec<u8>, String> {
    let v: Vec<f32> = Vec::try_from(t.to_kind(Kind::Float).to(Device::Cpu).flatten(0, -1))
        .map_err(|e: tch::TchError| e.to_string())?;
    Ok(v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

fn write(
    spec: &ExtractJob,
    data: &DatasetReader,
    emb: &Tensor,
    scores: Option<&Tensor>,
    head_classes: &[String],
    cfg: &ExtractConfig,
) -> Result<(), String> {
    let out = &spec.out;
    let put = |name: &str, bytes: &[u8]| {
        std::fs::write(out.join(name), bytes).map_err(|e| format!("failed to write `{name}`: {e}"))
    };
    put("embeddings.f32", &f32_bytes(emb)?)?;
    if let Some(s) = scores {
        put("scores.f32", &f32_bytes(s)?)?;
    }
    let ids = read_ids(&spec.data)?;
    let meta = EmbeddingsMeta {
        count: data.len(),
        dim: emb.size()[1] as usize,
        ids: data
            .indices
            .iter()
            .map(|&i| ids.get(i as usize).cloned().unwrap_or_default())
            .collect(),
        labels: (0..data.len()).map(|i| data.record(i).label).collect(),
        indices: data.indices.clone(),
        classes: data.info.classes.clone(),
        head_classes: scores.map(|_| head_classes.to_vec()),
        normalized: cfg.normalize,
    };
    put(
        "items.json",
        &serde_json::to_vec(&meta).expect("metadata serializes"),
    )?;
    if let Some(trials) = spec.data.get("trials.txt") {
        std::fs::copy(trials, out.join("trials.txt"))
            .map_err(|e| format!("failed to copy the trials: {e}"))?;
    }
    emit(&WorkerEvent::ExtractResult(ExtractResult {
        items: meta.count,
        dim: meta.dim,
        trials: spec.data.contains_key("trials.txt"),
    }));
    Ok(())
}

fn read_ids(files: &BTreeMap<String, PathBuf>) -> Result<Vec<String>, String> {
    let Some(p) = files.get("ids.txt") else {
        return Ok(vec![]);
    };
    let text = std::fs::read_to_string(Path::new(p)).map_err(|e| e.to_string())?;
    Ok(text.lines().map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cover_long_utterances_and_repeat_short_ones() {
        let long = Tensor::arange(25 * 2, (Kind::Float, Device::Cpu)).reshape([25, 2]);
        assert_eq!(segments(&long, 10).size(), [2, 10, 2]);
        let short = Tensor::arange(4 * 2, (Kind::Float, Device::Cpu)).reshape([4, 2]);
        let s = segments(&short, 10);
        assert_eq!(s.size(), [1, 10, 2]);
        assert_eq!(s.double_value(&[0, 4, 0]), 0.0, "repeats from the start");
    }
}
