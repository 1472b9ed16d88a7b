//! The state file a run keeps beside the index, so `tuneflow status` can
//! answer while the run holds the cache (sled allows one process at a time).

use tuneflow_cache::CacheLayout;

use crate::engine::Outcome;
use crate::plan::Plan;

/// A sortable id for a run: UTC time plus pid.
pub fn run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}-{:09}-{}",
        now.as_secs(),
        now.subsec_nanos(),
        std::process::id()
    )
}

/// What the state file holds.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct RunState {
    /// The running process.
    pub pid: u32,
    /// The pipeline file.
    pub pipeline: String,
    /// (stage, state word) in plan order.
    pub stages: Vec<(String, String)>,
}

/// Writes the state file atomically (temp file, rename). Callers serialize
/// their calls (see `Engine::write_state`).
pub fn write(layout: &CacheLayout, plan: &Plan, outcomes: &[Outcome]) {
    let state = RunState {
        pid: std::process::id(),
        pipeline: plan.file.display().to_string(),
        stages: plan
            .stages
            .iter()
            .zip(outcomes)
            .map(|(s, o)| (s.name.clone(), o.word().to_owned()))
            .collect(),
    };
    let path = layout.run_state();
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let data = serde_json::to_vec(&state).expect("state serializes");
    if std::fs::write(&tmp, data)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .is_err()
    {
        tracing::warn!("failed to write `{}`", path.display());
    }
}

/// Reads the state file, if any.
pub fn read(layout: &CacheLayout) -> Option<RunState> {
    let data = std::fs::read(layout.run_state()).ok()?;
    serde_json::from_slice(&data).ok()
}
