//! A stage job: everything one stage needs to run, resolved and
//! serialisable, so that this process, or a Slurm job on another node,
//! runs exactly what was keyed. The stage itself travels as its kind and
//! encoded config and is rebuilt from the kinds table.

use std::path::PathBuf;

use tuneflow_cache::StageRecord;
use tuneflow_stages::{
    CancelFlag, DecodeError, Device, EventSink, Inputs, Resources, Stage, StageContext,
};

/// Where a job runs and keeps its files.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobContext {
    /// The pipeline's folder: relative paths resolve here.
    pub workdir: PathBuf,
    /// A private, empty folder for outputs that are not workspace files.
    pub scratch: PathBuf,
    /// The stage's log file.
    pub log: PathBuf,
    /// Checkpoints kept across attempts of the same key.
    pub checkpoints: PathBuf,
    /// `[pipeline] device` (a stage's own `device` overrides it).
    pub device: Device,
    /// GPU ordinals this host assigned (empty under Slurm: `--gres`).
    pub gpus: Vec<u32>,
    /// Where the stage's child process groups are recorded while they run
    /// (`None` on a cluster node: Slurm ends a job's processes).
    pub running: Option<PathBuf>,
}

/// One stage, ready to run anywhere that sees the same files.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StageJob {
    /// The stage's name.
    pub stage: String,
    /// Its kind.
    pub kind: String,
    /// Its config, as [`Stage::encode`] wrote it.
    pub encoded: serde_json::Value,
    /// The key and what went into it.
    pub record: StageRecord,
    /// Resolved inputs: paths in the workspace or the object store.
    pub inputs: Inputs,
    /// Where it runs.
    pub context: JobContext,
    /// What it holds while it runs.
    pub resources: Resources,
    /// The object store its outputs go to.
    pub objects: PathBuf,
}

/// Why a job's stage could not be rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// The kind table cannot decode it.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// It decodes to other params than were keyed (another version).
    #[error("stage `{0}` decodes to other params than its key was computed from")]
    Changed(String),
}

impl StageJob {
    /// The stage, rebuilt from its kind and config, checked against the
    /// params its key was computed from.
    pub fn rebuild(&self) -> Result<Box<dyn Stage>, RebuildError> {
        let stage = tuneflow_stages::decode(&self.kind, self.encoded.clone())?;
        if stage.version() != self.record.version || stage.params() != self.record.params {
            return Err(RebuildError::Changed(self.stage.clone()));
        }
        Ok(stage)
    }

    /// The context the stage runs with.
    pub fn stage_context(&self, cancel: CancelFlag, events: EventSink) -> StageContext {
        let c = &self.context;
        StageContext {
            name: self.stage.clone(),
            workdir: c.workdir.clone(),
            scratch: c.scratch.clone(),
            log: c.log.clone(),
            cancel,
            gpus: c.gpus.clone(),
            checkpoints: c.checkpoints.clone(),
            events,
            device: c.device,
            running: c.running.clone(),
            peak: tuneflow_stages::process::PeakMemory::default(),
        }
    }
}

/// A `command` job built by hand, with no pipeline, engine or index, for
/// the backends' unit tests.
#[cfg(test)]
pub fn command_job(dir: &std::path::Path, cmd: &str, outs: &[&str]) -> StageJob {
    use tuneflow_stages::Stage as _;
    let stage = tuneflow_stages::kinds::command::Command {
        cmd: cmd.into(),
        outs: outs.iter().map(|s| s.to_string()).collect(),
        env: Default::default(),
        uses: vec![],
        typed: Default::default(),
    };
    let record = crate::run::keys::record(
        stage.kind(),
        stage.version(),
        stage.params(),
        Default::default(),
    );
    StageJob {
        stage: "s".into(),
        kind: "command".into(),
        encoded: stage.encode(),
        record,
        inputs: Default::default(),
        context: JobContext {
            workdir: dir.to_path_buf(),
            scratch: dir.join("scratch"),
            log: dir.join("s.log"),
            checkpoints: dir.join("ckpt"),
            device: tuneflow_stages::Device::Cpu,
            gpus: vec![],
            running: None,
        },
        resources: Default::default(),
        objects: dir.join("objects"),
    }
}
