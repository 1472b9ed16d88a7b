//! Voice-face association (`pipelines/associate.toml`) on the paired
//! corpus of `tuneflow fixtures`: on identities never seen in training,
//! the true pairing must beat the shuffled control by a clear margin, and
//! the control must stay near chance (nothing leaks the identity labels).
//! Also: bad params are named, and a rerun is all cache hits.

use std::path::PathBuf;

use crate::harness::Fixture;

/// The paired corpus, built once per machine beside the other test
/// fixtures.
fn paired() -> PathBuf {
    crate::demo::built("paired", &["--no-speakers", "--no-digits"])
}

fn unseen(r: &crate::harness::Run, stage: &str) -> serde_json::Value {
    crate::demo::finished(r, stage)["summary"]["evaluate"]["unseen"].clone()
}

fn num(m: &serde_json::Value, key: &str) -> f64 {
    m[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no `{key}` in {m}"))
}

#[test]
fn the_true_pairing_beats_the_shuffled_control_on_unseen_identities() {
    let f = Fixture::new();
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/pipelines/associate.toml"
    ))
    .unwrap();
    f.write("associate.toml", &text);
    std::os::unix::fs::symlink(paired(), f.path("fixtures")).unwrap();
    let r = f.run_ok("associate.toml", &["--set", "pipeline.device=cpu"]);
    let epochs = r
        .events()
        .into_iter()
        .filter(|e| e["event"] == "epoch" && e["stage"] == "associate")
        .count();
    assert!(epochs > 0, "the associate stage reports its epochs");
    let (real, control) = (unseen(&r, "associate"), unseen(&r, "control"));
    let matching =
        |m: &serde_json::Value| (num(m, "voice2face_match") + num(m, "face2voice_match")) / 2.0;
    let (rm, cm) = (matching(&real), matching(&control));
    assert!(
        rm >= cm + 0.1 && rm >= 0.6,
        "1:2 matching: real {rm:.3}, control {cm:.3}\nreal {real}\ncontrol {control}"
    );
    assert!(
        num(&real, "cross_eer") + 0.1 <= num(&control, "cross_eer"),
        "cross-modal EER: real {real}, control {control}"
    );
    for key in ["voice2face_match", "face2voice_match"] {
        let c = num(&control, key);
        assert!(
            (0.4..=0.6).contains(&c),
            "control {key} {c:.3}: not near chance"
        );
    }
    let c_eer = num(&control, "cross_eer");
    assert!((0.35..=0.65).contains(&c_eer), "control EER {c_eer:.3}");
    for key in [
        "fused_score_eer",
        "fused_feature_eer",
        "voice2face_top1",
        "voice2face_top5",
        "cross_auc",
    ] {
        num(&real, key);
    }
    assert!(f.path(".tuneflow").is_dir());
    let again = f.run_ok("associate.toml", &["--set", "pipeline.device=cpu"]);
    assert!(
        again.stages("stage-finished").is_empty(),
        "a rerun is all cache hits"
    );
}

#[test]
fn bad_associate_params_are_named() {
    let f = Fixture::new();
    f.write(
        "p.toml",
        r#"
[stage.e]
kind = "command"
cmd = "true"

[stage.x]
kind = "associate"
a = "e"
b = "e"
loss = "hinge"
temperature = 0
batch = 1
names = ["voice"]
split = { dev = 0.5, test = 0.6 }
"#,
    );
    let r = f.tuneflow(&["run", "p.toml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    for needle in [
        "hinge",
        "`temperature` must be above 0",
        "`batch` must be at least 2",
        "`names` must be two",
        "`split`",
    ] {
        assert!(r.stderr.contains(needle), "no `{needle}` in:\n{}", r.stderr);
    }
}
