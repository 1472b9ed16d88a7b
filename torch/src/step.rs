//! One training step, shared by the training loop and `tuneflow-torch
//! bench` (so the benchmark measures what a stage runs), and the running
//! sums of an epoch, kept on the device: reading a loss back every batch
//! would make the CPU wait for the GPU to drain after every step, leaving
//! the GPU idle while the next step is queued. On CUDA the sums are read
//! when progress is reported and at the end of the epoch; on CPU, where a
//! read costs nothing, after every batch as before.

use tch::nn::ModuleT;
use tch::{Device, Kind, Tensor};
use tuneflow_stages::train::config::LossConfig;

use crate::amp::with_precision;
use crate::heads::Scored;
use crate::optim::{clip_grad_norm, clip_grad_norm_on_device, Optimizer};
use crate::transfer::Net;

/// What a step needs besides the batch.
pub struct Step<'a> {
    /// The network.
    pub net: &'a Net,
    /// Its trainable parameters.
    pub params: &'a [Tensor],
    /// Learning-rate multiplier per parameter.
    pub scales: &'a [f64],
    /// The loss.
    pub loss: &'a LossConfig,
    /// Gradient clipping (global L2 norm).
    pub clip: Option<f64>,
    /// bf16 autocast (on CUDA).
    pub bf16: bool,
}

impl Step<'_> {
    /// The forward pass and loss of a batch, without updating anything.
    pub fn score(&self, x: &Tensor, y: &Tensor, train: bool) -> Scored {
        with_precision(self.bf16, self.net.vs.device(), || {
            let emb = self.net.backbone.forward_t(x, train);
            self.net.head.score(&emb, y, self.loss)
        })
    }

    /// Forward, backward and update at rate `lr`; `check` runs between
    /// the forward pass and the update, with the batch's score (the loop
    /// stops a non-finite loss there on CPU).
    pub fn run(
        &self,
        opt: &mut Optimizer,
        (x, y): (&Tensor, &Tensor),
        lr: f64,
        check: impl FnOnce(&Scored) -> Result<(), String>,
    ) -> Result<Scored, String> {
        let scored = self.score(x, y, true);
        check(&scored)?;
        opt.zero_grad(self.params);
        scored.loss.backward();
        if let Some(max) = self.clip {
            if self.net.vs.device().is_cuda() {
                clip_grad_norm_on_device(self.params, max);
            } else {
                clip_grad_norm(self.params, max);
            }
        }
        opt.step(self.params, lr, self.scales);
        Ok(scored)
    }
}

/// An epoch's running sums on the device.
pub struct Tally {
    loss_sum: Tensor,
    correct: Tensor,
    /// The first batch whose loss was not finite (-1: none yet), and that
    /// loss.
    first_bad: Tensor,
    bad_loss: Tensor,
    /// Items seen.
    pub seen: usize,
    /// Read back after every batch (CPU) or only when asked (CUDA).
    eager: bool,
}

impl Tally {
    /// Empty sums on `device`.
    pub fn new(device: Device) -> Self {
        let zero = |kind| Tensor::zeros([], (kind, device));
        Self {
            loss_sum: zero(Kind::Double),
            correct: zero(Kind::Int64),
            first_bad: Tensor::full([], -1, (Kind::Int64, device)),
            bad_loss: zero(Kind::Double),
            seen: 0,
            eager: !device.is_cuda(),
        }
    }

    /// Adds batch `batch` of `len` items (the loss is a mean over them).
    /// The sum is `loss × len` in f64, as it was summed on the host.
    pub fn add(&mut self, scored: &Scored, len: usize, batch: u64) {
        tch::no_grad(|| {
            let loss = scored.loss.detach().to_kind(Kind::Double);
            let _ = self.loss_sum.g_add_(&(&loss * len as f64));
            let _ = self.correct.g_add_(&scored.correct);
            let keep = self.first_bad.ge(0).logical_or(&loss.isfinite());
            self.bad_loss = self.bad_loss.where_self(&keep, &loss);
            // A scalar operand, not a tensor: copying a host value to the
            // device would wait for the GPU.
            self.first_bad = self.first_bad.where_scalarother(&keep, batch as i64);
        });
        self.seen += len;
    }

    /// Whether the caller should read the sums now (every batch on CPU).
    pub fn eager(&self) -> bool {
        self.eager
    }

    /// An error naming the first batch of `epoch` whose loss was not
    /// finite, if any (a device sync on CUDA).
    pub fn check(&self, epoch: u64) -> Result<(), String> {
        let bad = self.first_bad.int64_value(&[]);
        if bad < 0 {
            return Ok(());
        }
        Err(format!(
            "the loss is {} at epoch {epoch}, batch {bad} (the last good checkpoint is kept)",
            self.bad_loss.double_value(&[]) as f32
        ))
    }

    /// The summed loss and the correct count.
    pub fn totals(&self) -> (f64, i64) {
        (
            self.loss_sum.double_value(&[]),
            self.correct.int64_value(&[]),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(loss: f32, correct: i64) -> Scored {
        Scored {
            loss: Tensor::from(loss),
            correct: Tensor::from(correct),
        }
    }

    #[test]
    fn sums_match_host_f64_sums_and_the_first_bad_batch_is_named() {
        let mut t = Tally::new(Device::Cpu);
        let losses = [0.1f32, 2.7, 1e-3];
        let mut host = 0.0f64;
        for (i, l) in losses.iter().enumerate() {
            t.add(&scored(*l, 3), 7, i as u64 + 1);
            host += f64::from(*l) * 7.0;
        }
        assert_eq!(t.totals(), (host, 9));
        assert_eq!(t.seen, 21);
        assert!(t.check(1).is_ok());
        t.add(&scored(f32::NAN, 0), 7, 4);
        t.add(&scored(f32::INFINITY, 0), 7, 5);
        let e = t.check(2).unwrap_err();
        assert!(e.contains("the loss is NaN at epoch 2, batch 4"), "{e}");
    }
}
