//! Where one stage's work happens. The engine decides what runs and
//! commits results; a [`StageBackend`] runs one stage and hands back its
//! stored outputs: [`Local`] in this process, or [`crate::slurm::Slurm`] as
//! a Slurm job that writes to the shared object store.

use tuneflow_cache::{OutputEntry, StageRecord};
use tuneflow_stages::StageContext;

use crate::engine::Engine;
use crate::outputs::store_outputs;
use crate::slurm::Slurm;

/// What a stage run leaves: stored outputs, summary, re-exports.
pub type StoredOutputs = (Vec<OutputEntry>, serde_json::Value, Vec<(String, String)>);

/// Runs single stages.
pub trait StageBackend: Send + Sync + std::fmt::Debug {
    /// GPUs this host must reserve for a stage that asks for `requested`.
    fn local_gpus(&self, requested: u32) -> u32;

    /// Runs stage `i` of `engine`'s plan; its outputs are in the store when
    /// this returns `Ok`.
    fn run(
        &self,
        engine: &Engine,
        i: usize,
        cx: &StageContext,
        record: &StageRecord,
    ) -> Result<StoredOutputs, String>;
}

/// In this process, on a blocking thread.
#[derive(Debug)]
pub struct Local;

impl StageBackend for Local {
    fn local_gpus(&self, requested: u32) -> u32 {
        requested
    }

    fn run(
        &self,
        engine: &Engine,
        i: usize,
        cx: &StageContext,
        _record: &StageRecord,
    ) -> Result<StoredOutputs, String> {
        let outputs = engine.plan.stages[i]
            .stage
            .run(cx, &engine.inputs(i))
            .map_err(|e| e.to_string())?;
        let entries = store_outputs(engine.store(), &outputs.paths).map_err(|e| e.to_string())?;
        Ok((entries, outputs.summary, outputs.reexports))
    }
}

impl StageBackend for Slurm {
    /// The cluster hands out GPUs (`--gres`), not this host.
    fn local_gpus(&self, _requested: u32) -> u32 {
        0
    }

    /// Runs stage `i` as a Slurm job: the job stores its outputs in the
    /// shared object store; this returns them once verified.
    fn run(
        &self,
        engine: &Engine,
        i: usize,
        cx: &StageContext,
        record: &StageRecord,
    ) -> Result<StoredOutputs, String> {
        let ps = &engine.plan.stages[i];
        let dir = engine
            .layout()
            .root()
            .join("slurm")
            .join(record.key.to_hex());
        let inputs = engine.inputs(i);
        let spec = crate::slurm::job::JobSpec {
            pipeline: engine.plan.file.clone(),
            sets: engine.options().sets.clone(),
            stage: ps.name.clone(),
            key: record.key.to_hex(),
            kind: record.kind.clone(),
            version: record.version,
            params: record.params.clone(),
            objects: engine.layout().objects(),
            paths: inputs.paths,
            trees: inputs.trees,
            scratch: dir.join("scratch"),
            log: cx.log.clone(),
            checkpoints: cx.checkpoints.clone(),
            device: cx.device.clone(),
            result: dir.join("result.json"),
            events: dir.join("events.jsonl"),
        };
        let request = crate::slurm::JobRequest {
            spec: &spec,
            dir: &dir,
            resources: &ps.resources,
            cancel: &engine.cancel,
            on_event: &|v| cx.events.emit(v),
        };
        let result = self.submit_and_wait(&request, engine.store())?;
        let _ = std::fs::remove_dir_all(&dir);
        Ok((result.outputs, result.summary, result.reexports))
    }
}
