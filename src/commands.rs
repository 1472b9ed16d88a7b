//! Each subcommand, from parsed arguments to an exit code. This is the only
//! module (with the reporter) that prints.
#![expect(clippy::print_stderr, reason = "errors are printed here")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tuneflow_cache::{CacheLayout, CacheLock, Index, RunRecord};

use crate::cli::{CacheCommand, Cli, Command, RunArgs};
use crate::engine::{Engine, EngineOptions, Outcome};
use crate::error::{exit, RunError};
use crate::executor::{DagrsExecutor, Executor};
use crate::plan::{self, Plan};
use crate::report::{Mode, Reporter, RunEvent};

/// Runs the parsed command line; returns the process exit code.
pub fn main(cli: Cli) -> i32 {
    let cache_dir = cli.cache_dir.clone();
    let result = match cli.command {
        Command::Run(args) => run(&args, cache_dir.as_deref()),
        Command::Status(args) => crate::status::status(&args, cache_dir.as_deref()),
        Command::Graph(args) => crate::graph::graph(&args),
        Command::Cache(CacheCommand::Verify(a)) => {
            crate::maintenance::verify(&a, cache_dir.as_deref())
        }
        Command::Cache(CacheCommand::Du(a)) => crate::maintenance::du(&a, cache_dir.as_deref()),
        Command::Cache(CacheCommand::Gc(a)) => crate::maintenance::gc(&a, cache_dir.as_deref()),
        Command::ExecStage(a) => crate::slurm::job::exec_stage(&a.spec),
        Command::Export(a) => crate::export::export(&a, cache_dir.as_deref()),
        Command::Metrics(a) => crate::metrics::metrics(&a, cache_dir.as_deref()),
        Command::Fixtures(a) => crate::fixtures::fixtures(&a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprint!("{}", e.render(terminal_width()));
            e.exit_code()
        }
    }
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100)
}

/// The cache folder: `--cache-dir`/`TUNEFLOW_CACHE_DIR`, else the
/// pipeline's `[pipeline] cache`, else `.tuneflow/` beside the pipeline.
pub fn cache_layout(
    flag: Option<&Path>,
    plan: Option<&Plan>,
    pipeline: Option<&Path>,
) -> CacheLayout {
    if let Some(dir) = flag {
        return CacheLayout::new(dir);
    }
    if let Some(dir) = plan.and_then(|p| p.cache_dir.clone()) {
        return CacheLayout::new(dir);
    }
    let beside = pipeline
        .and_then(|p| std::path::absolute(p).ok())
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    CacheLayout::new(beside.join(".tuneflow"))
}

fn run(args: &RunArgs, cache_flag: Option<&Path>) -> Result<i32, RunError> {
    let started = Instant::now();
    let plan = Arc::new(plan::load(&args.pipeline, &args.set)?);
    for f in &args.force {
        if plan.index_of(f).is_none() {
            return Err(crate::error::PipelineError::Usage(format!(
                "`--force {f}`: no stage is called `{f}`"
            ))
            .into());
        }
    }
    let layout = cache_layout(cache_flag, Some(&plan), Some(&args.pipeline));
    let _lock = CacheLock::acquire(&layout.lock())?;
    let index = Index::open(&layout.index())?;
    let (reporter, render) = Reporter::start(Mode::pick(args.json));
    let slurm = slurm_backend(&plan, args.executor)?;
    let options = EngineOptions {
        force: args.force.clone(),
        keep_going: args.keep_going,
        jobs: args.jobs.unwrap_or_else(|| match &plan.executor {
            // Under Slurm, `--jobs` bounds jobs in flight; the cluster
            // decides what runs at once.
            crate::slurm::ExecutorConfig::Slurm(c) if slurm.is_some() => c.max_in_flight,
            _ if slurm.is_some() => crate::slurm::SlurmConfig::default().max_in_flight,
            _ => std::thread::available_parallelism().map_or(2, |n| n.get()),
        }),
        backend: match slurm {
            Some(s) => s,
            None => Arc::new(crate::backend::Local),
        },
        sets: args.set.clone(),
    };
    let engine = Arc::new(Engine::new(
        plan.clone(),
        layout,
        index,
        reporter.clone(),
        options,
    )?);
    reporter.send(RunEvent::RunStarted {
        pipeline: plan.name.clone(),
        stages: plan.stages.len(),
    });
    let remaining = engine.first_pass();
    let mut interrupted = false;
    if !remaining.is_empty() {
        engine.write_state(true);
        interrupted = execute(&engine, remaining);
        engine.write_state(true);
    }
    let outcomes = engine.outcomes();
    let code = finish(&engine, &outcomes, &reporter, started, interrupted);
    drop(reporter);
    drop(engine);
    let _ = render.join();
    Ok(code)
}

