//! The Slurm executor on a real one-host cluster (`scripts/slurm-local.sh`:
//! Debian's slurmctld, slurmd and munge, two emulated nodes, two fake
//! GPUs), started and stopped by this test. The scenarios share one
//! cluster, so they run in one test, in sequence.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::Fixture;

struct Cluster {
    dir: tempfile::TempDir,
}

const PORT: u16 = 6917;

impl Cluster {
    fn script() -> PathBuf {
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/slurm-local.sh"
        ))
    }

    fn command(&self, action: &str) -> Command {
        let mut c = Command::new("bash");
        c.arg(Self::script())
            .arg(action)
            .env("SLURM_LOCAL_DIR", self.dir.path())
            .env("SLURM_LOCAL_CTLD_PORT", PORT.to_string())
            .env("SLURM_LOCAL_SLURMD_PORT", (PORT + 1).to_string())
            .env("SLURM_LOCAL_NODES", "2")
            .env("SLURM_LOCAL_GPUS", "2");
        c
    }

    /// Installs (if needed) and starts the cluster; `None` where Slurm
    /// cannot be installed (not root, no apt).
    #[expect(
        clippy::print_stderr,
        reason = "the skip must be visible in the test output"
    )]
    fn start() -> Option<Self> {
        let c = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        let install = c.command("install").output().unwrap();
        if !install.status.success() {
            eprintln!(
                "SKIPPED: Slurm cannot be installed here: {}",
                String::from_utf8_lossy(&install.stderr)
            );
            return None;
        }
        let start = c.command("start").output().unwrap();
        assert!(
            start.status.success(),
            "the cluster did not start:\n{}{}",
            String::from_utf8_lossy(&start.stdout),
            String::from_utf8_lossy(&start.stderr)
        );
        Some(c)
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("etc/slurm.conf")
    }

    /// A Slurm client command against this cluster.
    fn client(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", self.conf());
        c
    }

    /// Ids of jobs named `name` that Slurm knows (any state).
    fn jobs_named(&self, name: &str) -> Vec<String> {
        let out = self
            .client("squeue")
            .args(["-h", "-t", "all", "-o", "%i|%j"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('|'))
            .filter(|(_, n)| *n == name)
            .map(|(i, _)| i.to_owned())
            .collect()
    }

    fn wait_running(&self, name: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let out = self
                .client("squeue")
                .args(["-h", "-t", "RUNNING", "-o", "%i|%j"])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if let Some((id, _)) = text
                .lines()
                .filter_map(|l| l.split_once('|'))
                .find(|(_, n)| *n == name)
            {
                return id.to_owned();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("job {name} never ran");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.command("stop").output();
    }
}

fn fixture(cluster: &Cluster, text: &str) -> Fixture {
    let f = Fixture::new();
    f.write("p.toml", text);
    let _ = crate::harness::SLURM_CONF.set(cluster.conf());
    f
}

const COMMANDS: &str = r#"
[pipeline]
name = "slurm-commands"

[executor]
kind = "slurm"
poll-seconds = 0.3

[stage.a]
kind = "command"
cmd = "mkdir -p out && seq 1 1000 > out/a.txt"
outs = ["out/a.txt"]

[stage.b]
kind = "command"
cmd = "mkdir -p out/dir && sort -r out/a.txt > out/dir/b.txt && wc -l < out/a.txt > out/dir/n.txt"
deps = ["out/a.txt"]
outs = ["out/dir"]
"#;

#[test]
fn stages_run_as_slurm_jobs() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    same_digests_as_local(&cluster);
    failures_carry_the_job_and_its_log(&cluster);
    gpus_come_from_the_gres(&cluster);
    independent_stages_spread_over_both_nodes(&cluster);
    a_restarted_coordinator_reattaches(&cluster);
    a_preempted_job_is_requeued_and_completes(&cluster);
    ctrl_c_cancels_the_jobs(&cluster);
    the_in_flight_cap_holds(&cluster);
    #[cfg(feature = "torch")]
    training_gives_the_same_weights_as_local(&cluster);
}

