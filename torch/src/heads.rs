//! Heads and losses: softmax cross-entropy over a linear head; ArcFace and
//! CosFace over a normalised weight matrix; triplet loss with batch-hard
//! mining (no head). Label smoothing applies to the cross-entropy kinds.

use tch::nn::{self, Module};
use tch::{Kind, Reduction, Tensor};
pub use tuneflow_stages::train::config::LossConfig;

/// The classification head, or none for metric-learning losses.
#[derive(Debug)]
pub enum Head {
    /// A linear layer with bias (`head.weight`, `head.bias`).
    Linear(nn::Linear),
    /// Class centres compared by cosine (`head.weight`, classes x embedding).
    Margin(Tensor),
    /// Triplet loss trains the embedding alone.
    None,
}

/// A batch's loss and how many items it got right.
pub struct Scored {
    /// Mean loss.
    pub loss: Tensor,
    /// Correct predictions (classes for heads; triplets for triplet loss):
    /// an int64 scalar on the device, read when the epoch's sums are.
    pub correct: Tensor,
}

impl Head {
    /// A fresh head for `classes` under `p` (named `head`).
    pub fn new(p: &nn::Path<'_>, embedding: i64, classes: i64, loss: &LossConfig) -> Self {
        match loss.kind.as_str() {
            "arcface" | "cosface" => Self::Margin(p.var(
                "weight",
                &[classes, embedding],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: 0.01,
                },
            )),
            "triplet" => Self::None,
            _ => Self::Linear(nn::linear(p, embedding, classes, Default::default())),
        }
    }

    /// Plain class scores (no margin): what prediction and top-k use.
    pub fn logits(&self, emb: &Tensor) -> Option<Tensor> {
        match self {
            Self::Linear(l) => Some(l.forward(emb)),
            Self::Margin(w) => Some(cosines(emb, w)),
            Self::None => None,
        }
    }

    /// The training loss of a batch of embeddings with labels `y`.
    pub fn score(&self, emb: &Tensor, y: &Tensor, cfg: &LossConfig) -> Scored {
        let (loss, correct) = match self {
            Self::None => batch_hard_triplet(emb, y, cfg.margin),
            Self::Linear(l) => {
                let logits = l.forward(emb);
                (cross_entropy(&logits, y, cfg), correct(&logits, y))
            }
            Self::Margin(w) => {
                let cos = cosines(emb, w);
                let logits = margin_logits(&cos, y, cfg);
                (cross_entropy(&logits, y, cfg), correct(&cos, y))
            }
        };
        Scored { loss, correct }
    }
}

fn cross_entropy(logits: &Tensor, y: &Tensor, cfg: &LossConfig) -> Tensor {
    logits.to_kind(Kind::Float).cross_entropy_loss::<Tensor>(
        y,
        None,
        Reduction::Mean,
        -100,
        cfg.label_smoothing,
    )
}

fn correct(logits: &Tensor, y: &Tensor) -> Tensor {
    logits.argmax(-1, false).eq_tensor(y).sum(Kind::Int64)
}

/// Cosine similarity of each embedding with each class centre.
pub fn cosines(emb: &Tensor, weight: &Tensor) -> Tensor {
    let e = emb.to_kind(Kind::Float);
    let w = weight.to_kind(Kind::Float);
    let norm = |t: &Tensor| t / t.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
    norm(&e).matmul(&norm(&w).tr())
}

/// ArcFace or CosFace logits from cosines: the target class gets the margin.
///
/// ArcFace: `s * cos(theta + m)` for the target while `theta + m < pi`
/// (`cos > cos(pi - m)`), else `s * (cos - m * sin(m))`, the usual
/// monotonic fallback; with `easy-margin`, the margin applies only where
/// `cos > 0`. CosFace: `s * (cos - m)` for the target. Other classes:
/// `s * cos`.
pub fn margin_logits(cos: &Tensor, y: &Tensor, cfg: &LossConfig) -> Tensor {
    let one_hot = cos
        .zeros_like()
        .scatter_value(1, &y.unsqueeze(1), 1.0)
        .to_kind(Kind::Bool);
    let m = cfg.margin;
    let target = if cfg.kind == "cosface" {
        cos - m
    } else {
        let c = cos.clamp(-1.0 + 1e-7, 1.0 - 1e-7);
        let sin = (c.square().neg() + 1.0).sqrt();
        let phi = &c * m.cos() - sin * m.sin();
        if cfg.easy_margin {
            phi.where_self(&c.gt(0.0), &c)
        } else {
            let th = (std::f64::consts::PI - m).cos();
            let mm = (std::f64::consts::PI - m).sin() * m;
            phi.where_self(&c.gt(th), &(&c - mm))
        }
    };
    target.where_self(&one_hot, cos) * cfg.scale
}

