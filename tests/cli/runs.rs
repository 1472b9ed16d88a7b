//! Reruns, parameter changes, early cutoff, restored outputs, parallelism.

use crate::harness::{seven, Fixture};

#[test]
fn second_run_is_all_cached() {
    let f = seven();
    let first = f.run_ok("pipeline.toml", &[]);
    assert_eq!(first.stages("stage-finished").len(), 7);
    let second = f.run_ok("pipeline.toml", &[]);
    assert_eq!(second.stages("stage-cached").len(), 7);
    assert!(second.stages("stage-started").is_empty());
    let done = second.events().into_iter().last().unwrap();
    assert_eq!(
        (
            done["event"].as_str(),
            done["ran"].as_u64(),
            done["cached"].as_u64()
        ),
        (Some("run-finished"), Some(0), Some(7))
    );
}

#[test]
fn param_change_reruns_exactly_the_dependants() {
    let f = seven();
    f.run_ok("pipeline.toml", &[]);
    let r = f.run_ok("pipeline.toml", &["--set", "params.lr=0.01"]);
    assert_eq!(r.stages("stage-finished"), ["finetune", "evaluate"]);
    assert!(f.read("out/finetuned.txt").contains("lr=0.01"));
    let status = f.tuneflow(&["status", "pipeline.toml", "--set", "params.lr=0.5"]);
    assert!(
        status
            .stdout
            .contains("finetune  will-run  param `cmd` changed"),
        "{}",
        status.stdout
    );
    assert!(
        status
            .stdout
            .contains("evaluate  will-run  upstream `finetune` will run"),
        "{}",
        status.stdout
    );
}

#[test]
fn changed_input_file_is_explained_and_reruns_its_chain() {
    let f = seven();
    f.run_ok("pipeline.toml", &[]);
    f.write("data/raw.txt", "b\na\nc\nd\n");
    let status = f.tuneflow(&["status", "--json", "pipeline.toml"]);
    let first: serde_json::Value =
        serde_json::from_str(status.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["reason"], "input `data/raw.txt` changed");
    let r = f.run_ok("pipeline.toml", &[]);
    assert_eq!(r.stages("stage-finished").len(), 7);
}

#[test]
fn cosmetic_change_upstream_stops_at_identical_output() {
    let f = seven();
    f.run_ok("pipeline.toml", &[]);
    // A different command that writes the same bytes: ingest reruns, its
    // output digest is unchanged, so nothing downstream reruns.
    let edited = crate::harness::SEVEN.replace(
        "sort data/raw.txt > out/ingested.txt",
        "sort < data/raw.txt > out/ingested.txt",
    );
    f.write("pipeline.toml", &edited);
    let r = f.run_ok("pipeline.toml", &[]);
    assert_eq!(r.stages("stage-finished"), ["ingest"]);
    assert_eq!(r.stages("stage-cached").len(), 6);
}

#[test]
fn deleted_output_is_restored_without_rerunning() {
    let f = seven();
    f.run_ok("pipeline.toml", &[]);
    let before = f.read("out/frozen.txt");
    std::fs::remove_file(f.path("out/frozen.txt")).unwrap();
    std::fs::write(f.path("out/metrics.txt"), "tampered").unwrap();
    let r = f.run_ok("pipeline.toml", &[]);
    assert!(r.stages("stage-started").is_empty());
    assert_eq!(f.read("out/frozen.txt"), before);
    assert_ne!(f.read("out/metrics.txt"), "tampered");
}

#[test]
fn key_ignores_toml_order_and_formatting() {
    let a = Fixture::new();
    a.write(
        "p.toml",
        "[stage.s]\nkind = \"command\"\ncmd = \"echo 1 > o.txt\"\nouts = [\"o.txt\"]\n",
    );
    let b = Fixture::new();
    b.write("p.toml", "# comment\n[stage.s]\nouts = [ \"./o.txt\" ]   # trailing\ncmd   =   'echo 1 > o.txt'\nkind = \"command\"\n");
    assert_eq!(
        a.run_ok("p.toml", &[]).keys(),
        b.run_ok("p.toml", &[]).keys()
    );
}

