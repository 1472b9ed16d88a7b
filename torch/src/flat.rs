//! One buffer for all trainable parameters, so an optimizer step is a few
//! kernels instead of a few per parameter (PyTorch gets the same from its
//! `_foreach_` kernels, which tch does not expose). Every parameter, its
//! gradient and its optimizer state become views into flat buffers, laid
//! out in each parameter's own memory order (so channels-last weights stay
//! channels last); the update runs on the flat tensors, one run per
//! learning-rate group.
//!
//! Element by element the arithmetic is the one the per-parameter update
//! does, so on CPU the results are the same bits (a test checks it).

use tch::{Kind, Tensor};

/// Where one parameter lives in the flat buffers.
#[derive(Debug, Clone)]
struct Slot {
    offset: i64,
    numel: i64,
    /// The parameter's sizes in memory order (largest stride first).
    stored: Vec<i64>,
    /// The permutation from memory order back to the parameter's order.
    back: Vec<i64>,
}

impl Slot {
    fn view(&self, flat: &Tensor) -> Tensor {
        flat.narrow(0, self.offset, self.numel)
            .view(self.stored.as_slice())
            .permute(self.back.as_slice())
    }
}

/// The flat storage of a list of parameters.
#[derive(Debug)]
pub struct Flat {
    slots: Vec<Slot>,
    total: i64,
    params: Tensor,
    grads: Tensor,
    /// The gradient data pointers once every gradient is a view of `grads`.
    adopted: Option<Vec<usize>>,
}

/// `t`'s memory order: sizes sorted by stride (largest first) and the
/// permutation back; `None` unless `t` is dense (no gaps, no overlap).
fn memory_order(t: &Tensor) -> Option<(Vec<i64>, Vec<i64>)> {
    let (size, stride) = (t.size(), t.stride());
    let mut order: Vec<usize> = (0..size.len()).collect();
    // Stable, so size-1 dimensions with equal strides keep their place.
    order.sort_by(|&a, &b| stride[b].cmp(&stride[a]));
    let mut expected = 1;
    for &d in order.iter().rev() {
        if size[d] != 1 && stride[d] != expected {
            return None;
        }
        expected *= size[d];
    }
    let stored = order.iter().map(|&d| size[d]).collect();
    let mut back = vec![0; order.len()];
    for (k, &d) in order.iter().enumerate() {
        back[d] = k as i64;
    }
    Some((stored, back))
}

impl Flat {
    /// Moves `params` into one buffer, each becoming a view of it (same
    /// values, same tensor objects). `None` when they differ in dtype or
    /// device, or one is not dense: the caller updates them one by one.
    pub fn adopt(params: &[Tensor]) -> Option<Self> {
        let first = params.first()?;
        let (kind, device) = (first.kind(), first.device());
        let mut slots = Vec::with_capacity(params.len());
        let mut total = 0;
        for p in params {
            if p.kind() != kind || p.device() != device {
                return None;
            }
            let (stored, back) = memory_order(p)?;
            let numel = p.numel() as i64;
            slots.push(Slot {
                offset: total,
                numel,
                stored,
                back,
            });
            total += numel;
        }
        let flat = Tensor::zeros([total], (kind, device));
        tch::no_grad(|| {
            for (p, slot) in params.iter().zip(&slots) {
                let view = slot.view(&flat);
                view.shallow_clone().copy_(p);
                p.shallow_clone().set_data(&view);
            }
        });
        Some(Self {
            slots,
            total,
            params: flat,
            grads: Tensor::zeros([total], (kind, device)),
            adopted: None,
        })
    }

    /// A zeroed flat buffer like the parameters', and its per-parameter
    /// views (optimizer state).
    pub fn zeros_like(&self) -> (Tensor, Vec<Tensor>) {
        let flat = self.params.zeros_like();
        let views = self.slots.iter().map(|s| s.view(&flat)).collect();
        (flat, views)
    }

