//! Training through the real binaries: the runner starts the
//! `tuneflow-torch` worker for `pretrain`. The data are the MNIST digit
//! fixtures (`tuneflow fixtures`).

use std::io::BufRead;
use std::time::Duration;

use crate::harness::Fixture;

fn pipeline(epochs: u32, lr: f64, per_class: u32) -> String {
    format!(
        r#"
[pipeline]
seed = 3
device = "cpu"

[stage.digits]
kind = "ingest"
format = "insightface-rec"
path = "fx/digits/rec-0-4"
size = 28
channels = 1
max-per-class = {per_class}
split = {{ val = 0.2 }}

[stage.pretrain]
kind = "pretrain"
data = "digits.train"
val = "digits.val"
model = {{ depth = 10, width = 8, embedding = 32 }}
optimizer = {{ kind = "sgd", lr = {lr}, momentum = 0.9, weight-decay = 1e-4 }}
schedule = {{ kind = "one-cycle" }}
epochs = {epochs}
batch = 16
"#
    )
}

pub fn digits_fixture(epochs: u32, lr: f64, per_class: u32) -> Fixture {
    let f = Fixture::new();
    let r = f.tuneflow(&[
        "fixtures",
        "--out",
        "fx",
        "--no-speakers",
        "--digits-per-class",
        "200",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    f.write("p.toml", &pipeline(epochs, lr, per_class));
    f
}

fn model_digest(r: &crate::harness::Run) -> String {
    models(r, &["pretrain"]).remove(0)
}

fn epochs(r: &crate::harness::Run) -> Vec<serde_json::Value> {
    r.events()
        .into_iter()
        .filter(|e| e["event"] == "epoch")
        .collect()
}

#[test]
fn pretrain_learns_digits_and_reports_each_epoch() {
    let f = digits_fixture(4, 0.05, 60);
    let r = f.run_ok("p.toml", &[]);
    let ep = epochs(&r);
    let numbers: Vec<u64> = ep.iter().map(|e| e["epoch"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
    for e in &ep {
        assert_eq!(e["stage"], "pretrain");
        for field in [
            "train_loss",
            "train_acc",
            "val_loss",
            "val_acc",
            "lr",
            "samples_per_s",
        ] {
            assert!(e[field].is_number(), "{field} missing in {e}");
        }
    }
    // Five classes: chance is 0.2.
    let last = ep.last().unwrap();
    assert!(last["val_acc"].as_f64().unwrap() >= 0.6, "{last}");
    assert!(last["train_loss"].as_f64().unwrap() < ep[0]["train_loss"].as_f64().unwrap());
    assert_eq!(
        f.run_ok("p.toml", &[]).stages("stage-cached"),
        ["digits", "pretrain"]
    );
}

#[test]
fn killed_during_epoch_3_of_5_resumes_to_identical_weights() {
    let reference = digits_fixture(5, 0.05, 200);
    let uninterrupted = model_digest(&reference.run_ok("p.toml", &[]));

    let f = digits_fixture(5, 0.05, 200);
    let mut child = f
        .command(&["run", "--json", "p.toml"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if v["event"] == "epoch" && v["epoch"] == 2 {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(150));
    child.kill().unwrap(); // SIGKILL, during epoch 3
    child.wait().unwrap();
    let resumed = f.run_ok("p.toml", &[]);
    let first = epochs(&resumed)[0]["epoch"].as_u64().unwrap();
    assert!(
        first >= 3,
        "the rerun must continue from the checkpoint, not start over (first epoch {first})"
    );
    assert_eq!(
        model_digest(&resumed),
        uninterrupted,
        "resumed weights differ from an uninterrupted run"
    );
    assert!(
        !f.path(".tuneflow/checkpoints")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some()),
        "checkpoints are removed once committed"
    );
}

#[test]
fn a_non_finite_loss_fails_with_epoch_and_batch() {
    let f = digits_fixture(2, 1e12, 30);
    let r = f.tuneflow(&["run", "p.toml"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("at epoch 1, batch"), "{}", r.stderr);
}

#[test]
fn arcface_with_label_smoothing_and_triplet_with_balanced_batches_train() {
    let f = digits_fixture(1, 0.05, 40);
    let mut text = pipeline(1, 0.05, 40);
    text.push_str(
        r#"
[stage.arcface]
kind = "pretrain"
data = "digits.train"
val = "digits.val"
model = { depth = 10, width = 8, embedding = 32 }
loss = { kind = "arcface", scale = 16, margin = 0.3, label-smoothing = 0.1 }
optimizer = { kind = "adamw", lr = 0.003 }
epochs = 3
batch = 16

[stage.triplet]
kind = "pretrain"
data = "digits.train"
val = "digits.val"
model = { depth = 10, width = 8, embedding = 32 }
loss = { kind = "triplet", margin = 0.3, per-class = 4 }
optimizer = { kind = "adamw", lr = 0.003 }
epochs = 3
batch = 16
"#,
    );
    f.write("p.toml", &text);
    let r = f.run_ok("p.toml", &[]);
    for stage in ["arcface", "triplet"] {
        let ep: Vec<_> = epochs(&r)
            .into_iter()
            .filter(|e| e["stage"] == stage)
            .collect();
        assert_eq!(ep.len(), 3, "{stage}");
        let (first, last) = (&ep[0], &ep[2]);
        let value = |e: &serde_json::Value, k: &str| e[k].as_f64().unwrap();
        assert!(
            value(last, "train_loss") < value(first, "train_loss"),
            "{stage}: {first} -> {last}"
        );
        // ArcFace: class accuracy well above chance (0.2). Triplet: more
        // anchors whose hardest positive is nearer than their hardest
        // negative. (Validation lags on data this small: BatchNorm's
        // running statistics need more than 30 steps.)
        if stage == "arcface" {
            assert!(value(last, "train_acc") >= 0.5, "{last}");
        } else {
            assert!(
                value(last, "train_acc") > value(first, "train_acc"),
                "{first} -> {last}"
            );
        }
    }
}

/// The `model` digests of the named stages, in order.
fn models(r: &crate::harness::Run, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .map(|n| {
            r.events()
                .into_iter()
                .find(|e| e["stage"] == *n && e.get("outputs").is_some())
                .unwrap_or_else(|| panic!("{n} did not finish or come from the cache"))["outputs"]
                ["model"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// Issue #11, case 18: the default seed derives from the pipeline seed and
/// the stage's name, so two stages with the same config start from
/// different weights; the same explicit `seed` makes them identical, and a
/// `seed` of its own restarts one stage without touching the others.
#[test]
fn training_seeds_derive_from_the_stage_name_unless_given() {
    let f = digits_fixture(1, 0.05, 20);
    let twin = |name: &str, seed: &str| {
        format!(
            "\n[stage.{name}]\nkind = \"pretrain\"\ndata = \"digits.train\"\n\
             model = {{ depth = 10, width = 8, embedding = 32 }}\nepochs = 1\nbatch = 16\n{seed}\n"
        )
    };
    let base = pipeline(1, 0.05, 20);
    let base = &base[..base.find("[stage.pretrain]").unwrap()];
    f.write(
        "p.toml",
        &format!("{base}{}{}", twin("a", ""), twin("b", "")),
    );
    let r = f.run_ok("p.toml", &[]);
    let m = models(&r, &["a", "b"]);
    assert_ne!(
        m[0], m[1],
        "same config, different names: different weights"
    );

    let given = "seed = 12345";
    f.write(
        "p.toml",
        &format!("{base}{}{}", twin("a", given), twin("b", given)),
    );
    let r = f.run_ok("p.toml", &[]);
    let same = models(&r, &["a", "b"]);
    assert_eq!(same[0], same[1], "the same seed gives the same weights");

    // A stage's own seed: only that stage reruns.
    let r = f.run_ok("p.toml", &["--set", "b.seed=7"]);
    let mut cached = r.stages("stage-cached");
    cached.sort();
    assert_eq!(cached, ["a", "digits"]);
    assert_ne!(models(&r, &["b"])[0], same[1]);
    let bad = f.tuneflow(&["run", "p.toml", "--set", "b.seed=\"x\""]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("`seed` must be an integer"),
        "{}",
        bad.stderr
    );
}
