//! Memory layout of the conv nets' 4-d tensors. On CUDA with bf16, cuDNN's
//! fastest convolutions read and write NHWC ("channels last"); PyTorch
//! users get them with `.to(memory_format=torch.channels_last)`. tch 0.24
//! has no memory-format API, so the strides are made here: a weight
//! `[O, I, kH, kW]` is stored in `[O, kH, kW, I]` order, and convolution
//! then keeps activations and gradients in the same order.
//!
//! Only the strides change: names, shapes and values stay, and files
//! (checkpoints, `model.safetensors`) are written in the standard layout.

use tch::{nn, Device, Tensor};

/// How 4-d weights are stored during training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// PyTorch's default (NCHW): what CPU training uses, and what files hold.
    Contiguous,
    /// NHWC strides for convolution weights.
    ChannelsLast,
}

impl Layout {
    /// The layout a training stage uses: channels last on CUDA with bf16
    /// (where cuDNN's tensor-core kernels want it), the standard layout
    /// otherwise, so CPU results stay exactly what they were.
    /// `TUNEFLOW_LAYOUT=contiguous|channels-last` overrides it, for
    /// measurements.
    pub fn auto(device: Device, bf16: bool) -> Result<Self, String> {
        match std::env::var("TUNEFLOW_LAYOUT").ok().as_deref() {
            None | Some("" | "auto") => Ok(if device.is_cuda() && bf16 {
                Self::ChannelsLast
            } else {
                Self::Contiguous
            }),
            Some(s) => Self::parse(s).map_err(|e| format!("TUNEFLOW_LAYOUT: {e}")),
        }
    }

    /// `contiguous` or `channels-last`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "contiguous" => Ok(Self::Contiguous),
            "channels-last" => Ok(Self::ChannelsLast),
            other => Err(format!(
                "unknown layout `{other}` (expected `contiguous` or `channels-last`)"
            )),
        }
    }

    /// The name `parse` reads.
    pub fn name(self) -> &'static str {
        match self {
            Self::Contiguous => "contiguous",
            Self::ChannelsLast => "channels-last",
        }
    }

    /// Restrides every 4-d variable of `vs` in place (same values, same
    /// tensor objects, so optimizer and freeze bookkeeping still hold).
    /// Call it before the optimizer takes the parameters.
    pub fn apply(self, vs: &nn::VarStore) {
        if self == Self::Contiguous {
            return;
        }
        tch::no_grad(|| {
            for (_, mut v) in vs.variables() {
                if v.dim() == 4 {
                    let restrided = channels_last(&v);
                    v.set_data(&restrided);
                }
            }
        });
    }

    /// A batch of images in this layout (spectrogram batches, 3-d, pass:
    /// the network makes them 4-d itself).
    pub fn input(self, x: Tensor) -> Tensor {
        if self == Self::ChannelsLast && x.dim() == 4 {
            channels_last(&x)
        } else {
            x
        }
    }
}

/// `t` (4-d) copied into NHWC order, viewed as NCHW: the strides PyTorch's
/// `.to(memory_format=torch.channels_last)` gives, the channel stride 1
/// even for one channel (`permute + contiguous` would keep a one-channel
/// tensor as it is, since it counts as contiguous already, and libtorch
/// would then not treat it as channels last).
pub fn channels_last(t: &Tensor) -> Tensor {
    let size = t.size();
    let nhwc = Tensor::empty([size[0], size[2], size[3], size[1]], (t.kind(), t.device()));
    let mut out = nhwc.permute([0, 3, 1, 2]);
    tch::no_grad(|| out.copy_(t));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    /// Whether `t` has exactly the NHWC strides [`channels_last`] makes
    /// (size-1 dimensions included: libtorch reads a one-channel tensor as
    /// channels last only when its channel stride is 1).
    fn is_channels_last(t: &Tensor) -> bool {
        if t.dim() != 4 {
            return false;
        }
        let (size, stride) = (t.size(), t.stride());
        let mut expected = 1;
        for d in [1, 3, 2, 0] {
            if stride[d] != expected {
                return false;
            }
            expected *= size[d];
        }
        true
    }

    #[test]
    fn restriding_keeps_values_and_the_tensor_and_files_stay_standard() {
        let _rng = crate::torch_rng();
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().randn("w", &[4, 3, 3, 3], 0.0, 1.0);
        let b = vs.root().randn("b", &[4], 0.0, 1.0);
        let stem = vs.root().randn("stem", &[2, 1, 3, 3], 0.0, 1.0);
        let before = w.copy();
        Layout::ChannelsLast.apply(&vs);
        assert!(is_channels_last(&w), "strides {:?}", w.stride());
        assert_eq!(stem.stride(), [9, 1, 3, 1], "one input channel too");
        assert!(!w.is_contiguous());
        assert_eq!(b.stride(), [1]);
        assert!(w.equal(&before));
        assert!(w.requires_grad());
        // What the checkpoint writer gets is the standard layout.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.safetensors");
        crate::checkpoint::save_sorted(&vs, &file).unwrap();
        let read = Tensor::read_safetensors(&file).unwrap();
        let (_, saved) = read.iter().find(|(n, _)| n == "w").unwrap();
        assert!(saved.is_contiguous() && saved.equal(&before));
        // Loading copies into the restrided tensor without undoing it.
        tch::no_grad(|| {
            let _ = w.shallow_clone().fill_(0.0);
        });
        crate::checkpoint::load_into(&vs, &file).unwrap();
        assert!(is_channels_last(&w) && w.equal(&before));
    }

    #[test]
    fn activations_and_gradients_follow_the_weights() {
        let _rng = crate::torch_rng();
        let vs = nn::VarStore::new(Device::Cpu);
        let conv = nn::conv2d(vs.root(), 3, 8, 3, Default::default());
        Layout::ChannelsLast.apply(&vs);
        let x = Layout::ChannelsLast.input(Tensor::randn([2, 3, 8, 8], (Kind::Float, Device::Cpu)));
        assert!(is_channels_last(&x));
        let y = x.apply(&conv);
        assert!(is_channels_last(&y), "activation strides {:?}", y.stride());
        y.sum(Kind::Float).backward();
        assert!(
            is_channels_last(&conv.ws.grad()),
            "grad strides {:?}",
            conv.ws.grad().stride()
        );
        assert!(Layout::parse("nhwc").is_err());
        assert_eq!(Layout::parse("channels-last"), Ok(Layout::ChannelsLast));
    }
}
