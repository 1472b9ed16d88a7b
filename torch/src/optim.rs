//! Optimizers implemented over tensors in this project, so their whole
//! state (momentum buffers, Adam moments, step count) is a list of named
//! tensors that a checkpoint can save and restore exactly. Semantics follow
//! `torch.optim.SGD` and `torch.optim.AdamW`.

use tch::{no_grad, Tensor};

use crate::flat::Flat;
pub use tuneflow_stages::train::config::OptimizerConfig;

/// An optimizer over a fixed list of parameters.
pub struct Optimizer {
    config: OptimizerConfig,
    /// Per parameter: SGD momentum buffer, or Adam's (m, v) (views into
    /// `flat_buffers` when the parameters are flat).
    buffers: Vec<Vec<Tensor>>,
    /// The parameters' flat storage, for [`Optimizer::flat`].
    flat: Option<Flat>,
    /// The flat state buffers `buffers` view.
    flat_buffers: Vec<Tensor>,
    /// Steps taken.
    pub step: u64,
}

/// How an optimizer touches the parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Updates {
    /// A few kernels per parameter.
    PerTensor,
    /// A few kernels per learning-rate group, over flat buffers.
    Flat,
}

impl Optimizer {
    /// A fresh optimizer for `params`, updating them one by one.
    pub fn new(config: OptimizerConfig, params: &[Tensor]) -> Self {
        let buffers = params
            .iter()
            .map(|p| (0..slots(&config)).map(|_| p.zeros_like()).collect())
            .collect();
        Self {
            config,
            buffers,
            flat: None,
            flat_buffers: Vec::new(),
            step: 0,
        }
    }

    /// A fresh optimizer that moves `params` into one flat buffer (see
    /// [`crate::flat`]); per tensor when they cannot share one.
    pub fn flat(config: OptimizerConfig, params: &[Tensor]) -> Self {
        let Some(flat) = Flat::adopt(params) else {
            return Self::new(config, params);
        };
        let (flat_buffers, views): (Vec<Tensor>, Vec<Vec<Tensor>>) =
            (0..slots(&config)).map(|_| flat.zeros_like()).unzip();
        let buffers = (0..params.len())
            .map(|i| views.iter().map(|v| v[i].shallow_clone()).collect())
            .collect();
        Self {
            config,
            buffers,
            flat: Some(flat),
            flat_buffers,
            step: 0,
        }
    }

    /// `new` or `flat`.
    pub fn with(updates: Updates, config: OptimizerConfig, params: &[Tensor]) -> Self {
        match updates {
            Updates::PerTensor => Self::new(config, params),
            Updates::Flat => Self::flat(config, params),
        }
    }

    /// How this optimizer updates.
    pub fn updates(&self) -> Updates {
        if self.flat.is_some() {
            Updates::Flat
        } else {
            Updates::PerTensor
        }
    }

    /// Zeroes the gradients of `params` (one kernel when they are flat).
    pub fn zero_grad(&self, params: &[Tensor]) {
        if self.flat.as_ref().is_some_and(Flat::zero_grads) {
            return;
        }
        for p in params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// One update of every parameter that has a gradient, at rate `lr`.
    /// `scale` multiplies the rate per parameter (per-group learning rates).
    pub fn step(&mut self, params: &[Tensor], lr: f64, scale: &[f64]) {
        self.step += 1;
        let t = self.step;
        no_grad(|| {
            if let Some(flat) = &mut self.flat {
                if let Some((p, g)) = flat.ready(params) {
                    let (p, g) = (p.shallow_clone(), g.shallow_clone());
                    for (offset, len, first) in flat.runs(scale) {
                        let lr = lr * scale.get(first).copied().unwrap_or(1.0);
                        let mut bufs: Vec<Tensor> = self
                            .flat_buffers
                            .iter()
                            .map(|b| b.narrow(0, offset, len))
                            .collect();
                        let mut p = p.narrow(0, offset, len);
                        update(
                            &self.config,
                            &mut p,
                            &g.narrow(0, offset, len),
                            &mut bufs,
                            t,
                            lr,
                        );
                    }
                    return;
                }
            }
            for (i, p) in params.iter().enumerate() {
                let grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                let lr = lr * scale.get(i).copied().unwrap_or(1.0);
                update(
                    &self.config,
                    &mut p.shallow_clone(),
                    &grad,
                    &mut self.buffers[i],
                    t,
                    lr,
                );
            }
        });
    }

    /// The state as named tensors, for checkpoints (`buf.I.J`, `step`), in
    /// the standard layout whatever the parameters' strides.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = self
            .buffers
            .iter()
            .enumerate()
            .flat_map(|(i, bufs)| {
                bufs.iter()
                    .enumerate()
                    .map(move |(j, b)| (format!("buf.{i}.{j}"), b.contiguous()))
            })
            .collect();
        out.push(("step".into(), Tensor::from_slice(&[self.step as i64])));
        out
    }

