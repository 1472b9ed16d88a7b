//! Optimizers implemented over tensors in this project, so their whole
//! state (momentum buffers, Adam moments, step count) is a list of named
//! tensors that a checkpoint can save and restore exactly. Semantics follow
//! `torch.optim.SGD` and `torch.optim.AdamW`.

use tch::{no_grad, Tensor};
pub use tuneflow_stages::train::config::OptimizerConfig;

/// An optimizer over a fixed list of parameters.
pub struct Optimizer {
    config: OptimizerConfig,
    /// Per parameter: SGD momentum buffer, or Adam's (m, v).
    buffers: Vec<Vec<Tensor>>,
    /// Steps taken.
    pub step: u64,
}

impl Optimizer {
    /// A fresh optimizer for `params`.
    pub fn new(config: OptimizerConfig, params: &[Tensor]) -> Self {
        let n = match config {
            OptimizerConfig::Sgd { .. } => 1,
            OptimizerConfig::AdamW { .. } => 2,
        };
        let buffers = params
            .iter()
            .map(|p| (0..n).map(|_| p.zeros_like()).collect())
            .collect();
        Self {
            config,
            buffers,
            step: 0,
        }
    }

    /// One update of every parameter that has a gradient, at rate `lr`.
    /// `scale` multiplies the rate per parameter (per-group learning rates).
    pub fn step(&mut self, params: &[Tensor], lr: f64, scale: &[f64]) {
        self.step += 1;
        let t = self.step;
        no_grad(|| {
            for (i, p) in params.iter().enumerate() {
                let grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                let lr = lr * scale.get(i).copied().unwrap_or(1.0);
                let mut p = p.shallow_clone();
                match &self.config {
                    OptimizerConfig::Sgd {
                        momentum,
                        nesterov,
                        weight_decay,
                    } => {
                        sgd_update(
                            &mut p,
                            &grad,
                            &mut self.buffers[i][0],
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
                        let (m, rest) = self.buffers[i].split_at_mut(1);
                        let _ = m[0].lerp_(&grad, 1.0 - beta1);
                        let _ = rest[0]
                            .g_mul_scalar_(*beta2)
                            .addcmul_(&(&grad * (1.0 - beta2)), &grad);
                        let bias1 = 1.0 - beta1.powi(t as i32);
                        let bias2 = 1.0 - beta2.powi(t as i32);
                        let denom = (rest[0].sqrt() / bias2.sqrt()).g_add_scalar_(*eps);
                        let _ = p.addcdiv_(&(&m[0] * (-lr / bias1)), &denom);
                    }
                }
            }
        });
    }

    /// The state as named tensors, for checkpoints (`buf.I.J`, `step`).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = self
            .buffers
            .iter()
            .enumerate()
            .flat_map(|(i, bufs)| {
                bufs.iter()
                    .enumerate()
                    .map(move |(j, b)| (format!("buf.{i}.{j}"), b.shallow_clone()))
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

/// Scales gradients so their global L2 norm is at most `max_norm`; returns
/// the norm before clipping.
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

pub fn clip_grad_norm(params: &[Tensor], max_norm: f64) -> f64 {
    let total: f64 = params
        .iter()
        .map(|p| p.grad())
        .filter(Tensor::defined)
        .map(|g| g.square().sum(tch::Kind::Double).double_value(&[]))
        .sum::<f64>()
        .sqrt();
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
        let p = param_with_grad(&[0.0, 0.0], &[3.0, 4.0]);
        let norm = clip_grad_norm(&[p.shallow_clone()], 1.0);
        assert!((norm - 5.0).abs() < 1e-12);
        let g = values(&p.grad());
        assert!(
            (g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6,
            "{g:?}"
        );
    }
}
