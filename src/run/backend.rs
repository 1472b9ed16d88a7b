//! Where one stage's work happens. The engine decides what runs and
//! commits results; a [`StageBackend`] runs one [`StageJob`] and hands back
//! its stored outputs, or a typed [`StageFailure`]: [`Local`] in this
//! process, or `crate::slurm::Slurm` as a Slurm job that writes to the
//! shared object store.

use tuneflow_cache::{CacheError, ObjectStore, OutputEntry};
use tuneflow_stages::{CancelFlag, EventSink, StageError};

use super::job::{RebuildError, StageJob};
use super::outputs::store_outputs;

/// What a stage run leaves behind.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StageResult {
    /// Stored outputs, sorted by name.
    pub outputs: Vec<OutputEntry>,
    /// What the stage reported (counts, metrics).
    pub summary: serde_json::Value,
    /// Outputs that are inputs passed through: (output, input).
    pub reexports: Vec<(String, String)>,
    /// The peak memory of the processes it ran (KiB), when it ran any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_kib: Option<u64>,
}

/// Why a stage did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum StageFailure {
    /// The run was interrupted (Ctrl-C, SIGTERM).
    #[error("interrupted")]
    Interrupted,
    /// The stage itself failed.
    #[error(transparent)]
    Stage(StageError),
    /// Its outputs could not be stored.
    #[error("failed to store its outputs: {0}")]
    Store(#[from] CacheError),
    /// The job could not rebuild the stage.
    #[error(transparent)]
    Rebuild(#[from] RebuildError),
    /// An input object of an upstream stage's result did not hash to its
    /// name when read; that result is dropped and the upstream reruns.
    #[error("input `{input}` (from `{upstream}`) is damaged in the cache: object {object}")]
    DamagedInput {
        /// The input's name.
        input: String,
        /// The stage whose result it is.
        upstream: String,
        /// The damaged object.
        object: String,
    },
    /// A file or folder the stage read changed while it ran: its outputs
    /// are not committed.
    #[error("input `{input}` changed while the stage ran; its outputs were not kept (run again)")]
    InputChanged {
        /// The input's name.
        input: String,
    },
    /// The cluster failed the job (or lost it beyond the retries).
    #[error("{0}")]
    Cluster(String),
    /// Something else went wrong around the stage (a panic, a bad key).
    #[error("{0}")]
    Internal(String),
}

impl From<StageError> for StageFailure {
    fn from(e: StageError) -> Self {
        match e {
            StageError::Cancelled => Self::Interrupted,
            other => Self::Stage(other),
        }
    }
}

/// What a backend may use while a job runs.
pub struct JobControl<'a> {
    /// The store outputs go to.
    pub store: &'a ObjectStore,
    /// Set when the run is interrupted.
    pub cancel: &'a CancelFlag,
    /// Where progress events go.
    pub events: &'a EventSink,
}

/// Runs single stages.
pub trait StageBackend: Send + Sync + std::fmt::Debug {
    /// GPUs this host must reserve for a stage that asks for `requested`.
    fn local_gpus(&self, requested: u32) -> u32;

    /// Runs `job`; its outputs are durable in the store when this returns
    /// `Ok`.
    fn run(&self, job: &StageJob, ctl: &JobControl<'_>) -> Result<StageResult, StageFailure>;
}

/// In this process, on the calling (blocking) thread.
#[derive(Debug)]
pub struct Local;

impl StageBackend for Local {
    fn local_gpus(&self, requested: u32) -> u32 {
        requested
    }

    fn run(&self, job: &StageJob, ctl: &JobControl<'_>) -> Result<StageResult, StageFailure> {
        run_here(job, ctl.store, ctl.cancel.clone(), ctl.events.clone())
    }
}

/// Runs a job in this process and stores its outputs: what [`Local`] does,
/// and what a Slurm job does on its node.
pub fn run_here(
    job: &StageJob,
    store: &ObjectStore,
    cancel: CancelFlag,
    events: EventSink,
) -> Result<StageResult, StageFailure> {
    let stage = job.rebuild()?;
    let cx = job.stage_context(cancel, events);
    let _ = std::fs::remove_dir_all(&cx.scratch);
    if stage.wants_scratch() {
        fs_err::create_dir_all(&cx.scratch)
            .map_err(|e| StageError::io("create", &cx.scratch, e))?;
    }
    let result = stage
        .run(&cx, &job.inputs)
        .map_err(StageFailure::from)
        .and_then(|outputs| {
            let stored = store_outputs(store, &outputs.paths)?;
            Ok(StageResult {
                outputs: stored,
                summary: outputs.summary,
                reexports: outputs.reexports,
                peak_rss_kib: cx.peak.get(),
            })
        });
    // Scratch outputs are in the store now (or the stage failed).
    let _ = std::fs::remove_dir_all(&cx.scratch);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command job that records its process group in `dir/running`.
    fn job(dir: &std::path::Path, cmd: &str, outs: &[&str]) -> StageJob {
        let mut j = crate::run::job::command_job(dir, cmd, outs);
        j.context.running = Some(dir.join("running"));
        j
    }

    fn control<'a>(
        store: &'a ObjectStore,
        cancel: &'a CancelFlag,
        events: &'a EventSink,
    ) -> JobControl<'a> {
        JobControl {
            store,
            cancel,
            events,
        }
    }

    #[test]
    fn local_runs_a_job_and_stores_its_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let store = ObjectStore::open(dir.path().join("objects")).unwrap();
        let (cancel, events) = (CancelFlag::default(), EventSink::new(|_| {}));
        let j = job(dir.path(), "echo hi > a.txt", &["a.txt"]);
        let r = Local.run(&j, &control(&store, &cancel, &events)).unwrap();
        assert_eq!(r.outputs.len(), 1);
        assert_eq!(r.outputs[0].name, "a.txt");
        assert_eq!(store.read_verified(&r.outputs[0].digest).unwrap(), b"hi\n");
        assert!(!dir.path().join("scratch").exists());
    }

    #[test]
    fn failures_are_typed() {
        let dir = tempfile::tempdir().unwrap();
        let store = ObjectStore::open(dir.path().join("objects")).unwrap();
        let (cancel, events) = (CancelFlag::default(), EventSink::new(|_| {}));
        let j = job(dir.path(), "exit 3", &[]);
        let err = Local
            .run(&j, &control(&store, &cancel, &events))
            .unwrap_err();
        assert!(
            matches!(err, StageFailure::Stage(StageError::CommandFailed { .. })),
            "{err}"
        );
        cancel.cancel();
        let j = job(dir.path(), "sleep 5", &[]);
        let err = Local
            .run(&j, &control(&store, &cancel, &events))
            .unwrap_err();
        assert!(matches!(err, StageFailure::Interrupted), "{err}");
        assert_eq!(err.to_string(), "interrupted");
    }

    #[test]
    fn a_job_whose_config_no_longer_matches_its_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = ObjectStore::open(dir.path().join("objects")).unwrap();
        let (cancel, events) = (CancelFlag::default(), EventSink::new(|_| {}));
        let mut j = job(dir.path(), "true", &[]);
        j.encoded["cmd"] = "touch changed".into();
        let err = Local
            .run(&j, &control(&store, &cancel, &events))
            .unwrap_err();
        assert!(matches!(err, StageFailure::Rebuild(_)), "{err}");
        assert!(!dir.path().join("changed").exists());
    }
}
