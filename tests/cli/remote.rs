//! The shared remote cache, for real: a folder remote, and an S3 remote
//! served by moto's server (from PyPI, `scripts/ensure-moto.sh`) on the
//! loopback address. Push, pull into an empty cache, read-through on a
//! fresh clone, damaged remote objects, a server killed mid-push, two
//! pushers at once, garbage collection.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{seven, Fixture, Run};

/// A stage writing a 20 MB file (pushed in parts) and a folder of small
/// random files, and one reading them: random bytes, so results pushed
/// by two caches differ and a mix of them would show.
const BIG: &str = r#"
[stage.make]
kind = "command"
cmd = "mkdir -p out/parts && head -c 20000000 /dev/urandom > out/big.bin && for i in 1 2 3 4 5 6; do head -c 200000 /dev/urandom > out/parts/p$i; done"
outs = ["out"]

[stage.sum]
kind = "command"
cmd = "cat out/big.bin out/parts/* | cksum > sum.txt"
deps = ["out"]
outs = ["sum.txt"]
"#;

fn big() -> Fixture {
    let f = Fixture::new();
    f.write("pipeline.toml", BIG);
    f
}

/// The same pipeline file (and data) in a new folder: a fresh clone.
fn clone_of(f: &Fixture) -> Fixture {
    let g = Fixture::new();
    g.write("pipeline.toml", &f.read("pipeline.toml"));
    if f.path("data/raw.txt").exists() {
        g.write("data/raw.txt", &f.read("data/raw.txt"));
    }
    g
}

