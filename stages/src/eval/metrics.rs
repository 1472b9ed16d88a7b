//! Verification and identification metrics as the speaker and face
//! literature reports them: EER, normalised minDCF (VoxCeleb challenge
//! convention), TAR at a FAR, ROC AUC, LFW-style 10-fold accuracy, top-k
//! and nearest-centroid accuracy. Ties between scores are handled by
//! moving the threshold past a whole group of equal scores at once.

/// One operating point: accept every trial scoring at least `threshold`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Point {
    /// The threshold (`+inf` for "accept nothing").
    pub threshold: f64,
    /// False acceptance rate.
    pub far: f64,
    /// False rejection rate (1 - TAR).
    pub frr: f64,
}

/// The ROC: from accepting nothing to accepting everything, one point per
/// group of tied scores. `trials` are (score, same-class).
pub fn roc(trials: &[(f64, bool)]) -> Vec<Point> {
    let mut sorted: Vec<(f64, bool)> = trials.to_vec();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let pos = sorted.iter().filter(|t| t.1).count().max(1) as f64;
    let neg = sorted.iter().filter(|t| !t.1).count().max(1) as f64;
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut points = vec![Point {
        threshold: f64::INFINITY,
        far: 0.0,
        frr: 1.0,
    }];
    let mut i = 0;
    while i < sorted.len() {
        let s = sorted[i].0;
        while i < sorted.len() && sorted[i].0 == s {
            if sorted[i].1 {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        points.push(Point {
            threshold: s,
            far: fp as f64 / neg,
            frr: 1.0 - tp as f64 / pos,
        });
    }
    points
}

/// Equal error rate: where FAR and FRR cross, interpolated linearly on the
/// ROC segment that crosses.
pub fn eer(points: &[Point]) -> f64 {
    for w in points.windows(2) {
        let (a, b) = (w[0], w[1]);
        if b.frr <= b.far {
            let (da, dr) = (b.far - a.far, b.frr - a.frr);
            let denom = da - dr;
            if denom.abs() < f64::EPSILON {
                return (b.far + b.frr) / 2.0;
            }
            let s = ((a.frr - a.far) / denom).clamp(0.0, 1.0);
            return a.far + s * da;
        }
    }
    points.last().map_or(0.0, |p| (p.far + p.frr) / 2.0)
}

/// Minimum normalised detection cost at `p_target` with C_miss = C_fa = 1.
pub fn min_dcf(points: &[Point], p_target: f64) -> f64 {
    let c_def = p_target.min(1.0 - p_target);
    points
        .iter()
        .map(|p| (p.frr * p_target + p.far * (1.0 - p_target)) / c_def)
        .fold(f64::INFINITY, f64::min)
}

/// The highest true acceptance rate at a FAR of at most `far`.
pub fn tar_at_far(points: &[Point], far: f64) -> f64 {
    points
        .iter()
        .filter(|p| p.far <= far + 1e-12)
        .map(|p| 1.0 - p.frr)
        .fold(0.0, f64::max)
}

/// Area under the ROC (TAR against FAR), by trapezoids: a tie between a
/// positive and a negative counts one half, as in the Mann-Whitney U.
pub fn auc(points: &[Point]) -> f64 {
    points
        .windows(2)
        .map(|w| (w[1].far - w[0].far) * ((1.0 - w[0].frr) + (1.0 - w[1].frr)) / 2.0)
        .sum()
}

/// LFW protocol: 10 consecutive folds; for each, the threshold that is
/// most accurate on the other nine is applied to it. Returns mean and
/// standard deviation of the fold accuracies.
pub fn kfold_accuracy(trials: &[(f64, bool)], folds: usize) -> Option<(f64, f64)> {
    if trials.len() < folds || folds < 2 {
        return None;
    }
    let size = trials.len().div_ceil(folds);
    let mut accs = Vec::with_capacity(folds);
    for k in 0..folds {
        let (lo, hi) = (k * size, ((k + 1) * size).min(trials.len()));
        if lo >= hi {
            continue;
        }
        let train: Vec<(f64, bool)> = trials[..lo].iter().chain(&trials[hi..]).copied().collect();
        let t = best_threshold(&train);
        accs.push(accuracy_at(&trials[lo..hi], t));
    }
    let n = accs.len() as f64;
    let mean = accs.iter().sum::<f64>() / n;
    let var = accs.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / n;
    Some((mean, var.sqrt()))
}

fn accuracy_at(trials: &[(f64, bool)], threshold: f64) -> f64 {
    let right = trials
        .iter()
        .filter(|(s, same)| (*s >= threshold) == *same)
        .count();
    right as f64 / trials.len().max(1) as f64
}

/// The threshold (a midpoint between neighbouring distinct scores, or an
/// extreme) that classifies `trials` best; the lowest such on ties. One
/// sort and one sweep: `O(n log n)`.
fn best_threshold(trials: &[(f64, bool)]) -> f64 {
    let mut sorted = trials.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Threshold below everything: every positive right, no negative.
    let mut right = sorted.iter().filter(|t| t.1).count();
    let (mut best, mut best_t) = (right, f64::NEG_INFINITY);
    let mut i = 0;
    while i < sorted.len() {
        let s = sorted[i].0;
        while i < sorted.len() && sorted[i].0 == s {
            // Moving the threshold above s rejects this trial.
            if sorted[i].1 {
                right -= 1;
            } else {
                right += 1;
            }
            i += 1;
        }
        if right > best {
            best = right;
            best_t = sorted
                .get(i)
                .map_or(f64::INFINITY, |next| (s + next.0) / 2.0);
        }
    }
    best_t
}

/// Share of rows whose label is among the `k` highest scores (`scores` is
/// `rows x classes`, row-major). Ties rank by class index.
pub fn top_k(scores: &[f32], classes: usize, labels: &[u32], k: usize) -> f64 {
    let hits = scores
        .chunks_exact(classes)
        .zip(labels)
        .filter(|(row, &label)| {
            let mine = row[label as usize];
            let better = row
                .iter()
                .enumerate()
                .filter(|&(c, &v)| v > mine || (v == mine && c < label as usize))
                .count();
            better < k
        })
        .count();
    hits as f64 / labels.len().max(1) as f64
}

/// Nearest-class-centroid accuracy by cosine: centroids are the means of
/// the L2-normalised enrolment embeddings of each class. Norms are taken
/// once per row and per centroid.
pub fn centroid_accuracy(
    enroll: &[f32],
    enroll_labels: &[u32],
    test: &[f32],
    test_labels: &[u32],
    dim: usize,
) -> f64 {
    let classes = enroll_labels.iter().max().map_or(0, |&m| m as usize + 1);
    let mut centroids = vec![0.0f64; classes * dim];
    let mut present = vec![false; classes];
    for (row, &l) in enroll.chunks_exact(dim).zip(enroll_labels) {
        let n = norm(row);
        present[l as usize] = true;
        for (c, v) in centroids[l as usize * dim..][..dim].iter_mut().zip(row) {
            *c += f64::from(*v) / n;
        }
    }
    let centroid_norms: Vec<f64> = centroids
        .chunks_exact(dim.max(1))
        .map(|c| c.iter().map(|y| y * y).sum::<f64>().sqrt().max(1e-12))
        .collect();
    let hits = test
        .chunks_exact(dim)
        .zip(test_labels)
        .filter(|(row, &label)| {
            let n = norm(row);
            let best = (0..classes)
                .filter(|&c| present[c])
                .map(|c| {
                    let centroid = &centroids[c * dim..][..dim];
                    let dot: f64 = row
                        .iter()
                        .zip(centroid)
                        .map(|(&x, &y)| f64::from(x) * y)
                        .sum();
                    (dot / (n * centroid_norms[c]), c)
                })
                .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
            best.is_some_and(|(_, c)| c == label as usize)
        })
        .count();
    hits as f64 / test_labels.len().max(1) as f64
}

fn norm(v: &[f32]) -> f64 {
    v.iter()
        .map(|&x| f64::from(x).powi(2))
        .sum::<f64>()
        .sqrt()
        .max(1e-12)
}

/// The L2 norm of every row of a `rows x dim` matrix, for
/// [`cosine_rows`]: a row takes part in many trials, its norm is taken once.
pub fn row_norms(m: &[f32], dim: usize) -> Vec<f64> {
    m.chunks_exact(dim.max(1)).map(norm).collect()
}

/// Cosine similarity of rows `i` and `j` of a `rows x dim` matrix whose
/// row norms are `norms`.
pub fn cosine_rows(m: &[f32], dim: usize, norms: &[f64], i: usize, j: usize) -> f64 {
    let (a, b) = (&m[i * dim..][..dim], &m[j * dim..][..dim]);
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum();
    dot / (norms[i] * norms[j])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trials(pos: &[f64], neg: &[f64]) -> Vec<(f64, bool)> {
        pos.iter()
            .map(|&s| (s, true))
            .chain(neg.iter().map(|&s| (s, false)))
            .collect()
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    #[test]
    fn hand_computed_eer_dcf_tar_auc() {
        // Thresholds: .9 -> FAR 0, FRR 2/3; .8 -> 0, 1/3; .7 -> 1/3, 1/3;
        // .3 -> 1/3, 0; .2 -> 2/3, 0; .1 -> 1, 0.
        let t = trials(&[0.9, 0.8, 0.3], &[0.7, 0.2, 0.1]);
        let p = roc(&t);
        assert_eq!(p.len(), 7);
        close(eer(&p), 1.0 / 3.0);
        // AUC: 8 of 9 (pos, neg) pairs are ordered right.
        close(auc(&p), 8.0 / 9.0);
        close(tar_at_far(&p, 0.0), 2.0 / 3.0);
        close(tar_at_far(&p, 0.5), 1.0);
        // P_target 0.5: c_def 0.5; best point FAR 1/3, FRR 0 -> (0 + 1/6)/.5.
        close(min_dcf(&p, 0.5), 1.0 / 3.0);
        // P_target 0.01: c_def .01; accepting nothing costs .01/.01 = 1;
        // FAR 0 FRR 1/3 costs (.01/3)/.01 = 1/3.
        close(min_dcf(&p, 0.01), 1.0 / 3.0);
    }

    #[test]
    fn ties_count_half_and_move_the_threshold_as_a_group() {
        let t = trials(&[0.5, 0.5], &[0.5, 0.5]);
        let p = roc(&t);
        assert_eq!(p.len(), 2, "one group of equal scores: {p:?}");
        close(auc(&p), 0.5);
        close(eer(&p), 0.5);
        let t = trials(&[0.9, 0.5], &[0.5, 0.1]);
        close(auc(&roc(&t)), (1.0 + 1.0 + 1.0 + 0.5) / 4.0);
        // EER: (0,1/2) at .9 -> (1/2, 0) at .5 -> crosses at 1/4.
        close(eer(&roc(&t)), 0.25);
    }

    #[test]
    fn perfect_separation() {
        let p = roc(&trials(&[0.9, 0.8], &[0.1, 0.2]));
        close(eer(&p), 0.0);
        close(auc(&p), 1.0);
        close(min_dcf(&p, 0.01), 0.0);
        assert_eq!(kfold_accuracy(&trials(&[0.9, 0.8], &[0.1, 0.2]), 10), None);
        // Each fold holds two of each class (as LFW's folds are balanced).
        let many: Vec<(f64, bool)> = (0..20)
            .flat_map(|k| [(10.0 + f64::from(k), true), (f64::from(k) / 100.0, false)])
            .collect();
        let (mean, std) = kfold_accuracy(&many, 10).unwrap();
        close(mean, 1.0);
        close(std, 0.0);
        // A fold whose scores fall between the other folds' classes: the
        // threshold learnt elsewhere (the midpoint) splits it.
        let sorted: Vec<(f64, bool)> = (0..40).map(|i| (f64::from(i), i >= 20)).collect();
        close(kfold_accuracy(&sorted, 10).unwrap().0, 0.9);
    }

    #[test]
    fn the_sweep_finds_the_most_accurate_threshold() {
        let mut rng = crate::rng::Rng::from_parts(&[5]);
        for _ in 0..50 {
            let t: Vec<(f64, bool)> = (0..30)
                .map(|_| ((rng.below(8) as f64) / 4.0, rng.below(2) == 1))
                .collect();
            let brute = t
                .iter()
                .map(|&(s, _)| s)
                .chain([f64::INFINITY])
                .map(|th| accuracy_at(&t, th))
                .fold(0.0, f64::max);
            close(accuracy_at(&t, best_threshold(&t)), brute);
        }
    }

    #[test]
    fn top_k_and_centroids() {
        let scores = [0.1f32, 0.7, 0.2, 0.5, 0.4, 0.1];
        assert!((top_k(&scores, 3, &[1, 1], 1) - 0.5).abs() < 1e-12);
        assert!((top_k(&scores, 3, &[1, 1], 2) - 1.0).abs() < 1e-12);
        let enroll = [1.0f32, 0.0, 2.0, 0.1, 0.0, 1.0];
        let acc = centroid_accuracy(&enroll, &[0, 0, 1], &[0.9, 0.2, 0.1, 0.8], &[0, 1], 2);
        assert!((acc - 1.0).abs() < 1e-12);
    }
}
