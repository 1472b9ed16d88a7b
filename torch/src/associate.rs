//! The `associate` kind in the worker: two projection heads (one per
//! modality) map each modality's embeddings into a joint space where a
//! voice and a face of the same identity are near. A batch holds `batch`
//! training identities, each with one row of each modality drawn at
//! random; the loss is a symmetric InfoNCE over the batch (`contrastive`)
//! or a hardest-negative triplet loss in both directions (`triplet`).
//! Every random choice derives from (seed, epoch, batch), and every epoch
//! is checkpointed, so a resumed run is bit-identical on CPU.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};
use tuneflow_stages::formats::embeddings::{load, Embeddings};
use tuneflow_stages::rng::Rng;
use tuneflow_stages::worker::{
    AssociateConfig, AssociateJob, EpochStats, TrainResult, WorkerEvent,
};

use crate::checkpoint::{self, Progress};
use crate::extract::f32_bytes;
use crate::optim::{Optimizer, OptimizerConfig};
use crate::train::{device, emit};

/// One modality: its rows (on the device) and each identity's row numbers.
struct Side {
    x: Tensor,
    rows: BTreeMap<String, Vec<i64>>,
}

impl Side {
    fn new(e: &Embeddings, device: Device) -> Self {
        let mut rows: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for (r, &l) in e.meta.labels.iter().enumerate() {
            let class = e.meta.classes.get(l as usize).cloned().unwrap_or_default();
            rows.entry(class).or_default().push(r as i64);
        }
        let x = Tensor::from_slice(&e.matrix)
            .reshape([e.meta.count as i64, e.meta.dim as i64])
            .to(device);
        Self { x, rows }
    }

    fn rows_of(&self, class: &str) -> Result<&[i64], String> {
        self.rows
            .get(class)
            .map(Vec::as_slice)
            .filter(|r| !r.is_empty())
            .ok_or_else(|| format!("no embeddings of class `{class}`"))
    }
}

/// The two heads.
struct Heads {
    vs: nn::VarStore,
    a: nn::Sequential,
    b: nn::Sequential,
}

fn head(p: nn::Path<'_>, input: i64, cfg: &AssociateConfig) -> nn::Sequential {
    let dim = cfg.dim as i64;
    if cfg.hidden == 0 {
        return nn::seq().add(nn::linear(&p / "out", input, dim, Default::default()));
    }
    let hidden = cfg.hidden as i64;
    nn::seq()
        .add(nn::linear(&p / "hidden", input, hidden, Default::default()))
        .add_fn(Tensor::relu)
        .add(nn::linear(&p / "out", hidden, dim, Default::default()))
}

fn unit(x: &Tensor) -> Tensor {
    x / x.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12)
}

/// The batch loss and how many of its rows pick their own identity first.
fn loss(za: &Tensor, zb: &Tensor, cfg: &AssociateConfig) -> (Tensor, i64) {
    let n = za.size()[0];
    let sim = za.matmul(&zb.tr());
    let target = Tensor::arange(n, (Kind::Int64, za.device()));
    let correct = sim
        .argmax(1, false)
        .eq_tensor(&target)
        .sum(Kind::Int64)
        .int64_value(&[]);
    let value = if cfg.loss == "triplet" {
        let pos = sim.diag(0);
        let masked = &sim - Tensor::eye(n, (Kind::Float, za.device())) * 4.0;
        let a2b = (cfg.margin - &pos + masked.amax([1], false)).relu();
        let b2a = (cfg.margin - &pos + masked.amax([0], false)).relu();
        (a2b.mean(Kind::Float) + b2a.mean(Kind::Float)) / 2.0
    } else {
        let logits = sim / cfg.temperature;
        let a2b = logits.cross_entropy_for_logits(&target);
        let b2a = logits.tr().cross_entropy_for_logits(&target);
        (a2b + b2a) / 2.0
    };
    (value, correct)
}

/// One row of each modality per identity, drawn from `rng`.
fn draw(
    a: &Side,
    b: &Side,
    ids: &[&(String, String)],
    rng: &mut Rng,
) -> Result<(Tensor, Tensor), String> {
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    for (ca, cb) in ids {
        let rows = a.rows_of(ca)?;
        ra.push(rows[rng.below(rows.len() as u64) as usize]);
        let rows = b.rows_of(cb)?;
        rb.push(rows[rng.below(rows.len() as u64) as usize]);
    }
    let dev = a.x.device();
    Ok((
        a.x.index_select(0, &Tensor::from_slice(&ra).to(dev)),
        b.x.index_select(0, &Tensor::from_slice(&rb).to(dev)),
    ))
}

