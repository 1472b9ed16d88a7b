//! kill -9 in the middle of a run, at random points, then a plain rerun.

use std::collections::BTreeSet;
use std::time::Duration;

use rand::{Rng, SeedableRng};

use crate::harness::Fixture;

fn chain(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        let dep = if i == 0 {
            String::new()
        } else {
            format!("deps = [\"s{}.txt\"]\n", i - 1)
        };
        let input = if i == 0 {
            "echo start".to_owned()
        } else {
            format!("cat s{}.txt", i - 1)
        };
        s.push_str(&format!(
            "[stage.s{i}]\nkind = \"command\"\ncmd = \"sleep 0.15; ({input}; echo {i}) > s{i}.txt\"\n{dep}outs = [\"s{i}.txt\"]\n"
        ));
    }
    s
}

#[test]
fn kill_9_mid_run_then_plain_rerun_resumes() {
    let seed: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n = 8;
    for attempt in 0..4 {
        let f = Fixture::new();
        f.write("p.toml", &chain(n));
        let mut child = f
            .command(&["run", "p.toml"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let delay = rng.gen_range(50..1300);
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // The orphaned command of the stage in flight may still finish.
        std::thread::sleep(Duration::from_millis(250));
        let status = f.tuneflow(&["status", "--json", "p.toml"]);
        assert_eq!(status.code, 0, "seed {seed}: {}", status.stderr);
        let committed: BTreeSet<String> = status
            .stdout
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["state"] == "cached")
            .map(|v| v["stage"].as_str().unwrap().to_owned())
            .collect();
        let r = f.run_ok("p.toml", &[]);
        let cached: BTreeSet<String> = r.stages("stage-cached").into_iter().collect();
        let ran: BTreeSet<String> = r.stages("stage-finished").into_iter().collect();
        let ctx = format!("seed {seed}, attempt {attempt}, killed after {delay} ms");
        assert_eq!(
            cached, committed,
            "{ctx}: rerun served exactly the committed stages"
        );
        assert_eq!(cached.len() + ran.len(), n, "{ctx}");
        assert!(cached.is_disjoint(&ran), "{ctx}");
        let last = f.read(&format!("s{}.txt", n - 1));
        assert_eq!(last.lines().count(), n + 1, "{ctx}: {last}");
        let verify = f.tuneflow(&["cache", "verify", "p.toml"]);
        assert_eq!(verify.code, 0, "{ctx}: {}", verify.stdout);
        assert!(
            verify.stdout.contains(" 0 corrupt"),
            "{ctx}: {}",
            verify.stdout
        );
        // Nothing half-written is left in the store's temp folder.
        let leftovers = std::fs::read_dir(f.path(".tuneflow/objects/tmp"))
            .unwrap()
            .count();
        assert!(leftovers <= 1, "{ctx}: {leftovers} temp files");
    }
}

/// 20 stages: `head` writes, sleeps and appends (a half-written output if
/// it is killed mid-way), then a chain and a fan-out that read it.
fn twenty() -> String {
    let mut s = String::from(
        "[stage.head]\nkind = \"command\"\ncmd = \"echo head > a.txt; sleep 0.3; echo tail >> a.txt\"\nouts = [\"a.txt\"]\n\
         [stage.count]\nkind = \"command\"\ncmd = \"wc -l < a.txt > b.txt\"\ndeps = [\"a.txt\"]\nouts = [\"b.txt\"]\n",
    );
    for i in 0..18 {
        let input = if i == 0 {
            "b.txt".to_owned()
        } else {
            format!("c{}.txt", i - 1)
        };
        let fan = if i % 3 == 0 { "a.txt" } else { "b.txt" };
        s.push_str(&format!(
            "[stage.c{i}]\nkind = \"command\"\ncmd = \"sleep 0.0{}; (cat {input} {fan}; echo {i}) > c{i}.txt\"\ndeps = [\"{input}\", \"{fan}\"]\nouts = [\"c{i}.txt\"]\n",
            i % 4
        ));
    }
    s
}

fn outputs(f: &Fixture) -> Vec<(String, String)> {
    let mut names = vec!["a.txt".to_owned(), "b.txt".to_owned()];
    names.extend((0..18).map(|i| format!("c{i}.txt")));
    names
        .into_iter()
        .map(|n| {
            let text = std::fs::read_to_string(f.path(&n)).unwrap_or_default();
            (n, text)
        })
        .collect()
}

/// What an uninterrupted run of [`twenty`] with `head` writing `round`
/// leaves.
fn expected(round: usize) -> Vec<(String, String)> {
    let a = format!("head {round}\ntail\n");
    let b = "2\n".to_owned();
    let mut out = vec![
        ("a.txt".to_owned(), a.clone()),
        ("b.txt".to_owned(), b.clone()),
    ];
    let mut prev = b.clone();
    for i in 0..18 {
        let fan = if i % 3 == 0 { &a } else { &b };
        let c = format!("{prev}{fan}{i}\n");
        out.push((format!("c{i}.txt"), c.clone()));
        prev = c;
    }
    out
}

fn head(round: usize) -> String {
    format!("head.cmd=\"echo head {round} > a.txt; sleep 0.3; echo tail >> a.txt\"")
}

/// 40 rounds of kill -9 at a random moment and an immediate plain rerun:
/// every output is byte-identical to an uninterrupted run's, the cache
/// verifies, and the next run is all cached. Orphaned commands of the
/// killed run are ended before the rerun runs anything.
#[test]
fn forty_kill_9_rounds_with_an_immediate_rerun_never_commit_mixed_output() {
    let reference = Fixture::new();
    reference.write("p.toml", &twenty());
    reference.run_ok("p.toml", &["--set", &head(7)]);
    assert_eq!(outputs(&reference), expected(7), "the expected outputs");
    let seed: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let f = Fixture::new();
    f.write("p.toml", &twenty());
    for round in 0..40 {
        let mut child = f
            .command(&["run", "p.toml", "--set", &head(round)])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let delay = rng.gen_range(20..1200);
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap(); // SIGKILL, then an immediate rerun
        child.wait().unwrap();
        let ctx = format!("seed {seed}, round {round}, killed after {delay} ms");
        let r = f.tuneflow(&["run", "--json", "p.toml", "--set", &head(round)]);
        assert_eq!(r.code, 0, "{ctx}: {}", r.stderr);
        assert_eq!(outputs(&f), expected(round), "{ctx}");
    }
    let again = f.run_ok("p.toml", &["--set", &head(39)]);
    assert_eq!(again.stages("stage-cached").len(), 20, "{}", again.stdout);
    let verify = f.tuneflow(&["cache", "verify", "p.toml"]);
    assert_eq!(verify.code, 0, "seed {seed}: {}", verify.stdout);
}

/// A `kill -9` of the runner ends its commands' whole process groups at
/// once (a background process a command started included), through the
/// run's watchdog, without waiting for a rerun.
#[test]
fn kill_9_of_the_runner_ends_its_commands_at_once() {
    let f = Fixture::new();
    f.write(
        "p.toml",
        "[stage.slow]\nkind = \"command\"\n\
         cmd = \"(sleep 2; echo late > late.txt) & echo $$ > started.txt; sleep 30; echo x > out.txt\"\n\
         outs = [\"out.txt\"]\n",
    );
    let mut child = f
        .command(&["run", "p.toml"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !f.path("started.txt").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the command never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    child.kill().unwrap(); // SIGKILL: the runner cleans up nothing itself
    child.wait().unwrap();
    let leader: u32 = f.read("started.txt").trim().parse().unwrap();
    std::thread::sleep(Duration::from_millis(3500));
    assert!(
        !f.path("late.txt").exists(),
        "a background process of the killed run's command kept running"
    );
    let state = std::fs::read_to_string(format!("/proc/{leader}/stat")).unwrap_or_default();
    let state = state
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .next();
    assert!(
        state.is_none() || state == Some("Z"),
        "the command's shell ({leader}) still runs: {state:?}"
    );
}
