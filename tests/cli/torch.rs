//! The runner must start fast: it never links libtorch (about 0.5 s per
//! process to load); the `tuneflow-torch` worker does.

#[test]
fn runner_binary_does_not_link_libtorch() {
    let out = std::process::Command::new("ldd")
        .arg(crate::harness::bin())
        .output()
        .unwrap();
    let libs = String::from_utf8_lossy(&out.stdout);
    assert!(!libs.contains("libtorch"), "{libs}");
}
