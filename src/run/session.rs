//! One `tuneflow run` around the engine: the tokio runtime, Ctrl-C and
//! SIGTERM, the state file `status` reads while the run goes on, the
//! repair round after a damaged input, and the run record. The decisions
//! are the engine's; this module only drives them.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tuneflow_cache::{CacheLayout, GitState, RunRecord};

use super::backend::StageFailure;
use super::engine::{Engine, Outcome};
use super::events::{Reporter, RunEvent};

/// How often the run-state file (what `status` shows while a run goes on)
/// is rewritten when something changed: each write is a new file.
const STATE_SPACING: Duration = Duration::from_millis(200);
use super::executor::{run_graph, Task};
use super::history::{self, GitProbe};
use crate::pipeline::Plan;

pub use super::history::run_id;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// Every stage ran or was cached.
    Success,
    /// A stage failed or was skipped.
    Failed,
    /// Ctrl-C or SIGTERM.
    Interrupted,
}

/// Rounds of a run: a stage that found a damaged input sends its upstream
/// stage back to run, then runs again.
const MAX_ROUNDS: usize = 3;

/// Runs the engine to the end and records the run.
pub fn run(engine: &Arc<Engine>, reporter: &Reporter, id: &str) -> RunEnd {
    let started = Instant::now();
    let started_ns = epoch_nanos();
    let git = GitProbe::start(&engine.plan.dir);
    reporter.send(RunEvent::RunStarted {
        pipeline: engine.plan.name.clone(),
        stages: engine.plan.stages.len(),
    });
    let mut interrupted = false;
    for _ in 0..MAX_ROUNDS {
        let remaining = engine.first_pass();
        if remaining.is_empty() {
            break;
        }
        write_state(engine);
        interrupted = execute(engine, remaining);
        write_state(engine);
        if interrupted || !engine.reset_damaged() {
            break;
        }
    }
    engine.save_records();
    let outcomes = engine.outcomes();
    let end = if interrupted {
        RunEnd::Interrupted
    } else if outcomes.iter().any(|o| o.key().is_none()) {
        RunEnd::Failed
    } else {
        RunEnd::Success
    };
    let when = (started_ns, epoch_nanos());
    record(engine, &outcomes, end, id, git.finish(), when);
    let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    reporter.send(RunEvent::RunFinished {
        ran: count(|o| matches!(o, Outcome::Ran(..))),
        cached: count(|o| matches!(o, Outcome::Cached(..))),
        failed: count(|o| matches!(o, Outcome::Failed(_))),
        skipped: count(|o| {
            matches!(
                o,
                Outcome::Skipped(_) | Outcome::Pending | Outcome::Interrupted
            )
        }),
        seconds: started.elapsed().as_secs_f64(),
        peak_rss_kib: peak_rss_kib(),
    });
    let _ = std::fs::remove_file(engine.cache().layout.run_state());
    end
}

impl Engine {
    /// After a round in which stages found damaged inputs: sends those
    /// stages (and what was skipped because of them) back to pending.
    /// Returns whether anything is left to run again.
    pub fn reset_damaged(&self) -> bool {
        let outcomes = self.outcomes();
        let damaged: Vec<usize> = (0..outcomes.len())
            .filter(|&i| {
                matches!(&outcomes[i], Outcome::Failed(f)
                    if matches!(**f, StageFailure::DamagedInput { .. }))
            })
            .collect();
        if damaged.is_empty() || outcomes.iter().any(|o| {
            matches!(o, Outcome::Failed(f) if !matches!(**f, StageFailure::DamagedInput { .. }))
        }) {
            return false;
        }
        self.reset(|o| matches!(o, Outcome::Failed(_) | Outcome::Skipped(_)));
        true
    }
}

/// Runs the remaining stages on a tokio runtime; returns whether the run
/// was interrupted (Ctrl-C or SIGTERM).
fn execute(engine: &Arc<Engine>, remaining: Vec<usize>) -> bool {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    runtime.block_on(async {
        let cancel = engine.cancel.clone();
        let watcher = tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
            cancel.cancel();
        });
        let state_engine = engine.clone();
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(STATE_SPACING).await;
                if state_engine.changed.swap(false, Ordering::SeqCst) {
                    write_state(&state_engine);
                }
            }
        });
        let task_engine = engine.clone();
        let task: Task = Arc::new(move |i| Box::pin(task_engine.clone().execute(i)));
        let plan = &engine.plan;
        let result = run_graph(
            &remaining,
            &|i| plan.stages[i].name.clone(),
            &|i| plan.stages[i].upstream.clone(),
            task,
        )
        .await;
        if let Err(e) = result {
            tracing::error!("{e}");
        }
        watcher.abort();
        ticker.abort();
    });
    engine.cancel.is_cancelled()
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

/// Writes the state file atomically (temp file, rename).
fn write_state(engine: &Engine) {
    let plan: &Plan = &engine.plan;
    let state = RunState {
        pid: std::process::id(),
        pipeline: plan.file.display().to_string(),
        stages: plan
            .stages
            .iter()
            .zip(engine.outcomes())
            .map(|(s, o)| (s.name.clone(), o.word().to_owned()))
            .collect(),
    };
    let path = engine.cache().layout.run_state();
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let data = serde_json::to_vec(&state).expect("state serializes");
    if std::fs::write(&tmp, data)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .is_err()
    {
        tracing::warn!("failed to write `{}`", path.display());
    }
}

/// Reads the state file of a run in progress, if any.
pub fn read_state(layout: &CacheLayout) -> Option<RunState> {
    let data = std::fs::read(layout.run_state()).ok()?;
    serde_json::from_slice(&data).ok()
}

/// Records the run (every run, all-cached ones too).
fn record(
    engine: &Engine,
    outcomes: &[Outcome],
    end: RunEnd,
    id: &str,
    git: Option<GitState>,
    (started, ended): (u64, u64),
) {
    let plan = &engine.plan;
    let keys = plan
        .stages
        .iter()
        .zip(outcomes)
        .filter_map(|(s, o)| o.key().map(|k| (s.name.clone(), k)))
        .collect();
    let record = RunRecord {
        started,
        ended,
        pipeline: plan.file.display().to_string(),
        keys,
        outcome: match end {
            RunEnd::Success => "success",
            RunEnd::Failed => "failed",
            RunEnd::Interrupted => "interrupted",
        }
        .into(),
        metrics: history::run_metrics(plan, outcomes),
        overrides: plan.overrides.clone(),
        pipeline_digest: plan.source_digest.clone(),
        git,
        stages: history::stage_runs(plan, outcomes, &engine.reasons()),
        sweep: engine.options().sweep.clone(),
    };
    if let Err(e) = engine.cache().index.put_run(id, &record) {
        tracing::warn!("failed to record the run: {e}");
    }
}

fn epoch_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// This process's peak resident memory since `exec` (`VmHWM`). Unlike
/// `getrusage`'s `ru_maxrss`, it does not include what the parent had
/// before the fork.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
