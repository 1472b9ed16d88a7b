//! Failing stages, exit codes, --keep-going, Ctrl-C, the run lock.

use std::time::{Duration, Instant};

use crate::harness::Fixture;

const BRANCHES: &str = "\
[stage.bad]\nkind = \"command\"\ncmd = \"echo about to fail; echo 'disk on fire' >&2; exit 3\"\nouts = [\"bad.txt\"]\n\
[stage.after_bad]\nkind = \"command\"\ncmd = \"cp bad.txt after.txt\"\ndeps = [\"bad.txt\"]\nouts = [\"after.txt\"]\n\
[stage.slow]\nkind = \"command\"\ncmd = \"sleep 0.5; echo ok > slow.txt\"\nouts = [\"slow.txt\"]\n\
[stage.after_slow]\nkind = \"command\"\ncmd = \"cp slow.txt after_slow.txt\"\ndeps = [\"slow.txt\"]\nouts = [\"after_slow.txt\"]\n";

#[test]
fn failing_stage_reports_status_stderr_tail_and_log_and_stops_dependants() {
    let f = Fixture::new();
    f.write("p.toml", BRANCHES);
    let r = f.tuneflow(&["run", "--json", "p.toml", "--jobs", "2"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let failed: Vec<_> = r
        .events()
        .into_iter()
        .filter(|e| e["event"] == "stage-failed")
        .collect();
    assert_eq!(failed.len(), 1);
    let error = failed[0]["error"].as_str().unwrap();
    assert!(error.contains("exit status 3"), "{error}");
    assert!(error.contains("disk on fire"), "{error}");
    let log = error.split("full log: ").nth(1).unwrap().trim();
    assert!(std::fs::read_to_string(log)
        .unwrap()
        .contains("about to fail"));
    assert!(r.stages("stage-skipped").contains(&"after_bad".to_owned()));
    // Default: no new work after a failure (slow had already started).
    assert!(r.stages("stage-skipped").contains(&"after_slow".to_owned()));
}

#[test]
fn keep_going_finishes_independent_branches() {
    let f = Fixture::new();
    f.write("p.toml", BRANCHES);
    let r = f.tuneflow(&["run", "--json", "p.toml", "--jobs", "2", "--keep-going"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.stages("stage-finished"), ["slow", "after_slow"]);
    assert_eq!(r.stages("stage-skipped"), ["after_bad"]);
}

#[test]
fn missing_declared_output_fails_the_stage() {
    let f = Fixture::new();
    f.write(
        "p.toml",
        "[stage.s]\nkind = \"command\"\ncmd = \"true\"\nouts = [\"never.txt\"]\n",
    );
    let r = f.tuneflow(&["run", "p.toml"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("declared output `never.txt` was not created"),
        "{}",
        r.stderr
    );
}

#[test]
fn missing_dependency_fails_with_its_name() {
    let f = Fixture::new();
    f.write(
        "p.toml",
        "[stage.s]\nkind = \"command\"\ncmd = \"true\"\ndeps = [\"data/none.csv\"]\n",
    );
    let r = f.tuneflow(&["run", "p.toml"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("dependency `data/none.csv` of stage `s` does not exist"),
        "{}",
        r.stderr
    );
}

#[test]
fn usage_errors_exit_2() {
    let f = Fixture::new();
    f.write("p.toml", "[stage.s]\nkind = \"command\"\ncmd = \"true\"\n");
    assert_eq!(f.tuneflow(&["run", "p.toml", "--force", "nope"]).code, 2);
    assert_eq!(f.tuneflow(&["run", "p.toml", "--set", "novalue"]).code, 2);
    assert_eq!(f.tuneflow(&["run", "missing.toml"]).code, 2);
}

#[test]
fn ctrl_c_stops_running_commands_quickly_and_keeps_the_cache_usable() {
    let f = Fixture::new();
    f.write(
        "p.toml",
        "[stage.quick]\nkind = \"command\"\ncmd = \"echo q > q.txt\"\nouts = [\"q.txt\"]\n\
         [stage.long]\nkind = \"command\"\ncmd = \"sleep 60 & sleep 60; echo done > l.txt\"\nouts = [\"l.txt\"]\n",
    );
    let mut child = f
        .command(&["run", "--json", "p.toml"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_state(&f, "quick", "finished", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    unsafe_sigint(child.id());
    let status = child.wait().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(status.code(), Some(130));
    // No sleep survives: the whole process group was killed. A killed
    // process still needs a scheduling slot to exit on a loaded machine,
    // so allow it a moment to vanish.
    let leftover = || {
        let ps = std::process::Command::new("pgrep")
            .args(["-f", "sleep 60"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&ps.stdout).into_owned()
    };
    let gone_by = Instant::now() + Duration::from_secs(1);
    while !leftover().is_empty() && Instant::now() < gone_by {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(leftover().is_empty(), "leftover: {}", leftover());
    let verify = f.tuneflow(&["cache", "verify", "p.toml"]);
    assert_eq!(verify.code, 0, "{}", verify.stdout);
    let r = f.run_ok("p.toml", &["--set", "long.cmd=echo done > l.txt"]);
    assert_eq!(r.stages("stage-cached"), ["quick"]);
}

fn unsafe_sigint(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Polls the run's state file until `stage` is in state `want`.
pub fn wait_for_state(f: &Fixture, stage: &str, want: &str, limit: Duration) {
    let t = Instant::now();
    while t.elapsed() < limit {
        if let Ok(text) = std::fs::read_to_string(f.path(".tuneflow/run-state.json")) {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let stages = v["stages"].as_array().cloned().unwrap_or_default();
            if stages.iter().any(|s| s[0] == stage && s[1] == want) {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("stage `{stage}` never reached `{want}`");
}

#[test]
fn second_run_is_refused_while_status_still_answers() {
    let f = Fixture::new();
    f.write(
        "p.toml",
        "[stage.first]\nkind = \"command\"\ncmd = \"echo 1 > one.txt\"\nouts = [\"one.txt\"]\n\
         [stage.wait]\nkind = \"command\"\ncmd = \"while [ ! -f go ]; do sleep 0.05; done; echo 2 > two.txt\"\ndeps = [\"one.txt\"]\nouts = [\"two.txt\"]\n",
    );
    let mut child = f.command(&["run", "p.toml"]).spawn().unwrap();
    let t = Instant::now();
    while !f.path(".tuneflow/run-state.json").exists() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = f.tuneflow(&["run", "p.toml"]);
    assert_eq!(second.code, 3);
    assert!(
        second
            .stderr
            .contains(&format!("is in use by pid {}", child.id())),
        "{}",
        second.stderr
    );
    let status = f.tuneflow(&["status", "p.toml"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(status.stdout.contains("in progress"), "{}", status.stdout);
    std::fs::write(f.path("go"), "").unwrap();
    assert!(child.wait().unwrap().success());
}
