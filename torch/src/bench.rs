//! `tuneflow-torch bench`: training and inference throughput of the stage
//! ResNet on random input, for the side-by-side comparison with the same
//! network in a PyTorch script (`scripts/bench_torch.py`). A training step
//! is the one `pretrain` runs per batch ([`crate::step::Step`]): forward,
//! softmax cross-entropy (or ArcFace), backward, SGD with momentum (this
//! project's optimizer). `precision`, `layout` and `optimizer` choose what
//! the stage would otherwise choose for itself.

use std::time::Instant;

use tch::nn::ModuleT;
use tch::{Kind, Tensor};
use tuneflow_stages::data::dataset::DatasetInfo;
use tuneflow_stages::formats::model::ModelConfig;
use tuneflow_stages::train::config::{LossConfig, OptimizerConfig, TrainConfig};

use crate::layout::Layout;
use crate::optim::{Optimizer, Updates};
use crate::step::{Step, Tally};
use crate::transfer::build_net;

/// What to measure.
#[derive(Debug, serde::Deserialize)]
pub struct BenchSpec {
    /// ResNet depth.
    pub depth: u32,
    /// ResNet width.
    pub width: i64,
    /// Input `[C, H, W]`.
    pub input: [i64; 3],
    /// Classes of the head.
    pub classes: i64,
    /// Batch size.
    pub batch: i64,
    /// Timed steps (after 3 warm-up steps).
    pub steps: u32,
    /// CPU threads (0 = libtorch's default).
    #[serde(default)]
    pub threads: i32,
    /// `cpu` or `cuda`.
    #[serde(default = "cpu")]
    pub device: tuneflow_stages::Device,
    /// `fp32` or `bf16` (autocast, on CUDA).
    #[serde(default = "fp32")]
    pub precision: String,
    /// `auto` (what a training stage picks), `contiguous` or
    /// `channels-last`.
    #[serde(default = "auto")]
    pub layout: String,
    /// `flat` (what a training stage uses) or `per-tensor`.
    #[serde(default = "flat")]
    pub optimizer: Updates,
    /// `softmax` or `arcface`.
    #[serde(default = "softmax")]
    pub loss: String,
}

fn fp32() -> String {
    "fp32".into()
}

fn auto() -> String {
    "auto".into()
}

fn flat() -> Updates {
    Updates::Flat
}

fn softmax() -> String {
    "softmax".into()
}

fn cpu() -> tuneflow_stages::Device {
    tuneflow_stages::Device::Cpu
}

/// The training config of the comparison: SGD with momentum 0.9 and
/// weight decay 5e-4, as `scripts/bench_torch.py` uses.
fn config(spec: &BenchSpec) -> Result<TrainConfig, String> {
    Ok(TrainConfig {
        model: ModelConfig {
            arch: "resnet".into(),
            depth: spec.depth,
            width: spec.width,
            embedding: 128,
            in_channels: spec.input[0],
            stem_stride: 1,
            pooling: "avg".into(),
        },
        loss: match spec.loss.as_str() {
            kind @ ("softmax" | "arcface") => LossConfig::with_defaults(kind),
            other => return Err(format!("unknown loss `{other}` (softmax or arcface)")),
        },
        optimizer: OptimizerConfig::Sgd {
            momentum: 0.9,
            nesterov: false,
            weight_decay: 5e-4,
        },
        lr: 0.01,
        schedule: serde_json::from_value(serde_json::json!({ "kind": "constant" }))
            .map_err(|e| e.to_string())?,
        warmup_epochs: 0,
        epochs: 1,
        batch: spec.batch as usize,
        frames: 0,
        clip_grad: None,
        early_stopping: None,
        precision: match spec.precision.as_str() {
            p @ ("fp32" | "bf16") => p.into(),
            other => return Err(format!("unknown precision `{other}` (fp32 or bf16)")),
        },
        transfer: None,
    })
}

