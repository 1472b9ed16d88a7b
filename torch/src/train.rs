//! The training loop the worker runs for `pretrain`: batches from the data
//! loader (augmentation seeded per epoch and item), a ResNet with a softmax
//! head, an optimizer over tensors and a schedule that is a function of the
//! step. Every epoch is checkpointed (weights including BatchNorm
//! statistics, optimizer state, epoch, history); a rerun resumes from it,
//! and since every random choice derives from (seed, stage, epoch, item),
//! the resumed run on CPU is bit-identical to an uninterrupted one.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tch::nn::{self, Module, ModuleT};
use tch::{Device, Kind, Tensor};
use tuneflow_stages::augment::Policy;
use tuneflow_stages::data::augment_ops::Op;
use tuneflow_stages::data::dataset::DatasetReader;
use tuneflow_stages::data::loader::{Batch, Loader, LoaderConfig};
use tuneflow_stages::rng::hash_str;
use tuneflow_stages::schedule::Schedule;
use tuneflow_stages::train_config::TrainConfig;
use tuneflow_stages::worker::WorkerSpec;

use crate::model::ResNet;
use crate::optim::{clip_grad_norm, Optimizer};

/// One epoch's numbers.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EpochStats {
    /// Epoch, from 1.
    pub epoch: u64,
    /// Mean training loss.
    pub train_loss: f64,
    /// Training accuracy.
    pub train_acc: f64,
    /// Validation loss, when there is validation data.
    pub val_loss: Option<f64>,
    /// Validation accuracy.
    pub val_acc: Option<f64>,
    /// Learning rate at the epoch's last step.
    pub lr: f64,
    /// Training samples per second.
    pub samples_per_s: f64,
}

/// What a checkpoint's JSON half holds.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Progress {
    epoch: u64,
    history: Vec<EpochStats>,
}

/// Prints one JSON event line for the runner.
pub fn emit(event: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{event}");
    let _ = out.flush();
}

fn device(name: &str) -> Device {
    match name {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        n if n.starts_with("cuda:") => Device::Cuda(n[5..].parse().unwrap_or(0)),
        _ => Device::cuda_if_available(),
    }
}

fn open(
    files: &std::collections::BTreeMap<String, std::path::PathBuf>,
) -> Result<Arc<DatasetReader>, String> {
    DatasetReader::open(&|rel| files.get(rel).cloned()).map(Arc::new)
}

/// The model being trained: backbone, head, and where they live.
struct Net {
    vs: nn::VarStore,
    backbone: ResNet,
    head: nn::Linear,
}

/// Runs `pretrain` for `spec`; prints epoch events and a final result.
pub fn pretrain(spec: &WorkerSpec) -> Result<(), String> {
    let cfg: TrainConfig =
        serde_json::from_value(spec.config.clone()).map_err(|e| format!("bad config: {e}"))?;
    let train = open(&spec.train)?;
    let val = spec.val.as_ref().map(open).transpose()?;
    let policy: Option<Policy> = spec
        .policy
        .as_ref()
        .map(|p| {
            std::fs::read(p)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        })
        .transpose()?;
    tch::manual_seed(spec.seed);
    let mut net = build_net(&cfg, &train, device(&spec.device))?;
    let params = net.vs.trainable_variables();
    let mut opt = Optimizer::new(cfg.optimizer.clone(), &params);
    let mut progress = Progress {
        epoch: 0,
        history: vec![],
    };
    load_checkpoint(&spec.checkpoints, &mut net, &mut opt, &mut progress)?;
    let steps_per_epoch = (train.len() / cfg.batch.max(1)).max(1) as u64;
    let schedule = Schedule {
        lr: cfg.lr,
        shape: cfg.schedule.clone(),
        warmup_steps: cfg.warmup_epochs * steps_per_epoch,
        warmup_start: 0.0,
        total_steps: cfg.epochs * steps_per_epoch,
        steps_per_epoch,
    };
    let stage_seed = policy
        .as_ref()
        .map_or_else(|| hash_str(&spec.stage), |p| p.stage);
    let ops = train_ops(&train, policy.as_ref(), cfg.frames);
    for epoch in progress.epoch + 1..=cfg.epochs {
        let loader_cfg = LoaderConfig {
            batch: cfg.batch,
            shuffle: true,
            seed: spec.seed as u64,
            stage: stage_seed,
            epoch,
            ops: ops.clone(),
            workers: 2,
            prefetch: 4,
            drop_last: true,
        };
        let mut stats = train_epoch(
            &net,
            &params,
            &mut opt,
            &schedule,
            &cfg,
            Loader::new(train.clone(), loader_cfg),
            epoch,
        )?;
        if let Some(val) = &val {
            let (loss, acc) = evaluate(&net, val, &eval_ops(&ops), cfg.batch)?;
            stats.val_loss = Some(loss);
            stats.val_acc = Some(acc);
        }
        let mut event = serde_json::to_value(&stats).expect("stats serialize");
        event["event"] = "epoch".into();
        event["epochs"] = cfg.epochs.into();
        emit(&event);
        progress.epoch = epoch;
        progress.history.push(stats);
        save_checkpoint(&spec.checkpoints, &net, &opt, &progress)?;
    }
    write_outputs(spec, &cfg, &net, &train, &progress)
}

