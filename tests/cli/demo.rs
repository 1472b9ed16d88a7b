//! The demo pipeline (`pipelines/demo.toml`, what `make demo` runs) on the
//! generated espeak corpus: pretraining must reach a minimum accuracy,
//! then fine-tuning must beat training from scratch on the held-out
//! speakers, in accuracy and in EER. Also: a rerun is all cache hits,
//! embeddings export to `.npy` and `.safetensors` that numpy and Python's
//! safetensors read, and `tuneflow metrics --diff` compares runs.

use std::path::PathBuf;

use crate::harness::Fixture;

/// The speaker corpus, built once per machine (it takes about 40 s) in a
/// stable folder outside the clone, like the libtorch venv.
fn corpus() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
    let dir = base.join("tuneflow/test-fixtures/demo");
    let out = std::process::Command::new(crate::harness::bin())
        .args(["fixtures", "--no-digits", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

fn finished(r: &crate::harness::Run, stage: &str) -> serde_json::Value {
    r.events()
        .into_iter()
        .find(|e| e["event"] == "stage-finished" && e["stage"] == stage)
        .unwrap_or_else(|| panic!("{stage} did not run"))
}

#[test]
fn transfer_beats_scratch_on_the_held_out_speakers() {
    let f = Fixture::new();
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/demo.toml"))
        .unwrap();
    f.write("demo.toml", &demo);
    std::os::unix::fs::symlink(corpus(), f.path("fixtures")).unwrap();
    let r = f.run_ok("demo.toml", &[]);

    // 1. Pretraining converged somewhat (96 speakers: chance is 0.01).
    let pre = finished(&r, "pretrain")["summary"]["final"].clone();
    let pre_acc = pre["val_acc"].as_f64().unwrap();
    assert!(pre_acc >= 0.1, "pretraining reached only {pre}");
    // 2. Fine-tuned accuracy beats scratch by a margin (24 speakers).
    let report = finished(&r, "evaluate")["summary"]["evaluate"].clone();
    let (ft, sc) = (&report["transferred"], &report["scratch"]);
    let top1 = |m: &serde_json::Value| m["top1"].as_f64().unwrap();
    assert!(
        top1(ft) >= top1(sc) + 0.2,
        "accuracy: transferred {ft}, scratch {sc}"
    );
    // 3. And its EER is lower.
    let eer = |m: &serde_json::Value| m["eer"].as_f64().unwrap();
    assert!(eer(ft) < eer(sc), "EER: transferred {ft}, scratch {sc}");
    let plots = finished(&r, "evaluate")["summary"]["plots"].clone();
    assert_eq!(
        plots,
        serde_json::json!(["roc.png", "det.png", "training.png"])
    );

    let again = f.run_ok("demo.toml", &[]);
    assert_eq!(again.stages("stage-cached").len(), 13, "{}", again.stdout);
    let done = again.events().into_iter().last().unwrap();
    assert!(done["seconds"].as_f64().unwrap() < 1.0, "{done}");

    exports_load_in_python(&f);

    // A changed budget: `metrics --diff` shows both runs.
    f.run_ok("demo.toml", &["--set", "finetune.epochs=12"]);
    let m = f.tuneflow(&["metrics", "demo.toml", "--diff"]);
    assert_eq!(m.code, 0, "{}", m.stderr);
    for needle in [
        "transferred",
        "scratch",
        "previous",
        "change",
        "eer",
        "top1",
    ] {
        assert!(m.stdout.contains(needle), "{needle}: {}", m.stdout);
    }
}

/// `--format npy` and `--format safetensors` hold exactly the stored
/// embedding matrix.
fn exports_load_in_python(f: &Fixture) {
    for (format, to) in [
        ("npy", "e.npy"),
        ("safetensors", "e.safetensors"),
        ("raw", "raw"),
    ] {
        let r = f.tuneflow(&[
            "export",
            "demo.toml",
            "extract_ft",
            "--format",
            format,
            "--to",
            to,
        ]);
        assert_eq!(r.code, 0, "{format}: {}", r.stderr);
    }
    let script = "import json, sys, numpy as np\n\
        from safetensors.numpy import load_file\n\
        a = np.load(sys.argv[1]); t = load_file(sys.argv[2]); raw = np.fromfile(sys.argv[3], dtype='<f4').reshape(a.shape)\n\
        print(json.dumps({'shape': list(a.shape), 'dtype': str(a.dtype), 'npy_equal': bool((a == raw).all()), \
        'st_equal': bool((t['embeddings'] == raw).all()), 'labels': int(t['labels'].shape[0])}))\n";
    let out = std::process::Command::new(crate::transfer::python())
        .args(["-c", script])
        .arg(f.path("e.npy"))
        .arg(f.path("e.safetensors"))
        .arg(f.path("raw/embeddings.f32"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["dtype"], "float32");
    assert_eq!(
        v["shape"],
        serde_json::json!([168, 128]),
        "24 speakers x 7 test utterances"
    );
    assert_eq!(v["npy_equal"], true);
    assert_eq!(v["st_equal"], true);
    assert_eq!(v["labels"], 168);
}