/// Runs `associate` for `spec`.
pub fn run(spec: &AssociateJob) -> Result<(), String> {
    let cfg = &spec.config;
    let device = device(spec.device);
    let ea = load(&spec.a, "a")?;
    let eb = load(&spec.b, "b")?;
    let (a, b) = (Side::new(&ea, device), Side::new(&eb, device));
    tch::manual_seed(spec.seed);
    let vs = nn::VarStore::new(device);
    let heads = Heads {
        a: head(vs.root() / "a", ea.meta.dim as i64, cfg),
        b: head(vs.root() / "b", eb.meta.dim as i64, cfg),
        vs,
    };
    let params: Vec<Tensor> = heads
        .vs
        .variables()
        .into_iter()
        .collect::<BTreeMap<_, _>>()
        .into_values()
        .collect();
    let mut opt = Optimizer::flat(
        OptimizerConfig::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: cfg.weight_decay,
        },
        &params,
    );
    let mut progress = Progress::default();
    checkpoint::load(&spec.checkpoints, &heads.vs, &mut opt, &mut progress)?;
    if progress.epoch > 0 {
        emit(&WorkerEvent::Resumed {
            epoch: progress.epoch,
            epochs: cfg.epochs,
        });
    }
    for epoch in progress.epoch + 1..=cfg.epochs {
        let mut stats = train_epoch(spec, &heads, &a, &b, &params, &mut opt, epoch)?;
        let (val_loss, val_acc) = validate(&heads, &a, &b, &spec.dev, cfg)?;
        stats.val_loss = Some(val_loss);
        stats.val_acc = Some(val_acc);
        emit(&WorkerEvent::Epoch {
            stats: stats.clone(),
            epochs: cfg.epochs,
            best_epoch: None,
        });
        progress.epoch = epoch;
        progress.history.push(stats);
        checkpoint::save(&spec.checkpoints, &heads.vs, &opt, &progress, false)?;
    }
    write_outputs(spec, &heads, &a, &b, &progress, params.len())
}

fn train_epoch(
    spec: &AssociateJob,
    heads: &Heads,
    a: &Side,
    b: &Side,
    params: &[Tensor],
    opt: &mut Optimizer,
    epoch: u64,
) -> Result<EpochStats, String> {
    let cfg = &spec.config;
    let started = Instant::now();
    let mut order: Vec<&(String, String)> = spec.train.iter().collect();
    Rng::from_parts(&[spec.seed as u64, epoch]).shuffle(&mut order);
    let (mut loss_sum, mut correct, mut seen) = (0.0, 0i64, 0usize);
    for (k, ids) in order.chunks(cfg.batch.max(2)).enumerate() {
        if ids.len() < 2 {
            continue;
        }
        let mut rng = Rng::from_parts(&[spec.seed as u64, epoch, k as u64 + 1]);
        let (xa, xb) = draw(a, b, ids, &mut rng)?;
        let (za, zb) = (unit(&heads.a.forward(&xa)), unit(&heads.b.forward(&xb)));
        let (value, right) = loss(&za, &zb, cfg);
        let v = value.double_value(&[]);
        if !v.is_finite() {
            return Err(format!("the loss is {v} at epoch {epoch}, batch {}", k + 1));
        }
        opt.zero_grad(params);
        value.backward();
        opt.step(params, cfg.lr, &[]);
        loss_sum += v * ids.len() as f64;
        correct += right;
        seen += ids.len();
    }
    let n = seen.max(1) as f64;
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    Ok(EpochStats {
        epoch,
        train_loss: loss_sum / n,
        train_acc: correct as f64 / n,
        val_loss: None,
        val_acc: None,
        lr: cfg.lr,
        samples_per_s: seen as f64 / elapsed,
        data_wait_share: 0.0,
    })
}

/// The loss and accuracy of every `a` row of the development identities
/// against the mean projected `b` of each of them.
fn validate(
    heads: &Heads,
    a: &Side,
    b: &Side,
    dev: &[(String, String)],
    cfg: &AssociateConfig,
) -> Result<(f64, f64), String> {
    if dev.len() < 2 {
        return Ok((0.0, 0.0));
    }
    tch::no_grad(|| {
        let device = a.x.device();
        let (mut rows, mut labels, mut centres) = (Vec::new(), Vec::new(), Vec::new());
        for (k, (ca, cb)) in dev.iter().enumerate() {
            for &r in a.rows_of(ca)? {
                rows.push(r);
                labels.push(k as i64);
            }
            let rb = Tensor::from_slice(b.rows_of(cb)?).to(device);
            let zb = unit(&heads.b.forward(&b.x.index_select(0, &rb)));
            centres.push(unit(&zb.mean_dim(0, true, Kind::Float)));
        }
        let za = unit(
            &heads
                .a
                .forward(&a.x.index_select(0, &Tensor::from_slice(&rows).to(device))),
        );
        let logits = za.matmul(&Tensor::cat(&centres, 0).tr());
        let target = Tensor::from_slice(&labels).to(device);
        let scale = if cfg.loss == "triplet" {
            1.0
        } else {
            1.0 / cfg.temperature
        };
        let l = (&logits * scale)
            .cross_entropy_for_logits(&target)
            .double_value(&[]);
        let acc = logits
            .argmax(1, false)
            .eq_tensor(&target)
            .to_kind(Kind::Float)
            .mean(Kind::Float)
            .double_value(&[]);
        Ok((l, acc))
    })
}