fn build_net(cfg: &TrainConfig, train: &DatasetReader, device: Device) -> Result<Net, String> {
    if cfg.model.arch != "resnet" {
        return Err(format!(
            "model arch `{}` is not supported (resnet)",
            cfg.model.arch
        ));
    }
    let mut model = cfg.model.clone();
    let audio = train.info.kind != "image";
    model.in_channels = if audio {
        1
    } else {
        i64::from(train.info.shape[0])
    };
    if audio {
        model.pooling = "stats".into();
    }
    let bins = if audio {
        i64::from(train.info.shape[0])
    } else {
        0
    };
    let vs = nn::VarStore::new(device);
    let backbone = ResNet::new(&(vs.root() / "backbone"), &model, bins)?;
    let head = nn::linear(
        vs.root() / "head",
        model.embedding,
        train.info.classes.len() as i64,
        Default::default(),
    );
    Ok(Net { vs, backbone, head })
}

/// The policy's ops, or for fbank data without one a random crop to
/// `frames` so a batch has one length.
fn train_ops(train: &DatasetReader, policy: Option<&Policy>, frames: u32) -> Vec<Op> {
    match policy {
        Some(p) => p.ops.clone(),
        None if train.info.kind != "image" => vec![Op::SegmentCrop { frames }],
        None => vec![],
    }
}

/// Validation uses only the deterministic part: normalisation and the crop
/// length (at a fixed seed).
fn eval_ops(ops: &[Op]) -> Vec<Op> {
    ops.iter()
        .filter(|o| matches!(o, Op::Normalize { .. } | Op::SegmentCrop { .. }))
        .cloned()
        .collect()
}

fn to_tensors(b: &Batch, device: Device) -> (Tensor, Tensor) {
    let shape: Vec<i64> = b.shape.iter().map(|&d| d as i64).collect();
    (
        Tensor::from_slice(&b.data).reshape(shape).to(device),
        Tensor::from_slice(&b.labels).to(device),
    )
}

fn train_epoch(
    net: &Net,
    params: &[Tensor],
    opt: &mut Optimizer,
    schedule: &Schedule,
    cfg: &TrainConfig,
    loader: Loader,
    epoch: u64,
) -> Result<EpochStats, String> {
    let started = Instant::now();
    let (mut loss_sum, mut correct, mut seen, mut lr) = (0.0, 0i64, 0usize, 0.0);
    for (b, batch) in loader.enumerate() {
        let batch = batch?;
        let (x, y) = to_tensors(&batch, net.vs.device());
        let logits = net.head.forward(&net.backbone.forward_t(&x, true));
        let loss = logits.cross_entropy_for_logits(&y);
        let value = loss.double_value(&[]);
        if !value.is_finite() {
            return Err(format!(
                "the loss is {value} at epoch {epoch}, batch {} (the last good checkpoint is kept)",
                b + 1
            ));
        }
        for p in params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        loss.backward();
        if let Some(max) = cfg.clip_grad {
            clip_grad_norm(params, max);
        }
        lr = schedule.lr_at(opt.step);
        opt.step(params, lr, &[]);
        loss_sum += value * batch.labels.len() as f64;
        correct += logits
            .argmax(-1, false)
            .eq_tensor(&y)
            .sum(Kind::Int64)
            .int64_value(&[]);
        seen += batch.labels.len();
    }
    let n = seen.max(1) as f64;
    Ok(EpochStats {
        epoch,
        train_loss: loss_sum / n,
        train_acc: correct as f64 / n,
        val_loss: None,
        val_acc: None,
        lr,
        samples_per_s: seen as f64 / started.elapsed().as_secs_f64(),
    })
}

fn evaluate(
    net: &Net,
    data: &Arc<DatasetReader>,
    ops: &[Op],
    batch: usize,
) -> Result<(f64, f64), String> {
    let cfg = LoaderConfig {
        batch,
        shuffle: false,
        seed: 0,
        stage: 0,
        epoch: 0,
        ops: ops.to_vec(),
        workers: 2,
        prefetch: 2,
        drop_last: false,
    };
    let (mut loss_sum, mut correct, mut seen) = (0.0, 0i64, 0usize);
    tch::no_grad(|| -> Result<(), String> {
        for b in Loader::new(data.clone(), cfg) {
            let b = b?;
            let (x, y) = to_tensors(&b, net.vs.device());
            let logits = net.head.forward(&net.backbone.forward_t(&x, false));
            loss_sum +=
                logits.cross_entropy_for_logits(&y).double_value(&[]) * b.labels.len() as f64;
            correct += logits
                .argmax(-1, false)
                .eq_tensor(&y)
                .sum(Kind::Int64)
                .int64_value(&[]);
            seen += b.labels.len();
        }
        Ok(())
    })?;
    let n = seen.max(1) as f64;
    Ok((loss_sum / n, correct as f64 / n))
}

