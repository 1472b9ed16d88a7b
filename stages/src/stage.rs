//! The [`Stage`] trait and what the runner hands a stage.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::params::Spanned;

/// One unit of work in a pipeline. Stages do not print, touch the cache
/// index or know about the graph; the runner does all three.
pub trait Stage: Send + Sync {
    /// The `kind = "..."` name, e.g. `command`.
    fn kind(&self) -> &'static str;

    /// Bump when the same params and inputs would now give other outputs.
    fn version(&self) -> u32;

    /// Every param that affects the outputs, as canonical text. The runner
    /// feeds these into the key (sorted by name) and `status` diffs them to
    /// say which param changed.
    fn params(&self) -> BTreeMap<String, String>;

    /// Runs the stage. Blocking: the runner calls it on a blocking thread.
    fn run(&self, cx: &StageContext, inputs: &Inputs) -> Result<StageOutputs, StageError>;
}

/// A stage plus what the planner needs to wire it into the graph.
pub struct StageDecl {
    /// The stage itself.
    pub stage: Box<dyn Stage>,
    /// References to other stages' outputs: `"stage"` (all outputs) or
    /// `"stage.output"`.
    pub refs: Vec<Spanned<String>>,
    /// Files or folders read from the pipeline folder.
    pub deps: Vec<Spanned<String>>,
    /// Files or folders written into the pipeline folder.
    pub outs: Vec<Spanned<String>>,
    /// Named outputs kept in the cache only (e.g. `dataset`, `train`).
    pub outputs: Vec<String>,
}

/// What a stage may use at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// GPUs this stage holds while it runs.
    pub gpu: u32,
    /// CPUs for a cluster job (`--cpus-per-task`); the executor's default
    /// when unset.
    pub cpus: Option<u32>,
    /// Memory for a cluster job (`--mem`, e.g. `16G`).
    pub mem: Option<String>,
    /// Time limit for a cluster job (`--time`, e.g. `04:00:00`).
    pub time: Option<String>,
}

/// Inputs resolved by the runner: name -> path on disk.
#[derive(Debug, Default, Clone)]
pub struct Inputs {
    /// For each referenced output or dependency, where it is.
    pub paths: BTreeMap<String, PathBuf>,
    /// For each referenced folder output kept in the cache: its files,
    /// relative path -> the blob in the object store (read in place, never
    /// copied).
    pub trees: BTreeMap<String, BTreeMap<String, PathBuf>>,
}

impl Inputs {
    /// The files of the folder input `name`.
    pub fn tree(&self, name: &str) -> Result<BTreeMap<String, PathBuf>, StageError> {
        self.trees
            .get(name)
            .cloned()
            .ok_or_else(|| StageError::Other(format!("input `{name}` is not a folder output")))
    }
}

/// What a finished stage hands back.
#[derive(Debug, Default)]
pub struct StageOutputs {
    /// Output name -> path of the file or folder to store.
    pub paths: Vec<(String, PathBuf)>,
    /// Result data worth keeping (metrics, counts), stored in the manifest.
    pub summary: serde_json::Value,
    /// Outputs that are one of the inputs unchanged: (output name, input
    /// name). The runner records the input's digest; nothing is copied.
    pub reexports: Vec<(String, String)>,
}

/// Receives progress events a stage reports (e.g. one per training epoch).
#[derive(Clone)]
pub struct EventSink(Arc<dyn Fn(serde_json::Value) + Send + Sync>);

impl EventSink {
    /// A sink calling `f` for each event.
    pub fn new(f: impl Fn(serde_json::Value) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }
    /// Reports an event (a JSON object with an `"event"` field).
    pub fn emit(&self, event: serde_json::Value) {
        (self.0)(event);
    }
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventSink")
    }
}

/// Everything a stage may use while it runs.
#[derive(Debug, Clone)]
pub struct StageContext {
    /// The stage's name in the pipeline.
    pub name: String,
    /// The pipeline's folder: relative paths resolve here.
    pub workdir: PathBuf,
    /// A private, empty folder for outputs that are not workspace files.
    pub scratch: PathBuf,
    /// The stage's log file.
    pub log: PathBuf,
    /// Set when the run is cancelled; long stages check it often.
    pub cancel: CancelFlag,
    /// GPU ordinals assigned to this stage (from its `resources`).
    pub gpus: Vec<u32>,
    /// A folder kept across runs of the same stage key, for checkpoints; a
    /// rerun after a crash finds what the last attempt saved there.
    pub checkpoints: PathBuf,
    /// Where progress events go.
    pub events: EventSink,
    /// `[pipeline] device` (`auto`, `cpu`, `cuda`, `cuda:N`).
    pub device: String,
}

impl StageContext {
    /// A context in `dir` for tests: scratch, log and checkpoints inside it,
    /// events dropped.
    pub fn for_test(dir: &std::path::Path) -> Self {
        let scratch = dir.join("scratch");
        let _ = std::fs::create_dir_all(&scratch);
        Self {
            name: "test".into(),
            workdir: dir.to_path_buf(),
            scratch,
            log: dir.join("stage.log"),
            cancel: CancelFlag::default(),
            gpus: Vec::new(),
            checkpoints: dir.join("checkpoints"),
            events: EventSink::new(|_| {}),
            device: "cpu".into(),
        }
    }
}

/// A cancellation flag shared by the runner and its stages.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    /// Asks every holder to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// Whether a stop was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Why a stage failed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// A command exited non-zero.
    #[error("command exited with {status}\n{stderr_tail}full log: {log}")]
    CommandFailed {
        /// "exit status 3" or "signal 9".
        status: String,
        /// The last lines of its stderr.
        stderr_tail: String,
        /// The full log.
        log: PathBuf,
    },
    /// A declared output was not created.
    #[error("declared output `{path}` was not created (full log: {log})")]
    MissingOutput {
        /// The output path.
        path: String,
        /// The full log.
        log: PathBuf,
    },
    /// The run was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// A filesystem operation failed.
    #[error("failed to {action} `{path}`: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Anything else a stage reports.
    #[error("{0}")]
    Other(String),
}

impl StageError {
    /// Builds a [`StageError::Io`].
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