/// A folder remote and the environment that selects it.
fn folder_remote() -> (tempfile::TempDir, [(&'static str, String); 1]) {
    let remote = tempfile::tempdir().unwrap();
    let env = [("TUNEFLOW_REMOTE", remote.path().display().to_string())];
    (remote, env)
}

fn tf(f: &Fixture, args: &[&str], env: &[(&str, String)]) -> Run {
    let mut c = f.command(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(r: Run) -> Run {
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    r
}

fn bytes(f: &Fixture, rel: &str) -> Vec<u8> {
    std::fs::read(f.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every file below `dir`, by relative path, with its bytes.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(dir).unwrap().to_path_buf();
            (rel, std::fs::read(e.path()).unwrap())
        })
        .collect();
    out.sort();
    out
}

/// moto's S3 server on a free loopback port, with bucket `team`.
struct S3 {
    child: Child,
    port: u16,
}

fn moto_server() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ensure-moto.sh");
    let out = Command::new(script).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

impl S3 {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port)
    }

    fn start_on(port: u16) -> Self {
        let server = moto_server();
        let child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not start on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        let python = server.with_file_name("python");
        let make = format!(
            "import boto3; boto3.client('s3', endpoint_url='http://127.0.0.1:{port}', \
             aws_access_key_id='test', aws_secret_access_key='test', \
             region_name='us-east-1').create_bucket(Bucket='team')"
        );
        let st = Command::new(python).args(["-c", &make]).status().unwrap();
        assert!(st.success(), "could not create the bucket");
        Self { child, port }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", format!("http://127.0.0.1:{}", self.port)),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("TUNEFLOW_REMOTE", "s3://team/tuneflow".into()),
        ]
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn push_then_pull_into_an_empty_cache_gives_byte_identical_outputs() {
    let a = seven();
    let (_remote, env) = folder_remote();
    a.run_ok("pipeline.toml", &["--no-remote"]);
    let push = ok(tf(&a, &["cache", "push", "pipeline.toml"], &env));
    assert!(push.stdout.contains("push: 7 results"), "{}", push.stdout);
    // Idempotent: a second push sends nothing.
    let again = ok(tf(&a, &["cache", "push", "pipeline.toml", "--json"], &env));
    let last: serde_json::Value =
        serde_json::from_str(again.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["objects"], 0, "{}", again.stdout);

    let b = clone_of(&a);
    let pull = ok(tf(&b, &["cache", "pull", "pipeline.toml"], &env));
    assert!(pull.stdout.contains("pull: 7 results"), "{}", pull.stdout);
    let status = ok(tf(&b, &["status", "pipeline.toml"], &[]));
    assert_eq!(
        status.stdout.matches(" cached ").count(),
        7,
        "{}",
        status.stdout
    );
    let run = b.run_ok("pipeline.toml", &["--no-remote"]);
    assert_eq!(run.stages("stage-cached").len(), 7);
    assert!(run.stages("stage-finished").is_empty());
    assert_eq!(tree(&a.path("out")), tree(&b.path("out")));
}

#[test]
fn a_fresh_clone_reads_every_stage_through_an_s3_remote() {
    let s3 = S3::start();
    let a = big();
    a.run_ok("pipeline.toml", &["--no-remote"]);
    ok(tf(&a, &["cache", "push", "pipeline.toml"], &s3.env()));
    let b = clone_of(&a);
    let r = tf(&b, &["run", "--json", "pipeline.toml"], &s3.env());
    let r = ok(r);
    assert_eq!(r.stages("stage-cached"), ["make", "sum"], "{}", r.stderr);
    assert!(r.stages("stage-finished").is_empty());
    assert_eq!(
        r.stderr.matches("fetched from s3://team/tuneflow").count(),
        2,
        "{}",
        r.stderr
    );
    assert_eq!(bytes(&a, "out/big.bin"), bytes(&b, "out/big.bin"));
    assert_eq!(tree(&a.path("out")), tree(&b.path("out")));
    assert_eq!(bytes(&a, "sum.txt"), bytes(&b, "sum.txt"));
    let du = ok(tf(
        &b,
        &["cache", "du", "pipeline.toml", "--remote", "--json"],
        &s3.env(),
    ));
    let remote: serde_json::Value =
        serde_json::from_str(du.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(remote["results"], 2, "{}", du.stdout);
    assert_eq!(remote["objects"], 9, "{}", du.stdout); // big.bin, 6 parts, a tree, sum.txt
}

#[test]
fn a_damaged_object_on_the_remote_is_refused_and_the_stage_runs() {
    let a = big();
    let (remote, env) = folder_remote();
    a.run_ok("pipeline.toml", &["--no-remote"]);
    ok(tf(&a, &["cache", "push", "pipeline.toml"], &env));
    // Flip one byte of the largest object (big.bin), keeping its size.
    let objects = remote.path().join("objects");
    let largest = std::fs::read_dir(&objects)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut data = std::fs::read(&largest).unwrap();
    data[1000] ^= 0xff;
    std::fs::write(&largest, &data).unwrap();

    let b = clone_of(&a);
    let r = ok(tf(&b, &["run", "--json", "pipeline.toml"], &env));
    assert!(
        r.stages("stage-finished").contains(&"make".to_owned()),
        "{}",
        r.stdout
    );
    assert!(r.stderr.contains("is damaged"), "{}", r.stderr);
    // Nothing damaged entered b's cache: its outputs are its own run's.
    ok(tf(&b, &["cache", "verify", "pipeline.toml"], &[]));
    assert!(!largest.exists(), "the damaged object stays on the remote");
    // The next push repairs the remote; a third clone then reads a's bytes.
    ok(tf(&a, &["cache", "push", "pipeline.toml"], &env));
    let c = clone_of(&a);
    let r = ok(tf(&c, &["run", "--json", "pipeline.toml"], &env));
    assert_eq!(r.stages("stage-cached"), ["make", "sum"]);
    assert_eq!(bytes(&a, "out/big.bin"), bytes(&c, "out/big.bin"));
}

#[test]
fn a_server_killed_mid_push_fails_the_push_and_a_second_push_completes_it() {
    let mut s3 = S3::start();
    let a = big();
    a.run_ok("pipeline.toml", &["--no-remote"]);
    // Freeze the server, start the push, kill the server while the push
    // waits on it.
    let pid = s3.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    let mut push = a.command(&["cache", "push", "pipeline.toml"]);
    push.envs(s3.env()).env("TUNEFLOW_REMOTE_TIMEOUT", "20");
    let child = push
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    s3.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("remote `s3://team/tuneflow`"), "{stderr}");

    // A new server on the same address (moto keeps nothing): the push
    // completes, and an empty cache pulls everything.
    let s3 = S3::start_on(s3.port);
    let r = ok(tf(&a, &["cache", "push", "pipeline.toml"], &s3.env()));
    assert!(r.stdout.contains("push: 2 results"), "{}", r.stdout);
    let b = clone_of(&a);
    ok(tf(&b, &["cache", "pull", "pipeline.toml"], &s3.env()));
    let r = b.run_ok("pipeline.toml", &["--no-remote"]);
    assert_eq!(r.stages("stage-cached"), ["make", "sum"]);
    assert_eq!(tree(&a.path("out")), tree(&b.path("out")));
}

#[test]
fn an_interrupted_push_resumes_with_what_the_remote_has() {
    let a = big();
    let (remote, env) = folder_remote();
    a.run_ok("pipeline.toml", &["--no-remote"]);
    ok(tf(&a, &["cache", "push", "pipeline.toml"], &env));
    // What an interrupted push leaves: some objects, no manifests.
    std::fs::remove_dir_all(remote.path().join("results")).unwrap();
    let mut objects: Vec<_> = std::fs::read_dir(remote.path().join("objects"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    objects.sort();
    for p in &objects[..4] {
        std::fs::remove_file(p).unwrap();
    }
    let b = clone_of(&a);
    let r = tf(&b, &["run", "--json", "pipeline.toml"], &env);
    assert_eq!(ok(r).stages("stage-cached").len(), 0, "no manifest, no hit");
    let r = ok(tf(&a, &["cache", "push", "pipeline.toml", "--json"], &env));
    let last: serde_json::Value = serde_json::from_str(r.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["objects"], 4, "{}", r.stdout);
    assert_eq!(last["present"], objects.len() - 4, "{}", r.stdout);
    let c = clone_of(&a);
    let r = ok(tf(&c, &["run", "--json", "pipeline.toml"], &env));
    assert_eq!(r.stages("stage-cached"), ["make", "sum"]);
}

#[test]
fn two_pushers_of_the_same_results_leave_the_remote_consistent() {
    let s3 = S3::start();
    // Two caches with the same keys and different bytes (random outputs).
    let (a, b) = (big(), big());
    a.run_ok("pipeline.toml", &["--no-remote"]);
    b.run_ok("pipeline.toml", &["--no-remote"]);
    assert_ne!(bytes(&a, "out/big.bin"), bytes(&b, "out/big.bin"));
    let spawn = |f: &Fixture| {
        let mut c = f.command(&["cache", "push", "pipeline.toml"]);
        c.envs(s3.env())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c.spawn().unwrap()
    };
    let (pa, pb) = (spawn(&a), spawn(&b));
    for p in [pa, pb] {
        let out = p.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A clone gets one cache's results whole, never a mix.
    let c = clone_of(&a);
    let r = ok(tf(&c, &["run", "--json", "pipeline.toml"], &s3.env()));
    assert_eq!(r.stages("stage-cached"), ["make", "sum"]);
    let got = tree(&c.path("out"));
    assert!(
        got == tree(&a.path("out")) || got == tree(&b.path("out")),
        "a mix of two pushes"
    );
    let sum = bytes(&c, "sum.txt");
    assert!(sum == bytes(&a, "sum.txt") || sum == bytes(&b, "sum.txt"));
}

#[test]
fn an_unreachable_remote_slows_a_run_but_never_fails_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let f = seven();
    let env = [
        ("AWS_ENDPOINT", format!("http://127.0.0.1:{port}")),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", "key-id-4f8e".into()),
        ("AWS_SECRET_ACCESS_KEY", "sekrit-9c2d".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("TUNEFLOW_REMOTE_TIMEOUT", "2".into()),
    ];
    let r = ok(tf(
        &f,
        &[
            "run",
            "--json",
            "pipeline.toml",
            "--remote",
            "s3://team/x",
            "--push",
        ],
        &env,
    ));
    assert_eq!(r.stages("stage-finished").len(), 7);
    // One warning, then the run stops asking.
    assert_eq!(r.stderr.matches("WARN").count(), 1, "{}", r.stderr);
    for secret in ["key-id-4f8e", "sekrit-9c2d"] {
        assert!(
            !r.stderr.contains(secret) && !r.stdout.contains(secret),
            "{}",
            r.stderr
        );
        let record = std::fs::read_dir(f.path(".tuneflow/runs"))
            .unwrap()
            .map(|e| {
                tree(&e.unwrap().path())
                    .into_iter()
                    .map(|(_, b)| b)
                    .collect::<Vec<_>>()
                    .concat()
            });
        for bytes in record {
            assert!(
                !String::from_utf8_lossy(&bytes).contains(secret),
                "credentials in the run record"
            );
        }
    }
}

#[test]
fn write_through_pushes_each_computed_result() {
    let f = seven();
    let remote = tempfile::tempdir().unwrap();
    let url = remote.path().display().to_string();
    f.write(
        "pipeline.toml",
        &format!(
            "[cache]\nremote = \"{url}\"\npush = true\n{}",
            f.read("pipeline.toml")
        ),
    );
    let r = f.run_ok("pipeline.toml", &[]);
    assert_eq!(r.stderr.matches("pushed to").count(), 7, "{}", r.stderr);
    let g = clone_of(&f);
    let r = g.run_ok("pipeline.toml", &[]);
    assert_eq!(r.stages("stage-cached").len(), 7);
}

#[test]
fn gc_on_the_remote_removes_only_unreferenced_objects() {
    let a = big();
    let (remote, env) = folder_remote();
    a.run_ok("pipeline.toml", &["--no-remote"]);
    ok(tf(&a, &["cache", "push", "pipeline.toml"], &env));
    let orphan = remote.path().join("objects").join("ab".repeat(32));
    std::fs::write(&orphan, b"left by an interrupted push").unwrap();
    let r = ok(tf(
        &a,
        &[
            "cache",
            "gc",
            "pipeline.toml",
            "--remote",
            "--grace",
            "0",
            "--json",
        ],
        &env,
    ));
    let last: serde_json::Value = serde_json::from_str(r.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["objects_removed"], 1, "{}", r.stdout);
    assert!(!orphan.exists());
    let b = clone_of(&a);
    let r = ok(tf(&b, &["run", "--json", "pipeline.toml"], &env));
    assert_eq!(r.stages("stage-cached"), ["make", "sum"]);
}

#[test]
fn remote_misconfiguration_is_a_clear_error() {
    let f = seven();
    let r = tf(&f, &["cache", "push", "pipeline.toml"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no remote cache is set"), "{}", r.stderr);
    let r = tf(
        &f,
        &["run", "pipeline.toml", "--remote", "ftp://host/x"],
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("unknown scheme `ftp://`"), "{}", r.stderr);
    f.write(
        "pipeline.toml",
        &format!("[cache]\nremote = 3\n{}", f.read("pipeline.toml")),
    );
    let r = tf(&f, &["status", "pipeline.toml"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("remote"), "{}", r.stderr);
}

#[test]
fn a_folder_remote_overlapping_the_local_cache_is_refused() {
    let f = seven();
    f.run_ok("pipeline.toml", &["--no-remote"]);
    for url in [".tuneflow", ".tuneflow/remote", "."] {
        let full = f.path(url).display().to_string();
        let r = tf(&f, &["run", "pipeline.toml", "--remote", &full], &[]);
        assert_eq!(r.code, 2, "{url}: {}", r.stderr);
        assert!(
            r.stderr.contains("overlaps the local cache"),
            "{}",
            r.stderr
        );
        let r = tf(
            &f,
            &[
                "cache",
                "gc",
                "pipeline.toml",
                "--remote",
                &full,
                "--grace",
                "0",
            ],
            &[],
        );
        assert_eq!(r.code, 2, "{url}: {}", r.stderr);
    }
    ok(tf(&f, &["cache", "verify", "pipeline.toml"], &[]));
    let r = f.run_ok("pipeline.toml", &["--no-remote"]);
    assert_eq!(r.stages("stage-cached").len(), 7);
}

#[test]
fn a_remote_result_without_a_declared_output_is_a_miss_and_a_push_repairs_it() {
    let a = seven();
    let (remote, env) = folder_remote();
    a.run_ok("pipeline.toml", &["--no-remote"]);
    ok(tf(&a, &["cache", "push", "pipeline.toml"], &env));
    // Strip `out/metrics.txt` from evaluate's remote manifest.
    let results = remote.path().join("results");
    let mut stripped = 0;
    for e in std::fs::read_dir(&results).unwrap() {
        let p = e.unwrap().path();
        let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        if m["stage"] == "evaluate" {
            m["outputs"] = serde_json::json!([]);
            std::fs::write(&p, serde_json::to_vec(&m).unwrap()).unwrap();
            stripped += 1;
        }
    }
    assert_eq!(stripped, 1);
    let b = clone_of(&a);
    b.write("out/metrics.txt", "stale\n");
    let r = ok(tf(&b, &["run", "--json", "pipeline.toml"], &env));
    assert_eq!(r.stages("stage-finished"), ["evaluate"], "{}", r.stdout);
    assert_eq!(bytes(&a, "out/metrics.txt"), bytes(&b, "out/metrics.txt"));
    // The next push replaces the remote's broken manifest.
    ok(tf(&a, &["cache", "push", "pipeline.toml"], &env));
    let c = clone_of(&a);
    let r = ok(tf(&c, &["run", "--json", "pipeline.toml"], &env));
    assert_eq!(r.stages("stage-cached").len(), 7, "{}", r.stdout);
}

#[test]
fn credentials_in_a_remote_url_never_reach_the_output() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let f = seven();
    let url = format!("https://user:sekrit-77@127.0.0.1:{port}/x?token=tok-88");
    let env = [("TUNEFLOW_REMOTE_TIMEOUT", "inf".to_owned())];
    let r = ok(tf(
        &f,
        &["run", "pipeline.toml", "--remote", &url, "--push"],
        &env,
    ));
    let push = tf(
        &f,
        &["cache", "push", "pipeline.toml", "--remote", &url],
        &env,
    );
    assert_eq!(push.code, 3, "{}", push.stderr);
    for out in [&r.stdout, &r.stderr, &push.stdout, &push.stderr] {
        assert!(
            !out.contains("sekrit-77") && !out.contains("tok-88"),
            "{out}"
        );
    }
    assert!(r.stderr.contains("WARN"), "{}", r.stderr);
}

#[test]
fn a_folder_remote_that_cannot_be_created_does_not_fail_a_run() {
    let f = seven();
    f.write("plain.txt", "a file\n");
    let url = f.path("plain.txt/remote").display().to_string();
    let r = ok(tf(
        &f,
        &["run", "--json", "pipeline.toml", "--remote", &url],
        &[],
    ));
    assert_eq!(r.stages("stage-finished").len(), 7);
    assert!(
        r.stderr.contains("goes on without the remote"),
        "{}",
        r.stderr
    );
}