/// Runs the measurement; returns samples per second for training and
/// inference.
pub fn bench(spec: &BenchSpec) -> Result<serde_json::Value, String> {
    if spec.threads > 0 {
        tch::set_num_threads(spec.threads);
    }
    let device = crate::train::device(spec.device);
    let [c, h, w] = spec.input;
    let cfg = config(spec)?;
    let bf16 = cfg.precision == "bf16";
    let layout = match spec.layout.as_str() {
        "auto" => Layout::auto(device, bf16)?,
        other => Layout::parse(other)?,
    };
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let info = DatasetInfo::new(
        "image",
        vec![c as u32, h as u32, w as u32],
        (0..spec.classes).map(|i| i.to_string()).collect(),
    );
    tch::manual_seed(0);
    let net = build_net(&cfg.model, &info, spec.classes, &cfg.loss, device)?;
    layout.apply(&net.vs);
    let params = net.vs.trainable_variables();
    let mut opt = Optimizer::with(spec.optimizer, cfg.optimizer.clone(), &params);
    let step = Step {
        net: &net,
        params: &params,
        scales: &[],
        loss: &cfg.loss,
        clip: None,
        bf16,
    };
    let x = layout.input(Tensor::randn([spec.batch, c, h, w], (Kind::Float, device)));
    let y = Tensor::randint(spec.classes, [spec.batch], (Kind::Int64, device));
    let m = measure(&step, &mut opt, (&x, &y), spec, cfg.lr)?;
    let samples = f64::from(spec.steps) * spec.batch as f64;
    Ok(serde_json::json!({
        "impl": "tuneflow",
        "train_samples_per_s": samples / m.train_s,
        "infer_samples_per_s": samples / m.infer_s,
        "threads": tch::get_num_threads(),
        "optimizer_share": m.opt_s / m.train_s,
        "params": params.iter().map(Tensor::numel).sum::<usize>(),
        "precision": cfg.precision,
        "layout": layout.name(),
        "optimizer": opt.updates(),
        "device": format!("{device:?}"),
        "forward_kind": format!("{:?}", m.forward_kind),
        "loss_start": m.loss_start,
        "loss_end": m.loss_end,
    }))
}

/// What [`measure`] found.
struct Measured {
    train_s: f64,
    infer_s: f64,
    opt_s: f64,
    loss_start: f64,
    loss_end: f64,
    forward_kind: Kind,
}

/// Times `spec.steps` training steps (after 3 warm-up steps), the
/// optimizer alone and inference, on the batch `(x, y)` at rate `lr`.
fn measure(
    step: &Step<'_>,
    opt: &mut Optimizer,
    (x, y): (&Tensor, &Tensor),
    spec: &BenchSpec,
    lr: f64,
) -> Result<Measured, String> {
    let device = step.net.vs.device();
    let mut tally = Tally::new(device);
    let mut train = |opt: &mut Optimizer, n: u32| -> Result<f64, String> {
        let t = Instant::now();
        for b in 0..n {
            let scored = step.run(opt, (x, y), lr, |_| Ok(()))?;
            tally.add(&scored, spec.batch as usize, u64::from(b));
        }
        tally.check(0)?;
        Ok(t.elapsed().as_secs_f64())
    };
    let infer = |n: u32| {
        let t = Instant::now();
        tch::no_grad(|| {
            for _ in 0..n {
                let scored = step.score(x, y, false);
                let _ = scored.loss.double_value(&[]);
            }
        });
        t.elapsed().as_secs_f64()
    };
    // What autocast makes of the forward pass, and the loss on the batch
    // before and after training on it (it must fall: the steps learn).
    let forward_kind = tch::no_grad(|| {
        crate::amp::with_precision(step.bf16, device, || {
            step.net.backbone.forward_t(x, false).kind()
        })
    });
    let loss_now = || tch::no_grad(|| step.score(x, y, true).loss.double_value(&[]));
    let loss_start = loss_now();
    train(opt, 3)?;
    infer(3);
    let train_s = train(opt, spec.steps)?;
    let loss_end = loss_now();
    let opt_s = optimizer_seconds(opt, step.params, spec.steps);
    let infer_s = infer(spec.steps);
    Ok(Measured {
        train_s,
        infer_s,
        opt_s,
        loss_start,
        loss_end,
        forward_kind,
    })
}

/// Seconds `steps` optimizer updates take on their own (the gradients of
/// the last step stay; a read of one parameter waits for the device).
fn optimizer_seconds(opt: &mut Optimizer, params: &[Tensor], steps: u32) -> f64 {
    let sync = || params.first().map(|p| p.double_value(&vec![0; p.dim()]));
    sync();
    let t = Instant::now();
    for _ in 0..steps {
        opt.step(params, 1e-6, &[]);
    }
    sync();
    t.elapsed().as_secs_f64()
}