#[test]
fn independent_branches_run_in_parallel() {
    let f = Fixture::new();
    f.write(
        "p.toml",
        "[stage.a]\nkind = \"command\"\ncmd = \"sleep 1 && echo a > a.txt\"\nouts = [\"a.txt\"]\n\
         [stage.b]\nkind = \"command\"\ncmd = \"sleep 1 && echo b > b.txt\"\nouts = [\"b.txt\"]\n",
    );
    let t = std::time::Instant::now();
    f.run_ok("p.toml", &["--jobs", "2"]);
    let parallel = t.elapsed();
    let t = std::time::Instant::now();
    f.run_ok("p.toml", &["--jobs", "1", "--force", "a", "--force", "b"]);
    let serial = t.elapsed();
    assert!(
        parallel.as_secs_f64() < 1.8,
        "two 1 s stages with --jobs 2 took {parallel:?}"
    );
    assert!(
        serial.as_secs_f64() >= 2.0,
        "with --jobs 1 they took {serial:?}"
    );
}

#[test]
fn folder_outputs_and_folder_deps_round_trip() {
    let f = Fixture::new();
    f.write(
        "p.toml",
        "[stage.make]\nkind = \"command\"\ncmd = \"mkdir -p out/d/sub && echo 1 > out/d/one && echo 2 > out/d/sub/two && chmod +x out/d/one\"\nouts = [\"out/d\"]\n\
         [stage.use]\nkind = \"command\"\ncmd = \"ls -R out/d > listing.txt\"\ndeps = [\"out/d\"]\nouts = [\"listing.txt\"]\n",
    );
    f.run_ok("p.toml", &[]);
    std::fs::remove_dir_all(f.path("out/d")).unwrap();
    let r = f.run_ok("p.toml", &[]);
    assert!(r.stages("stage-started").is_empty());
    assert_eq!(f.read("out/d/sub/two"), "2\n");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(f.path("out/d/one"))
        .unwrap()
        .permissions()
        .mode();
    assert_ne!(mode & 0o111, 0, "exec bit restored");
}

#[test]
fn env_variables_listed_enter_the_key() {
    let f = Fixture::new();
    f.write("p.toml", "[stage.s]\nkind = \"command\"\ncmd = \"echo $MODE > o.txt\"\nenv = [\"MODE\"]\nouts = [\"o.txt\"]\n");
    let run = |mode: &str| {
        let out = f
            .command(&["run", "--json", "p.toml"])
            .env("MODE", mode)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    run("a");
    assert!(run("a").contains("stage-cached"));
    assert!(run("b").contains("stage-finished"));
    assert_eq!(f.read("o.txt"), "b\n");
}

#[test]
fn graph_prints_edges() {
    let f = seven();
    let dot = f.tuneflow(&["graph", "pipeline.toml"]);
    assert!(
        dot.stdout.contains("\"freeze\" -> \"extract\";"),
        "{}",
        dot.stdout
    );
    let mermaid = f.tuneflow(&["graph", "pipeline.toml", "--format", "mermaid"]);
    assert!(mermaid.stdout.starts_with("flowchart LR"));
}

#[test]
fn dependencies_may_live_outside_the_pipeline_folder() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("train.csv"), "1,2\n").unwrap();
    let f = Fixture::new();
    let dep = data.path().join("train.csv");
    f.write(
        "p.toml",
        &format!("[stage.s]\nkind = \"command\"\ncmd = \"cp {0} o.txt\"\ndeps = [\"{0}\"]\nouts = [\"o.txt\"]\n", dep.display()),
    );
    f.run_ok("p.toml", &[]);
    std::fs::write(&dep, "3,4\n").unwrap();
    let r = f.run_ok("p.toml", &[]);
    assert_eq!(r.stages("stage-finished"), ["s"]);
    assert_eq!(f.read("o.txt"), "3,4\n");
}

/// Regression: a 1,000-stage fan-out hung with 999 stages done, because
/// concurrent state-file writes collided and the warning they logged
/// waited forever on the stderr lock the plain reporter held.
#[test]
fn wide_fan_out_finishes() {
    let f = Fixture::new();
    let mut text = String::new();
    for i in 0..300 {
        text.push_str(&format!("[stage.s{i}]\nkind = \"command\"\ncmd = \"echo {i} > o{i}.txt\"\nouts = [\"o{i}.txt\"]\n"));
    }
    f.write("p.toml", &text);
    let r = f.tuneflow(&["run", "p.toml", "--jobs", "4"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("300 ran"), "{}", r.stderr);
    assert!(!r.stderr.contains("WARN"), "{}", r.stderr);
}
