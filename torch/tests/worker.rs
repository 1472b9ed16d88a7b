//! The worker starts with no environment (rpath from build.rs) and
//! computes with libtorch.

#[test]
fn worker_runs_without_library_path() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tuneflow-torch"))
        .arg("info")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["check_sum"], 6.0);
    assert!(v["cuda"].is_boolean());
}
