//! A temp pipeline folder and a way to run `tuneflow` in it.

use std::path::PathBuf;
use std::process::{Command, Output};

pub struct Fixture {
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The JSON events of a `--json` run.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }

    /// Stage names with the given event, in order.
    pub fn stages(&self, event: &str) -> Vec<String> {
        self.events()
            .iter()
            .filter(|e| e["event"] == event)
            .map(|e| e["stage"].as_str().unwrap().to_owned())
            .collect()
    }

    /// stage -> key for every stage that ran or was cached.
    pub fn keys(&self) -> std::collections::BTreeMap<String, String> {
        self.events()
            .iter()
            .filter(|e| e["event"] == "stage-cached" || e["event"] == "stage-finished")
            .map(|e| {
                (
                    e["stage"].as_str().unwrap().to_owned(),
                    e["key"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

/// The test cluster's `slurm.conf`, once one is started (tests/cli/slurm.rs).
pub static SLURM_CONF: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tuneflow")
}

impl Fixture {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) -> &Self {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        // No remote cache and no user config unless a test sets one.
        c.args(args)
            .current_dir(self.dir.path())
            .env_remove("TUNEFLOW_CACHE_DIR")
            .env_remove("TUNEFLOW_REMOTE")
            .env("XDG_CONFIG_HOME", self.dir.path().join(".config"))
            .env("NO_COLOR", "1");
        if let Some(conf) = SLURM_CONF.get() {
            c.env("SLURM_CONF", conf);
        }
        c
    }

    pub fn tuneflow(&self, args: &[&str]) -> Run {
        let out: Output = self.command(args).output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `tuneflow run --json FILE EXTRA...`, asserting the exit code.
    pub fn run_ok(&self, file: &str, extra: &[&str]) -> Run {
        let mut args = vec!["run", "--json", file];
        args.extend_from_slice(extra);
        let r = self.tuneflow(&args);
        assert_eq!(
            r.code, 0,
            "run failed:\nstdout:\n{}\nstderr:\n{}",
            r.stdout, r.stderr
        );
        r
    }
}

/// A 7-stage chain with a fan-out, shaped like the transfer workflow:
/// ingest -> augment -> pretrain -> freeze -> {finetune, extract} -> evaluate.
pub const SEVEN: &str = r#"
[pipeline]
name = "seven"

[params]
epochs = 2
lr = 0.1

[stage.ingest]
kind = "command"
cmd = "mkdir -p out && sort data/raw.txt > out/ingested.txt"
deps = ["data/raw.txt"]
outs = ["out/ingested.txt"]

[stage.augment]
kind = "command"
cmd = "sed 's/$/ aug/' out/ingested.txt > out/augmented.txt"
deps = ["out/ingested.txt"]
outs = ["out/augmented.txt"]

[stage.pretrain]
kind = "command"
cmd = "(cat out/augmented.txt; echo epochs=${params.epochs}) > out/pretrained.txt"
deps = ["out/augmented.txt"]
outs = ["out/pretrained.txt"]

[stage.freeze]
kind = "command"
cmd = "(cat out/pretrained.txt; echo frozen) > out/frozen.txt"
deps = ["out/pretrained.txt"]
outs = ["out/frozen.txt"]

[stage.finetune]
kind = "command"
cmd = "(cat out/frozen.txt; echo lr=${params.lr}) > out/finetuned.txt"
deps = ["out/frozen.txt"]
outs = ["out/finetuned.txt"]

[stage.extract]
kind = "command"
cmd = "wc -l < out/frozen.txt > out/embeddings.txt"
deps = ["out/frozen.txt"]
outs = ["out/embeddings.txt"]

[stage.evaluate]
kind = "command"
cmd = "cat out/finetuned.txt out/embeddings.txt | wc -c > out/metrics.txt"
deps = ["out/finetuned.txt", "out/embeddings.txt"]
outs = ["out/metrics.txt"]
"#;

pub fn seven() -> Fixture {
    let f = Fixture::new();
    f.write("pipeline.toml", SEVEN)
        .write("data/raw.txt", "b\na\nc\n");
    f
}

/// The libtorch venv's Python (the Makefile exports `LIBTORCH`, its
/// `site-packages/torch`).
pub fn python() -> std::path::PathBuf {
    let torch = std::env::var_os("LIBTORCH")
        .expect("LIBTORCH must point at the venv's torch package (run through `make test`)");
    let venv = std::path::Path::new(&torch).ancestors().nth(4).unwrap();
    let python = venv.join("bin/python3");
    assert!(python.is_file(), "no Python at `{}`", python.display());
    python
}
