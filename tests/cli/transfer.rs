//! Transfer learning through the real binaries: `pretrain` on MNIST 0-4,
//! `freeze`, then `fine-tune` on 5-9 (or from external weights), checked
//! on the exported weights.

use std::collections::BTreeMap;

use tuneflow_stages::formats::safetensors::{read_tensors, TensorInfo};

use crate::harness::Fixture;

const HEAD: &str = r#"
[pipeline]
seed = 5
device = "cpu"

[stage.pre_data]
kind = "ingest"
format = "insightface-rec"
path = "fx/digits/rec-0-4"
size = 28
channels = 1
max-per-class = 40
split = { val = 0.2 }

[stage.target_data]
kind = "ingest"
format = "insightface-rec"
path = "fx/digits/rec-5-9"
size = 28
channels = 1
max-per-class = 16
split = { val = 0.5 }

[stage.pretrain]
kind = "pretrain"
data = "pre_data.train"
model = { depth = 10, width = 8, embedding = 32 }
optimizer = { kind = "sgd", lr = 0.05, momentum = 0.9 }
epochs = 2
batch = 16
"#;

fn fixture(rest: &str) -> Fixture {
    let f = Fixture::new();
    let r = f.tuneflow(&[
        "fixtures",
        "--out",
        "fx",
        "--no-speakers",
        "--digits-per-class",
        "40",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    f.write("p.toml", &format!("{HEAD}{rest}"));
    f
}

type Tensors = BTreeMap<String, (TensorInfo, Vec<u8>)>;

/// Exports `stage`'s model folder and reads its weights.
fn weights(f: &Fixture, stage: &str) -> (Tensors, serde_json::Value) {
    let to = format!("export-{stage}");
    let r = f.tuneflow(&["export", "p.toml", stage, "--to", &to]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let tensors = read_tensors(&f.path(&format!("{to}/model.safetensors")))
        .unwrap()
        .into_iter()
        .map(|(n, i, b)| (n, (i, b)))
        .collect();
    let config = serde_json::from_str(&f.read(&format!("{to}/config.json"))).unwrap();
    (tensors, config)
}

fn summary(r: &crate::harness::Run, stage: &str) -> serde_json::Value {
    r.events()
        .into_iter()
        .find(|e| e["event"] == "stage-finished" && e["stage"] == stage)
        .map(|e| e["summary"].clone())
        .unwrap_or_else(|| panic!("{stage} did not finish"))
}

#[test]
fn frozen_modules_stay_bit_identical_and_early_stopping_restores_the_best_epoch() {
    let f = fixture(
        r#"
[stage.freeze]
kind = "freeze"
model = "pretrain"
freeze = ["stem", "layer1", "backbone.layer2"]

[stage.finetune]
kind = "fine-tune"
from = "freeze"
data = "target_data.train"
val = "target_data.val"
optimizer = { kind = "sgd", lr = 0.05, momentum = 0.9 }
backbone-lr = 0.5
epochs = 6
batch = 8
early-stopping = { metric = "val_loss", patience = 2 }
"#,
    );
    let r = f.run_ok("p.toml", &[]);
    let (pre, _) = weights(&f, "pretrain");
    let (fine, config) = weights(&f, "finetune");
    let frozen: Vec<String> = config["frozen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert!(frozen.contains(&"backbone.layer2.0.bn1.running_mean".to_owned()));
    assert!(frozen.iter().all(|n| n.starts_with("backbone.stem.")
        || n.starts_with("backbone.layer1.")
        || n.starts_with("backbone.layer2.")));
    for name in &frozen {
        assert_eq!(pre[name].1, fine[name].1, "frozen `{name}` changed");
    }
    for name in [
        "backbone.layer3.0.conv1.weight",
        "backbone.layer4.0.bn1.running_var",
    ] {
        assert_ne!(
            pre[name].1, fine[name].1,
            "trainable `{name}` did not change"
        );
    }
    assert_eq!(fine["head.weight"].0.shape, [5, 32]);

    let s = summary(&r, "finetune");
    let best = s["best_epoch"].as_u64().unwrap() as usize;
    let epochs: Vec<serde_json::Value> = r
        .events()
        .into_iter()
        .filter(|e| e["event"] == "epoch" && e["stage"] == "finetune")
        .collect();
    assert_eq!(s["source"], "upstream");
    assert!(epochs.len() <= 6 && best <= epochs.len());
    assert_eq!(
        s["restored_val"]["val_loss"],
        epochs[best - 1]["val_loss"],
        "the restored weights give the best epoch's validation loss"
    );
}

#[test]
fn fine_tune_from_external_weights_with_a_linear_probe_and_a_new_head() {
    let f = fixture("");
    f.run_ok("p.toml", &[]);
    let (pre, _) = weights(&f, "pretrain");
    std::fs::copy(
        f.path("export-pretrain/model.safetensors"),
        f.path("w.safetensors"),
    )
    .unwrap();
    let probe = r#"
[stage.probe]
kind = "fine-tune"
init = "w.safetensors"
model = { depth = DEPTH, width = 8, embedding = 32 }
data = "target_data.train"
strategy = "linear-probe"
head = { classes = 7 }
epochs = 1
batch = 8
"#;
    f.write("p.toml", &format!("{HEAD}{}", probe.replace("DEPTH", "10")));
    let r = f.run_ok("p.toml", &[]);
    assert_eq!(summary(&r, "probe")["source"], "init");
    let (probed, _) = weights(&f, "probe");
    assert_eq!(probed["head.weight"].0.shape, [7, 32]);
    assert_eq!(probed["head.bias"].0.shape, [7]);
    for (name, (_, bytes)) in probed.iter().filter(|(n, _)| n.starts_with("backbone.")) {
        assert_eq!(&pre[name].1, bytes, "a linear probe changed `{name}`");
    }

    f.write("p.toml", &format!("{HEAD}{}", probe.replace("DEPTH", "18")));
    let bad = f.tuneflow(&["run", "p.toml"]);
    assert_eq!(bad.code, 1, "{}", bad.stderr);
    for needle in [
        "w.safetensors",
        "missing key(s)",
        "backbone.layer1.1.",
        "0 unexpected",
    ] {
        assert!(bad.stderr.contains(needle), "{needle}: {}", bad.stderr);
    }
}

/// The weights load in Python's `safetensors` (installed in the libtorch
/// venv) to the same values, bit for bit.
#[test]
fn exported_weights_load_in_python_safetensors() {
    let f = fixture("");
    f.run_ok("p.toml", &[]);
    let (pre, _) = weights(&f, "pretrain");
    let python = crate::harness::python();
    let script = "import json, sys\nfrom safetensors.numpy import load_file\n\
        t = load_file(sys.argv[1])\n\
        print(json.dumps({k: [str(v.dtype), list(v.shape), v.astype('float64').ravel().tolist()] for k, v in t.items()}))\n";
    let out = std::process::Command::new(&python)
        .args(["-c", script])
        .arg(f.path("export-pretrain/model.safetensors"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let loaded: BTreeMap<String, (String, Vec<u64>, Vec<f64>)> =
        serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(loaded.len(), pre.len());
    for (name, (info, bytes)) in &pre {
        let (dtype, shape, values) = &loaded[name];
        assert_eq!(&info.shape, shape, "{name}");
        assert_eq!(info.dtype, "F32", "{name}");
        assert_eq!(dtype, "float32");
        let ours: Vec<f64> = bytes
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())))
            .collect();
        assert_eq!(&ours, values, "{name} differs in Python");
    }
}
