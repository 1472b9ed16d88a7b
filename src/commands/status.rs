//! `tuneflow status`: for every stage, cached or will run, and why, from
//! the same decision a run makes ([`crate::run::lookup`]). It takes no
//! lock, so it never stops a run from starting; while a run is in progress
//! it shows that run's progress instead.

use std::path::Path;

use crate::cli::StatusArgs;
use crate::error::{exit, RunError};
use crate::pipeline::{self, Plan};
use crate::run::cache::{layout_for, Cache};
use crate::run::lookup::{resolve, Decision, Lookup, Resolved};
use crate::run::prefetch::{Prefetch, ResultStats};
use crate::run::session::{read_state, RunState};

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
    let prefetch = Prefetch::start(cache_flag, &args.pipeline, ResultStats::Read);
    let plan = pipeline::load(&args.pipeline, &args.set)?;
    let layout = layout_for(cache_flag, Some(&plan), Some(&args.pipeline));
    let running = running(&layout).filter(|s| s.pipeline == plan.file.display().to_string());
    let lines = match running {
        Some(state) => from_running(&plan, &state),
        None => {
            let prefetched = prefetch.take(layout.root(), &plan);
            let cache = Cache::open_shared(layout)?;
            let lookup = Lookup::prefetched(&plan, &cache.index, &cache.store, prefetched);
            let resolved = resolve(&lookup)?;
            let lines = lines(&plan, &resolved);
            // Freeing a large plan and every stage's decision one by one
            // costs a 10,000-stage status a tenth of its time; the process
            // ends now and the system takes it all back at once.
            std::mem::forget((resolved, lookup));
            lines
        }
    };
    print(&lines, args.json);
    std::mem::forget((plan, lines));
    Ok(exit::SUCCESS)
}

/// The state of a run in progress on this cache: its state file names a
/// live tuneflow process.
fn running(layout: &tuneflow_cache::CacheLayout) -> Option<RunState> {
    let state = read_state(layout)?;
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", state.pid)).ok()?;
    let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(argv0)
        .contains("tuneflow")
        .then_some(state)
}

/// What a run in progress reports through its state file.
fn from_running(plan: &Plan, state: &RunState) -> Vec<StageStatus> {
    plan.stages
        .iter()
        .map(|s| {
            let word = state
                .stages
                .iter()
                .find(|(n, _)| *n == s.name)
                .map_or_else(|| "pending".into(), |(_, w)| w.clone());
            StageStatus {
                event: "stage-status",
                stage: s.name.clone(),
                state: word,
                reason: format!("a run (pid {}) is in progress", state.pid),
            }
        })
        .collect()
}

fn lines(plan: &Plan, resolved: &[Resolved]) -> Vec<StageStatus> {
    plan.stages
        .iter()
        .zip(resolved)
        .map(|(ps, r)| {
            let (state, reason) = match r {
                Resolved::Decided(Decision::Hit { restore, .. }) if restore.is_empty() => {
                    ("cached", String::new())
                }
                Resolved::Decided(Decision::Hit { restore, .. }) => {
                    ("cached", format!("will restore {}", restore.join(", ")))
                }
                Resolved::Decided(Decision::Miss { reason, .. }) => ("will-run", reason.clone()),
                Resolved::Blocked { upstream } => (
                    "will-run",
                    format!("upstream `{}` will run", plan.stages[*upstream].name),
                ),
                Resolved::Unkeyable(e) => ("will-run", e.to_string()),
            };
            StageStatus {
                event: "stage-status",
                stage: ps.name.clone(),
                state: state.into(),
                reason,
            }
        })
        .collect()
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