fn write_outputs(
    spec: &AssociateJob,
    heads: &Heads,
    a: &Side,
    b: &Side,
    progress: &Progress,
    trainable: usize,
) -> Result<(), String> {
    let out: &Path = &spec.out;
    let put = |name: &str, bytes: &[u8]| {
        std::fs::write(out.join(name), bytes).map_err(|e| format!("failed to write `{name}`: {e}"))
    };
    let (za, zb) = tch::no_grad(|| (unit(&heads.a.forward(&a.x)), unit(&heads.b.forward(&b.x))));
    put("a.f32", &f32_bytes(&za)?)?;
    put("b.f32", &f32_bytes(&zb)?)?;
    checkpoint::save_sorted(&heads.vs, &out.join("heads.safetensors"))?;
    let history = EpochStats::stored(&progress.history);
    put(
        "metrics.json",
        &serde_json::to_vec_pretty(
            &serde_json::json!({ "epochs": history, "dim": spec.config.dim }),
        )
        .expect("json"),
    )?;
    emit(&WorkerEvent::TrainResult(TrainResult {
        epochs: progress.epoch,
        last: progress.history.last().cloned(),
        best_epoch: None,
        restored_val: None,
        frozen: 0,
        trainable,
        source: "scratch".into(),
    }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tuneflow_stages::formats::embeddings::EmbeddingsMeta;
    use tuneflow_stages::worker::Files;

    /// Embeddings of `n` classes, 3 rows each, in 4 dimensions; the class
    /// `c` sits near a direction that depends on `c * twist`.
    fn write_embeddings(dir: &Path, n: usize, twist: f64) -> Files {
        std::fs::create_dir_all(dir).unwrap();
        let mut rng = Rng::new(9);
        let (mut rows, mut labels) = (Vec::new(), Vec::new());
        for c in 0..n {
            for _ in 0..3 {
                let t = c as f64 * twist;
                for v in [t.cos(), t.sin(), (2.0 * t).cos(), rng.next_f64() * 0.1] {
                    rows.extend_from_slice(&(v as f32).to_le_bytes());
                }
                labels.push(c as u32);
            }
        }
        let meta = EmbeddingsMeta {
            count: labels.len(),
            dim: 4,
            ids: (0..labels.len()).map(|i| format!("i{i}")).collect(),
            indices: (0..labels.len() as u32).collect(),
            labels,
            classes: (0..n).map(|c| format!("c{c}")).collect(),
            head_classes: None,
            normalized: false,
        };
        std::fs::write(dir.join("embeddings.f32"), rows).unwrap();
        std::fs::write(dir.join("items.json"), serde_json::to_vec(&meta).unwrap()).unwrap();
        ["embeddings.f32", "items.json"]
            .iter()
            .map(|f| ((*f).to_owned(), dir.join(f)))
            .collect()
    }

    fn job(root: &Path, run: &str, epochs: u64, loss: &str) -> AssociateJob {
        let ids: Vec<(String, String)> =
            (0..8).map(|c| (format!("c{c}"), format!("c{c}"))).collect();
        let out = root.join(run).join("out");
        std::fs::create_dir_all(&out).unwrap();
        AssociateJob {
            stage: "assoc".into(),
            config: AssociateConfig {
                dim: 3,
                hidden: 5,
                loss: loss.into(),
                temperature: 0.2,
                margin: 0.2,
                epochs,
                batch: 3,
                lr: 0.01,
                weight_decay: 0.01,
            },
            a: write_embeddings(&root.join("a"), 8, 0.7),
            b: write_embeddings(&root.join("b"), 8, 0.9),
            train: ids[..6].to_vec(),
            dev: ids[6..].to_vec(),
            out,
            checkpoints: root.join(run).join("ckpt"),
            seed: 5,
            device: tuneflow_stages::Device::Cpu,
        }
    }

    fn outputs(j: &AssociateJob) -> Vec<Vec<u8>> {
        ["heads.safetensors", "a.f32", "b.f32", "metrics.json"]
            .iter()
            .map(|f| std::fs::read(j.out.join(f)).unwrap())
            .collect()
    }

    #[test]
    fn a_resumed_run_is_bit_identical_to_an_uninterrupted_one() {
        let _rng = crate::torch_rng();
        for loss in ["contrastive", "triplet"] {
            let root = tempfile::tempdir().unwrap();
            let whole = job(root.path(), "whole", 6, loss);
            run(&whole).unwrap();
            // Three epochs, then the same checkpoints with six: it resumes
            // at epoch 4 (the learning rate is constant).
            let first = job(root.path(), "split", 3, loss);
            run(&first).unwrap();
            let rest = job(root.path(), "split", 6, loss);
            run(&rest).unwrap();
            assert_eq!(outputs(&rest), outputs(&whole), "{loss}");
            let history: serde_json::Value =
                serde_json::from_slice(&std::fs::read(rest.out.join("metrics.json")).unwrap())
                    .unwrap();
            assert_eq!(history["epochs"].as_array().unwrap().len(), 6);
        }
    }
}
