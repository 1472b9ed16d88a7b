//! Cross-modal measures for `associate`, over identities never seen in
//! training: 1:2 matching (Nagrani et al., "Seeing Voices and Hearing
//! Faces", CVPR 2018: a query of one modality and two candidates of the
//! other, one of them the query's identity; chance is 50 %), retrieval
//! top-k among N candidates, cross-modal verification trials, and fusion
//! of two modalities for verification (score level with a weight learned
//! on development identities, and feature level by concatenation).
//!
//! Rows are L2-normalised once, so a dot product is the cosine. Every
//! sampled choice comes from a seeded [`Rng`].

use crate::eval::metrics;
use crate::rng::Rng;

/// One modality's rows for a list of identities.
#[derive(Debug, Clone)]
pub struct Modal {
    /// L2-normalised rows, `n x dim`.
    pub rows: Vec<f32>,
    /// Columns.
    pub dim: usize,
    /// Per identity (in the order of the identity list): its row numbers.
    pub by_id: Vec<Vec<usize>>,
}

impl Modal {
    /// Rows `matrix` (`n x dim`, normalised here) grouped by identity.
    pub fn new(matrix: &[f32], dim: usize, by_id: Vec<Vec<usize>>) -> Self {
        let mut rows = matrix.to_vec();
        for r in rows.chunks_mut(dim.max(1)) {
            let n = r.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt();
            if n > 1e-12 {
                r.iter_mut().for_each(|v| *v = (f64::from(*v) / n) as f32);
            }
        }
        Self { rows, dim, by_id }
    }

    fn row(&self, r: usize) -> &[f32] {
        &self.rows[r * self.dim..(r + 1) * self.dim]
    }

    /// The cosine of row `i` of `self` and row `j` of `other`.
    pub fn cos(&self, i: usize, other: &Modal, j: usize) -> f64 {
        self.row(i)
            .iter()
            .zip(other.row(j))
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum()
    }

    fn pick(&self, id: usize, rng: &mut Rng) -> usize {
        let rows = &self.by_id[id];
        rows[rng.below(rows.len() as u64) as usize]
    }
}

/// 1:2 matching accuracy: every query row of every identity `t`, against
/// each other identity `d`, with one random candidate row of `t` and one of
/// `d`; correct when the true candidate scores higher (a tie counts one
/// half). `None` with fewer than two identities.
pub fn matching_1_of_2(query: &Modal, cand: &Modal, seed: u64) -> Option<f64> {
    let ids = query.by_id.len();
    if ids < 2 {
        return None;
    }
    let mut rng = Rng::from_parts(&[seed, 0x3132]);
    let (mut right, mut total) = (0.0, 0usize);
    for t in 0..ids {
        for &q in &query.by_id[t] {
            for d in (0..ids).filter(|&d| d != t) {
                let (ct, cd) = (cand.pick(t, &mut rng), cand.pick(d, &mut rng));
                let (st, sd) = (query.cos(q, cand, ct), query.cos(q, cand, cd));
                right += if st > sd {
                    1.0
                } else if st == sd {
                    0.5
                } else {
                    0.0
                };
                total += 1;
            }
        }
    }
    Some(right / total.max(1) as f64)
}

/// Retrieval among `n` candidates: for every query row of identity `t`,
/// one random row of `t` and of `n - 1` other random identities; returns,
/// per `k` in `ks`, the share of queries whose true candidate is among the
/// `k` best (a candidate tied with the true one counts as better). `None`
/// when there are fewer than `n` identities or `n < 2`.
pub fn retrieval(
    query: &Modal,
    cand: &Modal,
    n: usize,
    ks: &[usize],
    seed: u64,
) -> Option<Vec<f64>> {
    let ids = query.by_id.len();
    if n < 2 || ids < n {
        return None;
    }
    let mut rng = Rng::from_parts(&[seed, 0x7265_7472]);
    let mut hits = vec![0usize; ks.len()];
    let mut total = 0usize;
    for t in 0..ids {
        for &q in &query.by_id[t] {
            let mut others: Vec<usize> = (0..ids).filter(|&d| d != t).collect();
            rng.shuffle(&mut others);
            let truth = query.cos(q, cand, cand.pick(t, &mut rng));
            let ahead = others[..n - 1]
                .iter()
                .filter(|&&d| query.cos(q, cand, cand.pick(d, &mut rng)) >= truth)
                .count();
            for (h, &k) in hits.iter_mut().zip(ks) {
                *h += usize::from(ahead < k);
            }
            total += 1;
        }
    }
    Some(
        hits.iter()
            .map(|&h| h as f64 / total.max(1) as f64)
            .collect(),
    )
}

