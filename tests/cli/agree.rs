//! `run`, `status` and `export` share one decision of what is cached, and
//! agree in every state a test can make: cached, an object missing, an
//! object damaged (also when its stat was forged to look verified), a key
//! changed, and a run in progress. A damaged input never feeds a stage: its
//! producer reruns first, and the store is repaired.

use std::path::PathBuf;

use crate::harness::Fixture;

fn png(shade: u8) -> Vec<u8> {
    let img = image::GrayImage::from_fn(10, 10, |x, y| {
        image::Luma([shade.wrapping_add((x * 7 + y * 3) as u8)])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageLuma8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

const PIPELINE: &str = r#"
[stage.ing]
kind = "ingest"
format = "image-folder"
path = "images"
size = 8
channels = 1
split = { val = 0.25 }

[stage.aug]
kind = "augment"
data = "ing.train"
ops = [{ op = "flip" }]
copies = 1

[stage.report]
kind = "command"
cmd = "sleep ${params.pause}; echo done > report.txt"
after = ["aug.dataset"]
outs = ["report.txt"]

[params]
pause = 0
"#;

fn fixture() -> Fixture {
    let f = Fixture::new();
    f.write("p.toml", PIPELINE);
    for c in 0..2u8 {
        for i in 0..4u8 {
            let p = f.path(&format!("images/c{c}/{i}.png"));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, png(c * 100 + i * 9)).unwrap();
        }
    }
    f
}

/// (state, reason) of every stage, from `status --json`.
fn status(f: &Fixture, extra: &[&str]) -> Vec<(String, String, String)> {
    let mut args = vec!["status", "--json", "p.toml"];
    args.extend_from_slice(extra);
    let r = f.tuneflow(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.events()
        .into_iter()
        .map(|e| {
            (
                e["stage"].as_str().unwrap().to_owned(),
                e["state"].as_str().unwrap().to_owned(),
                e["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn cached(f: &Fixture, extra: &[&str]) -> Vec<String> {
    status(f, extra)
        .into_iter()
        .filter(|s| s.1 == "cached")
        .map(|s| s.0)
        .collect()
}

fn export_ok(f: &Fixture, what: &str) -> bool {
    let to = f.path(&format!("export-{}", rand_suffix()));
    f.tuneflow(&["export", "p.toml", what, "--to", to.to_str().unwrap()])
        .code
        == 0
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The object files of output `output` of `stage` (the tree blob first).
fn objects(f: &Fixture, r: &crate::harness::Run, stage: &str, output: &str) -> Vec<PathBuf> {
    let e = r
        .events()
        .into_iter()
        .find(|e| e["stage"] == stage && e["outputs"].is_object())
        .unwrap();
    let tree = e["outputs"][output].as_str().unwrap().to_owned();
    let path = |hex: &str| f.path(&format!(".tuneflow/objects/{}/{}", &hex[..2], &hex[2..]));
    let mut out = vec![path(&tree)];
    let listing = tuneflow_cache::Tree::decode(&std::fs::read(&out[0]).unwrap()).unwrap();
    out.extend(listing.entries.iter().map(|e| path(&e.digest.to_hex())));
    out
}

fn damage(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn run_status_and_export_agree_on_every_state() {
    let f = fixture();
    let first = f.run_ok("p.toml", &[]);
    let all = ["ing", "aug", "report"].map(String::from).to_vec();
    assert_eq!(cached(&f, &[]), all);
    assert!(export_ok(&f, "aug.dataset"));

    // An object missing from a folder output.
    let shards = objects(&f, &first, "ing", "train");
    std::fs::remove_file(&shards[1]).unwrap();
    let st = status(&f, &[]);
    assert_eq!(st[0].1, "will-run", "{st:?}");
    assert!(st[0].2.contains("missing"), "{st:?}");
    assert!(!export_ok(&f, "ing.train"));
    let r = f.run_ok("p.toml", &[]);
    assert_eq!(r.stages("stage-finished"), ["ing"], "{}", r.stdout);
    assert_eq!(cached(&f, &[]), all);

    // An object damaged in place: status, export and run all see it.
    damage(&shards[1]);
    let st = status(&f, &[]);
    assert!(st[0].2.contains("damaged"), "{st:?}");
    assert!(!export_ok(&f, "ing.train"));
    let r = f.run_ok("p.toml", &[]);
    assert_eq!(r.stages("stage-finished"), ["ing"], "{}", r.stdout);
    // The rerun replaced the damaged object: the next run is all cached,
    // and every object verifies.
    let r = f.run_ok("p.toml", &[]);
    assert_eq!(r.stages("stage-cached"), all, "{}", r.stdout);
    assert_eq!(f.tuneflow(&["cache", "verify", "p.toml"]).code, 0);

    // A key changed: the three agree that `report` must run.
    let set = ["--set", "params.pause=0.01"];
    let st = status(&f, &set);
    assert_eq!(st[2].1, "will-run");
    assert!(st[2].2.contains("param `cmd` changed"), "{st:?}");
    let r = f.tuneflow(&["export", "p.toml", "report", "--to", "x", "--set", set[1]]);
    assert_ne!(r.code, 0);
    let r = f.run_ok("p.toml", &set);
    assert_eq!(r.stages("stage-finished"), ["report"]);
}

#[test]
fn a_damaged_input_never_feeds_a_stage_even_when_its_stat_is_forged() {
    let f = fixture();
    let first = f.run_ok("p.toml", &[]);
    let clean = {
        let g = fixture();
        g.run_ok("p.toml", &["--set", "aug.copies=2"]).keys()["aug"].clone()
    };
    // Damage a shard, then forge its verification record so the stat
    // looks verified: only hashing the input can tell (bit rot does this).
    let shards = objects(&f, &first, "ing", "train");
    damage(&shards[1]);
    let hex: String = {
        let parent = shards[1].parent().unwrap().file_name().unwrap();
        format!(
            "{}{}",
            parent.to_string_lossy(),
            shards[1].file_name().unwrap().to_string_lossy()
        )
    };
    let meta = std::fs::metadata(&shards[1]).unwrap();
    let mut rec = b"TFV1".to_vec();
    {
        use std::os::unix::fs::MetadataExt;
        for v in [
            meta.size(),
            (meta.mtime() * 1_000_000_000 + meta.mtime_nsec()) as u64,
            (meta.ctime() * 1_000_000_000 + meta.ctime_nsec()) as u64,
            meta.ino(),
        ] {
            rec.extend_from_slice(&v.to_le_bytes());
        }
    }
    let vpath = f.path(&format!(".tuneflow/verified/{}/{}", &hex[..2], &hex[2..]));
    std::fs::create_dir_all(vpath.parent().unwrap()).unwrap();
    std::fs::write(&vpath, rec).unwrap();

    // A downstream stage whose key changed reads that shard.
    let r = f.run_ok("p.toml", &["--set", "aug.copies=2"]);
    let finished = r.stages("stage-finished");
    assert!(finished.contains(&"ing".to_owned()), "{}", r.stdout);
    assert!(finished.contains(&"aug".to_owned()), "{}", r.stdout);
    assert_eq!(r.keys()["aug"], clean, "the result is the clean one");
    assert_eq!(f.tuneflow(&["cache", "verify", "p.toml"]).code, 0);
}

#[test]
fn status_and_export_work_while_a_run_holds_the_cache() {
    let f = fixture();
    f.run_ok("p.toml", &[]);
    let mut run = f
        .command(&["run", "p.toml", "--set", "params.pause=3"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    let st = f.tuneflow(&["status", "--json", "p.toml"]);
    assert_eq!(st.code, 0, "{}", st.stderr);
    assert!(st.stdout.contains("in progress"), "{}", st.stdout);
    assert!(export_ok(&f, "aug.dataset"), "export during a run");
    let second = f.tuneflow(&["run", "p.toml"]);
    assert_eq!(
        second.code, 3,
        "a second run waits its turn: {}",
        second.stderr
    );
    assert!(second.stderr.contains("in use"), "{}", second.stderr);
    assert!(run.wait().unwrap().success());
    // Many status calls while a run starts never make the run fail.
    let g = fixture();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let looper = {
        let (stop, dir) = (stop.clone(), g.dir.path().to_path_buf());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::process::Command::new(crate::harness::bin())
                    .args(["status", "p.toml"])
                    .current_dir(&dir)
                    .output();
            }
        })
    };
    for _ in 0..5 {
        let r = g.tuneflow(&["run", "p.toml"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    looper.join().unwrap();
}

/// A pipeline remembers the results its stages resolved to, so a no-op
/// rerun reads no result file; a result rewritten since (here by another
/// pipeline on the same cache, forcing the stage) is read again, never
/// served from memory.
#[test]
fn a_rewritten_result_is_never_served_from_a_pipelines_memory() {
    let f = Fixture::new();
    let stage = "[stage.s]\nkind = \"command\"\ncmd = \"date +%s%N > o.txt\"\nouts = [\"o.txt\"]\n";
    f.write("a.toml", stage).write("b.toml", stage);
    f.run_ok("a.toml", &[]);
    f.run_ok("a.toml", &[]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    f.run_ok("b.toml", &["--force", "s"]);
    let forced = f.read("o.txt");
    let r = f.run_ok("a.toml", &[]);
    assert_eq!(r.stages("stage-cached"), ["s"]);
    assert_eq!(
        f.read("o.txt"),
        forced,
        "a stale manifest would restore the old bytes"
    );
}

/// A command reads another stage's outputs through `${stage.output}`, the
/// stage's main output through `${stage}`, and `TUNEFLOW_INPUT_*`; whatever
/// it does to the paths it is given (write, truncate, chmod, rename,
/// delete), the cache is unchanged.
#[test]
fn commands_read_outputs_through_views_that_cannot_touch_the_cache() {
    let f = fixture();
    f.write(
        "p.toml",
        r#"
[stage.ing]
kind = "ingest"
format = "image-folder"
path = "images"
size = 8
channels = 1
split = { val = 0.25 }

[stage.list]
kind = "command"
cmd = "ls ${ing.train} > list.txt && test \"$TUNEFLOW_INPUT_ING_TRAIN\" = ${ing.train} && test -d ${ing}"
outs = ["list.txt"]

[stage.vandal]
kind = "command"
cmd = "find ${ing.train} -type f -exec sh -c 'printf x >> \"$1\"; chmod 777 \"$1\"' _ {} \\; ; truncate -s 0 ${ing.train}/dataset.json; mv ${ing.train} moved; rm -rf moved; echo done > vandal.txt"
outs = ["vandal.txt"]

[stage.chain]
kind = "command"
cmd = "wc -l < ${list} > count.txt"
outs = ["count.txt"]
"#,
    );
    let r = f.run_ok("p.toml", &["--jobs", "1"]);
    assert_eq!(r.stages("stage-finished").len(), 4, "{}", r.stdout);
    assert!(
        f.read("list.txt").contains("dataset.json"),
        "{}",
        f.read("list.txt")
    );
    assert_eq!(
        f.read("count.txt").trim(),
        f.read("list.txt").lines().count().to_string()
    );
    let v = f.tuneflow(&["cache", "verify", "p.toml"]);
    assert_eq!(v.code, 0, "the vandal changed the cache: {}", v.stdout);
    // Rerun the reader: it sees the original bytes.
    let again = f.run_ok("p.toml", &["--force", "list"]);
    assert_eq!(again.stages("stage-finished"), ["list"]);
    assert_eq!(again.stages("stage-cached").len(), 3);
}
