//! What a run reports, as data: the engine sends [`RunEvent`]s through a
//! [`Reporter`], and `crate::report` renders them (JSON lines, a live view
//! or plain lines). Nothing here prints.

use std::sync::mpsc;

use tuneflow_stages::worker::WorkerEvent;

/// Something that happened during a run. Event names (`"event"`) are
/// kebab-case; every key is snake_case.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum RunEvent {
    /// The run began.
    RunStarted {
        /// The pipeline's name.
        pipeline: String,
        /// How many stages it has.
        stages: usize,
    },
    /// A stage's outputs came from the cache.
    StageCached {
        /// The stage.
        stage: String,
        /// Its key (full hex).
        key: String,
        /// Workspace outputs that had to be restored.
        restored: Vec<String>,
        /// Output name -> digest.
        outputs: std::collections::BTreeMap<String, String>,
    },
    /// A stage began running.
    StageStarted {
        /// The stage.
        stage: String,
        /// Its key.
        key: String,
        /// Why it runs.
        reason: String,
    },
    /// A stage finished and its outputs are committed.
    StageFinished {
        /// The stage.
        stage: String,
        /// Its key.
        key: String,
        /// Wall time.
        seconds: f64,
        /// Output name -> digest.
        outputs: std::collections::BTreeMap<String, String>,
        /// What the stage reported (counts, metrics), if anything.
        #[serde(skip_serializing_if = "serde_json::Value::is_null")]
        summary: serde_json::Value,
        /// Peak resident memory of the processes it ran, KiB.
        #[serde(skip_serializing_if = "Option::is_none")]
        peak_rss_kib: Option<u64>,
    },
    /// Progress a stage reported (e.g. a training epoch), flattened into
    /// one line with the stage's name.
    #[serde(skip)]
    Stage {
        /// The stage.
        stage: String,
        /// The stage's event.
        event: WorkerEvent,
    },
    /// A stage failed.
    StageFailed {
        /// The stage.
        stage: String,
        /// What went wrong.
        error: String,
    },
    /// A stage stopped because the run was interrupted.
    StageInterrupted {
        /// The stage.
        stage: String,
        /// A training stage: the last epoch checkpointed, which a rerun
        /// resumes from (0: a rerun starts it from the beginning).
        #[serde(skip_serializing_if = "Option::is_none")]
        resume_epoch: Option<u64>,
    },
    /// A stage did not run because of a failure elsewhere.
    StageSkipped {
        /// The stage.
        stage: String,
        /// Why.
        reason: String,
    },
    /// The run ended.
    RunFinished {
        /// Stages that ran.
        ran: usize,
        /// Stages served from the cache.
        cached: usize,
        /// Stages that failed.
        failed: usize,
        /// Stages skipped.
        skipped: usize,
        /// Wall time.
        seconds: f64,
        /// Peak resident memory of the runner process (VmHWM), KiB.
        #[serde(skip_serializing_if = "Option::is_none")]
        peak_rss_kib: Option<u64>,
    },
}

/// Sends events to the rendering thread.
#[derive(Clone)]
pub struct Reporter {
    tx: mpsc::Sender<RunEvent>,
}

impl Reporter {
    /// A reporter and the receiving end its events arrive at.
    pub fn channel() -> (Self, mpsc::Receiver<RunEvent>) {
        let (tx, rx) = mpsc::channel();
        (Self { tx }, rx)
    }

    /// Reports an event.
    pub fn send(&self, event: RunEvent) {
        let _ = self.tx.send(event);
    }
}
