//! The tensor stage kinds run in the `tuneflow-torch` worker process: the
//! runner never loads libtorch. A stage writes a [`WorkerSpec`], starts
//! `tuneflow-torch exec --spec FILE` in its own process group, forwards the
//! JSON events the worker prints (one per line), and collects its outputs.
//! The same spec format is what a cluster job would run.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::stage::{StageContext, StageError, StageOutputs};

/// Everything the worker needs to run one stage.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WorkerSpec {
    /// The stage kind (`pretrain`...).
    pub kind: String,
    /// The stage's name (seeds the data order).
    pub stage: String,
    /// The kind's typed config.
    pub config: serde_json::Value,
    /// Training data: relative path -> file (a dataset artifact).
    pub train: BTreeMap<String, PathBuf>,
    /// Validation data, if any.
    pub val: Option<BTreeMap<String, PathBuf>>,
    /// An augmentation policy (`policy.json`), if any.
    pub policy: Option<PathBuf>,
    /// The model to start from (`fine-tune`): files of a `model` output.
    #[serde(default)]
    pub model: Option<BTreeMap<String, PathBuf>>,
    /// External weights to start from (`fine-tune init = ...`).
    #[serde(default)]
    pub init: Option<PathBuf>,
    /// Where to write outputs.
    pub out: PathBuf,
    /// Where checkpoints live across attempts.
    pub checkpoints: PathBuf,
    /// Pipeline seed.
    pub seed: i64,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub device: String,
}

/// The worker binary: `TUNEFLOW_TORCH_BIN`, else `tuneflow-torch` beside
/// the running executable.
pub fn worker_path() -> Result<PathBuf, StageError> {
    if let Some(p) = std::env::var_os("TUNEFLOW_TORCH_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()
        .map_err(|e| StageError::io("locate", "the tuneflow executable", e))?;
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    // Test binaries live in target/debug/deps; the worker in target/debug.
    for candidate in [dir.join("tuneflow-torch"), dir.join("../tuneflow-torch")] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(StageError::Other(format!(
        "this stage needs the `tuneflow-torch` worker, which is not beside `{}` (build it with `cargo build -p tuneflow-torch`, or set TUNEFLOW_TORCH_BIN)",
        exe.display()
    )))
}

/// Runs a training kind: the worker writes a `model` folder at `spec.out`.
pub fn run_training(cx: &StageContext, spec: &WorkerSpec) -> Result<StageOutputs, StageError> {
    std::fs::create_dir_all(&spec.out).map_err(|e| StageError::io("create", &spec.out, e))?;
    let result = run_worker(cx, spec)?;
    Ok(StageOutputs {
        paths: vec![("model".into(), spec.out.clone())],
        summary: result,
        reexports: vec![],
    })
}

/// Runs the worker for `spec`, forwarding its events; returns the payload
/// of its final `result` event.
pub fn run_worker(cx: &StageContext, spec: &WorkerSpec) -> Result<serde_json::Value, StageError> {
    let spec_path = cx.scratch.join("worker-spec.json");
    std::fs::write(
        &spec_path,
        serde_json::to_vec_pretty(spec).expect("specs serialize"),
    )
    .map_err(|e| StageError::io("write", &spec_path, e))?;
    let log = std::fs::File::create(&cx.log).map_err(|e| StageError::io("create", &cx.log, e))?;
    let mut child = {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(worker_path()?);
        cmd.args(["exec", "--spec"])
            .arg(&spec_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .process_group(0);
        if !cx.gpus.is_empty() {
            cmd.env(
                "CUDA_VISIBLE_DEVICES",
                cx.gpus
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
        cmd.spawn()
            .map_err(|e| StageError::io("start", "tuneflow-torch", e))?
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut result = serde_json::Value::Null;
    loop {
        while let Ok(line) = rx.try_recv() {
            match serde_json::from_str::<serde_json::Value>(&line) {
                Ok(v) if v["event"] == "result" => result = v,
                Ok(v) => cx.events.emit(v),
                Err(_) => {}
            }
        }
        if let Some(status) = child
            .try_wait()
            .map_err(|e| StageError::io("wait for", "tuneflow-torch", e))?
        {
            // Drain what the worker printed last.
            std::thread::sleep(Duration::from_millis(20));
            while let Ok(line) = rx.try_recv() {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if v["event"] == "result" {
                        result = v
                    } else {
                        cx.events.emit(v)
                    }
                }
            }
            if !status.success() {
                return Err(StageError::CommandFailed {
                    status: format!("{status}"),
                    stderr_tail: tail(&cx.log),
                    log: cx.log.clone(),
                });
            }
            return Ok(result);
        }
        if cx.cancel.is_cancelled() {
            crate::command::kill_group(child.id(), libc::SIGKILL);
            let _ = child.wait();
            crate::command::wait_group_gone(child.id(), Duration::from_secs(2));
            return Err(StageError::Cancelled);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The last lines of a log, indented, for failure messages.
pub fn tail(path: &Path) -> String {
    let mut text = String::new();
    let _ = std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut text));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..]
        .iter()
        .map(|l| format!("  | {l}\n"))
        .collect()
}
