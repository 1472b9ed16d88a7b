//! Typed outputs of command stages (issue #12, writing side): a user's
//! script writes an artifact with the Python helper in `python/`, the
//! stage checks it at commit, and built-in kinds read it like their own.

use crate::harness::{python, Fixture};

/// The repo's `python/` folder (the helper package).
fn helper_path() -> String {
    format!("{}/python", env!("CARGO_MANIFEST_DIR"))
}

/// A script that writes 3 classes x 4 items of clustered embeddings (and
/// optionally breaks one part of the artifact).
const WRITE_EMB: &str = r#"
import sys, numpy as np
from tuneflow_artifacts import write_embeddings
out, damage = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
centres = np.eye(3, 8)
v = np.concatenate([c + 0.05 * rng.standard_normal((4, 8)) for c in centres])
v /= np.linalg.norm(v, axis=1, keepdims=True)
write_embeddings(out, v.astype(np.float32), ids=[f"i{k}" for k in range(12)],
                 labels=np.repeat(np.arange(3), 4), classes=["a", "b", "c"], normalized=True)
if damage == "ids":
    import json
    p = f"{out}/items.json"; m = json.load(open(p)); m["ids"] = m["ids"][:2]
    json.dump(m, open(p, "w"))
if damage == "tail":
    open(f"{out}/embeddings.f32", "ab").write(b"\0\0")
"#;

fn pipeline(damage: &str) -> String {
    format!(
        r#"[stage.emb]
kind = "command"
cmd = "rm -rf out/emb && PYTHONPATH={helper} {python} write_emb.py out/emb {damage}"
deps = ["write_emb.py"]
outs = {{ emb = {{ path = "out/emb", type = "embeddings" }} }}

[stage.score]
kind = "evaluate"
embeddings = "emb"
trials = "all"
"#,
        helper = helper_path(),
        python = python().display(),
    )
}

fn fixture(damage: &str) -> Fixture {
    let f = Fixture::new();
    f.write("write_emb.py", WRITE_EMB);
    f.write("p.toml", &pipeline(damage));
    f
}

/// `evaluate` scores embeddings a user's script wrote, found through the
/// command's typed output (a bare `"emb"` means its `embeddings`); a rerun
/// is all cached, and a change to the script reruns both stages.
#[test]
fn evaluate_reads_embeddings_a_script_wrote() {
    let f = fixture("none");
    let r = f.run_ok("p.toml", &[]);
    assert_eq!(r.stages("stage-finished").len(), 2, "{}", r.stdout);
    let m = f.tuneflow(&["metrics", "p.toml", "--json"]);
    assert_eq!(m.code, 0, "{}", m.stderr);
    let v: serde_json::Value = serde_json::from_str(&m.stdout).unwrap();
    let eer = v
        .pointer("/metrics/model/eer")
        .and_then(serde_json::Value::as_f64);
    assert_eq!(eer, Some(0.0), "clustered classes separate perfectly: {v}");
    let again = f.run_ok("p.toml", &[]);
    assert_eq!(again.stages("stage-cached").len(), 2, "{}", again.stdout);
    f.write("write_emb.py", &WRITE_EMB.replace("0.05 *", "0.06 *"));
    let changed = f.run_ok("p.toml", &[]);
    assert_eq!(
        changed.stages("stage-finished"),
        ["emb", "score"],
        "{}",
        changed.stdout
    );
}

/// A typed output that breaks its format fails its own stage, naming the
/// part, and nothing downstream runs or is cached.
#[test]
fn a_malformed_typed_output_fails_its_stage_with_the_part_named() {
    for (damage, part) in [
        ("ids", "`ids` has 2 entries, `count` is 12"),
        ("tail", "embeddings.f32 has 386 bytes"),
    ] {
        let f = fixture(damage);
        let r = f.tuneflow(&["run", "p.toml"]);
        assert_ne!(r.code, 0, "{damage}: {}", r.stdout);
        let all = format!("{}{}", r.stdout, r.stderr);
        assert!(
            all.contains("output `emb` (`out/emb`) is not a valid `embeddings` artifact")
                && all.contains(part),
            "{damage}: {all}"
        );
        let st = f.tuneflow(&["status", "p.toml", "--json"]);
        assert!(!st.stdout.contains("\"cached\""), "{damage}: {}", st.stdout);
    }
}

/// Metrics and plots outputs are checked too; an unknown type is a plan
/// error with the known ones.
#[test]
fn metrics_and_plots_outputs_are_checked_and_types_are_known() {
    let f = Fixture::new();
    f.write(
        "p.toml",
        r#"[stage.m]
kind = "command"
cmd = "printf '{\"top\": {\"1\": \"high\"}}' > m.json"
outs = { scores = { path = "m.json", type = "metrics" } }
"#,
    );
    let r = f.tuneflow(&["run", "p.toml"]);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("`top.1` is a string, not a number"), "{all}");
    f.write(
        "p.toml",
        r#"[stage.m]
kind = "command"
cmd = "mkdir -p plots && echo hi > plots/roc.png"
outs = { curves = { path = "plots", type = "plots" } }
"#,
    );
    let r = f.tuneflow(&["run", "p.toml"]);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("`roc.png` is not a PNG"), "{all}");
    f.write(
        "p.toml",
        "[stage.m]\nkind = \"command\"\ncmd = \"true\"\nouts = { x = { path = \"x\", type = \"tensor\" } }\n",
    );
    let r = f.tuneflow(&["run", "p.toml"]);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert_eq!(r.code, 2, "{all}");
    assert!(
        all.contains("dataset") && all.contains("embeddings"),
        "{all}"
    );
}

/// A command's typed `metrics` output is shown by `tuneflow metrics`
/// (nested numbers as dotted names) and compared by `--diff` with the
/// run before, like `evaluate`'s.
#[test]
fn a_commands_metrics_are_shown_and_diffed() {
    let f = Fixture::new();
    let pipeline = |acc: &str| {
        format!(
            "[stage.score]\nkind = \"command\"\n\
             cmd = \"printf '{{\\\"acc\\\": {acc}, \\\"per\\\": {{\\\"a\\\": 1.5}}}}' > m.json\"\n\
             outs = {{ quality = {{ path = \"m.json\", type = \"metrics\" }} }}\n"
        )
    };
    f.write("p.toml", &pipeline("0.5"));
    f.run_ok("p.toml", &[]);
    f.write("p.toml", &pipeline("0.75"));
    f.run_ok("p.toml", &[]);
    let m = f.tuneflow(&["metrics", "p.toml", "--diff"]);
    assert_eq!(m.code, 0, "{}", m.stderr);
    assert!(m.stdout.contains("score.quality"), "{}", m.stdout);
    let acc = m
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("acc "))
        .unwrap_or("");
    assert!(
        acc.contains("0.7500") && acc.contains("0.5000") && acc.contains("+0.2500"),
        "{}",
        m.stdout
    );
    assert!(m.stdout.contains("per.a"), "{}", m.stdout);
}