/// Loads the checkpoint `latest` names, if any.
fn load_checkpoint(
    dir: &Path,
    net: &mut Net,
    opt: &mut Optimizer,
    progress: &mut Progress,
) -> Result<(), String> {
    let Ok(name) = std::fs::read_to_string(dir.join("latest")) else {
        return Ok(());
    };
    let ckpt = dir.join(name.trim());
    let json = ckpt.join("progress.json");
    let bytes =
        std::fs::read(&json).map_err(|e| format!("failed to read `{}`: {e}", json.display()))?;
    *progress = serde_json::from_slice(&bytes)
        .map_err(|e| format!("bad checkpoint `{}`: {e}", json.display()))?;
    net.vs
        .load(ckpt.join("model.safetensors"))
        .map_err(|e| format!("failed to load the checkpoint's weights: {e}"))?;
    let state =
        Tensor::read_safetensors(ckpt.join("optimizer.safetensors")).map_err(|e| e.to_string())?;
    opt.load_state(&state)?;
    Ok(())
}

/// Writes every variable as safetensors, sorted by name: `VarStore::save`
/// follows a HashMap's order, so the same weights would give different
/// bytes (and digests) in different processes.
fn save_sorted(vs: &nn::VarStore, path: &Path) -> Result<(), tch::TchError> {
    let sorted: std::collections::BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    let named: Vec<(String, Tensor)> = sorted.into_iter().collect();
    Tensor::write_safetensors(&named, path)
}

/// Writes `epoch-NNNNNN/` whole, then points `latest` at it (by rename),
/// then removes older epochs: a kill at any moment leaves the previous
/// checkpoint or the new one, never a mix.
fn save_checkpoint(
    dir: &Path,
    net: &Net,
    opt: &Optimizer,
    progress: &Progress,
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| {
        format!("failed to write a checkpoint in `{}`: {e}", dir.display())
    };
    let name = format!("epoch-{:06}", progress.epoch);
    let ckpt = dir.join(&name);
    let _ = std::fs::remove_dir_all(&ckpt);
    std::fs::create_dir_all(&ckpt).map_err(|e| err(&e))?;
    save_sorted(&net.vs, &ckpt.join("model.safetensors")).map_err(|e| err(&e))?;
    Tensor::write_safetensors(&opt.state(), ckpt.join("optimizer.safetensors"))
        .map_err(|e| err(&e))?;
    std::fs::write(
        ckpt.join("progress.json"),
        serde_json::to_vec(progress).expect("progress serializes"),
    )
    .map_err(|e| err(&e))?;
    for f in [
        "model.safetensors",
        "optimizer.safetensors",
        "progress.json",
    ] {
        std::fs::File::open(ckpt.join(f))
            .and_then(|f| f.sync_all())
            .map_err(|e| err(&e))?;
    }
    let tmp = dir.join("latest.tmp");
    std::fs::write(&tmp, &name).map_err(|e| err(&e))?;
    std::fs::rename(&tmp, dir.join("latest")).map_err(|e| err(&e))?;
    for entry in std::fs::read_dir(dir).map_err(|e| err(&e))?.flatten() {
        let n = entry.file_name().to_string_lossy().into_owned();
        if n.starts_with("epoch-") && n != name {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}

fn write_outputs(
    spec: &WorkerSpec,
    cfg: &TrainConfig,
    net: &Net,
    train: &DatasetReader,
    progress: &Progress,
) -> Result<(), String> {
    save_sorted(&net.vs, &spec.out.join("model.safetensors")).map_err(|e| e.to_string())?;
    let config = serde_json::json!({
        "model": cfg.model, "classes": train.info.classes, "data-kind": train.info.kind, "data-shape": train.info.shape,
    });
    std::fs::write(
        spec.out.join("config.json"),
        serde_json::to_vec_pretty(&config).expect("json"),
    )
    .map_err(|e| e.to_string())?;
    // Timing stays out of the outputs (it is in the events and the summary):
    // the same training must give the same bytes, or reruns and early
    // cutoff could never match.
    let history: Vec<serde_json::Value> = progress
        .history
        .iter()
        .map(|e| {
            let mut v = serde_json::to_value(e).expect("stats serialize");
            v.as_object_mut().expect("a struct").remove("samples_per_s");
            v
        })
        .collect();
    std::fs::write(
        spec.out.join("metrics.json"),
        serde_json::to_vec_pretty(&history).expect("json"),
    )
    .map_err(|e| e.to_string())?;
    let last = progress.history.last();
    emit(&serde_json::json!({ "event": "result", "epochs": progress.epoch, "final": last }));
    Ok(())
}
