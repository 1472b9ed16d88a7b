//! The job spec the coordinator writes and `tuneflow exec-stage` runs: one
//! stage against the shared object store. The node never opens the sled
//! index; it writes its outputs as objects and a result file, and the
//! coordinator commits them after checking that every object is there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tuneflow_cache::{ObjectStore, OutputEntry};
use tuneflow_stages::{CancelFlag, EventSink, Inputs, StageContext};

use crate::error::{exit, PipelineError, RunError};
use crate::outputs::store_outputs;
use crate::plan;

/// Everything `exec-stage` needs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct JobSpec {
    /// The pipeline file (absolute; on the shared filesystem).
    pub pipeline: PathBuf,
    /// `--set` overrides of the run.
    pub sets: Vec<String>,
    /// The stage.
    pub stage: String,
    /// Its key (hex), for the record.
    pub key: String,
    /// Kind, version and params the coordinator keyed: the node checks the
    /// pipeline file still builds the same stage.
    pub kind: String,
    /// The kind's implementation version.
    pub version: u32,
    /// Each param as canonical text.
    pub params: BTreeMap<String, String>,
    /// The object store root.
    pub objects: PathBuf,
    /// Resolved inputs: name -> path, and folder inputs' files.
    pub paths: BTreeMap<String, PathBuf>,
    /// Folder inputs: name -> (relative path -> object).
    pub trees: BTreeMap<String, BTreeMap<String, PathBuf>>,
    /// Scratch folder for outputs.
    pub scratch: PathBuf,
    /// The stage's log.
    pub log: PathBuf,
    /// Checkpoints kept across attempts (requeues resume from them).
    pub checkpoints: PathBuf,
    /// `[pipeline] device`.
    pub device: String,
    /// Where to write the result.
    pub result: PathBuf,
    /// Where progress events go (JSON lines).
    pub events: PathBuf,
}

/// What a job reports back.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct JobResult {
    /// Stored outputs.
    pub outputs: Vec<OutputEntry>,
    /// The stage's summary.
    pub summary: serde_json::Value,
    /// Outputs that are inputs passed through: (output, input).
    pub reexports: Vec<(String, String)>,
    /// Why the stage failed, if it did.
    pub error: Option<String>,
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
    let spec: JobSpec = serde_json::from_slice(&bytes)
        .map_err(|e| usage(format!("bad job spec `{}`: {e}", spec_path.display())))?;
    let result = run(&spec);
    let failed = result.is_err();
    let result = result.unwrap_or_else(|error| JobResult {
        outputs: vec![],
        summary: serde_json::Value::Null,
        reexports: vec![],
        error: Some(error),
    });
    if let Some(e) = &result.error {
        eprintln!("error: stage `{}` failed: {e}", spec.stage);
    }
    write_atomic(
        &spec.result,
        &serde_json::to_vec(&result).expect("results serialize"),
    )
    .map_err(|e| usage(format!("failed to write `{}`: {e}", spec.result.display())))?;
    Ok(if failed {
        exit::STAGE_FAILED
    } else {
        exit::SUCCESS
    })
}

fn run(spec: &JobSpec) -> Result<JobResult, String> {
    let plan = plan::load(&spec.pipeline, &spec.sets).map_err(|e| e.to_string())?;
    let i = plan
        .index_of(&spec.stage)
        .ok_or_else(|| format!("the pipeline no longer has a stage `{}`", spec.stage))?;
    let stage = &plan.stages[i].stage;
    if stage.kind() != spec.kind || stage.version() != spec.version || stage.params() != spec.params
    {
        return Err(format!(
            "stage `{}` in `{}` changed after the job was submitted",
            spec.stage,
            spec.pipeline.display()
        ));
    }
    let _ = std::fs::remove_dir_all(&spec.scratch);
    std::fs::create_dir_all(&spec.scratch).map_err(|e| e.to_string())?;
    let events =
        std::sync::Mutex::new(std::fs::File::create(&spec.events).map_err(|e| e.to_string())?);
    let cx = StageContext {
        name: spec.stage.clone(),
        workdir: plan.dir.clone(),
        scratch: spec.scratch.clone(),
        log: spec.log.clone(),
        cancel: CancelFlag::default(),
        // Slurm sets CUDA_VISIBLE_DEVICES from the job's gres; the stage
        // inherits it.
        gpus: vec![],
        checkpoints: spec.checkpoints.clone(),
        events: EventSink::new(move |v| {
            use std::io::Write;
            if let Ok(mut f) = events.lock() {
                let _ = writeln!(f, "{v}");
            }
        }),
        device: spec.device.clone(),
    };
    let inputs = Inputs {
        paths: spec.paths.clone(),
        trees: spec.trees.clone(),
    };
    let outputs = stage.run(&cx, &inputs).map_err(|e| e.to_string())?;
    let store = ObjectStore::open(&spec.objects).map_err(|e| e.to_string())?;
    let entries = store_outputs(&store, &outputs.paths).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&spec.scratch);
    Ok(JobResult {
        outputs: entries,
        summary: outputs.summary,
        reexports: outputs.reexports,
        error: None,
    })
}
