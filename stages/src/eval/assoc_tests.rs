//! Hand-computed checks of the cross-modal measures.

use super::*;

/// Three identities, one row each, in two dimensions.
fn three() -> (Modal, Modal) {
    let ids = vec![vec![0], vec![1], vec![2]];
    let a = Modal::new(&[1.0, 0.0, 0.0, 1.0, -1.0, 0.0], 2, ids.clone());
    let b = Modal::new(&[1.0, 0.0, 0.0, 1.0, 0.0, -1.0], 2, ids);
    (a, b)
}

#[test]
fn rows_are_normalised() {
    let m = Modal::new(&[3.0, 4.0], 2, vec![vec![0]]);
    assert!((m.cos(0, &m, 0) - 1.0).abs() < 1e-6);
    assert!((f64::from(m.rows[0]) - 0.6).abs() < 1e-6);
}

#[test]
fn matching_1_of_2_by_hand() {
    let (a, b) = three();
    // a0 and a1 win both of their comparisons; a2 (cosine 0 with its own
    // b2) beats b0 (-1) and ties b1 (0): 5.5 of 6.
    let acc = matching_1_of_2(&a, &b, 1).unwrap();
    assert!((acc - 5.5 / 6.0).abs() < 1e-12, "{acc}");
    // One identity cannot be matched.
    let one = Modal::new(&[1.0, 0.0], 2, vec![vec![0]]);
    assert_eq!(matching_1_of_2(&one, &one, 1), None);
}

#[test]
fn matching_is_chance_when_nothing_is_shared() {
    // Every candidate is the same vector: every comparison ties.
    let ids: Vec<Vec<usize>> = (0..4).map(|i| vec![i]).collect();
    let a = Modal::new(&[1.0, 0.0, 0.0, 1.0, 1.0, 1.0, -1.0, 0.0], 2, ids.clone());
    let b = Modal::new(&[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], 2, ids);
    assert_eq!(matching_1_of_2(&a, &b, 3), Some(0.5));
}

#[test]
fn retrieval_top_k_by_hand() {
    let (a, b) = three();
    // Among all three: a0 and a1 rank their own first; a2's own scores 0,
    // tied with b1 (a tie counts against it) and above b0: rank 2.
    let r = retrieval(&a, &b, 3, &[1, 2], 5).unwrap();
    assert!((r[0] - 2.0 / 3.0).abs() < 1e-12, "{r:?}");
    assert!((r[1] - 1.0).abs() < 1e-12, "{r:?}");
    assert_eq!(
        retrieval(&a, &b, 4, &[1], 5),
        None,
        "more candidates than identities"
    );
    assert_eq!(retrieval(&a, &b, 1, &[1], 5), None);
}

#[test]
fn cross_verification_by_hand() {
    let (a, b) = three();
    let t = cross_trials(&a, &b);
    assert_eq!(t.len(), 9);
    assert_eq!(t.iter().filter(|x| x.1).count(), 3);
    // Positives score 1, 1, 0; negatives 0, 0, 0, 0, -1, -1. The two 1s
    // beat all six negatives; the 0 beats two and ties four: 16 of 18.
    let (_, auc) = eer_auc(&t).unwrap();
    assert!((auc - 16.0 / 18.0).abs() < 1e-12, "{auc}");
    assert_eq!(eer_auc(&t[..1]), None, "only one kind of trial");
}

fn trial(a: f64, b: f64, same: bool) -> FusedTrial {
    FusedTrial {
        a,
        b,
        joint: 0.0,
        same,
    }
}

#[test]
fn fusion_weight_is_the_first_that_separates() {
    // a alone separates; b alone does not. w * a + (1 - w) * b separates
    // when 0.1 + 0.8 w > 0.8 - 0.7 w, i.e. w > 0.467: 0.5 on the grid.
    let dev = [
        trial(0.9, 0.1, true),
        trial(0.8, 0.9, true),
        trial(0.1, 0.8, false),
        trial(0.2, 0.2, false),
    ];
    assert_eq!(fusion_weight(&dev), Some(0.5));
    let (eer, auc) = eer_auc(&fuse(&dev, 0.5)).unwrap();
    assert_eq!((eer, auc), (0.0, 1.0));
    let (eer_b, _) = eer_auc(&fuse(&dev, 0.0)).unwrap();
    assert!(eer_b > 0.0);
    assert_eq!(fusion_weight(&dev[..2]), None);
}

#[test]
fn fused_trials_pair_samples_and_average_the_joint_cosines() {
    let ids = vec![vec![0], vec![1]];
    let a = Modal::new(&[1.0, 0.0, 0.0, 1.0], 2, ids.clone());
    let b = Modal::new(&[1.0, 0.0, 1.0, 1.0], 2, ids);
    let t = fused_trials((&a, &b), (&a, &b));
    assert_eq!(t.len(), 1);
    assert!(!t[0].same);
    assert!((t[0].a - 0.0).abs() < 1e-9);
    assert!((t[0].b - 0.5f64.sqrt()).abs() < 1e-6);
    assert!((t[0].joint - 0.5f64.sqrt() / 2.0).abs() < 1e-6);
    assert_eq!(samples(&a, &b), vec![(0, 0, 0), (1, 1, 1)]);
}
