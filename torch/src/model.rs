//! The ResNet family the training stages use, for 3xHxW images and 1xFxT
//! spectrograms, with a pooled embedding layer. Module names are stable
//! (`stem`, `layer1`..`layer4`, `embedding`, `head`): freeze policies and
//! external weights refer to them.

use tch::nn::{self, Module, ModuleT};
use tch::Tensor;
pub use tuneflow_stages::formats::model::ModelConfig;

fn conv(p: nn::Path<'_>, cin: i64, cout: i64, k: i64, stride: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride,
        padding: k / 2,
        bias: false,
        ..Default::default()
    };
    nn::conv2d(p, cin, cout, k, cfg)
}

/// A BatchNorm layer that a freeze policy can pin to eval mode, so its
/// running statistics stay as they were.
#[derive(Debug)]
struct Bn {
    bn: nn::BatchNorm,
    frozen: bool,
}

impl Bn {
    fn new2d(p: nn::Path<'_>, c: i64) -> Self {
        Self {
            bn: nn::batch_norm2d(p, c, Default::default()),
            frozen: false,
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        x.apply_t(&self.bn, train && !self.frozen)
    }

    /// Freezes this layer when its weight is one of `frozen` (by storage).
    fn freeze_if(&mut self, frozen: &std::collections::HashSet<usize>) {
        if let Some(w) = &self.bn.ws {
            self.frozen = frozen.contains(&(w.data_ptr() as usize));
        }
    }
}

/// A residual block (basic or bottleneck) with an optional projection.
#[derive(Debug)]
struct Block {
    convs: Vec<(nn::Conv2D, Bn)>,
    shortcut: Option<(nn::Conv2D, Bn)>,
}

impl Block {
    fn new(p: &nn::Path<'_>, cin: i64, cout: i64, stride: i64, bottleneck: bool) -> (Self, i64) {
        let bn = Bn::new2d;
        let (shapes, out): (Vec<(i64, i64, i64, i64)>, i64) = if bottleneck {
            (
                vec![
                    (cin, cout, 1, 1),
                    (cout, cout, 3, stride),
                    (cout, cout * 4, 1, 1),
                ],
                cout * 4,
            )
        } else {
            (vec![(cin, cout, 3, stride), (cout, cout, 3, 1)], cout)
        };
        let convs = shapes
            .iter()
            .enumerate()
            .map(|(i, &(a, b, k, s))| {
                (
                    conv(p / format!("conv{}", i + 1), a, b, k, s),
                    bn(p / format!("bn{}", i + 1), b),
                )
            })
            .collect();
        let shortcut = (stride != 1 || cin != out).then(|| {
            (
                conv(p / "proj", cin, out, 1, stride),
                bn(p / "proj_bn", out),
            )
        });
        (Self { convs, shortcut }, out)
    }
}

impl ModuleT for Block {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut y = x.shallow_clone();
        let last = self.convs.len() - 1;
        for (i, (c, b)) in self.convs.iter().enumerate() {
            y = b.forward(&c.forward(&y), train);
            if i < last {
                y = y.relu();
            }
        }
        let skip = match &self.shortcut {
            Some((c, b)) => b.forward(&c.forward(x), train),
            None => x.shallow_clone(),
        };
        (y + skip).relu()
    }
}

/// Backbone plus embedding: `forward_t` gives embeddings.
#[derive(Debug)]
pub struct ResNet {
    stem: (nn::Conv2D, Bn),
    layers: Vec<Vec<Block>>,
    embedding: (nn::Linear, Bn),
    stats_pooling: bool,
    /// The embedding size.
    pub embedding_size: i64,
}