fn same_digests_as_local(cluster: &Cluster) {
    let slurm = fixture(cluster, COMMANDS);
    let r = slurm.run_ok("p.toml", &[]);
    assert_eq!(r.stages("stage-finished"), ["a", "b"]);
    let local = fixture(cluster, COMMANDS);
    let l = local.run_ok("p.toml", &["--executor", "local"]);
    let outputs = |run: &crate::harness::Run| -> Vec<serde_json::Value> {
        run.events()
            .into_iter()
            .filter(|e| e["event"] == "stage-finished")
            .map(|e| e["outputs"].clone())
            .collect()
    };
    assert_eq!(outputs(&r), outputs(&l), "Slurm and local outputs differ");
    assert_eq!(
        slurm.run_ok("p.toml", &[]).stages("stage-cached"),
        ["a", "b"]
    );
    assert_eq!(
        cluster.jobs_named("tf-a").len(),
        1,
        "a cached rerun submits nothing"
    );
}

fn failures_carry_the_job_and_its_log(cluster: &Cluster) {
    let f = fixture(
        cluster,
        "[executor]\nkind = \"slurm\"\npoll-seconds = 0.3\n\n[stage.bad]\nkind = \"command\"\ncmd = \"echo boom-from-the-node >&2; exit 3\"\n",
    );
    let r = f.tuneflow(&["run", "p.toml"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    for needle in [
        "Slurm job",
        "FAILED",
        "exited with exit status 3",
        "boom-from-the-node",
    ] {
        assert!(r.stderr.contains(needle), "{needle} missing:\n{}", r.stderr);
    }
}

fn gpus_come_from_the_gres(cluster: &Cluster) {
    let f = fixture(
        cluster,
        "[executor]\nkind = \"slurm\"\npoll-seconds = 0.3\n\n[stage.gpu]\nkind = \"command\"\ncmd = \"mkdir -p out && echo \\\"$CUDA_VISIBLE_DEVICES\\\" > out/gpu.txt\"\nouts = [\"out/gpu.txt\"]\nresources = { gpu = 2 }\n",
    );
    f.run_ok("p.toml", &[]);
    assert_eq!(f.read("out/gpu.txt").trim(), "0,1");
}

fn independent_stages_spread_over_both_nodes(cluster: &Cluster) {
    let mut text = String::from("[executor]\nkind = \"slurm\"\npoll-seconds = 0.3\n");
    for i in 0..3 {
        text.push_str(&format!(
            "\n[stage.s{i}]\nkind = \"command\"\ncmd = \"mkdir -p out && sleep 3 && echo $SLURMD_NODENAME > out/s{i}.txt\"\nouts = [\"out/s{i}.txt\"]\n"
        ));
    }
    let f = fixture(cluster, &text);
    let started = Instant::now();
    f.run_ok("p.toml", &[]);
    let took = started.elapsed();
    let mut nodes: Vec<String> = (0..3)
        .map(|i| f.read(&format!("out/s{i}.txt")).trim().to_owned())
        .collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(
        nodes.len(),
        2,
        "three 1-CPU jobs fill both nodes: {nodes:?}"
    );
    assert!(took < Duration::from_secs(9), "they ran at once: {took:?}");
}

fn a_restarted_coordinator_reattaches(cluster: &Cluster) {
    let f = fixture(
        cluster,
        "[executor]\nkind = \"slurm\"\npoll-seconds = 0.3\n\n[stage.long]\nkind = \"command\"\ncmd = \"mkdir -p out && sleep 4 && echo done > out/long.txt\"\nouts = [\"out/long.txt\"]\n",
    );
    let mut child = f
        .command(&["run", "--json", "p.toml"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let id = cluster.wait_running("tf-long");
    child.kill().unwrap(); // SIGKILL: no chance to cancel anything
    child.wait().unwrap();
    let r = f.run_ok("p.toml", &[]);
    assert_eq!(r.stages("stage-finished"), ["long"]);
    assert_eq!(
        cluster.jobs_named("tf-long"),
        [id],
        "re-attached, not submitted again"
    );
    assert_eq!(f.read("out/long.txt").trim(), "done");
    drop(std::io::BufReader::new(child.stdout.take().unwrap()).lines());
}

fn a_preempted_job_is_requeued_and_completes(cluster: &Cluster) {
    // Our job asks for both CPUs of node 1 in the low-priority partition;
    // a job in `high` then takes them, and Slurm requeues ours.
    let f = fixture(
        cluster,
        "[executor]\nkind = \"slurm\"\npartition = \"low\"\ncpus = 2\npoll-seconds = 0.3\n\n[stage.victim]\nkind = \"command\"\ncmd = \"mkdir -p out && sleep 3 && echo survived > out/v.txt\"\nouts = [\"out/v.txt\"]\n",
    );
    let child = f
        .command(&["run", "--json", "p.toml"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let id = cluster.wait_running("tf-victim");
    let high = cluster
        .client("sbatch")
        .args([
            "--parsable",
            "-p",
            "high",
            "-c",
            "2",
            "-o",
            "/dev/null",
            "--wrap",
            "sleep 2",
        ])
        .output()
        .unwrap();
    assert!(
        high.status.success(),
        "{}",
        String::from_utf8_lossy(&high.stderr)
    );
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(f.read("out/v.txt").trim(), "survived");
    let info = cluster
        .client("scontrol")
        .args(["-o", "show", "job", &id])
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        !info.contains("Restarts=0"),
        "the job was never preempted: {info}"
    );
}

fn ctrl_c_cancels_the_jobs(cluster: &Cluster) {
    let f = fixture(
        cluster,
        "[executor]\nkind = \"slurm\"\npoll-seconds = 0.3\n\n[stage.slow]\nkind = \"command\"\ncmd = \"sleep 60\"\n",
    );
    let child = f
        .command(&["run", "p.toml"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let id = cluster.wait_running("tf-slow");
    // kill(1) sends SIGINT, as Ctrl-C does.
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info = cluster
            .client("scontrol")
            .args(["-o", "show", "job", &id])
            .output()
            .unwrap();
        let info = String::from_utf8_lossy(&info.stdout).into_owned();
        if info.contains("JobState=CANCELLED") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} was not cancelled: {info}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A CI-sized training pipeline: the job runs the `tuneflow-torch` worker
/// on the node and stores the same weights, bit for bit.
#[cfg(feature = "torch")]
fn training_gives_the_same_weights_as_local(cluster: &Cluster) {
    let text = r#"
[pipeline]
seed = 4
device = "cpu"

[executor]
kind = "slurm"
cpus = 2
poll-seconds = 0.3

[stage.digits]
kind = "ingest"
format = "insightface-rec"
path = "fx/digits/rec-0-4"
size = 28
channels = 1
max-per-class = 30
split = { val = 0.2 }

[stage.pretrain]
kind = "pretrain"
data = "digits.train"
val = "digits.val"
model = { depth = 10, width = 8, embedding = 16 }
optimizer = { kind = "sgd", lr = 0.05, momentum = 0.9 }
epochs = 2
batch = 16
"#;
    let digests = |executor: &str| {
        let f = fixture(cluster, text);
        let r = f.tuneflow(&[
            "fixtures",
            "--out",
            "fx",
            "--no-speakers",
            "--digits-per-class",
            "30",
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let r = f.run_ok("p.toml", &["--executor", executor]);
        let epochs = r
            .events()
            .into_iter()
            .filter(|e| e["event"] == "epoch")
            .count();
        assert_eq!(epochs, 2, "{executor}: epoch events reach the coordinator");
        r.events()
            .into_iter()
            .filter(|e| e["event"] == "stage-finished")
            .map(|e| {
                (
                    e["stage"].as_str().unwrap().to_owned(),
                    e["outputs"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(digests("slurm"), digests("local"));
}

/// `max-in-flight = 1`: three independent stages go one job at a time.
fn the_in_flight_cap_holds(cluster: &Cluster) {
    let mut text =
        String::from("[executor]\nkind = \"slurm\"\npoll-seconds = 0.2\nmax-in-flight = 1\n");
    for i in 0..3 {
        text.push_str(&format!(
            "\n[stage.c{i}]\nkind = \"command\"\ncmd = \"mkdir -p out && date +%s.%N > out/c{i}.start && sleep 1 && date +%s.%N > out/c{i}.end\"\nouts = [\"out/c{i}.start\", \"out/c{i}.end\"]\n"
        ));
    }
    let f = fixture(cluster, &text);
    f.run_ok("p.toml", &[]);
    let read = |n: &str| f.read(n).trim().parse::<f64>().unwrap();
    let mut spans: Vec<(f64, f64)> = (0..3)
        .map(|i| {
            (
                read(&format!("out/c{i}.start")),
                read(&format!("out/c{i}.end")),
            )
        })
        .collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    for w in spans.windows(2) {
        assert!(w[1].0 >= w[0].1, "two jobs overlapped: {spans:?}");
    }
}
