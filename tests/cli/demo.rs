//! The demo pipeline (`pipelines/demo.toml`, what `make demo` runs) on the
//! generated espeak corpus, on the file's seed and three others: each
//! time pretraining must leave chance far behind, then fine-tuning must
//! beat training from scratch on the one-shot held-out speakers, in
//! accuracy and in EER. Also: a rerun is all cache hits,
//! embeddings export to `.npy` and `.safetensors` that numpy and Python's
//! safetensors read, and `tuneflow metrics --diff` compares runs.

use std::path::PathBuf;

use crate::harness::Fixture;

/// The speaker corpus, built once per machine (it takes about 20 s) in a
/// stable folder outside the clone, like the libtorch venv.
pub(crate) fn corpus() -> PathBuf {
    built("demo", &["--no-digits", "--no-paired"])
}

/// `tuneflow fixtures <skip> --out` a folder of the per-machine fixtures.
/// The fixtures `tuneflow fixtures` builds without the parts `skips`
/// names, once per machine in the test-fixtures folder `name`.
pub(crate) fn built(name: &str, skips: &[&str]) -> PathBuf {
    let dir = test_fixtures().join(name);
    let out = std::process::Command::new(crate::harness::bin())
        .arg("fixtures")
        .args(skips)
        .arg("--out")
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

/// The `stage-finished` event of `stage`.
pub(crate) fn finished(r: &crate::harness::Run, stage: &str) -> serde_json::Value {
    r.events()
        .into_iter()
        .find(|e| e["event"] == "stage-finished" && e["stage"] == stage)
        .unwrap_or_else(|| panic!("{stage} did not run"))
}

/// Transferred vs scratch on one seed's run, as the demo reports them:
/// (pretraining validation accuracy, transferred, scratch).
fn outcome(r: &crate::harness::Run) -> (f64, serde_json::Value, serde_json::Value) {
    let pre = finished(r, "pretrain")["summary"]["final"]["val_acc"]
        .as_f64()
        .unwrap();
    let report = finished(r, "evaluate")["summary"]["evaluate"].clone();
    (
        pre,
        report["transferred"].clone(),
        report["scratch"].clone(),
    )
}

/// The gain the demo claims, on one seed: pretraining well above chance
/// (96 speakers: 0.01), transfer ahead of scratch by 0.2 in top-1 and by 5
/// points of EER on the 24 one-shot speakers. Returns (top-1 gain, EER
/// gain).
fn assert_gain(seed: u64, r: &crate::harness::Run) -> (f64, f64) {
    let (pre, ft, sc) = outcome(r);
    assert!(pre >= 0.4, "seed {seed}: pretraining reached only {pre}");
    let top1 = |m: &serde_json::Value| m["top1"].as_f64().unwrap();
    let eer = |m: &serde_json::Value| m["eer"].as_f64().unwrap();
    let gain = (top1(&ft) - top1(&sc), eer(&sc) - eer(&ft));
    assert!(
        gain.0 >= 0.2 && gain.1 >= 0.05,
        "seed {seed}: transferred {ft}, scratch {sc}"
    );
    gain
}

#[test]
fn transfer_beats_scratch_on_the_held_out_speakers() {
    let f = Fixture::new();
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/demo.toml"))
        .unwrap();
    f.write("demo.toml", &demo);
    std::os::unix::fs::symlink(corpus(), f.path("fixtures")).unwrap();
    let r = f.run_ok("demo.toml", &[]);
    // The file's own seed and three others, each one on its own, then on
    // average (the demo's claim: +0.3 top-1, 10 points of EER).
    let mut gains = vec![assert_gain(7, &r)];
    for seed in [1, 2, 3] {
        let other = f.run_ok("demo.toml", &["--set", &format!("pipeline.seed={seed}")]);
        gains.push(assert_gain(seed, &other));
    }
    let n = gains.len() as f64;
    let mean = (
        gains.iter().map(|g| g.0).sum::<f64>() / n,
        gains.iter().map(|g| g.1).sum::<f64>() / n,
    );
    assert!(mean.0 >= 0.3 && mean.1 >= 0.1, "mean gains {mean:?}");
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
    sweep_of_the_fine_tune(&f);
    report_of_the_demo_opens_in_chromium(&f);
}

/// `tuneflow report` of the demo's first run and of its last (a sweep
/// variant), each opened in headless chromium: clean, and the DOM holds
/// exactly the metrics `tuneflow metrics RUN` prints.
fn report_of_the_demo_opens_in_chromium(f: &Fixture) {
    let runs = f.tuneflow(&["runs", "demo.toml", "--json"]);
    let ids: Vec<String> = runs
        .events()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    for id in [&ids[0], ids.last().unwrap()] {
        let r = f.tuneflow(&["report", "demo.toml", id]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let opened = crate::browser::open(std::path::Path::new(r.stdout.trim()));
        opened.assert_clean();
        let shown = opened.metrics();
        let m = f.tuneflow(&["metrics", "demo.toml", id, "--json"]);
        let mut expected = 0;
        for line in m.events() {
            let report = line["report"].as_str().unwrap();
            let (_, values) = line
                .as_object()
                .unwrap()
                .iter()
                .find(|(k, _)| *k != "event" && *k != "report")
                .unwrap();
            for (k, v) in values.as_object().unwrap() {
                let name = format!("{report}:{k}");
                assert_eq!(shown.get(&name), v.as_f64().as_ref(), "{name}");
                expected += 1;
            }
        }
        assert!(expected >= 20, "{expected} metrics");
        assert_eq!(opened.dom.matches("class=\"node ").count(), 13);
        for chart in ["roc-0", "det-0", "train-0-loss", "train-2-accuracy"] {
            assert!(opened.dom.contains(&format!("id=\"{chart}\"")), "{chart}");
        }
        assert!(
            !opened.dom.contains("<h3>freeze</h3>"),
            "freeze does not train"
        );
    }
    let last =
        std::fs::read_to_string(f.path(&format!(".tuneflow/reports/{}.html", ids.last().unwrap())))
            .unwrap();
    assert_eq!(
        last.matches("data-sweep-metric=\"evaluate:transferred.eer\"")
            .count(),
        4
    );
}

/// A sweep of three fine-tuning learning rates runs fine-tune three times
/// and pretrain never again; a fourth value runs one more fine-tune.
fn sweep_of_the_fine_tune(f: &Fixture) {
    let count = |r: &crate::harness::Run, event: &str, stage: &str| {
        r.stages(event).iter().filter(|s| *s == stage).count()
    };
    let lrs = "finetune.optimizer.lr=0.003,0.02,0.03";
    let r = f.run_ok("demo.toml", &["--set", lrs]);
    assert_eq!(count(&r, "stage-finished", "finetune"), 3, "{}", r.stdout);
    assert_eq!(count(&r, "stage-cached", "pretrain"), 3);
    assert_eq!(count(&r, "stage-finished", "pretrain"), 0);
    let r = f.run_ok("demo.toml", &["--set", &format!("{lrs},0.005")]);
    assert_eq!(count(&r, "stage-finished", "finetune"), 1, "{}", r.stdout);
    assert_eq!(count(&r, "stage-cached", "finetune"), 3);
    let t = f.tuneflow(&["runs", "demo.toml", "--sweep"]);
    assert_eq!(t.code, 0, "{}", t.stderr);
    assert!(
        t.stdout.contains("4 variants") && t.stdout.contains('*'),
        "{}",
        t.stdout
    );
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
    let out = std::process::Command::new(crate::harness::python())
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
        serde_json::json!([216, 128]),
        "24 speakers x 9 test utterances"
    );
    assert_eq!(v["npy_equal"], true);
    assert_eq!(v["st_equal"], true);
    assert_eq!(v["labels"], 216);
}

/// Where the corpora are built once per machine.
fn test_fixtures() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"))
        .join("tuneflow/test-fixtures")
}

