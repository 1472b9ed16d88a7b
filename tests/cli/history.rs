//! Every run remembered (all-cached ones too), `tuneflow runs` and its
//! filters, `metrics RUN` and `metrics --diff A B`.

use crate::harness::Fixture;

/// A stage whose typed `metrics` output reports `acc` = the learning
/// rate (so each variant has its own value).
pub(crate) const SCORED: &str = r#"
[params]
lr = 0.3

[stage.train]
kind = "command"
cmd = "mkdir -p out && echo ${params.lr} > out/model.txt"
outs = ["out/model.txt"]

[stage.score]
kind = "command"
cmd = '''printf '{"acc": %s, "loss": 1}' "$(cat out/model.txt)" > out/m.json'''
deps = ["out/model.txt"]
outs = { m = { path = "out/m.json", type = "metrics" } }
"#;

fn scored() -> Fixture {
    let f = Fixture::new();
    f.write("p.toml", SCORED);
    f
}

fn runs(f: &Fixture, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["runs", "p.toml", "--json"];
    args.extend_from_slice(extra);
    let r = f.tuneflow(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.events()
}

/// Three runs: default, `--set params.lr=1.0`, default again (all cached),
/// then a failing variant.
fn three_runs_and_a_failure(f: &Fixture) -> Vec<String> {
    f.run_ok("p.toml", &[]);
    f.run_ok("p.toml", &["--set", "params.lr=1.0"]);
    f.run_ok("p.toml", &[]);
    let bad = f.tuneflow(&["run", "p.toml", "--set", "params.lr=oops"]);
    assert_eq!(bad.code, 1, "{}", bad.stderr);
    runs(f, &[])
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_run_is_recorded_with_its_overrides_outcomes_and_metrics() {
    let f = scored();
    let ids = three_runs_and_a_failure(&f);
    assert_eq!(ids.len(), 4);
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "ids sort by time");
    assert!(
        ids.iter()
            .all(|id| id.starts_with("20") && id.contains('-')),
        "{ids:?}"
    );
    let all = runs(&f, &[]);
    let rec = |i: usize| &all[i]["record"];
    assert_eq!(rec(1)["overrides"], serde_json::json!(["params.lr=1.0"]));
    assert_eq!(rec(0)["overrides"], serde_json::json!([]));
    // The all-cached run is recorded, with what it resolved to.
    assert_eq!(rec(2)["stages"]["train"]["outcome"], "cached");
    assert_eq!(rec(2)["stages"]["score"]["outcome"], "cached");
    assert_eq!(rec(0)["stages"]["score"]["outcome"], "ran");
    assert_eq!(rec(3)["outcome"], "failed");
    assert_eq!(rec(3)["stages"]["score"]["outcome"], "failed");
    assert!(rec(3)["stages"]["score"]["reason"]
        .as_str()
        .unwrap()
        .contains("metrics"));
    for (i, acc) in [(0, 0.3), (1, 1.0), (2, 0.3)] {
        assert_eq!(all[i]["metrics"]["score.m"]["value.acc"], acc, "run {i}");
    }
    assert!(all[3]["metrics"].get("score.m").is_none());
    assert_eq!(rec(0)["pipeline_digest"].as_str().unwrap().len(), 64);
    assert!(rec(2)["ended"].as_u64().unwrap() >= rec(2)["started"].as_u64().unwrap());
}

#[test]
fn runs_filter_by_stage_param_and_status() {
    let f = scored();
    let ids = three_runs_and_a_failure(&f);
    let ids_of = |v: Vec<serde_json::Value>| -> Vec<String> {
        v.iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids_of(runs(&f, &["--param", "params.lr=1.0"])),
        [ids[1].clone()]
    );
    // `train` ran in the first two and the failed run (a new value).
    assert_eq!(
        ids_of(runs(&f, &["--stage", "train"])),
        [ids[0].clone(), ids[1].clone(), ids[3].clone()]
    );
    assert_eq!(ids_of(runs(&f, &["--status", "failed"])), [ids[3].clone()]);
    assert_eq!(ids_of(runs(&f, &["-n", "2"])), ids[2..].to_vec());
    let table = f.tuneflow(&["runs", "p.toml"]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(table.stdout.lines().count() == 5, "{}", table.stdout);
    assert!(table.stdout.contains("params.lr=1.0"), "{}", table.stdout);
}

#[test]
fn metrics_shows_now_or_any_run_and_diffs_any_two() {
    let f = scored();
    let ids = three_runs_and_a_failure(&f);
    // Now: the pipeline as it resolves, not the last (failed) run.
    let now = f.tuneflow(&["metrics", "p.toml", "--json"]);
    assert_eq!(now.code, 0, "{}", now.stderr);
    assert!(now.stdout.contains("\"acc\":0.3"), "{}", now.stdout);
    let second = f.tuneflow(&["metrics", "p.toml", &ids[1]]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(second.stdout.contains("1.0000"), "{}", second.stdout);
    let diff = f.tuneflow(&["metrics", "p.toml", "--diff", &ids[0], &ids[1]]);
    assert_eq!(diff.code, 0, "{}", diff.stderr);
    let acc = diff
        .stdout
        .lines()
        .find(|l| l.contains("value.acc"))
        .unwrap();
    assert!(acc.contains("+0.7000"), "{}", diff.stdout);
    // A run without the report: said, not a silent empty table.
    let lacking = f.tuneflow(&["metrics", "p.toml", "--diff", &ids[0], &ids[3]]);
    assert!(
        lacking.stdout.contains("score.m: only in"),
        "{}",
        lacking.stdout
    );
    // A unique part of an id is enough; an unknown one is a clear error.
    let part = &ids[1][ids[1].len() - 9..];
    let r = f.tuneflow(&["metrics", "p.toml", part]);
    assert_eq!(r.code, 0, "{}: {}", part, r.stderr);
    let r = f.tuneflow(&["metrics", "p.toml", "nope"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no recorded run"), "{}", r.stderr);
}

#[test]
fn a_run_in_a_git_repository_records_the_commit_and_dirty_flag() {
    let f = scored();
    let git = |args: &[&str]| {
        let st = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .current_dir(f.dir.path())
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
        String::from_utf8(st.stdout).unwrap()
    };
    git(&["init", "-q"]);
    git(&["add", "p.toml"]);
    git(&["commit", "-q", "-m", "p"]);
    let head = git(&["rev-parse", "HEAD"]).trim().to_owned();
    f.run_ok("p.toml", &[]);
    f.write("p.toml", &format!("{SCORED}\n# edited\n"));
    f.run_ok("p.toml", &[]);
    let all = runs(&f, &[]);
    assert_eq!(
        all[0]["record"]["git"],
        serde_json::json!({"commit": head, "dirty": false})
    );
    assert_eq!(all[1]["record"]["git"]["dirty"], true);
    assert_ne!(
        all[0]["record"]["pipeline_digest"],
        all[1]["record"]["pipeline_digest"]
    );
}

/// `prep` does not read the swept value; `train` and `score` do.
const SWEPT: &str = r#"
[params]
lr = 0.3

[stage.prep]
kind = "command"
cmd = "mkdir -p out && echo data > out/data.txt"
outs = ["out/data.txt"]

[stage.train]
kind = "command"
cmd = "cat out/data.txt > /dev/null && echo ${params.lr} > out/model.txt"
deps = ["out/data.txt"]
outs = ["out/model.txt"]

[stage.score]
kind = "command"
cmd = '''printf '{"acc": %s, "loss": 2}' "$(cat out/model.txt)" > out/m.json'''
deps = ["out/model.txt"]
outs = { m = { path = "out/m.json", type = "metrics" } }
"#;

fn count(r: &crate::harness::Run, event: &str, stage: &str) -> usize {
    r.stages(event).iter().filter(|s| *s == stage).count()
}

#[test]
fn a_sweep_runs_each_variant_shares_its_prefix_and_adds_only_new_values() {
    let f = Fixture::new();
    f.write("p.toml", SWEPT);
    let r = f.run_ok("p.toml", &["--set", "params.lr=0.1,0.3,1.0"]);
    assert_eq!(count(&r, "stage-finished", "prep"), 1, "{}", r.stdout);
    assert_eq!(count(&r, "stage-cached", "prep"), 2);
    assert_eq!(count(&r, "stage-finished", "train"), 3);
    assert_eq!(count(&r, "stage-finished", "score"), 3);
    let variants: Vec<_> = r
        .events()
        .into_iter()
        .filter(|e| e["event"] == "sweep-variant")
        .collect();
    assert_eq!(variants.len(), 3);
    assert_eq!(variants[2]["set"], serde_json::json!(["params.lr=1.0"]));

    // A fourth value later: only its variant runs.
    let r = f.run_ok("p.toml", &["--set", "params.lr=0.1,0.3,1.0,3.0"]);
    assert_eq!(count(&r, "stage-finished", "train"), 1, "{}", r.stdout);
    assert_eq!(count(&r, "stage-cached", "train"), 3);

    let rows = runs(&f, &["--sweep"]);
    assert_eq!(rows.len(), 4);
    let values: Vec<&str> = rows
        .iter()
        .map(|r| r["values"]["params.lr"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["0.1", "0.3", "1.0", "3.0"]);
    // Higher accuracy is better, lower loss is: the best is marked.
    assert_eq!(
        rows[3]["best"],
        serde_json::json!(["score.m:value.acc", "score.m:value.loss"])
    );
    assert_eq!(rows[0]["best"], serde_json::json!(["score.m:value.loss"]));
    let table = f.tuneflow(&["runs", "p.toml", "--sweep"]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(table.stdout.contains("3.0000*"), "{}", table.stdout);
    assert!(table.stdout.contains("4 variants"), "{}", table.stdout);
}

#[test]
fn a_sweep_with_an_empty_value_is_a_clear_error() {
    let f = Fixture::new();
    f.write("p.toml", SWEPT);
    let r = f.tuneflow(&["run", "p.toml", "--set", "params.lr=0.1,,0.3"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("none empty"), "{}", r.stderr);
    let r = f.tuneflow(&["runs", "p.toml", "--sweep"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no recorded sweep"), "{}", r.stderr);
}

#[test]
fn a_sweep_table_in_the_file_runs_its_variants_and_the_command_line_wins() {
    let f = Fixture::new();
    f.write(
        "p.toml",
        &format!("{SWEPT}\n[sweep]\n\"params.lr\" = [0.1, 0.2]\n"),
    );
    let r = f.run_ok("p.toml", &[]);
    assert_eq!(count(&r, "stage-finished", "train"), 2, "{}", r.stdout);
    assert_eq!(
        r.events()
            .iter()
            .filter(|e| e["event"] == "sweep-variant")
            .count(),
        2
    );
    // `status` shows the file's own values (one variant).
    let s = f.tuneflow(&["status", "p.toml"]);
    assert_eq!(s.code, 0, "{}", s.stderr);
    // A `--set` of the same key replaces the file's list.
    let r = f.run_ok("p.toml", &["--set", "params.lr=0.5"]);
    assert_eq!(count(&r, "stage-finished", "train"), 1, "{}", r.stdout);
    assert!(r.events().iter().all(|e| e["event"] != "sweep-variant"));
    assert!(f.read("out/model.txt").contains("0.5"));
    f.write("p.toml", &format!("{SWEPT}\n[sweep]\n\"params.lr\" = 3\n"));
    let r = f.tuneflow(&["run", "p.toml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("p.toml") && r.stderr.contains("non-empty list"),
        "{}",
        r.stderr
    );
}

#[test]
fn json_events_carry_their_time() {
    let f = scored();
    let r = f.run_ok("p.toml", &[]);
    let times: Vec<String> = r
        .events()
        .iter()
        .map(|e| {
            e["time"]
                .as_str()
                .unwrap_or_else(|| panic!("no time: {e}"))
                .to_owned()
        })
        .collect();
    assert!(times.len() >= 4);
    for t in &times {
        // 2026-11-29T07:40:01.123Z
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted);
}