    /// The flat parameters and gradients, once every gradient is a view of
    /// the flat gradient buffer: the first call after a backward pass
    /// makes them so; `None` while some parameter has no gradient yet, or
    /// when something replaced a gradient (then it adopts them again).
    pub fn ready(&mut self, params: &[Tensor]) -> Option<(&Tensor, &Tensor)> {
        let grads: Vec<Tensor> = params.iter().map(Tensor::grad).collect();
        if grads.iter().any(|g| !g.defined()) {
            self.adopted = None;
            return None;
        }
        let ptrs: Vec<usize> = grads.iter().map(|g| g.data_ptr() as usize).collect();
        if self.adopted.as_ref() != Some(&ptrs) {
            tch::no_grad(|| {
                for (g, slot) in grads.iter().zip(&self.slots) {
                    let view = slot.view(&self.grads);
                    view.shallow_clone().copy_(g);
                    g.shallow_clone().set_data(&view);
                }
            });
            self.adopted = Some(grads.iter().map(|g| g.data_ptr() as usize).collect());
        }
        Some((&self.params, &self.grads))
    }

    /// Zeroes every gradient with one kernel when they are adopted.
    pub fn zero_grads(&self) -> bool {
        if self.adopted.is_none() {
            return false;
        }
        tch::no_grad(|| {
            let _ = self.grads.shallow_clone().zero_();
        });
        true
    }

    /// The flat ranges `(offset, length, first parameter)` of runs of
    /// parameters sharing a learning-rate scale.
    pub fn runs(&self, scale: &[f64]) -> Vec<(i64, i64, usize)> {
        let at = |i: usize| scale.get(i).copied().unwrap_or(1.0);
        let mut runs: Vec<(i64, i64, usize)> = Vec::new();
        for (i, s) in self.slots.iter().enumerate() {
            match runs.last_mut() {
                Some((_, len, first)) if at(*first).to_bits() == at(i).to_bits() => {
                    *len += s.numel;
                }
                _ => runs.push((s.offset, s.numel, i)),
            }
        }
        runs
    }

    /// Elements in all parameters.
    pub fn len(&self) -> i64 {
        self.total
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The element type.
    pub fn kind(&self) -> Kind {
        self.params.kind()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn parameters_become_views_in_their_own_memory_order() {
        let _rng = crate::torch_rng();
        let a = Tensor::randn([2, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let b =
            crate::layout::channels_last(&Tensor::randn([4, 3, 2, 2], (Kind::Float, Device::Cpu)))
                .set_requires_grad(true);
        let (a0, b0) = (a.copy(), b.copy());
        let flat = Flat::adopt(&[a.shallow_clone(), b.shallow_clone()]).unwrap();
        assert_eq!(flat.len(), 6 + 48);
        assert!(a.equal(&a0) && b.equal(&b0));
        assert!(crate::layout::is_channels_last(&b));
        // Writing the flat buffer writes the parameters.
        tch::no_grad(|| {
            let _ = flat.params.shallow_clone().g_mul_scalar_(2.0);
        });
        assert!(a.equal(&(&a0 * 2.0)) && b.equal(&(&b0 * 2.0)));
        assert!(memory_order(&a.transpose(0, 1)).is_some());
        assert!(
            memory_order(&Tensor::zeros([4, 4], (Kind::Float, Device::Cpu)).narrow(1, 0, 2))
                .is_none()
        );
    }

    #[test]
    fn gradients_are_adopted_and_kept_across_backward_passes() {
        let _rng = crate::torch_rng();
        let w = Tensor::randn([3, 2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let v = Tensor::randn([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let params = [w.shallow_clone(), v.shallow_clone()];
        let mut flat = Flat::adopt(&params).unwrap();
        assert!(flat.ready(&params).is_none(), "no gradients yet");
        let loss = || (w.sum(Kind::Float) * 2.0 + v.sum(Kind::Float) * 3.0).backward();
        loss();
        let (_, grads) = flat.ready(&params).unwrap();
        let expected = Tensor::from_slice(&[2.0f32, 2.0, 2.0, 2.0, 2.0, 2.0, 3.0, 3.0]);
        assert!(grads.equal(&expected));
        assert!(flat.zero_grads());
        loss();
        loss();
        let ptr = flat.adopted.clone();
        let (_, grads) = flat.ready(&params).unwrap();
        assert!(grads.equal(&(expected * 2.0)), "accumulated into the views");
        assert_eq!(flat.adopted, ptr, "still the same views");
        assert_eq!(flat.runs(&[0.1, 1.0]), [(0, 6, 0), (6, 2, 1)]);
        assert_eq!(flat.runs(&[]), [(0, 8, 0)]);
    }
}