/// The MNIST digits, built once per machine beside the speaker corpus.
pub(crate) fn digits() -> PathBuf {
    built("digits", &["--no-speakers", "--no-paired"])
}

/// The image track (`pipelines/digits.toml`: digits 0-4 -> 5-9, five
/// images per class): transfer wins top-1 on the file's seed and two
/// others, each one, and EER on their mean (BENCHMARKS.md: top-1 on 12 of
/// 12 seeds, EER on 11 of 12).
#[test]
fn digits_transfer_wins_top1_on_every_seed() {
    let f = Fixture::new();
    let file = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/pipelines/digits.toml"
    ))
    .unwrap();
    f.write("digits.toml", &file);
    std::os::unix::fs::symlink(digits(), f.path("fixtures")).unwrap();
    let mut eer_gain = 0.0;
    for seed in [11, 1, 2] {
        let r = f.run_ok("digits.toml", &["--set", &format!("pipeline.seed={seed}")]);
        let (pre, ft, sc) = outcome(&r);
        assert!(pre >= 0.8, "seed {seed}: pretraining reached only {pre}");
        assert!(
            ft["top1"].as_f64().unwrap() >= sc["top1"].as_f64().unwrap() + 0.03,
            "seed {seed}: transferred {ft}, scratch {sc}"
        );
        eer_gain += sc["eer"].as_f64().unwrap() - ft["eer"].as_f64().unwrap();
    }
    assert!(eer_gain > 0.0, "mean EER gain {}", eer_gain / 3.0);
}