/// The Slurm backend when `--executor` or `[executor] kind` asks for it.
fn slurm_backend(
    plan: &crate::plan::Plan,
    flag: Option<crate::cli::ExecutorKind>,
) -> Result<Option<Arc<crate::slurm::Slurm>>, RunError> {
    use crate::cli::ExecutorKind;
    use crate::slurm::ExecutorConfig;
    let cfg = match (flag, &plan.executor) {
        (Some(ExecutorKind::Local), _) | (None, ExecutorConfig::Local) => return Ok(None),
        (_, ExecutorConfig::Slurm(c)) => c.clone(),
        (Some(ExecutorKind::Slurm), ExecutorConfig::Local) => crate::slurm::SlurmConfig::default(),
    };
    crate::slurm::Slurm::new(cfg)
        .map(|s| Some(Arc::new(s)))
        .map_err(|e| crate::error::PipelineError::Usage(e).into())
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
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                state_engine.flush_state();
            }
        });
        if let Err(e) = DagrsExecutor.execute(engine.clone(), remaining).await {
            tracing::error!("executor failed: {e}");
        }
        watcher.abort();
        ticker.abort();
    });
    engine.cancel.is_cancelled()
}

fn finish(
    engine: &Engine,
    outcomes: &[Outcome],
    reporter: &Reporter,
    started: Instant,
    interrupted: bool,
) -> i32 {
    let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    let ran = count(|o| matches!(o, Outcome::Ran(..)));
    let cached = count(|o| matches!(o, Outcome::Cached(..)));
    let failed = count(|o| matches!(o, Outcome::Failed(_)));
    let skipped = count(|o| matches!(o, Outcome::Skipped(_) | Outcome::Pending));
    // A no-op rerun records nothing: the keys are those of the last run.
    if ran + failed + skipped > 0 || engine.index().runs().map(|r| r.is_empty()).unwrap_or(true) {
        let keys = engine
            .plan
            .stages
            .iter()
            .zip(outcomes)
            .filter_map(|(s, o)| o.key().map(|k| (s.name.clone(), k)))
            .collect();
        let record = RunRecord {
            started: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
            pipeline: engine.plan.file.display().to_string(),
            keys,
            outcome: if interrupted {
                "interrupted"
            } else if failed > 0 {
                "failed"
            } else {
                "success"
            }
            .into(),
            metrics: Default::default(),
        };
        if let Err(e) = engine.index().put_run(&record) {
            tracing::warn!("failed to record the run: {e}");
        }
    }
    reporter.send(RunEvent::RunFinished {
        ran,
        cached,
        failed,
        skipped,
        seconds: started.elapsed().as_secs_f64(),
        peak_rss_kib: peak_rss_kib(),
    });
    if interrupted {
        exit::INTERRUPTED
    } else if failed > 0 || skipped > 0 {
        exit::STAGE_FAILED
    } else {
        exit::SUCCESS
    }
}

/// This process's peak resident memory since `exec` (`VmHWM`). Unlike
/// `getrusage`'s `ru_maxrss`, it does not include what the parent had
/// before the fork.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Opens the cache for a maintenance command, holding its lock.
pub fn open_cache(layout: &CacheLayout) -> Result<(CacheLock, Index), RunError> {
    let lock = CacheLock::acquire(&layout.lock())?;
    let index = Index::open(&layout.index())?;
    Ok((lock, index))
}
