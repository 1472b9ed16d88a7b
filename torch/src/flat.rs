//! One buffer for all trainable parameters, so an optimizer step is a few
//! kernels instead of a few per parameter (PyTorch gets the same from its
//! `_foreach_` kernels, which tch does not expose). Every parameter, its
//! gradient and its optimizer state become views into flat buffers, with
//! the parameter's own strides (so channels-last weights stay channels
//! last) at 64-byte aligned offsets; the update runs on the flat tensors,
//! one run per learning-rate group.
//!
//! Element by element the arithmetic is the one the per-parameter update
//! does, so on CPU the results are the same bits (a test checks it).

use tch::Tensor;

/// Where one parameter lives in the flat buffers.
#[derive(Debug, Clone)]
struct Slot {
    offset: i64,
    numel: i64,
    /// The parameter's sizes and strides, kept exactly (a 1-channel conv
    /// weight's channels-last strides would not survive a view + permute).
    size: Vec<i64>,
    stride: Vec<i64>,
}

impl Slot {
    fn view(&self, flat: &Tensor) -> Tensor {
        flat.as_strided(self.size.as_slice(), self.stride.as_slice(), self.offset)
    }
}

/// Slots start at multiples of this many elements (64 bytes of f32), so
/// every parameter's data is as aligned as a tensor of its own; the gaps
/// stay zero under every update.
const ALIGN: i64 = 16;

/// The flat storage of a list of parameters.
#[derive(Debug)]
pub struct Flat {
    slots: Vec<Slot>,
    params: Tensor,
    grads: Tensor,
    /// The parameters' data pointers: if something replaces a parameter's
    /// data, the flat buffer no longer holds it.
    param_ptrs: Vec<usize>,
    /// The gradient data pointers once every gradient is a view of `grads`.
    adopted: Option<Vec<usize>>,
}

/// Whether `t`'s elements fill exactly `numel` places of memory (no gaps,
/// no overlap) from its offset: then a slot of that many elements holds it.
fn dense(t: &Tensor) -> bool {
    let (size, stride) = (t.size(), t.stride());
    let mut dims: Vec<usize> = (0..size.len()).filter(|&d| size[d] != 1).collect();
    dims.sort_by_key(|&d| stride[d]);
    let mut expected = 1;
    for d in dims {
        if stride[d] != expected {
            return false;
        }
        expected *= size[d];
    }
    true
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
            if p.kind() != kind || p.device() != device || !dense(p) {
                return None;
            }
            let numel = p.numel() as i64;
            slots.push(Slot {
                offset: total,
                numel,
                size: p.size(),
                stride: p.stride(),
            });
            total += (numel + ALIGN - 1) / ALIGN * ALIGN;
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
            params: flat,
            grads: Tensor::zeros([total], (kind, device)),
            param_ptrs: params.iter().map(|p| p.data_ptr() as usize).collect(),
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
        if params.len() != self.slots.len()
            || params
                .iter()
                .zip(&self.param_ptrs)
                .any(|(p, &ptr)| p.data_ptr() as usize != ptr)
        {
            return None; // Not (all) in the flat buffer any more.
        }
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
    /// parameters sharing a learning-rate scale (gaps between slots
    /// included: they stay zero).
    pub fn runs(&self, scale: &[f64]) -> Vec<(i64, i64, usize)> {
        let at = |i: usize| scale.get(i).copied().unwrap_or(1.0);
        let mut runs: Vec<(i64, i64, usize)> = Vec::new();
        for (i, s) in self.slots.iter().enumerate() {
            match runs.last_mut() {
                Some((start, len, first)) if at(*first).to_bits() == at(i).to_bits() => {
                    *len = s.offset + s.numel - *start;
                }
                _ => runs.push((s.offset, s.numel, i)),
            }
        }
        runs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// Channels-last strides (as `layout::channels_last` makes; not
    /// imported, so this module stays below `layout`).
    fn nhwc(t: &Tensor) -> Tensor {
        let s = t.size();
        let mut out =
            Tensor::empty([s[0], s[2], s[3], s[1]], (t.kind(), t.device())).permute([0, 3, 1, 2]);
        tch::no_grad(|| out.copy_(t));
        out
    }

    #[test]
    fn parameters_become_aligned_views_with_their_own_strides() {
        let _rng = crate::torch_rng();
        let a = Tensor::randn([2, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let b =
            nhwc(&Tensor::randn([4, 3, 2, 2], (Kind::Float, Device::Cpu))).set_requires_grad(true);
        let (a0, b0) = (a.copy(), b.copy());
        // A 1-channel conv weight in channels-last strides: (9, 1, 3, 1).
        let c =
            nhwc(&Tensor::randn([2, 1, 3, 3], (Kind::Float, Device::Cpu))).set_requires_grad(true);
        let strides = [a.stride(), b.stride(), c.stride()];
        let flat = Flat::adopt(&[a.shallow_clone(), b.shallow_clone(), c.shallow_clone()]).unwrap();
        assert_eq!(
            flat.params.numel(),
            16 + 48 + 32,
            "slots aligned to 16 elements"
        );
        assert!(a.equal(&a0) && b.equal(&b0));
        assert_eq!(
            [a.stride(), b.stride(), c.stride()],
            strides,
            "strides kept exactly"
        );
        assert_eq!(c.stride(), [9, 1, 3, 1]);
        assert_eq!((b.data_ptr() as usize - a.data_ptr() as usize) % 64, 0);
        // Writing the flat buffer writes the parameters.
        tch::no_grad(|| {
            let _ = flat.params.shallow_clone().g_mul_scalar_(2.0);
        });
        assert!(a.equal(&(&a0 * 2.0)) && b.equal(&(&b0 * 2.0)));
        assert!(dense(&a.transpose(0, 1)));
        assert!(!dense(
            &Tensor::zeros([4, 4], (Kind::Float, Device::Cpu)).narrow(1, 0, 2)
        ));
        // A parameter whose data is replaced leaves the flat path.
        let params = [a.shallow_clone(), b.shallow_clone(), c.shallow_clone()];
        let mut flat = flat;
        (a.sum(Kind::Float) + b.sum(Kind::Float) + c.sum(Kind::Float)).backward();
        assert!(flat.ready(&params).is_some());
        tch::no_grad(|| a.shallow_clone().set_data(&a.copy()));
        assert!(flat.ready(&params).is_none());
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
        let mut expected = vec![0.0f32; 32];
        expected[..6].fill(2.0);
        expected[16..18].fill(3.0);
        let expected = Tensor::from_slice(&expected);
        assert!(grads.equal(&expected));
        assert!(flat.zero_grads());
        loss();
        loss();
        let ptr = flat.adopted.clone();
        let (_, grads) = flat.ready(&params).unwrap();
        assert!(grads.equal(&(expected * 2.0)), "accumulated into the views");
        assert_eq!(flat.adopted, ptr, "still the same views");
        assert_eq!(flat.runs(&[0.1, 1.0]), [(0, 6, 0), (16, 2, 1)]);
        assert_eq!(flat.runs(&[]), [(0, 18, 0)]);
    }
}
