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
