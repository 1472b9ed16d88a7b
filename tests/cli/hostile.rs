//! What an adversarial review found (each test failed before its fix):
//! caches deleted through `..` or symlinks, links made during a run,
//! processes left behind, inputs changed during a run, unreadable
//! records, partial exports and restores, two runs on one folder, and
//! `status` of one pipeline showing another's run.

use std::time::Duration;

use crate::harness::Fixture;

fn command(name: &str, cmd: &str, extra: &str) -> String {
    format!("[stage.{name}]\nkind = \"command\"\ncmd = {cmd:?}\n{extra}\n")
}

#[test]
fn a_cache_inside_an_output_is_refused_through_dots_and_links() {
    let f = Fixture::new();
    let pipeline = format!(
        "[pipeline]\ncache = \"x/../out/cache\"\n{}",
        command(
            "a",
            "mkdir -p out && echo hi > out/x.txt",
            "outs = [\"out\"]"
        )
    );
    f.write("p.toml", &pipeline);
    let r = f.tuneflow(&["run", "p.toml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("overlaps the cache folder"),
        "{}",
        r.stderr
    );
    // Through a symlinked --cache-dir.
    f.write(
        "q.toml",
        &command(
            "a",
            "mkdir -p out && echo hi > out/x.txt",
            "outs = [\"out\"]",
        ),
    );
    std::fs::create_dir_all(f.path("out")).unwrap();
    std::os::unix::fs::symlink(f.path("out"), f.path("cachelink")).unwrap();
    let r = f.tuneflow(&["run", "q.toml", "--cache-dir", "cachelink"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("overlaps the cache folder"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_link_made_during_the_run_never_leads_outputs_out_of_the_folder() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(outside.path().join("data")).unwrap();
    std::fs::write(outside.path().join("data/keep.txt"), "precious").unwrap();
    let f = Fixture::new();
    let link = format!(
        "ln -sfn {} sub && echo done > a.txt",
        outside.path().display()
    );
    let pipeline = command("a", &link, "outs = [\"a.txt\"]")
        + &command("b", "exit 1", "after = [\"a\"]\nouts = [\"sub/data\"]")
        + &command(
            "c",
            "echo x > sub/file.txt",
            "after = [\"a\"]\nouts = [\"sub/file.txt\"]",
        );
    f.write("p.toml", &pipeline);
    let r = f.tuneflow(&["run", "--json", "p.toml", "--keep-going"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        std::fs::read_to_string(outside.path().join("data/keep.txt")).unwrap(),
        "precious"
    );
    assert!(
        r.stdout.contains("goes through the symlink `sub`"),
        "{}",
        r.stdout
    );
    assert!(!r.stages("stage-finished").contains(&"c".to_owned()));
}

#[test]
fn processes_a_command_leaves_behind_end_before_its_outputs_are_stored() {
    let f = Fixture::new();
    let pipeline = command(
        "a",
        "(sleep 1; echo late >> a.txt) >/dev/null 2>&1 & echo early > a.txt",
        "outs = [\"a.txt\"]",
    ) + &command(
        "b",
        "sleep 2; cat a.txt > b.txt",
        "deps = [\"a.txt\"]\nouts = [\"b.txt\"]",
    );
    f.write("p.toml", &pipeline);
    f.run_ok("p.toml", &[]);
    assert_eq!(f.read("a.txt"), "early\n");
    assert_eq!(f.read("b.txt"), "early\n");
}

#[test]
fn an_input_changed_while_its_stage_runs_is_not_committed() {
    let f = Fixture::new();
    f.write("in.txt", "v1\n").write(
        "p.toml",
        &command(
            "a",
            "sleep 1; cat in.txt > out.txt",
            "deps = [\"in.txt\"]\nouts = [\"out.txt\"]",
        ),
    );
    let run = f
        .command(&["run", "--json", "p.toml"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    f.write("in.txt", "v2\n");
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("changed while the stage ran"));
    f.write("in.txt", "v1\n");
    let r = f.run_ok("p.toml", &[]);
    assert_eq!(r.stages("stage-finished"), ["a"]);
    assert_eq!(f.read("out.txt"), "v1\n");
}

#[test]
fn unreadable_records_are_misses_and_verify_removes_them() {
    let f = Fixture::new();
    f.write(
        "p.toml",
        &command("a", "echo a > a.txt", "outs = [\"a.txt\"]"),
    );
    f.run_ok("p.toml", &[]);
    let results: Vec<_> = walk(&f.path(".tuneflow/results"));
    assert_eq!(results.len(), 1);
    std::fs::write(&results[0], "{\"stage\": \"a\", \"outp").unwrap();
    let runs: Vec<_> = walk(&f.path(".tuneflow/runs"));
    std::fs::write(&runs[0], "").unwrap();
    let st = f.tuneflow(&["status", "p.toml"]);
    assert_eq!(st.code, 0, "{}", st.stderr);
    assert!(st.stdout.contains("will-run"), "{}", st.stdout);
    assert_eq!(f.tuneflow(&["cache", "du", "p.toml"]).code, 0);
    let v = f.tuneflow(&["cache", "verify", "p.toml"]);
    assert_eq!(v.code, 3, "{}", v.stdout);
    assert!(
        v.stdout.contains("unreadable record removed"),
        "{}",
        v.stdout
    );
    let r = f.run_ok("p.toml", &[]);
    assert_eq!(r.stages("stage-finished"), ["a"]);
    assert_eq!(f.tuneflow(&["cache", "verify", "p.toml"]).code, 0);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_failed_export_leaves_nothing_and_restores_leave_nothing_beside_outputs() {
    let f = Fixture::new();
    f.write(
        "p.toml",
        &command(
            "big",
            "head -c 20000000 /dev/urandom > big.bin",
            "outs = [\"big.bin\"]",
        ),
    );
    f.run_ok("p.toml", &[]);
    for i in 0..6 {
        let _ = std::fs::remove_file(f.path("big.bin"));
        let mut child = f.command(&["run", "p.toml"]).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(10 + 7 * i));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    f.run_ok("p.toml", &[]);
    let stray: Vec<_> = std::fs::read_dir(f.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("tuneflow-tmp"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    let tmp = std::fs::read_dir(f.path(".tuneflow/objects/tmp"))
        .unwrap()
        .count();
    assert_eq!(tmp, 0, "temp objects of killed runs are cleared");
    // Export of a damaged object: an error, and nothing at --to.
    let objects = walk_all(&f.path(".tuneflow/objects"));
    for o in &objects {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(o, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(o, b"garbage").unwrap();
    }
    std::fs::remove_file(f.path("big.bin")).unwrap();
    let r = f.tuneflow(&["export", "p.toml", "big", "--to", "copy.bin"]);
    assert_ne!(r.code, 0);
    assert!(!f.path("copy.bin").exists());
}

fn walk_all(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "tmp") {
                out.extend(walk_all(&p));
            }
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn two_runs_on_one_folder_with_two_caches_never_write_at_once() {
    let f = Fixture::new();
    f.write(
        "p.toml",
        &command(
            "a",
            "for i in 1 2 3 4 5; do echo $$ >> out.txt; sleep 0.2; done",
            "outs = [\"out.txt\"]",
        ),
    );
    let other = tempfile::tempdir().unwrap();
    let mut first = f.command(&["run", "p.toml"]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let second = f.tuneflow(&[
        "run",
        "p.toml",
        "--cache-dir",
        other.path().to_str().unwrap(),
    ]);
    assert_eq!(second.code, 3, "{}", second.stderr);
    assert!(
        second.stderr.contains("in use by another run"),
        "{}",
        second.stderr
    );
    assert!(first.wait().unwrap().success());
    let lines: std::collections::BTreeSet<String> =
        f.read("out.txt").lines().map(String::from).collect();
    assert_eq!(lines.len(), 1, "one writer");
}

#[test]
fn status_of_one_pipeline_never_shows_another_pipelines_run() {
    let f = Fixture::new();
    f.write(
        "p.toml",
        &command("slow", "sleep 2; echo p > p.txt", "outs = [\"p.txt\"]"),
    )
    .write(
        "q.toml",
        &command("q1", "echo q > q.txt", "outs = [\"q.txt\"]"),
    );
    f.run_ok("q.toml", &[]);
    let mut p = f.command(&["run", "p.toml"]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let st = f.tuneflow(&["status", "q.toml"]);
    assert!(
        st.stdout.contains("q1") && st.stdout.contains("cached"),
        "{}",
        st.stdout
    );
    assert!(!st.stdout.contains("in progress"), "{}", st.stdout);
    assert!(p.wait().unwrap().success());
}
