//! The job spec the coordinator writes and `tuneflow exec-stage` runs: one
//! [`StageJob`] against the shared object store. The node never opens the
//! index; it writes its outputs as objects and a result file, and the
//! coordinator commits them after checking that every object is there.

use std::path::{Path, PathBuf};

use tuneflow_cache::ObjectStore;
use tuneflow_stages::worker::WorkerEvent;
use tuneflow_stages::{CancelFlag, EventSink};

use crate::error::{exit, RunError};
use crate::pipeline::PipelineError;
use crate::run::backend::{run_here, StageFailure, StageResult};
use crate::run::job::StageJob;

/// Everything `exec-stage` needs: the stage job and where to report.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SlurmSpec {
    /// The stage, resolved.
    pub job: StageJob,
    /// Where to write the [`JobOutcome`].
    pub result: PathBuf,
    /// Where progress events go (JSON lines).
    pub events: PathBuf,
}

/// What a job reports back.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum JobOutcome {
    /// The stage ran; its outputs are in the store.
    Done(StageResult),
    /// The stage failed.
    Failed {
        /// Why, as the stage said it.
        error: String,
    },
    /// The job was interrupted (scancel, preemption).
    Interrupted,
}

/// Writes `bytes` to `path` by way of a temp file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// `tuneflow exec-stage --spec FILE`.
#[expect(clippy::print_stderr, reason = "a job's stderr is its Slurm log")]
pub fn exec_stage(spec_path: &Path) -> Result<i32, RunError> {
    let usage = |m: String| RunError::from(PipelineError::Usage(m));
    let bytes = std::fs::read(spec_path)
        .map_err(|e| usage(format!("failed to read `{}`: {e}", spec_path.display())))?;
    let spec: SlurmSpec = serde_json::from_slice(&bytes)
        .map_err(|e| usage(format!("bad job spec `{}`: {e}", spec_path.display())))?;
    let outcome = match run(&spec) {
        Ok(r) => JobOutcome::Done(r),
        Err(StageFailure::Interrupted) => JobOutcome::Interrupted,
        Err(e) => {
            eprintln!("error: stage `{}` failed: {e}", spec.job.stage);
            JobOutcome::Failed {
                error: e.to_string(),
            }
        }
    };
    write_atomic(
        &spec.result,
        &serde_json::to_vec(&outcome).expect("outcomes serialize"),
    )
    .map_err(|e| usage(format!("failed to write `{}`: {e}", spec.result.display())))?;
    Ok(match outcome {
        JobOutcome::Done(_) => exit::SUCCESS,
        JobOutcome::Interrupted => exit::INTERRUPTED,
        JobOutcome::Failed { .. } => exit::STAGE_FAILED,
    })
}

/// Runs the job against the shared store; events go to the events file.
/// The node never opens the index: the coordinator commits.
fn run(spec: &SlurmSpec) -> Result<StageResult, StageFailure> {
    let store = ObjectStore::open(&spec.job.objects)?;
    let file = std::fs::File::create(&spec.events)
        .map_err(|e| StageFailure::Internal(format!("{}: {e}", spec.events.display())))?;
    let file = std::sync::Mutex::new(file);
    let events = EventSink::new(move |event: WorkerEvent| {
        use std::io::Write;
        if let Ok(mut f) = file.lock() {
            let _ = writeln!(f, "{}", event.to_line());
        }
    });
    run_here(&spec.job, &store, CancelFlag::default(), events)
}