impl ResNet {
    /// Builds the backbone under `root`; `freq_bins` sizes statistics pooling.
    pub fn new(root: &nn::Path<'_>, cfg: &ModelConfig, freq_bins: i64) -> Result<Self, String> {
        let (counts, bottleneck) = cfg.blocks()?;
        let stem = (
            conv(
                root / "stem" / "conv",
                cfg.in_channels,
                cfg.width,
                3,
                cfg.stem_stride,
            ),
            Bn::new2d(root / "stem" / "bn", cfg.width),
        );
        let mut cin = cfg.width;
        let mut layers = Vec::new();
        for (l, &n) in counts.iter().enumerate() {
            let p = root / format!("layer{}", l + 1);
            let cout = cfg.width << l;
            let mut blocks = Vec::new();
            for b in 0..n {
                let stride = if l > 0 && b == 0 { 2 } else { 1 };
                let (block, out) = Block::new(&(&p / b), cin, cout, stride, bottleneck);
                blocks.push(block);
                cin = out;
            }
            layers.push(blocks);
        }
        let stats_pooling = cfg.pooling == "stats";
        let pooled = if stats_pooling {
            // Frequency shrinks by the stem stride and by 2 in layers 2-4.
            let f = (freq_bins + cfg.stem_stride - 1) / cfg.stem_stride;
            let f = (0..3).fold(f, |f, _| (f + 1) / 2);
            2 * cin * f
        } else {
            cin
        };
        let embedding = (
            nn::linear(
                root / "embedding" / "fc",
                pooled,
                cfg.embedding,
                Default::default(),
            ),
            Bn {
                bn: nn::batch_norm1d(root / "embedding" / "bn", cfg.embedding, Default::default()),
                frozen: false,
            },
        );
        Ok(Self {
            stem,
            layers,
            embedding,
            stats_pooling,
            embedding_size: cfg.embedding,
        })
    }
}

impl ResNet {
    /// Pins to eval mode every BatchNorm whose weight is in `frozen` (given
    /// by storage address, as `Tensor::data_ptr` reports it).
    pub fn freeze_batchnorm(&mut self, frozen: &std::collections::HashSet<usize>) {
        self.stem.1.freeze_if(frozen);
        self.embedding.1.freeze_if(frozen);
        for block in self.layers.iter_mut().flatten() {
            for (_, bn) in block.convs.iter_mut().chain(block.shortcut.iter_mut()) {
                bn.freeze_if(frozen);
            }
        }
    }
}

impl ModuleT for ResNet {
    /// Images `N x C x H x W`; features `N x T x F` (made `N x 1 x F x T`).
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let x = if x.dim() == 3 {
            x.transpose(1, 2).unsqueeze(1)
        } else {
            x.shallow_clone()
        };
        let mut y = self.stem.1.forward(&self.stem.0.forward(&x), train).relu();
        for layer in &self.layers {
            for block in layer {
                y = block.forward_t(&y, train);
            }
        }
        let pooled = if self.stats_pooling {
            let (n, c, f, t) = y.size4().expect("4-d activations");
            let y = y.reshape([n, c * f, t]);
            Tensor::cat(
                &[
                    y.mean_dim(2, false, tch::Kind::Float),
                    y.std_dim(2, false, false).clamp_min(1e-5),
                ],
                1,
            )
        } else {
            y.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
        };
        self.embedding
            .1
            .forward(&self.embedding.0.forward(&pooled), train)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(depth: u32, pooling: &str, in_channels: i64) -> ModelConfig {
        ModelConfig {
            arch: "resnet".into(),
            depth,
            width: 8,
            embedding: 16,
            in_channels,
            stem_stride: 1,
            pooling: pooling.into(),
        }
    }

    #[test]
    fn shapes_and_module_names() {
        let _rng = crate::torch_rng();
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let net = ResNet::new(&vs.root(), &config(18, "avg", 3), 0).unwrap();
        let out = net.forward_t(
            &Tensor::zeros([2, 3, 32, 32], (tch::Kind::Float, tch::Device::Cpu)),
            false,
        );
        assert_eq!(out.size(), [2, 16]);
        let names: Vec<String> = vs.variables().into_keys().collect();
        for prefix in ["stem.", "layer1.", "layer4.", "embedding."] {
            assert!(
                names.iter().any(|n| n.starts_with(prefix)),
                "{prefix} missing from {names:?}"
            );
        }
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let audio = ResNet::new(&vs.root(), &config(10, "stats", 1), 40).unwrap();
        let out = audio.forward_t(
            &Tensor::randn([3, 100, 40], (tch::Kind::Float, tch::Device::Cpu)),
            true,
        );
        assert_eq!(out.size(), [3, 16]);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let deep = ResNet::new(&vs.root(), &config(50, "avg", 1), 0).unwrap();
        assert_eq!(
            deep.forward_t(
                &Tensor::zeros([1, 1, 16, 16], (tch::Kind::Float, tch::Device::Cpu)),
                false
            )
            .size(),
            [1, 16]
        );
        assert!(config(11, "avg", 3).blocks().is_err());
    }
}
