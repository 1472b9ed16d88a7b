//! Cache maintenance: verify, corrupted objects, gc, du.

use crate::harness::{seven, Fixture};

fn object_paths(f: &Fixture) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for prefix in std::fs::read_dir(f.path(".tuneflow/objects")).unwrap() {
        let prefix = prefix.unwrap().path();
        if prefix.file_name().unwrap() == "tmp" {
            continue;
        }
        for e in std::fs::read_dir(prefix).unwrap() {
            out.push(e.unwrap().path());
        }
    }
    out
}

#[test]
fn corrupt_object_is_detected_and_never_used() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    f.write(
        "p.toml",
        "[stage.s]\nkind = \"command\"\ncmd = \"echo precious > o.txt\"\nouts = [\"o.txt\"]\n",
    );
    f.run_ok("p.toml", &[]);
    let objects = object_paths(&f);
    assert_eq!(objects.len(), 1);
    std::fs::set_permissions(&objects[0], std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&objects[0], "precioux\n").unwrap();
    std::fs::remove_file(f.path("o.txt")).unwrap();

    // Without verify, the restore notices the bad digest and reruns.
    let r = f.run_ok("p.toml", &[]);
    assert_eq!(r.stages("stage-finished"), ["s"]);
    assert_eq!(f.read("o.txt"), "precious\n");

    std::fs::set_permissions(&objects[0], std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&objects[0], "broken\n").unwrap();
    let v = f.tuneflow(&["cache", "verify", "p.toml"]);
    assert_eq!(v.code, 3, "{}", v.stdout);
    assert!(v.stdout.contains("1 corrupt"), "{}", v.stdout);
    assert!(f.path(".tuneflow/quarantine").read_dir().unwrap().count() == 1);
    let r = f.run_ok("p.toml", &[]);
    assert_eq!(r.stages("stage-finished"), ["s"]);
    assert_eq!(f.tuneflow(&["cache", "verify", "p.toml"]).code, 0);
}

#[test]
fn gc_keeps_current_results_and_drops_old_ones() {
    let f = seven();
    f.run_ok("pipeline.toml", &["--set", "params.lr=1"]);
    f.run_ok("pipeline.toml", &[]);
    let before = object_paths(&f).len();
    let gc = f.tuneflow(&["cache", "gc", "pipeline.toml", "--json"]);
    assert_eq!(gc.code, 0, "{}", gc.stderr);
    let report: serde_json::Value = serde_json::from_str(gc.stdout.trim()).unwrap();
    assert_eq!(report["results_removed"], 2, "{report}");
    assert!(object_paths(&f).len() < before);
    let r = f.run_ok("pipeline.toml", &[]);
    assert_eq!(r.stages("stage-cached").len(), 7);
    let r = f.run_ok("pipeline.toml", &["--set", "params.lr=1"]);
    assert_eq!(r.stages("stage-finished"), ["finetune", "evaluate"]);
}

#[test]
fn gc_keep_last_keeps_recent_runs() {
    let f = seven();
    f.run_ok("pipeline.toml", &["--set", "params.lr=1"]);
    f.run_ok("pipeline.toml", &[]);
    let gc = f.tuneflow(&["cache", "gc", "pipeline.toml", "--keep-last", "2", "--json"]);
    let report: serde_json::Value = serde_json::from_str(gc.stdout.trim()).unwrap();
    assert_eq!(report["results_removed"], 0, "{report}");
    let r = f.run_ok("pipeline.toml", &["--set", "params.lr=1"]);
    assert_eq!(r.stages("stage-cached").len(), 7);
}

#[test]
fn du_reports_counts_and_cache_dir_overrides_work() {
    let f = seven();
    let other = tempfile::tempdir().unwrap();
    let dir = other.path().to_str().unwrap();
    f.run_ok("pipeline.toml", &["--cache-dir", dir]);
    assert!(!f.path(".tuneflow").exists());
    let du = f.tuneflow(&["cache", "du", "--json", "--cache-dir", dir]);
    let v: serde_json::Value = serde_json::from_str(du.stdout.trim()).unwrap();
    assert_eq!(v["results"], 7);
    let env_run = f
        .command(&["run", "--json", "pipeline.toml"])
        .env("TUNEFLOW_CACHE_DIR", dir)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&env_run.stdout)
            .matches("stage-cached")
            .count()
            == 7
    );
}
