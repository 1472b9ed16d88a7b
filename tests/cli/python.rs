//! The Python helper (`python/tuneflow_artifacts`) against real tuneflow
//! outputs: it round-trips every artifact type byte for byte, and its
//! PyTorch loader gives `extract`'s embeddings within 1e-5 (issue #12).
//! `python/tests/inputs/make-inputs.sh` builds the outputs (a 23-stage
//! pipeline on small fixtures) and runs `python -m unittest` on them.

use crate::harness::{bin, python};

#[test]
fn the_python_helper_round_trips_real_artifacts_and_matches_extract() {
    let work = tempfile::tempdir().unwrap();
    let script = format!(
        "{}/python/tests/inputs/make-inputs.sh",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg(bin())
        .arg(python())
        .arg(work.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    // unittest's summary: every test ran (none skipped for lack of inputs).
    let summary = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("OK") || l.starts_with("FAILED"));
    assert_eq!(summary, Some("OK"), "{stderr}");
    let ran = stderr
        .lines()
        .find(|l| l.starts_with("Ran "))
        .unwrap_or_default();
    assert!(ran.starts_with("Ran 3"), "{ran}");
}
