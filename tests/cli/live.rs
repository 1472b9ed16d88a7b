//! What a run shows and keeps while training runs: the epoch events in
//! the stage's log, the Ctrl-C and resume lines, snake_case JSON keys.

use std::io::BufRead;

use crate::harness::Fixture;
use crate::train::digits_fixture;

/// The JSON lines of `stage`'s log in the run `id` (the worker's stderr
/// shares the file: other lines are skipped).
fn log_events(f: &Fixture, id: &str, stage: &str) -> Vec<serde_json::Value> {
    f.read(&format!(".tuneflow/runs/{id}/{stage}.log"))
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// The ids of the recorded runs, oldest first.
fn run_ids(f: &Fixture) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(f.path(".tuneflow/runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    ids
}

#[test]
fn the_pretrain_log_holds_its_epochs_as_json_lines() {
    let f = digits_fixture(3, 0.05, 40);
    f.run_ok("p.toml", &[]);
    let id = run_ids(&f).pop().unwrap();
    let events = log_events(&f, &id, "pretrain");
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["epoch", "epoch", "epoch", "train-result"],
        "{events:?}"
    );
    let epochs: Vec<u64> = events[..3]
        .iter()
        .map(|e| e["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(epochs, [1, 2, 3]);
    assert!(events[0]["train_loss"].is_number(), "{}", events[0]);
}

/// Starts `tuneflow run p.toml` with plain lines on stderr, sends SIGINT
/// once `ready` says so for a line, and returns the exit code and every
/// line.
fn interrupt_when(f: &Fixture, ready: impl Fn(&str) -> bool) -> (i32, Vec<String>) {
    let mut child = f
        .command(&["run", "p.toml"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut lines = Vec::new();
    let mut sent = false;
    for line in stderr.lines() {
        let line = line.unwrap();
        if !sent && ready(&line) {
            let ok = std::process::Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(ok.success());
            sent = true;
        }
        lines.push(line);
    }
    let code = child.wait().unwrap().code().unwrap_or(-1);
    assert!(sent, "never interrupted: {lines:#?}");
    (code, lines)
}

fn find<'a>(lines: &'a [String], prefix: &str) -> Option<&'a str> {
    lines
        .iter()
        .map(String::as_str)
        .find(|l| l.starts_with(prefix))
}

#[test]
fn ctrl_c_mid_pretrain_says_where_a_rerun_resumes_and_the_rerun_does() {
    let f = digits_fixture(6, 0.05, 200);
    // Before any epoch is checkpointed: a rerun starts over.
    let (code, lines) = interrupt_when(&f, |l| l.starts_with("running   pretrain"));
    assert_eq!(code, 130, "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l == "interrupted; a rerun starts pretrain from the beginning"),
        "{lines:#?}"
    );
    // After epoch 2's line (its checkpoint is written before it).
    let (code, lines) = interrupt_when(&f, |l| l.starts_with("epoch   2/6 "));
    assert_eq!(code, 130, "{lines:#?}");
    assert!(!lines.iter().any(|l| l.contains("FAILED")), "{lines:#?}");
    let said = find(&lines, "interrupted; a rerun resumes pretrain from epoch ")
        .unwrap_or_else(|| panic!("no resume line: {lines:#?}"));
    let epoch: u64 = said.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((2..6).contains(&epoch), "{said}");
    let runs = f.tuneflow(&["runs", "--json", "p.toml"]);
    let outcomes: Vec<serde_json::Value> = runs
        .events()
        .iter()
        .map(|r| r["record"]["outcome"].clone())
        .collect();
    assert_eq!(outcomes, ["interrupted", "interrupted"], "{}", runs.stdout);
    let rerun = f.tuneflow(&["run", "p.toml"]);
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    let resumed = format!("resuming pretrain from epoch {epoch} of 6");
    assert!(
        rerun.stderr.lines().any(|l| l == resumed),
        "expected `{resumed}`:\n{}",
        rerun.stderr
    );
}

/// Every key of a JSON value, as a `/` path; the values of `outputs` are
/// maps of the pipeline's own output names, and are not walked.
fn keys(v: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                out.push(format!("{path}/{k}"));
                if k != "outputs" {
                    keys(v, &format!("{path}/{k}"), out);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| keys(v, path, out)),
        _ => {}
    }
}

/// Lowercase letters, digits and `_`; a `.` only inside a number
/// (`min_dcf_0.01`).
fn snake(path: &str) -> bool {
    let key: Vec<char> = path.rsplit('/').next().unwrap_or(path).chars().collect();
    !key.is_empty()
        && key.iter().enumerate().all(|(i, &c)| {
            let digit =
                |j: Option<usize>| j.and_then(|j| key.get(j)).is_some_and(char::is_ascii_digit);
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || c == '_'
                || (c == '.' && digit(i.checked_sub(1)) && digit(Some(i + 1)))
        })
}

#[test]
fn snake_case_is_told_apart() {
    assert!(snake("/a/train_loss") && snake("/min_dcf_0.01") && snake("/eta_s"));
    assert!(!snake("/peak-rss-kib") && !snake("/x/Items") && !snake("/a.b") && !snake("/"));
}

#[test]
fn every_json_key_of_a_training_run_is_snake_case() {
    let f = digits_fixture(2, 0.05, 40);
    let mut text = f.read("p.toml");
    text.push_str(
        "\n[stage.emb]\nkind = \"extract\"\nmodel = \"pretrain.model\"\ndata = \"digits.val\"\n",
    );
    f.write("p.toml", &text);
    let mut lines: Vec<serde_json::Value> = f.run_ok("p.toml", &[]).events();
    for args in [
        ["cache", "verify", "--json", "p.toml"],
        ["cache", "du", "--json", "p.toml"],
    ] {
        let r = f.tuneflow(&args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        lines.extend(r.events());
    }
    let mut all = Vec::new();
    for line in &lines {
        keys(line, "", &mut all);
    }
    for must in [
        "/peak_rss_kib",
        "/train_loss",
        "/best_epoch",
        "/skipped_examples",
    ] {
        assert!(
            all.iter().any(|k| k.ends_with(must)),
            "no {must} in {all:?}"
        );
    }
    let bad: Vec<&String> = all.iter().filter(|k| !snake(k)).collect();
    assert!(bad.is_empty(), "keys not in snake_case: {bad:?}");
}
