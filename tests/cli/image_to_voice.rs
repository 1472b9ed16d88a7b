//! Face-to-voice transfer (`pipelines/image-to-voice.toml`), the real file
//! made small with `--set`: an ArcFace model pretrained on RGB digits moves
//! into a spectrogram model. Checked on the exported weights: the frozen
//! layers are the image model's bit for bit (the stem adapted from 3
//! channels to 1), the trained ones started from it, the embedding layer
//! and the head are new, and every evaluation reports its metrics.

use std::collections::BTreeMap;

use tuneflow_stages::formats::safetensors::{read_tensors, TensorInfo};

use crate::harness::Fixture;

/// Small enough for CI on 2 cores: 30 images per digit, 8 pretraining
/// speakers, one or two epochs per stage.
const SMALL: &[&str] = &[
    "images.max-per-class=30",
    "image_pre.epochs=2",
    "image_pre.batch=16",
    "speakers_pre.classes=8",
    "voice_pre.epochs=1",
    "ft_image_frozen.epochs=2",
    "ft_image_full.epochs=2",
    "ft_voice.epochs=2",
    "scratch.epochs=2",
];

type Tensors = BTreeMap<String, (TensorInfo, Vec<f32>)>;

/// `stage`'s exported weights (as f32) and config.
fn weights(f: &Fixture, stage: &str) -> (Tensors, serde_json::Value) {
    let to = format!("export-{stage}");
    let mut args = vec!["export", "p.toml", stage, "--to", &to];
    for s in SMALL {
        args.extend(["--set", s]);
    }
    let r = f.tuneflow(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let tensors = read_tensors(&f.path(&format!("{to}/model.safetensors")))
        .unwrap()
        .into_iter()
        .map(|(n, i, b)| {
            let v = b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (n, (i, v))
        })
        .collect();
    let config = serde_json::from_str(&f.read(&format!("{to}/config.json"))).unwrap();
    (tensors, config)
}

/// Cosine similarity of two tensors, flattened.
fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

fn pipeline() -> Fixture {
    let f = Fixture::new();
    let file = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/pipelines/image-to-voice.toml"
    ))
    .unwrap();
    f.write("p.toml", &file);
    std::fs::create_dir(f.path("fixtures")).unwrap();
    let speakers = crate::demo::corpus().join("speakers");
    let digits = crate::demo::digits().join("digits");
    std::os::unix::fs::symlink(speakers, f.path("fixtures/speakers")).unwrap();
    std::os::unix::fs::symlink(digits, f.path("fixtures/digits")).unwrap();
    f
}

#[test]
fn image_weights_move_into_the_speaker_model_and_every_variant_is_evaluated() {
    let f = pipeline();
    let mut args = Vec::new();
    for s in SMALL {
        args.extend(["--set", s]);
    }
    let r = f.run_ok("p.toml", &args);
    for (stage, label) in [
        ("eval_image_frozen", "image-frozen"),
        ("eval_image_full", "image-full"),
        ("eval_voice", "voice-frozen"),
    ] {
        let e = r
            .events()
            .into_iter()
            .find(|e| e["event"] == "stage-finished" && e["stage"] == stage)
            .unwrap_or_else(|| panic!("{stage} did not finish"));
        let report = &e["summary"]["evaluate"];
        for name in [label, "scratch"] {
            for metric in ["top1", "eer", "accuracy_10fold"] {
                let v = report[name][metric].as_f64();
                assert!(
                    v.is_some_and(|v| (0.0..=1.0).contains(&v)),
                    "{stage} {name} {metric}: {report}"
                );
            }
        }
    }

    let (pre, pre_config) = weights(&f, "image_pre");
    assert_eq!(pre_config["model"]["in-channels"], 3, "{pre_config}");
    assert_eq!(pre_config["model"]["pooling"], "avg");
    frozen_layers_are_the_image_models(&f, &pre);
    trained_layers_started_from_the_image_model(&f, &pre);
}

/// `ft_image_frozen`: stem and layer1 frozen. Every frozen tensor is the
/// image model's, bit for bit, except the stem's filters, which are the
/// image model's adapted to one channel (averaged over RGB, times 3).
fn frozen_layers_are_the_image_models(f: &Fixture, pre: &Tensors) {
    let (ft, config) = weights(f, "ft_image_frozen");
    assert_eq!(config["source"], "upstream", "{config}");
    assert_eq!(config["model"]["in-channels"], 1, "{config}");
    assert_eq!(config["model"]["pooling"], "stats", "{config}");
    let frozen: Vec<&str> = config["frozen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        frozen.contains(&"backbone.layer1.0.conv1.weight"),
        "{frozen:?}"
    );
    assert!(
        frozen.contains(&"backbone.stem.bn.running_mean"),
        "{frozen:?}"
    );
    for name in &frozen {
        assert!(
            name.starts_with("backbone.stem.") || name.starts_with("backbone.layer1."),
            "{name}"
        );
        if *name == "backbone.stem.conv.weight" {
            continue;
        }
        assert_eq!(
            pre[*name].1, ft[*name].1,
            "frozen `{name}` is not the image model's"
        );
    }
    let stem = "backbone.stem.conv.weight";
    assert_eq!(pre[stem].0.shape, [8, 3, 3, 3]);
    assert_eq!(ft[stem].0.shape, [8, 1, 3, 3]);
    for (i, got) in ft[stem].1.iter().enumerate() {
        let (o, k) = (i / 9, i % 9);
        let rgb: f32 = (0..3).map(|c| pre[stem].1[o * 27 + c * 9 + k]).sum();
        assert!(
            (got - rgb).abs() <= 1e-5 * rgb.abs().max(1.0),
            "{stem}[{i}]: {got} vs {rgb}"
        );
    }
    for name in [
        "backbone.layer3.0.conv1.weight",
        "backbone.layer4.0.bn1.running_var",
    ] {
        assert_ne!(pre[name].1, ft[name].1, "trainable `{name}` did not train");
    }
    // New embedding layer (statistics pooling: 2 x 64 channels x 3 bins in)
    // and a new head for the 24 target speakers.
    assert_eq!(pre["backbone.embedding.fc.weight"].0.shape, [128, 64]);
    assert_eq!(ft["backbone.embedding.fc.weight"].0.shape, [128, 384]);
    assert_eq!(ft["head.weight"].0.shape, [24, 128]);
}

/// `ft_image_full`: everything trained, from the image model's weights:
/// each convolution is still close to the image model's (and a scratch
/// network's is not), and none is unchanged.
fn trained_layers_started_from_the_image_model(f: &Fixture, pre: &Tensors) {
    let (full, config) = weights(f, "ft_image_full");
    assert_eq!(config["source"], "upstream", "{config}");
    assert_eq!(
        config["frozen"].as_array().map_or(0, Vec::len),
        0,
        "{config}"
    );
    let (scratch, _) = weights(f, "scratch");
    for name in [
        "backbone.layer1.0.conv1.weight",
        "backbone.layer2.0.conv2.weight",
        "backbone.layer3.0.conv1.weight",
        "backbone.layer4.0.conv2.weight",
    ] {
        assert_ne!(pre[name].1, full[name].1, "`{name}` did not train");
        let moved = cosine(&pre[name].1, &full[name].1);
        let fresh = cosine(&pre[name].1, &scratch[name].1);
        assert!(
            moved > 0.5 && fresh.abs() < 0.3,
            "{name}: cosine to the image model {moved}, scratch's {fresh}"
        );
    }
}
