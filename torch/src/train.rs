//! The training loop the worker runs for `pretrain` and `fine-tune`:
//! batches from the data loader (augmentation seeded per epoch and item),
//! the network from [`crate::transfer`], an optimizer over tensors and a
//! schedule that is a function of the step. Every epoch is checkpointed; a
//! rerun resumes from it, and since every random choice derives from
//! (seed, stage, epoch, item), the resumed run on CPU is bit-identical to
//! an uninterrupted one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tch::Device;
use tuneflow_stages::data::augment_ops::Op;
use tuneflow_stages::data::dataset::DatasetReader;
use tuneflow_stages::data::loader::{Loader, LoaderConfig};
use tuneflow_stages::formats::model::ModelFolderConfig;
use tuneflow_stages::formats::policy::AugmentPolicy;
use tuneflow_stages::train::config::TrainConfig;
use tuneflow_stages::train::schedule::Schedule;
use tuneflow_stages::worker::progress::{Pace, RunShape};
use tuneflow_stages::worker::{EpochStats, Phase, TrainJob, TrainResult, ValNumbers, WorkerEvent};

use crate::checkpoint::{self, Progress};
use crate::feed::Feed;
use crate::layout::Layout;
use crate::optim::Optimizer;
use crate::step::{Step, Tally};
use crate::transfer::{setup, Net, Setup};

/// Prints one event line for the runner.
pub fn emit(event: &WorkerEvent) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", event.to_line());
    let _ = out.flush();
}

/// The libtorch device; `auto` picks CUDA when libtorch sees a GPU.
pub fn device(d: tuneflow_stages::Device) -> Device {
    match d {
        tuneflow_stages::Device::Cpu => Device::Cpu,
        tuneflow_stages::Device::Cuda(n) => Device::Cuda(n as usize),
        tuneflow_stages::Device::Auto => Device::cuda_if_available(),
    }
}

fn open(files: &BTreeMap<String, PathBuf>) -> Result<Arc<DatasetReader>, String> {
    DatasetReader::open(&|rel| files.get(rel).cloned()).map(Arc::new)
}

/// What the loop needs besides the network.
struct Run<'a> {
    cfg: &'a TrainConfig,
    train: Arc<DatasetReader>,
    val: Option<Arc<DatasetReader>>,
    ops: Vec<Op>,
    seed: u64,
    stage_seed: u64,
    bf16: bool,
    layout: Layout,
    workers: usize,
}

impl Run<'_> {
    fn loader_config(&self, epoch: u64, train: bool) -> LoaderConfig {
        let triplet = self.cfg.loss.kind == "triplet";
        LoaderConfig {
            batch: self.cfg.batch,
            shuffle: train,
            seed: if train { self.seed } else { 0 },
            stage: if train { self.stage_seed } else { 0 },
            epoch: if train { epoch } else { 0 },
            ops: if train {
                self.ops.clone()
            } else {
                eval_ops(&self.ops)
            },
            workers: self.workers,
            prefetch: 4,
            drop_last: train,
            per_class: triplet.then_some(self.cfg.loss.per_class),
        }
    }
}

