//! `tuneflow status`: for every stage, cached or will run, and why.

use std::path::Path;

use tuneflow_cache::{CacheLock, Index, LockError, Manifest, StatCache};

use crate::cli::StatusArgs;
use crate::commands::cache_layout;
use crate::error::{exit, RunError};
use crate::keys;
use crate::plan::{self, Plan};

/// One stage's line.
#[derive(Debug, serde::Serialize)]
pub struct StageStatus {
    /// Always "stage-status".
    pub event: &'static str,
    /// The stage.
    pub stage: String,
    /// "cached", "will-run", or a running run's state word.
    pub state: String,
    /// Why.
    pub reason: String,
}

/// Runs `tuneflow status`.
pub fn status(args: &StatusArgs, cache_flag: Option<&Path>) -> Result<i32, RunError> {
    let plan = plan::load(&args.pipeline, &args.set)?;
    let layout = cache_layout(cache_flag, Some(&plan), Some(&args.pipeline));
    let lines = match CacheLock::acquire(&layout.lock()) {
        Ok(_lock) => {
            let index = Index::open(&layout.index())?;
            compute(&plan, &index)?.0
        }
        Err(LockError::InUse { pid, .. }) => from_running(&layout, &plan, &pid),
        Err(e) => return Err(e.into()),
    };
    print(&lines, args.json);
    Ok(exit::SUCCESS)
}

/// What a run in progress reports through its state file.
fn from_running(layout: &tuneflow_cache::CacheLayout, plan: &Plan, pid: &str) -> Vec<StageStatus> {
    let state = crate::state::read(layout);
    plan.stages
        .iter()
        .map(|s| {
            let word = state
                .as_ref()
                .and_then(|st| {
                    st.stages
                        .iter()
                        .find(|(n, _)| *n == s.name)
                        .map(|(_, w)| w.clone())
                })
                .unwrap_or_else(|| "pending".into());
            StageStatus {
                event: "stage-status",
                stage: s.name.clone(),
                state: word,
                reason: format!("a run (pid {pid}) is in progress"),
            }
        })
        .collect()
}

/// Computes every stage's status without running or restoring anything,
/// and the manifest of every stage that is cached.
pub fn compute(
    plan: &Plan,
    index: &Index,
) -> Result<(Vec<StageStatus>, Vec<Option<Manifest>>), RunError> {
    let stats = StatCache::new(index);
    let mut manifests: Vec<Option<Manifest>> = vec![None; plan.stages.len()];
    let mut out = Vec::with_capacity(plan.stages.len());
    let pipeline = plan.file.to_string_lossy();
    for (i, ps) in plan.stages.iter().enumerate() {
        let (state, reason) =
            if let Some(&j) = ps.upstream.iter().find(|&&j| manifests[j].is_none()) {
                (
                    "will-run",
                    format!("upstream `{}` will run", plan.stages[j].name),
                )
            } else {
                match keys::compute(plan, i, &|j| manifests[j].clone(), &stats) {
                    Err(keys::KeyError::Cache(e)) => return Err(e.into()),
                    Err(e) => ("will-run", format!("{e}")),
                    Ok(record) => match index.result(&record.key)? {
                        Some(m) => {
                            let missing: Vec<_> = ps
                                .outs
                                .iter()
                                .filter(|o| !plan.dir.join(o).exists())
                                .cloned()
                                .collect();
                            manifests[i] = Some(m);
                            let reason = if missing.is_empty() {
                                String::new()
                            } else {
                                format!("will restore {}", missing.join(", "))
                            };
                            ("cached", reason)
                        }
                        None => {
                            let prev = index.stage_record(&pipeline, &ps.name)?;
                            ("will-run", keys::explain(prev.as_ref(), &record))
                        }
                    },
                }
            };
        out.push(StageStatus {
            event: "stage-status",
            stage: ps.name.clone(),
            state: state.into(),
            reason,
        });
    }
    Ok((out, manifests))
}

fn print(lines: &[StageStatus], json: bool) {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if json {
        for l in lines {
            let _ = serde_json::to_writer(&mut out, l);
            let _ = out.write_all(b"\n");
        }
        return;
    }
    let width = lines
        .iter()
        .map(|l| l.stage.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(out, "{:width$}  {:9} REASON", "STAGE", "STATE");
    for l in lines {
        let _ = writeln!(out, "{:width$}  {:9} {}", l.stage, l.state, l.reason);
    }
}
