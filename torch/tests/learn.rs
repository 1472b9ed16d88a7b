//! A tiny ResNet learns a separable toy problem through the library's own
//! pieces (network, head, optimizer), and its weights survive a
//! safetensors round trip exactly.

use tch::nn::ModuleT;
use tch::{Device, Kind, Tensor};
use tuneflow_stages::data::dataset::DatasetInfo;
use tuneflow_stages::formats::model::ModelConfig;
use tuneflow_stages::train::config::{LossConfig, OptimizerConfig, TrainConfig};
use tuneflow_torch::checkpoint::{load_into, save_sorted};
use tuneflow_torch::optim::Optimizer;
use tuneflow_torch::transfer::build_net;

fn config(loss: &str) -> TrainConfig {
    TrainConfig {
        model: ModelConfig {
            arch: "resnet".into(),
            depth: 10,
            width: 4,
            embedding: 8,
            in_channels: 1,
            stem_stride: 1,
            pooling: "avg".into(),
        },
        loss: LossConfig::with_defaults(loss),
        optimizer: OptimizerConfig::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        },
        lr: 0.01,
        schedule: serde_json::from_value(serde_json::json!({ "kind": "constant" })).unwrap(),
        warmup_epochs: 0,
        epochs: 1,
        batch: 32,
        frames: 0,
        clip_grad: None,
        early_stopping: None,
        precision: "fp32".into(),
        transfer: None,
    }
}

/// Class 0: a bright left half; class 1: a bright right half; plus noise.
fn toy(n: i64, seed: i64) -> (Tensor, Tensor) {
    tch::manual_seed(seed);
    let y = Tensor::randint(2, [n], (Kind::Int64, Device::Cpu));
    let left = Tensor::cat(
        &[
            Tensor::ones([1, 1, 8, 4], (Kind::Float, Device::Cpu)),
            Tensor::zeros([1, 1, 8, 4], (Kind::Float, Device::Cpu)),
        ],
        3,
    );
    let right = left.flip([3]);
    let yf = y.to_kind(Kind::Float).view([n, 1, 1, 1]);
    let x = &left * (1.0 - &yf) + &right * &yf;
    (
        x + Tensor::randn([n, 1, 8, 8], (Kind::Float, Device::Cpu)) * 0.5,
        y,
    )
}

fn accuracy_after_training(loss: &str) -> f64 {
    let cfg = config(loss);
    let info = DatasetInfo::new("image", vec![1, 8, 8], vec!["l".into(), "r".into()]);
    tch::manual_seed(1);
    let net = build_net(&cfg.model, &info, 2, &cfg.loss, Device::Cpu).unwrap();
    let params: Vec<Tensor> = net.vs.trainable_variables();
    let mut opt = Optimizer::new(cfg.optimizer.clone(), &params);
    for step in 0..60 {
        let (x, y) = toy(32, 100 + step);
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
        opt.step(&params, cfg.lr, &[]);
    }
    let (x, y) = toy(400, 7);
    let logits = tch::no_grad(|| net.head.logits(&net.backbone.forward_t(&x, false)).unwrap());
    logits
        .argmax(-1, false)
        .eq_tensor(&y)
        .to_kind(Kind::Float)
        .mean(Kind::Float)
        .double_value(&[])
}

#[test]
fn a_tiny_resnet_separates_the_toy_classes() {
    for loss in ["softmax", "arcface", "cosface"] {
        let acc = accuracy_after_training(loss);
        assert!(acc >= 0.95, "{loss}: held-out accuracy {acc} < 0.95");
    }
}

#[test]
fn weights_round_trip_through_safetensors_exactly() {
    let cfg = config("softmax");
    let info = DatasetInfo::new("image", vec![1, 8, 8], vec!["a".into(), "b".into()]);
    let a = build_net(&cfg.model, &info, 2, &cfg.loss, Device::Cpu).unwrap();
    let b = build_net(&cfg.model, &info, 2, &cfg.loss, Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    save_sorted(&a.vs, &path).unwrap();
    load_into(&b.vs, &path).unwrap();
    let (va, vb) = (a.vs.variables(), b.vs.variables());
    assert_eq!(va.len(), vb.len());
    for (name, t) in &va {
        assert!(t.equal(&vb[name]), "{name} differs after loading");
    }
}