/// Cross-modal verification trials: every row of `a` against every row of
/// `b`, positive when they share the identity.
pub fn cross_trials(a: &Modal, b: &Modal) -> Vec<(f64, bool)> {
    let mut out = Vec::new();
    for (ta, rows_a) in a.by_id.iter().enumerate() {
        for &i in rows_a {
            for (tb, rows_b) in b.by_id.iter().enumerate() {
                for &j in rows_b {
                    out.push((a.cos(i, b, j), ta == tb));
                }
            }
        }
    }
    out
}

/// EER and AUC of a trial list; `None` without both kinds of trial.
pub fn eer_auc(trials: &[(f64, bool)]) -> Option<(f64, f64)> {
    let pos = trials.iter().filter(|t| t.1).count();
    if pos == 0 || pos == trials.len() {
        return None;
    }
    let roc = metrics::roc(trials);
    Some((metrics::eer(&roc), metrics::auc(&roc)))
}

/// A verification trial where both sides hold one item of each modality:
/// the cosine in modality a, in modality b, in the concatenated joint
/// space, and whether the identities match.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FusedTrial {
    /// Cosine of the two `a` items.
    pub a: f64,
    /// Cosine of the two `b` items.
    pub b: f64,
    /// Cosine of the concatenated projected embeddings.
    pub joint: f64,
    /// Same identity.
    pub same: bool,
}

/// Samples `(a row, b row)` of one identity: the k-th row of each, for k
/// below the smaller count. Returns (identity, a row, b row) triples.
pub fn samples(a: &Modal, b: &Modal) -> Vec<(usize, usize, usize)> {
    a.by_id
        .iter()
        .zip(&b.by_id)
        .enumerate()
        .flat_map(|(t, (ra, rb))| ra.iter().zip(rb).map(move |(&i, &j)| (t, i, j)))
        .collect()
}

/// Every pair of samples as a fused trial. `raw` are the modalities'
/// own embeddings (score fusion), `joint` the projected ones (feature
/// fusion: the cosine of two concatenated unit vectors is the mean of
/// their cosines).
pub fn fused_trials(raw: (&Modal, &Modal), joint: (&Modal, &Modal)) -> Vec<FusedTrial> {
    let s = samples(raw.0, raw.1);
    let mut out = Vec::new();
    for (x, &(t1, a1, b1)) in s.iter().enumerate() {
        for &(t2, a2, b2) in &s[x + 1..] {
            out.push(FusedTrial {
                a: raw.0.cos(a1, raw.0, a2),
                b: raw.1.cos(b1, raw.1, b2),
                joint: (joint.0.cos(a1, joint.0, a2) + joint.1.cos(b1, joint.1, b2)) / 2.0,
                same: t1 == t2,
            });
        }
    }
    out
}

/// The weight `w` of modality a in `w * a + (1 - w) * b`, on a grid of
/// steps of 0.05, with the lowest EER on `dev` (the first of equals, so
/// ties prefer modality b); `None` when `dev` lacks a kind of trial.
pub fn fusion_weight(dev: &[FusedTrial]) -> Option<f64> {
    let mut best: Option<(f64, f64)> = None;
    for step in 0..=20 {
        let w = f64::from(step) / 20.0;
        let (eer, _) = eer_auc(&fuse(dev, w))?;
        let better = match best {
            None => true,
            Some((_, b)) => eer < b - 1e-12,
        };
        if better {
            best = Some((w, eer));
        }
    }
    best.map(|b| b.0)
}

/// Score-level fusion: `w * a + (1 - w) * b` per trial.
pub fn fuse(trials: &[FusedTrial], w: f64) -> Vec<(f64, bool)> {
    trials
        .iter()
        .map(|t| (w * t.a + (1.0 - w) * t.b, t.same))
        .collect()
}

#[cfg(test)]
#[path = "assoc_tests.rs"]
mod tests;