/// Runs `pretrain` or `fine-tune` for `spec`; prints epoch events and a
/// final result.
pub fn run(spec: &TrainJob) -> Result<(), String> {
    let cfg = &spec.config;
    let train = open(&spec.train)?;
    let val = spec.val.as_ref().map(open).transpose()?;
    let policy: Option<AugmentPolicy> = spec
        .policy
        .as_ref()
        .map(|p| {
            std::fs::read(p)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        })
        .transpose()?;
    if cfg.early_stopping.is_some() && val.is_none() {
        return Err("`early-stopping` needs validation data (`val = ...`)".into());
    }
    tch::manual_seed(spec.seed);
    let device = device(spec.device);
    let bf16 = cfg.precision == "bf16";
    let layout = Layout::auto(device, bf16)?;
    let mut s = setup(spec, cfg, &train.info, device)?;
    // Restride before the optimizer makes the parameters views of its
    // flat buffer; the checkpoint then loads into them in place.
    layout.apply(&s.net.vs);
    let mut opt = Optimizer::flat(cfg.optimizer.clone(), &s.params);
    let mut progress = Progress::default();
    checkpoint::load(&spec.checkpoints, &s.net.vs, &mut opt, &mut progress)?;
    if progress.epoch > 0 {
        emit(&WorkerEvent::Resumed {
            epoch: progress.epoch,
            epochs: cfg.epochs,
        });
    }
    let run = Run {
        cfg,
        ops: train_ops(&train, policy.as_ref(), cfg.frames),
        train,
        val,
        seed: spec.seed as u64,
        // The augment stage's own seed part for its ops; without one, the
        // training seed alone (which already derives from the stage's name
        // unless given) decides the order, so equal seeds train alike.
        stage_seed: policy.as_ref().map_or(0, |p| p.stage),
        bf16,
        layout,
        workers: crate::feed::loader_workers(device),
    };
    if device.is_cuda() && static_shapes(&run.train, &run.ops) {
        // Every training batch has one shape: let cuDNN time its
        // algorithms once per shape and keep the fastest.
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let steps_per_epoch = (run.train.len() / cfg.batch.max(1)).max(1) as u64;
    let schedule = Schedule {
        lr: cfg.lr,
        shape: cfg.schedule.clone(),
        warmup_steps: cfg.warmup_epochs * steps_per_epoch,
        warmup_start: 0.0,
        total_steps: cfg.epochs * steps_per_epoch,
        steps_per_epoch,
    };
    let mut pace = Pace::start(RunShape {
        epochs: cfg.epochs,
        train: steps_per_epoch,
        val: run
            .val
            .as_ref()
            .map_or(0, |v| v.len().div_ceil(cfg.batch.max(1))) as u64,
    });
    for epoch in progress.epoch + 1..=cfg.epochs {
        if progress.stopped {
            break;
        }
        let loader = Loader::new(run.train.clone(), run.loader_config(epoch, true));
        pace.set_train_batches(loader.len() as u64);
        let mut stats = train_epoch(&s, &mut opt, &schedule, &run, loader, (epoch, &mut pace))?;
        if let Some(val) = &run.val {
            let (loss, acc) = evaluate(&s.net, &run, val, Some((epoch, &mut pace)))?;
            stats.val_loss = Some(loss);
            stats.val_acc = Some(acc);
        }
        let improved = track_best(cfg, &mut progress, &stats);
        progress.epoch = epoch;
        progress.history.push(stats.clone());
        checkpoint::save(&spec.checkpoints, &s.net.vs, &opt, &progress, improved)?;
        // After the checkpoint: an epoch event means a rerun resumes after it.
        emit(&WorkerEvent::Epoch {
            stats,
            epochs: cfg.epochs,
            best_epoch: progress.best.map(|(best, _)| best),
        });
    }
    let restored = restore_best(&mut s, &run, &spec.checkpoints)?;
    write_outputs(spec, &s, &run, &progress, restored)
}

/// Early stopping bookkeeping; returns whether this epoch is the best yet.
fn track_best(cfg: &TrainConfig, progress: &mut Progress, stats: &EpochStats) -> bool {
    let Some(es) = &cfg.early_stopping else {
        return false;
    };
    let (value, higher) = match es.metric.as_str() {
        "val_loss" => (stats.val_loss.unwrap_or(f64::INFINITY), false),
        _ => (stats.val_acc.unwrap_or(0.0), true),
    };
    let better = match progress.best {
        None => true,
        Some((_, best)) if higher => value > best + es.min_delta,
        Some((_, best)) => value < best - es.min_delta,
    };
    if better {
        progress.best = Some((stats.epoch, value));
        progress.bad_epochs = 0;
    } else {
        progress.bad_epochs += 1;
        progress.stopped = progress.bad_epochs >= es.patience;
    }
    better
}

/// With early stopping, puts the best epoch's weights back and evaluates
/// them again; returns the validation (loss, accuracy) they give.
fn restore_best(
    s: &mut Setup,
    run: &Run<'_>,
    dir: &std::path::Path,
) -> Result<Option<(f64, f64)>, String> {
    if run.cfg.early_stopping.is_none() {
        return Ok(None);
    }
    let Some(best) = checkpoint::best_weights(dir) else {
        return Ok(None);
    };
    checkpoint::load_into(&s.net.vs, &best)?;
    match &run.val {
        Some(val) => evaluate(&s.net, run, val, None).map(Some),
        None => Ok(None),
    }
}

/// The policy's ops, or for fbank data without one a random crop to
/// `frames` so a batch has one length.
fn train_ops(train: &DatasetReader, policy: Option<&AugmentPolicy>, frames: u32) -> Vec<Op> {
    match policy {
        Some(p) => p.ops.clone(),
        None if train.info.kind != "image" => vec![Op::SegmentCrop { frames }],
        None => vec![],
    }
}

/// Whether every training batch has one shape: images always; features
/// only when cropped to a fixed length (a batch of uncropped utterances is
/// cut to its shortest, so its length varies, and cuDNN's benchmark mode
/// would time algorithms again for every new length).
fn static_shapes(train: &DatasetReader, ops: &[Op]) -> bool {
    train.info.kind == "image" || ops.iter().any(|o| matches!(o, Op::SegmentCrop { .. }))
}

/// Validation uses only the deterministic part: normalisation and the crop
/// length (at a fixed seed).
fn eval_ops(ops: &[Op]) -> Vec<Op> {
    ops.iter()
        .filter(|o| matches!(o, Op::Normalize { .. } | Op::SegmentCrop { .. }))
        .cloned()
        .collect()
}

fn train_epoch(
    s: &Setup,
    opt: &mut Optimizer,
    schedule: &Schedule,
    run: &Run<'_>,
    loader: Loader,
    (epoch, pace): (u64, &mut Pace),
) -> Result<EpochStats, String> {
    let started = Instant::now();
    let device = s.net.vs.device();
    let step = Step {
        net: &s.net,
        params: &s.params,
        scales: &s.scales,
        loss: &run.cfg.loss,
        clip: run.cfg.clip_grad,
        bf16: run.bf16,
    };
    let mut tally = Tally::new(device);
    let (mut waited, mut lr) = (0.0, 0.0);
    let mut feed = Feed::new(loader, device, run.layout);
    for b in 1.. {
        let t = Instant::now();
        let Some(batch) = feed.next() else { break };
        waited += t.elapsed().as_secs_f64();
        let batch = batch?;
        lr = schedule.lr_at(opt.step);
        step.run(opt, (&batch.x, &batch.y), lr, |scored| {
            tally.add(scored, batch.len, b);
            if tally.eager() {
                tally.check(epoch)?;
            }
            Ok(())
        })?;
        if let Some(p) = pace.batch_done(Phase::Train, epoch, b) {
            tally.check(epoch)?;
            emit(&WorkerEvent::Progress(p));
        }
    }
    tally.check(epoch)?;
    let (loss_sum, correct) = tally.totals();
    let n = tally.seen.max(1) as f64;
    let elapsed = started.elapsed().as_secs_f64();
    Ok(EpochStats {
        epoch,
        train_loss: loss_sum / n,
        train_acc: correct as f64 / n,
        val_loss: None,
        val_acc: None,
        lr,
        samples_per_s: tally.seen as f64 / elapsed,
        data_wait_share: waited / elapsed,
    })
}

/// Validation loss and accuracy on `data`; `pace`: the epoch whose
/// validation this is, and its progress reports.
fn evaluate(
    net: &Net,
    run: &Run<'_>,
    data: &Arc<DatasetReader>,
    mut pace: Option<(u64, &mut Pace)>,
) -> Result<(f64, f64), String> {
    let device = net.vs.device();
    let step = Step {
        net,
        params: &[],
        scales: &[],
        loss: &run.cfg.loss,
        clip: None,
        bf16: run.bf16,
    };
    let mut tally = Tally::new(device);
    tch::no_grad(|| -> Result<(), String> {
        let loader = Loader::new(data.clone(), run.loader_config(0, false));
        for (i, b) in Feed::new(loader, device, run.layout).enumerate() {
            let b = b?;
            tally.add(&step.score(&b.x, &b.y, false), b.len, i as u64 + 1);
            if let Some((epoch, pace)) = pace.as_mut() {
                if let Some(p) = pace.batch_done(Phase::Val, *epoch, i as u64 + 1) {
                    emit(&WorkerEvent::Progress(p));
                }
            }
        }
        Ok(())
    })?;
    let (loss_sum, correct) = tally.totals();
    let n = tally.seen.max(1) as f64;
    Ok((loss_sum / n, correct as f64 / n))
}

fn write_outputs(
    spec: &TrainJob,
    s: &Setup,
    run: &Run<'_>,
    progress: &Progress,
    restored: Option<(f64, f64)>,
) -> Result<(), String> {
    let write = |name: &str, value: &serde_json::Value| {
        let p = spec.out.join(name);
        std::fs::write(&p, serde_json::to_vec_pretty(value).expect("json"))
            .map_err(|e| format!("failed to write `{}`: {e}", p.display()))
    };
    checkpoint::save_sorted(&s.net.vs, &spec.out.join("model.safetensors"))?;
    let config = ModelFolderConfig {
        model: s.net.model.clone(),
        loss: run.cfg.loss.clone(),
        classes: run.train.info.classes.clone(),
        data_kind: run.train.info.kind.clone(),
        data_shape: run.train.info.shape.clone(),
        eval_ops: eval_ops(&run.ops),
        source: s.source.to_owned(),
        frozen: s.frozen.iter().cloned().collect(),
    };
    write(
        "config.json",
        &serde_json::to_value(&config).expect("configs serialize"),
    )?;
    let history = EpochStats::stored(&progress.history);
    let best_epoch = progress.best.map(|(e, _)| e);
    write(
        "metrics.json",
        &serde_json::json!({
            "epochs": history,
            "best_epoch": best_epoch,
            "stopped_early": progress.stopped,
        }),
    )?;
    emit(&WorkerEvent::TrainResult(TrainResult {
        epochs: progress.epoch,
        last: progress.history.last().cloned(),
        best_epoch,
        restored_val: restored.map(|(val_loss, val_acc)| ValNumbers { val_loss, val_acc }),
        frozen: s.frozen.len(),
        trainable: s.params.len(),
        source: s.source.to_owned(),
    }));
    Ok(())
}
