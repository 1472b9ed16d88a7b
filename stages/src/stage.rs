//! The [`Stage`] trait, the [`Kind`] trait each built-in kind implements,
//! and what the runner hands a stage.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::device::Device;
use crate::params::{ParamReader, Spanned, Table};
use crate::worker::WorkerEvent;

/// What enters a stage's key besides its inputs: each param's typed value,
/// by name. The runner encodes it with a stable, versioned encoding
/// (`tuneflow_cache::KeyHasher::write_json`), and `status` diffs it to say
/// which param changed.
pub type KeyParams = BTreeMap<String, serde_json::Value>;

/// One unit of work in a pipeline, as the runner sees it. Every built-in
/// kind gets it from [`Kind`]. Stages do not print, touch the cache index
/// or know about the graph; the runner does all three.
pub trait Stage: Send + Sync {
    /// The `kind = "..."` name, e.g. `command`.
    fn kind(&self) -> &'static str;

    /// Bump when the same params and inputs would now give other outputs.
    fn version(&self) -> u32;

    /// Every param that affects the outputs (see [`KeyParams`]).
    fn params(&self) -> KeyParams;

    /// The whole stage as data, so that another process (a Slurm job) can
    /// rebuild it with [`crate::kinds::decode`].
    fn encode(&self) -> serde_json::Value;

    /// Whether the runner must create [`StageContext::scratch`] before
    /// [`Stage::run`] (a kind that makes its own when it needs one says no:
    /// a folder per stage is a cost for thousands of quick commands).
    fn wants_scratch(&self) -> bool;

    /// Other names of outputs, (name, output): a command's typed output is
    /// also reached by its name (`convert.train`) and, when it is the only
    /// one of its type, by the type (`convert.dataset`, so a bare
    /// `"convert"` reads it where a built-in kind expects a dataset).
    fn aliases(&self) -> Vec<(String, String)>;

    /// Runs the stage. Blocking: the runner calls it on a blocking thread.
    fn run(&self, cx: &StageContext, inputs: &Inputs) -> Result<StageOutputs, StageError>;
}

/// A built-in stage kind: a typed, serializable configuration and how to
/// run it. The key is derived from the serialized value, minus the fields
/// in [`Kind::NOT_IN_KEY`]; the kinds table ([`crate::kinds::KINDS`])
/// registers the kind's name, builder and decoder.
pub trait Kind: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static {
    /// The `kind = "..."` name.
    const NAME: &'static str;
    /// Bump when the same params and inputs would now give other outputs,
    /// and when the serialized params change shape (the key snapshot test
    /// in the runner fails until then).
    const VERSION: u32;
    /// Serialized fields that do not change the outputs (where a stage
    /// runs, say), left out of the key.
    const NOT_IN_KEY: &'static [&'static str] = &[];
    /// See [`Stage::wants_scratch`].
    const WANTS_SCRATCH: bool = true;

    /// See [`Stage::aliases`].
    fn aliases(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Runs the stage.
    fn run(&self, cx: &StageContext, inputs: &Inputs) -> Result<StageOutputs, StageError>;
}

impl<K: Kind> Stage for K {
    fn kind(&self) -> &'static str {
        K::NAME
    }

    fn version(&self) -> u32 {
        K::VERSION
    }

    fn wants_scratch(&self) -> bool {
        K::WANTS_SCRATCH
    }

    fn aliases(&self) -> Vec<(String, String)> {
        Kind::aliases(self)
    }

    fn params(&self) -> KeyParams {
        match self.encode() {
            serde_json::Value::Object(fields) => fields
                .into_iter()
                .filter(|(k, _)| !K::NOT_IN_KEY.contains(&k.as_str()))
                .collect(),
            other => BTreeMap::from([("value".to_owned(), other)]),
        }
    }

    fn encode(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("stage configs serialize")
    }

    fn run(&self, cx: &StageContext, inputs: &Inputs) -> Result<StageOutputs, StageError> {
        Kind::run(self, cx, inputs)
    }
}

/// What a kind's builder may see besides the stage's own params.
pub struct BuildContext<'a> {
    /// The stage's name.
    pub name: &'a str,
    /// The pipeline's `[params]` table, for `${params.x}` interpolation.
    pub params: &'a Table,
    /// `[pipeline] seed`.
    pub seed: i64,
    /// Every stage name of the pipeline (a command's `${name}` refers to a
    /// stage only when one has that name).
    pub stages: &'a [String],
}

/// A kind's builder: reads the stage's table, records every error in the
/// reader, and returns the stage unless an error stops it.
pub type Builder = fn(&BuildContext<'_>, &ParamReader<'_>) -> Option<StageDecl>;

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
    /// References to one output each, as written (`"stage.output"`, or
    /// `"stage"` for its only or main output): the stage gets the input
    /// under exactly that name (a command's `${stage.output}`).
    pub uses: Vec<Spanned<String>>,
}

/// What a stage may use at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Inputs {
    /// For each referenced output or dependency, where it is.
    pub paths: BTreeMap<String, PathBuf>,
    /// For each referenced folder output: its files, relative path -> the
    /// blob in the object store (built-in kinds read them in place, never
    /// copied).
    pub trees: BTreeMap<String, BTreeMap<String, PathBuf>>,
    /// The inputs whose path is in the object store (not a workspace file):
    /// never to be handed to the user's code as they are (see
    /// [`crate::views`]).
    #[serde(default)]
    pub stored: std::collections::BTreeSet<String>,
    /// The inputs that are upstream stages' outputs (not file deps).
    #[serde(default)]
    pub upstream: std::collections::BTreeSet<String>,
}

impl Inputs {
    /// The files of the folder input `name`.
    pub fn tree(&self, name: &str) -> Result<BTreeMap<String, PathBuf>, StageError> {
        self.trees
            .get(name)
            .cloned()
            .ok_or_else(|| StageError::Input {
                input: name.to_owned(),
                message: "is not a folder output".into(),
            })
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
pub struct EventSink(Arc<dyn Fn(WorkerEvent) + Send + Sync>);

impl EventSink {
    /// A sink calling `f` for each event.
    pub fn new(f: impl Fn(WorkerEvent) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }
    /// Reports an event.
    pub fn emit(&self, event: WorkerEvent) {
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
    /// `[pipeline] device`, unless the stage sets its own.
    pub device: Device,
    /// Where child process groups are recorded while they run (see
    /// [`crate::process`]); `None`: not recorded.
    pub running: Option<PathBuf>,
    /// The peak memory of the processes the stage ran (commands, the
    /// worker), recorded as each is reaped.
    pub peak: crate::process::PeakMemory,
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
            device: Device::Cpu,
            running: Some(dir.join("running")),
            peak: crate::process::PeakMemory::default(),
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
    /// A typed output does not match its artifact type's format.
    #[error("output `{name}` (`{path}`) is not a valid `{kind}` artifact: {message} (see docs/artifacts.md)")]
    InvalidOutput {
        /// The output's name in `outs`.
        name: String,
        /// Its path.
        path: String,
        /// Its declared type.
        kind: &'static str,
        /// The part that is missing or malformed.
        message: String,
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
    /// An input is not what the stage needs.
    #[error("input `{input}` {message}")]
    Input {
        /// The input's name (`stage/output`).
        input: String,
        /// What is wrong with it.
        message: String,
    },
    /// The torch worker ended without doing its job.
    #[error("{message} (full log: {log})")]
    Worker {
        /// What went wrong.
        message: String,
        /// The stage's log.
        log: PathBuf,
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
