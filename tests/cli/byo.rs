//! `pipelines/byo.toml` end to end (issue #12): a user's converter writes
//! the dataset `pretrain` trains on, a user's PyTorch script loads the
//! pretrained model through the Python helper and writes the embeddings
//! `evaluate` scores. A change to a script reruns exactly the stages that
//! depend on it; a rerun with no change is all cached.

use crate::harness::{python, Fixture, Run};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The repo's layout in a temp folder: `pipelines/byo.toml`,
/// `pipelines/byo/*.py`, `python/tuneflow_artifacts`, and fixtures.
fn layout() -> Fixture {
    let f = Fixture::new();
    for rel in [
        "pipelines/byo.toml",
        "pipelines/byo/convert.py",
        "pipelines/byo/probe.py",
    ] {
        f.write(
            rel,
            &std::fs::read_to_string(format!("{REPO}/{rel}")).unwrap(),
        );
    }
    let helper = format!("{REPO}/python/tuneflow_artifacts");
    for e in std::fs::read_dir(&helper).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".py") {
            let text = std::fs::read_to_string(e.path()).unwrap();
            f.write(&format!("python/tuneflow_artifacts/{name}"), &text);
        }
    }
    let r = f.tuneflow(&[
        "fixtures",
        "--out",
        "pipelines/fixtures",
        "--no-speakers",
        "--digits-per-class",
        "30",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    f
}

fn run(f: &Fixture) -> Run {
    let out = f
        .command(&["run", "--json", "pipelines/byo.toml"])
        .env("PYTHON", python())
        .output()
        .unwrap();
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    r
}

fn ran(r: &Run) -> Vec<String> {
    let mut v = r.stages("stage-finished");
    v.sort();
    v
}

fn edit(f: &Fixture, rel: &str, from: &str, to: &str) {
    let text = f.read(rel);
    assert!(text.contains(from), "{rel} has no `{from}`");
    f.write(rel, &text.replacen(from, to, 1));
}

#[test]
fn your_own_code_between_built_in_stages_reruns_exactly_its_dependents() {
    let f = layout();
    let first = run(&f);
    assert_eq!(
        ran(&first),
        ["convert", "evaluate", "pretrain", "probe", "target"]
    );
    let metrics = first
        .events()
        .into_iter()
        .find(|e| e["event"] == "stage-finished" && e["stage"] == "evaluate")
        .unwrap();
    assert!(metrics["summary"].to_string().contains("eer"), "{metrics}");
    let again = run(&f);
    assert_eq!(again.stages("stage-cached").len(), 5, "{}", again.stdout);
    // The PyTorch step changes: it and what reads its embeddings rerun.
    edit(&f, "pipelines/byo/probe.py", "EPOCHS = 30", "EPOCHS = 20");
    assert_eq!(ran(&run(&f)), ["evaluate", "probe"]);
    // The converter changes its items: everything downstream of it reruns,
    // the built-in ingest of the target digits does not.
    edit(
        &f,
        "pipelines/byo/convert.py",
        "sorted(os.listdir(os.path.join(images, c)))",
        "sorted(os.listdir(os.path.join(images, c)), reverse=True)",
    );
    assert_eq!(ran(&run(&f)), ["convert", "evaluate", "pretrain", "probe"]);
    assert_eq!(run(&f).stages("stage-cached").len(), 5);
}

/// A script that saves tuneflow's model through the PyTorch loader (or
/// drops one tensor of it): `extract` and `fine-tune` read the saved
/// folder like a built-in model; `extract` refuses the incomplete one,
/// naming the tensor.
const RESAVE: &str = r#"
import os, shutil, sys
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
from tuneflow_artifacts.torch_model import load_model, save_model
src, out, drop = sys.argv[1:4]
shutil.rmtree(out, ignore_errors=True)
save_model(load_model(src), out)
if drop != "none":
    from safetensors.numpy import load_file, save_file
    t = load_file(f"{out}/model.safetensors"); del t[drop]
    save_file(t, f"{out}/model.safetensors")
"#;

fn resave_pipeline(drop: &str) -> String {
    format!(
        r#"[stage.target]
kind = "ingest"
format = "insightface-rec"
path = "fixtures/digits/rec-5-9"
size = 28
channels = 1
max-per-class = 20
split = {{ test = 0.5 }}

[stage.pre]
kind = "pretrain"
data = "target.train"
model = {{ depth = 10, width = 8, embedding = 16 }}
epochs = 1
batch = 16

[stage.mine]
kind = "command"
cmd = "\"$PYTHON\" resave.py ${{pre}} out/model {drop}"
env = ["PYTHON"]
deps = ["resave.py"]
outs = {{ model = {{ path = "out/model", type = "model" }} }}

[stage.x]
kind = "extract"
model = "mine"
data = "target.test"

[stage.ft]
kind = "fine-tune"
model = "mine"
data = "target.train"
epochs = 1
batch = 16
"#
    )
}

#[test]
fn extract_reads_a_model_a_script_saved_and_refuses_an_incomplete_one() {
    let f = layout();
    f.write("pipelines/resave.py", RESAVE);
    f.write("pipelines/byo.toml", &resave_pipeline("none"));
    let ok = run(&f);
    assert!(
        ok.stages("stage-finished").contains(&"x".to_owned()),
        "{}",
        ok.stdout
    );
    f.write(
        "pipelines/byo.toml",
        &resave_pipeline("backbone.layer1.0.conv1.weight"),
    );
    let out = f
        .command(&["run", "pipelines/byo.toml"])
        .env("PYTHON", python())
        .output()
        .unwrap();
    let all =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("1 missing tensor(s) [backbone.layer1.0.conv1.weight]"),
        "{all}"
    );
}
