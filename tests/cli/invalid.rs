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
        let err = match tuneflow::plan::load(rel, &[]) {
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
            match tuneflow::plan::load(&path, &[]) {
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
