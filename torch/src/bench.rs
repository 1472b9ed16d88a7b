//! `tuneflow-torch bench`: training and inference throughput of the stage
//! ResNet on random input, for the side-by-side comparison with the same
//! network in a PyTorch script (`scripts/bench_torch.py`). A training step
//! is what `pretrain` does per batch: forward, softmax cross-entropy,
//! backward, SGD with momentum (this project's optimizer).

use std::time::Instant;

use tch::nn::ModuleT;
use tch::{Kind, Tensor};
use tuneflow_stages::data::dataset::DatasetInfo;
use tuneflow_stages::formats::model::ModelConfig;
use tuneflow_stages::train::config::{LossConfig, OptimizerConfig, TrainConfig};

use crate::optim::Optimizer;
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
        loss: LossConfig::softmax(),
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
        precision: "fp32".into(),
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
    let info = DatasetInfo::new(
        "image",
        vec![c as u32, h as u32, w as u32],
        (0..spec.classes).map(|i| i.to_string()).collect(),
    );
    tch::manual_seed(0);
    let net = build_net(&cfg.model, &info, spec.classes, &cfg.loss, device)?;
    let params = net.vs.trainable_variables();
    let mut opt = Optimizer::new(cfg.optimizer.clone(), &params);
    let x = Tensor::randn([spec.batch, c, h, w], (Kind::Float, device));
    let y = Tensor::randint(spec.classes, [spec.batch], (Kind::Int64, device));
    // Returns the seconds the optimizer took.
    let step = |opt: &mut Optimizer| {
        let scored = net
            .head
            .score(&net.backbone.forward_t(&x, true), &y, &cfg.loss);
        for p in &params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        scored.loss.backward();
        let t = Instant::now();
        opt.step(&params, cfg.lr, &[]);
        let took = t.elapsed().as_secs_f64();
        scored.loss.double_value(&[]);
        took
    };
    let infer = || {
        tch::no_grad(|| {
            let emb = net.backbone.forward_t(&x, false);
            net.head.logits(&emb).map(|l| l.double_value(&[0, 0]))
        })
    };
    for _ in 0..3 {
        step(&mut opt);
        infer();
    }
    let t = Instant::now();
    let mut opt_time = 0.0;
    for _ in 0..spec.steps {
        opt_time += step(&mut opt);
    }
    let train = t.elapsed().as_secs_f64();
    let optimizer_share = opt_time / train;
    let t = Instant::now();
    for _ in 0..spec.steps {
        infer();
    }
    let inference = t.elapsed().as_secs_f64();
    let samples = f64::from(spec.steps) * spec.batch as f64;
    Ok(serde_json::json!({
        "impl": "tuneflow",
        "train_samples_per_s": samples / train,
        "infer_samples_per_s": samples / inference,
        "threads": tch::get_num_threads(),
        "optimizer_share": optimizer_share,
        "params": params.iter().map(Tensor::numel).sum::<usize>(),
    }))
}
