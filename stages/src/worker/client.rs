//! The runner's side of the worker protocol: writes a [`WorkerJob`],
//! starts `tuneflow-torch exec --spec FILE` in its own process group,
//! forwards the worker's progress events, and returns its final result.
//! The runner never loads libtorch.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{ExtractResult, TrainResult, WorkerEvent, WorkerJob};
use crate::stage::{StageContext, StageError, StageOutputs};

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

/// What the worker reported when it ended.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerResult {
    /// A training job's summary.
    Train(TrainResult),
    /// An extract job's summary.
    Extract(ExtractResult),
}

impl WorkerResult {
    /// The summary as stored in the stage's manifest.
    pub fn summary(&self) -> serde_json::Value {
        match self {
            Self::Train(r) => serde_json::to_value(r),
            Self::Extract(r) => serde_json::to_value(r),
        }
        .expect("results serialize")
    }
}

/// Runs a training job: the worker writes a `model` folder at `out`.
pub fn run_training(
    cx: &StageContext,
    job: &WorkerJob,
    out: &Path,
) -> Result<StageOutputs, StageError> {
    std::fs::create_dir_all(out).map_err(|e| StageError::io("create", out, e))?;
    let result = run_worker(cx, job)?;
    Ok(StageOutputs {
        paths: vec![("model".into(), out.to_path_buf())],
        summary: result.summary(),
        reexports: vec![],
    })
}

/// Runs the worker for `job`, forwarding its events; returns its final
/// result. A worker that ends without one has failed. The stage's log
/// gets the worker's stderr and, as JSON lines, every event but the
/// throttled progress reports.
pub fn run_worker(cx: &StageContext, job: &WorkerJob) -> Result<WorkerResult, StageError> {
    let spec_path = cx.scratch.join("worker-job.json");
    std::fs::write(
        &spec_path,
        serde_json::to_vec_pretty(job).expect("jobs serialize"),
    )
    .map_err(|e| StageError::io("write", &spec_path, e))?;
    let mut log = Log::create(&cx.log)?;
    let stderr = log
        .file
        .try_clone()
        .map_err(|e| StageError::io("open", &cx.log, e))?;
    let mut spawned = spawn(cx, &spec_path, stderr)?;
    let child = &mut spawned.child;
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut result = None;
    let mut take = |line: String| {
        let event = match serde_json::from_str::<WorkerEvent>(&line) {
            Ok(event) => event,
            Err(e) => return log.line(&format!("tuneflow: not a worker event ({e}): {line}")),
        };
        if !matches!(event, WorkerEvent::Progress(_)) {
            log.line(&line);
        }
        match event {
            WorkerEvent::TrainResult(r) => result = Some(WorkerResult::Train(r)),
            WorkerEvent::ExtractResult(r) => result = Some(WorkerResult::Extract(r)),
            event => cx.events.emit(event),
        }
    };
    loop {
        while let Ok(line) = rx.try_recv() {
            take(line);
        }
        if let Some(status) = crate::process::try_wait_measured(child, &cx.peak)
            .map_err(|e| StageError::io("wait for", "tuneflow-torch", e))?
        {
            // Drain what the worker printed last.
            std::thread::sleep(Duration::from_millis(20));
            while let Ok(line) = rx.try_recv() {
                take(line);
            }
            if !status.success() {
                return Err(StageError::CommandFailed {
                    status: format!("{status}"),
                    stderr_tail: tail(&cx.log),
                    log: cx.log.clone(),
                });
            }
            return result.ok_or_else(|| StageError::Worker {
                message: "the worker exited without reporting a result".into(),
                log: cx.log.clone(),
            });
        }
        if cx.cancel.is_cancelled() {
            crate::process::kill_group(child.id(), libc::SIGKILL);
            let _ = child.wait();
            crate::process::wait_group_gone(child.id(), Duration::from_secs(2));
            return Err(StageError::Cancelled);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The stage's log, opened for appending: the worker's stderr shares the
/// file, and each of the runner's lines is one `write` at the end of the
/// file (`O_APPEND`), so neither writer overwrites the other and a line
/// of the runner's is never split.
struct Log {
    file: std::fs::File,
}

impl Log {
    /// Empties (or creates) the log and opens it for appending.
    fn create(path: &Path) -> Result<Self, StageError> {
        std::fs::File::create(path).map_err(|e| StageError::io("create", path, e))?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| StageError::io("open", path, e))?;
        Ok(Self { file })
    }

    /// Appends `line` and a newline in one write (a failed write is
    /// dropped: the log is for people, the events went on).
    fn line(&mut self, line: &str) {
        use std::io::Write;
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        let _ = self.file.write_all(&bytes);
    }
}

fn spawn(
    cx: &StageContext,
    spec: &Path,
    log: std::fs::File,
) -> Result<crate::process::Spawned, StageError> {
    let mut cmd = Command::new(worker_path()?);
    cmd.args(["exec", "--spec"])
        .arg(spec)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    if !cx.gpus.is_empty() {
        let ids: Vec<_> = cx.gpus.iter().map(u32::to_string).collect();
        cmd.env("CUDA_VISIBLE_DEVICES", ids.join(","));
    }
    crate::process::spawn_group(&mut cmd, cx.running.as_deref())
        .map_err(|e| StageError::io("start", "tuneflow-torch", e))
}

/// The last lines of a log, indented, for failure messages; the worker's
/// event lines (the epochs) are left out.
pub fn tail(path: &Path) -> String {
    let mut text = String::new();
    let _ = std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut text));
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("{\"event\":"))
        .collect();
    lines[lines.len().saturating_sub(20)..]
        .iter()
        .map(|l| format!("  | {l}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The runner's lines and a second writer on the same file (as the
    /// worker's stderr is) all land, whole, none overwritten.
    #[test]
    fn log_lines_from_two_writers_stay_whole() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        std::fs::write(&path, "left from an earlier attempt\n").unwrap();
        let mut log = Log::create(&path).unwrap();
        let mut other = log.file.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            for i in 0..500 {
                other
                    .write_all(format!("stderr line {i}\n").as_bytes())
                    .unwrap();
            }
        });
        for i in 0..500 {
            log.line(&format!("{{\"event\":\"epoch\",\"epoch\":{i}}}"));
        }
        writer.join().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1000, "an earlier attempt's log is emptied");
        let events = lines.iter().filter(|l| l.starts_with("{\"event\"")).count();
        let stderr = lines
            .iter()
            .filter(|l| l.starts_with("stderr line"))
            .count();
        assert_eq!((events, stderr), (500, 500));
        let tail = tail(&path);
        assert_eq!(tail.lines().count(), 20);
        assert!(!tail.contains("event"), "{tail}");
    }
}
