//! Every file in pipelines/invalid/ is rejected with a stable report, and
//! every other example pipeline is valid.

use std::path::Path;

fn relative(path: &Path) -> &Path {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap()
}

#[test]
fn invalid_pipelines_render_stable_diagnostics() {
    insta::glob!("../../pipelines/invalid", "*.toml", |path| {
        let rel = relative(path);
        std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
        let err = match tuneflow::pipeline::load(rel, &[]) {
            Ok(_) => panic!("{} must be rejected", rel.display()),
            Err(e) => e,
        };
        insta::assert_snapshot!(err.render(90));
    });
}

/// The same for the tensor kinds (known only to a build with libtorch).
#[cfg(feature = "torch")]
#[test]
fn invalid_torch_pipelines_render_stable_diagnostics() {
    insta::glob!("../../pipelines/invalid/torch", "*.toml", |path| {
        let rel = relative(path);
        std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
        let err = match tuneflow::pipeline::load(rel, &[]) {
            Ok(_) => panic!("{} must be rejected", rel.display()),
            Err(e) => e,
        };
        insta::assert_snapshot!(err.render(90));
    });
}

#[test]
fn invalid_pipeline_exits_2_with_every_error_on_stderr() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(crate::harness::bin())
        .args(["run", "pipelines/invalid/many-errors.toml"])
        .current_dir(root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("pipelines/invalid/many-errors.toml:"),
        "{stderr}"
    );
    assert!(stderr.matches('×').count() >= 3, "{stderr}");
}

#[test]
fn example_pipelines_are_valid() {
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines")).unwrap()
    {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            match tuneflow::pipeline::load(&path, &[]) {
                Ok(_) => {}
                // Without libtorch the tensor kinds are refused by name.
                Err(e) if cfg!(not(feature = "torch")) => {
                    let text = e.render(200);
                    assert!(
                        text.contains("built without the `torch` feature")
                            && !text.contains("unknown stage kind"),
                        "{text}"
                    );
                }
                Err(e) => panic!("{}", e.render(90)),
            }
        }
    }
}

/// The full-scale recipe validates without its data: `tuneflow status`
/// plans every stage and says which dataset is missing.
#[cfg(feature = "torch")]
#[test]
fn the_full_scale_recipe_validates_without_data() {
    let root = env!("CARGO_MANIFEST_DIR");
    let cache = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::harness::bin())
        .args(["status", "--json", "pipelines/msceleb-voxceleb.toml"])
        .current_dir(root)
        .env("TUNEFLOW_CACHE_DIR", cache.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 14);
    let reason = |stage: &str| {
        lines
            .iter()
            .find(|l| l["stage"] == stage)
            .map(|l| l["reason"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert!(reason("faces").contains("`/data/faces_emore` of stage `faces` does not exist"));
    assert!(reason("finetune").contains("will run"));
}

/// `tuneflow --help` names every built-in stage kind.
#[test]
fn help_lists_every_stage_kind() {
    let out = std::process::Command::new(crate::harness::bin())
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for kind in tuneflow_stages::KINDS {
        let line = format!("  {:<10} {}", kind.name, kind.summary);
        assert!(help.contains(&line), "{line} missing from --help:\n{help}");
        assert!(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(kind.doc())
                .is_file(),
            "no reference page for {}",
            kind.name
        );
    }
}