    /// Restores state saved by [`Optimizer::state`].
    pub fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<(), String> {
        for (name, t) in state {
            if name == "step" {
                self.step = t.int64_value(&[0]) as u64;
                continue;
            }
            let mut parts = name
                .strip_prefix("buf.")
                .unwrap_or("")
                .split('.')
                .map(str::parse::<usize>);
            let (Some(Ok(i)), Some(Ok(j))) = (parts.next(), parts.next()) else {
                return Err(format!("unexpected optimizer state `{name}`"));
            };
            let slot = self
                .buffers
                .get_mut(i)
                .and_then(|b| b.get_mut(j))
                .ok_or_else(|| format!("optimizer state `{name}` does not fit the model"))?;
            no_grad(|| slot.copy_(t));
        }
        Ok(())
    }
}

/// State tensors per parameter: SGD's momentum, or Adam's two moments.
fn slots(config: &OptimizerConfig) -> usize {
    match config {
        OptimizerConfig::Sgd { .. } => 1,
        OptimizerConfig::AdamW { .. } => 2,
    }
}

/// One update of `p` (a parameter, or a flat run of them) at step `t`.
fn update(
    config: &OptimizerConfig,
    p: &mut Tensor,
    grad: &Tensor,
    bufs: &mut [Tensor],
    t: u64,
    lr: f64,
) {
    match config {
        OptimizerConfig::Sgd {
            momentum,
            nesterov,
            weight_decay,
        } => {
            sgd_update(
                p,
                grad,
                &mut bufs[0],
                t == 1,
                lr,
                (*momentum, *nesterov, *weight_decay),
            );
        }
        OptimizerConfig::AdamW {
            beta1,
            beta2,
            eps,
            weight_decay,
        } => {
            let _ = p.g_mul_scalar_(1.0 - lr * weight_decay);
            let (m, rest) = bufs.split_at_mut(1);
            let _ = m[0].lerp_(grad, 1.0 - beta1);
            let _ = rest[0]
                .g_mul_scalar_(*beta2)
                .addcmul_(&(grad * (1.0 - beta2)), grad);
            let bias1 = 1.0 - beta1.powi(t as i32);
            let bias2 = 1.0 - beta2.powi(t as i32);
            let denom = (rest[0].sqrt() / bias2.sqrt()).g_add_scalar_(*eps);
            let _ = p.addcdiv_(&(&m[0] * (-lr / bias1)), &denom);
        }
    }
}

/// One SGD update, in place and without temporaries (this runs once per
/// parameter per step, so dispatches and allocations show up in step
/// time). `grad` itself is left as it was, as in PyTorch: weight decay and
/// Nesterov work on one temporary. Scalars go in as 0-dim tensors of the
/// parameter's dtype, as PyTorch's `alpha` arguments are converted.
fn sgd_update(
    p: &mut Tensor,
    grad: &Tensor,
    buf: &mut Tensor,
    first: bool,
    lr: f64,
    (momentum, nesterov, weight_decay): (f64, bool, f64),
) {
    let scalar = |v: f64| Tensor::from(v).to_kind(p.kind());
    let mut g = if weight_decay != 0.0 {
        let mut g = &*p * weight_decay;
        let _ = g.g_add_(grad);
        g
    } else if nesterov {
        grad.copy()
    } else {
        grad.shallow_clone()
    };
    let direction = if momentum != 0.0 {
        if first {
            buf.copy_(&g);
        } else {
            let _ = buf.g_mul_scalar_(momentum).g_add_(&g);
        }
        if nesterov {
            let _ = g.addcmul_(buf, &scalar(momentum));
            g
        } else {
            buf.shallow_clone()
        }
    } else {
        g
    };
    let _ = p.addcmul_(&direction, &scalar(-lr));
}