/// Batch-hard triplet loss: for each anchor, its farthest positive and its
/// nearest negative (Euclidean distance between embeddings), hinge at
/// `margin`. Returns the mean loss and how many anchors had their hardest
/// positive closer than their hardest negative.
pub fn batch_hard_triplet(emb: &Tensor, y: &Tensor, margin: f64) -> (Tensor, Tensor) {
    let e = emb.to_kind(Kind::Float);
    let sq = e.square().sum_dim_intlist(&[1i64][..], true, Kind::Float);
    let d2 = (&sq + sq.tr() - e.matmul(&e.tr()) * 2.0).clamp_min(1e-12);
    let d = d2.sqrt();
    let same = y.unsqueeze(1).eq_tensor(&y.unsqueeze(0));
    let eye = Tensor::eye(y.size()[0], (Kind::Bool, y.device()));
    let pos_mask = same.logical_and(&eye.logical_not());
    let far = 1e9;
    let hardest_pos = d.where_self(&pos_mask, &d.zeros_like()).amax([1], false);
    let hardest_neg = d
        .where_self(&same.logical_not(), &(d.ones_like() * far))
        .amin([1], false);
    let has_both = pos_mask
        .any_dim(1, false)
        .logical_and(&same.logical_not().any_dim(1, false));
    let hinge = (&hardest_pos - &hardest_neg + margin).relu();
    let valid = has_both.to_kind(Kind::Float);
    let n = valid.sum(Kind::Float).clamp_min(1.0);
    let loss = (hinge * &valid).sum(Kind::Float) / n;
    let correct = hardest_pos
        .lt_tensor(&hardest_neg)
        .logical_and(&has_both)
        .sum(Kind::Int64);
    (loss, correct)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kind: &str, easy: bool) -> LossConfig {
        LossConfig {
            easy_margin: easy,
            ..LossConfig::with_defaults(kind)
        }
    }

    fn values(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
    }

    #[test]
    fn arcface_logits_match_the_formula() {
        let _rng = crate::torch_rng();
        let cos_v = [0.8f32, -0.3, 0.1, -0.95, 0.5, -0.2];
        let cos = Tensor::from_slice(&cos_v).reshape([3, 2]);
        let y = Tensor::from_slice(&[0i64, 1, 0]);
        let (s, m) = (30.0, 0.5);
        let got = values(&margin_logits(&cos, &y, &cfg("arcface", false)));
        let th = (std::f64::consts::PI - m).cos();
        let target = |c: f64| {
            if c > th {
                (c.acos() + m).cos()
            } else {
                c - (std::f64::consts::PI - m).sin() * m
            }
        };
        let want = [
            s * target(0.8),
            s * -0.3,
            s * 0.1,
            s * target(-0.95), // theta + m > pi: the fallback
            s * target(0.5),
            s * -0.2,
        ];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-4, "{got:?} vs {want:?}");
        }
        let easy = values(&margin_logits(&cos, &y, &cfg("arcface", true)));
        assert!((easy[3] - s * -0.95).abs() < 1e-4, "no margin below 90 deg");
        assert!((easy[0] - s * (0.8f64.acos() + m).cos()).abs() < 1e-4);
    }

    #[test]
    fn cosface_logits_match_the_formula() {
        let _rng = crate::torch_rng();
        let cos = Tensor::from_slice(&[0.6f32, 0.2, -0.4, 0.9]).reshape([2, 2]);
        let y = Tensor::from_slice(&[1i64, 1]);
        let got = values(&margin_logits(&cos, &y, &cfg("cosface", false)));
        let want = [
            30.0 * 0.6,
            30.0 * (0.2 - 0.35),
            30.0 * -0.4,
            30.0 * (0.9 - 0.35),
        ];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-4, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn label_smoothing_matches_the_formula() {
        let _rng = crate::torch_rng();
        let logits = Tensor::from_slice(&[2.0f32, 0.0, -1.0]).reshape([1, 3]);
        let y = Tensor::from_slice(&[0i64]);
        let mut c = LossConfig::softmax();
        c.label_smoothing = 0.1;
        let got = cross_entropy(&logits, &y, &c).double_value(&[]);
        let lse = (2f64.exp() + 1.0 + (-1f64).exp()).ln();
        let logp = [2.0 - lse, -lse, -1.0 - lse];
        let want = -(0.9 + 0.1 / 3.0) * logp[0] - (0.1 / 3.0) * (logp[1] + logp[2]);
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn batch_hard_triplet_picks_the_hardest_pairs() {
        let _rng = crate::torch_rng();
        // 1-d embeddings: class 0 at 0 and 1, class 1 at 1.5 and 4.
        let emb = Tensor::from_slice(&[0.0f32, 1.0, 1.5, 4.0]).reshape([4, 1]);
        let y = Tensor::from_slice(&[0i64, 0, 1, 1]);
        let (loss, correct) = batch_hard_triplet(&emb, &y, 0.3);
        // Anchor 0: pos 1, neg 1.5 -> 1 - 1.5 + .3 = -.2 -> 0 (correct)
        // Anchor 1: pos 1, neg 0.5 -> 0.8 (wrong)
        // Anchor 2: pos 2.5, neg 0.5 -> 2.3 (wrong)
        // Anchor 3: pos 2.5, neg 3 -> -0.2 -> 0 (correct)
        assert!((loss.double_value(&[]) - (0.8 + 2.3) / 4.0).abs() < 1e-3);
        assert_eq!(correct.int64_value(&[]), 2);
    }
}
