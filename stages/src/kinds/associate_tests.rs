//! The identity link and the split.

use super::*;
use crate::formats::embeddings::EmbeddingsMeta;

fn emb(classes: &[&str]) -> Embeddings {
    let n = classes.len();
    Embeddings {
        meta: EmbeddingsMeta {
            count: n,
            dim: 1,
            ids: (0..n).map(|i| format!("i{i}")).collect(),
            labels: (0..n as u32).collect(),
            indices: (0..n as u32).collect(),
            classes: classes.iter().map(|c| (*c).to_owned()).collect(),
            head_classes: None,
            normalized: true,
        },
        matrix: vec![1.0; n],
        scores: None,
        trials: None,
    }
}

#[test]
fn without_a_link_identities_are_the_shared_class_names() {
    let ids = identities(None, &emb(&["x", "y", "z"]), &emb(&["y", "z", "w"])).unwrap();
    assert_eq!(
        ids,
        vec![("y".into(), "y".into()), ("z".into(), "z".into())]
    );
}

#[test]
fn a_link_file_pairs_classes_and_bad_lines_are_named() {
    let (a, b) = (emb(&["v1", "v2"]), emb(&["f1", "f2"]));
    let p = Path::new("link.txt");
    let ids = identities(Some((p, "v1 f2\n\nv2 f1\n")), &a, &b).unwrap();
    assert_eq!(
        ids,
        vec![("v1".into(), "f2".into()), ("v2".into(), "f1".into())]
    );
    let e = identities(Some((p, "v1 f2\nv3 f1\n")), &a, &b).unwrap_err();
    assert!(e.contains("link.txt:2") && e.contains("`v3`"), "{e}");
    let e = identities(Some((p, "v1 f2\nv2 f2\n")), &a, &b).unwrap_err();
    assert!(e.contains("already linked on line 1"), "{e}");
    let e = identities(Some((p, "v1\n")), &a, &b).unwrap_err();
    assert!(e.contains("expected `a-class b-class`"), "{e}");
}

#[test]
fn splits_are_disjoint_seeded_and_sized() {
    let ids: Vec<Identity> = (0..48)
        .map(|i| (format!("v{i:02}"), format!("f{i:02}")))
        .collect();
    let [train, dev, test] = split_identities(&ids, 0.2, 0.4, 7).unwrap();
    assert_eq!((train.len(), dev.len(), test.len()), (19, 10, 19));
    let mut all: Vec<Identity> = train.iter().chain(&dev).chain(&test).cloned().collect();
    all.sort();
    assert_eq!(all, ids, "every identity once");
    assert_eq!(split_identities(&ids, 0.2, 0.4, 7).unwrap()[2], test);
    assert_ne!(split_identities(&ids, 0.2, 0.4, 8).unwrap()[2], test);
    let e = split_identities(&ids[..5], 0.2, 0.4, 7).unwrap_err();
    assert!(e.contains("too few"), "{e}");
}