/// Scales gradients so their global L2 norm is at most `max_norm`; returns
/// the norm before clipping. The per-parameter sums of squares come to the
/// host in one copy (one device sync, not one per parameter) and are added
/// there in parameter order, as before.
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64) -> f64 {
    let sums: Vec<Tensor> = params
        .iter()
        .map(|p| p.grad())
        .filter(Tensor::defined)
        .map(|g| g.square().sum(tch::Kind::Double))
        .collect();
    if sums.is_empty() {
        return 0.0;
    }
    let sums =
        Vec::<f64>::try_from(Tensor::stack(&sums, 0).to(tch::Device::Cpu)).expect("f64 sums");
    let total = sums.iter().sum::<f64>().sqrt();
    if total > max_norm {
        let factor = max_norm / (total + 1e-6);
        no_grad(|| {
            for p in params {
                let mut g = p.grad();
                if g.defined() {
                    let _ = g.g_mul_scalar_(factor);
                }
            }
        });
    }
    total
}

/// [`clip_grad_norm`] without reading anything back: the norm and the
/// factor `min(1, max_norm / (norm + 1e-6))` stay on the device and every
/// gradient is multiplied by it (by 1 when within the limit), as PyTorch's
/// `clip_grad_norm_` does. For CUDA, where a read-back waits for the GPU;
/// on CPU `clip_grad_norm` keeps the results what they were.
pub fn clip_grad_norm_on_device(params: &[Tensor], max_norm: f64) {
    let grads: Vec<Tensor> = params
        .iter()
        .map(Tensor::grad)
        .filter(Tensor::defined)
        .collect();
    if grads.is_empty() {
        return;
    }
    no_grad(|| {
        let sums: Vec<Tensor> = grads
            .iter()
            .map(|g| g.square().sum(tch::Kind::Double))
            .collect();
        let total = Tensor::stack(&sums, 0).sum(tch::Kind::Double).sqrt();
        let factor = (total.g_add_scalar(1e-6).reciprocal() * max_norm)
            .clamp_max(1.0)
            .to_kind(grads[0].kind());
        for g in &grads {
            let _ = g.shallow_clone().g_mul_(&factor);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parameter with a fixed gradient: loss = sum(w * c) gives grad = c.
    fn param_with_grad(w: &[f64], c: &[f64]) -> Tensor {
        let p = Tensor::from_slice(w).set_requires_grad(true);
        (&p * Tensor::from_slice(c))
            .sum(tch::Kind::Double)
            .backward();
        p
    }

    fn values(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t.detach()).unwrap()
    }

    fn close(a: &[f64], b: &[f64]) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-12, "{a:?} != {b:?}");
        }
    }

    #[test]
    fn sgd_momentum_nesterov_and_weight_decay_match_the_formula() {
        let _rng = crate::torch_rng();
        let (w, g, lr, mu, wd) = (1.0, 0.5, 0.1, 0.9, 0.01);
        let p = param_with_grad(&[w], &[g]);
        let mut opt = Optimizer::new(
            OptimizerConfig::Sgd {
                momentum: mu,
                nesterov: true,
                weight_decay: wd,
            },
            &[p.shallow_clone()],
        );
        opt.step(&[p.shallow_clone()], lr, &[]);
        // Step 1: d = g + wd w; buf = d; update = d + mu buf.
        let d1 = g + wd * w;
        let w1 = w - lr * (d1 + mu * d1);
        close(&values(&p), &[w1]);
        opt.step(&[p.shallow_clone()], lr, &[]);
        let d2 = g + wd * w1;
        let buf2 = mu * d1 + d2;
        close(&values(&p), &[w1 - lr * (d2 + mu * buf2)]);
    }

    #[test]
    fn adamw_matches_the_formula_and_state_round_trips() {
        let _rng = crate::torch_rng();
        let (w, g, lr, b1, b2, eps, wd) = (1.0, 0.5, 0.01, 0.9, 0.999, 1e-8, 0.1);
        let p = param_with_grad(&[w], &[g]);
        let config = OptimizerConfig::AdamW {
            beta1: b1,
            beta2: b2,
            eps,
            weight_decay: wd,
        };
        let mut opt = Optimizer::new(config.clone(), &[p.shallow_clone()]);
        opt.step(&[p.shallow_clone()], lr, &[]);
        let m = (1.0 - b1) * g;
        let v = (1.0 - b2) * g * g;
        let mhat = m / (1.0 - b1);
        let vhat = v / (1.0 - b2);
        let w1 = w * (1.0 - lr * wd) - lr * mhat / (vhat.sqrt() + eps);
        close(&values(&p), &[w1]);
        let mut restored = Optimizer::new(config, &[p.shallow_clone()]);
        restored.load_state(&opt.state()).unwrap();
        assert_eq!(restored.step, 1);
        close(&values(&restored.buffers[0][0]), &[m]);
        close(&values(&restored.buffers[0][1]), &[v]);
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let _rng = crate::torch_rng();
        // The device version: same factor, nothing read back.
        let q = param_with_grad(&[0.0, 0.0], &[3.0, 4.0]);
        clip_grad_norm_on_device(&[q.shallow_clone()], 1.0);
        let g = values(&q.grad());
        assert!(
            (g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6,
            "{g:?}"
        );
        clip_grad_norm_on_device(&[q.shallow_clone()], 10.0);
        assert_eq!(values(&q.grad()), g, "within the limit: unchanged");
        let p = param_with_grad(&[0.0, 0.0], &[3.0, 4.0]);
        let norm = clip_grad_norm(&[p.shallow_clone()], 1.0);
        assert!((norm - 5.0).abs() < 1e-12);
        let g = values(&p.grad());
        assert!(
            (g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6,
            "{g:?}"
        );
    }

    /// Trains a small ResNet for a few steps and returns its weights and
    /// optimizer state. Width 32 gives tensors of up to 590k elements, past
    /// libtorch's 32k-element grain, so elementwise kernels split work
    /// across threads at other places in the flat buffer than per tensor.
    fn train_resnet(updates: Updates, config: OptimizerConfig, clip: bool) -> Vec<Tensor> {
        use tch::nn::ModuleT;
        use tuneflow_stages::data::dataset::DatasetInfo;
        let model: crate::model::ModelConfig = serde_json::from_value(serde_json::json!({
            "arch": "resnet", "depth": 10, "width": 32, "embedding": 16,
            "in-channels": 3, "stem-stride": 1, "pooling": "avg"
        }))
        .unwrap();
        let info = DatasetInfo::new(
            "image",
            vec![3, 12, 12],
            (0..5).map(|i| i.to_string()).collect(),
        );
        let loss = tuneflow_stages::train::config::LossConfig::softmax();
        tch::manual_seed(3);
        let net = crate::transfer::build_net(&model, &info, 5, &loss, tch::Device::Cpu).unwrap();
        let params = net.vs.trainable_variables();
        // Two learning-rate groups, as `backbone-lr` makes.
        let scales: Vec<f64> = (0..params.len())
            .map(|i| if i % 3 == 0 { 0.1 } else { 1.0 })
            .collect();
        let mut opt = Optimizer::with(updates, config, &params);
        assert_eq!(opt.updates(), updates);
        for _ in 0..4 {
            let x = Tensor::randn([6, 3, 12, 12], (tch::Kind::Float, tch::Device::Cpu));
            let y = Tensor::randint(5, [6], (tch::Kind::Int64, tch::Device::Cpu));
            let scored = net.head.score(&net.backbone.forward_t(&x, true), &y, &loss);
            opt.zero_grad(&params);
            scored.loss.backward();
            if clip {
                clip_grad_norm(&params, 0.5);
            }
            opt.step(&params, 0.05, &scales);
        }
        let sorted: std::collections::BTreeMap<String, Tensor> =
            net.vs.variables().into_iter().collect();
        let mut out: Vec<Tensor> = sorted.into_values().collect();
        out.extend(opt.state().into_iter().map(|(_, t)| t));
        out
    }

    #[test]
    fn flat_updates_give_the_same_bits_as_per_tensor_updates() {
        let _rng = crate::torch_rng();
        let sgd = OptimizerConfig::Sgd {
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
        };
        let adamw = OptimizerConfig::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        };
        for (config, clip) in [(sgd, false), (adamw, true)] {
            let a = train_resnet(Updates::PerTensor, config.clone(), clip);
            let b = train_resnet(Updates::Flat, config.clone(), clip);
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(&b) {
                assert!(x.equal(y), "{config:?}: a tensor of {:?} differs", x.size());
            }
        }
    }
}
