//! `tuneflow run`: loads the pipeline, opens the cache for writing, picks
//! the backend (local or Slurm) and drives the session; a sweep runs each
//! variant so.
#![expect(clippy::print_stdout, reason = "a sweep announces its variants")]

use std::path::Path;
use std::sync::Arc;

use crate::cli::{ExecutorKind, RunArgs};
use crate::error::{exit, RunError};
use crate::pipeline::executor::{ExecutorConfig, SlurmConfig};
use crate::pipeline::{self, PipelineError, Plan};
use crate::remote::{config, Remote};
use crate::report::{self, Mode};
use crate::run::backend::{Local, StageBackend};
use crate::run::cache::{layout_for, Cache};
use crate::run::engine::{Engine, EngineOptions};
use crate::run::lookup::ResultSource;
use crate::run::prefetch::{Prefetch, ResultStats};
use crate::run::session::{self, RunEnd};
use tuneflow_cache::SweepTag;

/// Runs `tuneflow run`: one run, or one per variant of a sweep
/// (`--set key=a,b,c`), one after the other, each a recorded run tagged
/// with the sweep; shared stages run once (the second variant finds them
/// cached).
pub fn run(args: &RunArgs, cache_flag: Option<&Path>) -> Result<i32, RunError> {
    let mut sets = pipeline::sweep::from_file(&args.pipeline, &args.set)?;
    sets.extend(args.set.iter().cloned());
    let variants = pipeline::sweep::variants(&sets)?;
    if variants.len() == 1 {
        return run_variant(args, cache_flag, &variants[0], None);
    }
    let keys: Vec<String> = sets
        .iter()
        .filter(|s| s.split_once('=').is_some_and(|(_, v)| v.contains(',')))
        .filter_map(|s| s.split_once('=').map(|(k, _)| k.to_owned()))
        .collect();
    let id = session::run_id();
    let mut worst = exit::SUCCESS;
    for (index, set) in variants.iter().enumerate() {
        let tag = SweepTag {
            id: id.clone(),
            index,
            of: variants.len(),
            keys: keys.clone(),
        };
        announce(args.json, &tag, set);
        let code = run_variant(args, cache_flag, set, Some(tag))?;
        if code == exit::INTERRUPTED {
            return Ok(code);
        }
        worst = worst.max(code);
    }
    if !args.json {
        eprintln!(
            "sweep {id}: {} variants; `tuneflow runs {} --sweep` compares them",
            variants.len(),
            args.pipeline.display()
        );
    }
    Ok(worst)
}

fn announce(json: bool, tag: &SweepTag, set: &[String]) {
    if json {
        let line = serde_json::json!({"event": "sweep-variant", "sweep": tag.id,
            "index": tag.index, "of": tag.of, "set": set});
        println!("{line}");
    } else {
        eprintln!(
            "--- variant {}/{}: {}",
            tag.index + 1,
            tag.of,
            set.join(" ")
        );
    }
}

/// One run of the pipeline with overrides `set`.
fn run_variant(
    args: &RunArgs,
    cache_flag: Option<&Path>,
    set: &[String],
    sweep: Option<SweepTag>,
) -> Result<i32, RunError> {
    let prefetch = Prefetch::start(cache_flag, &args.pipeline, ResultStats::Skip);
    let plan = Arc::new(pipeline::load(&args.pipeline, set)?);
    for f in &args.force {
        if plan.index_of(f).is_none() {
            return Err(
                PipelineError::Usage(format!("`--force {f}`: no stage is called `{f}`")).into(),
            );
        }
    }
    if args.jobs == Some(0) {
        return Err(PipelineError::Usage("`--jobs` must be at least 1".into()).into());
    }
    let layout = layout_for(cache_flag, Some(&plan), Some(&args.pipeline));
    // The pipeline's own cache folders (`.tuneflow`, `[pipeline] cache`)
    // were checked against the outputs when it was planned; a folder from
    // `--cache-dir` or TUNEFLOW_CACHE_DIR is checked here.
    let touching = match cache_flag {
        Some(_) => plan.outs_touching(layout.root()),
        None => Vec::new(),
    };
    if let Some((stage, out)) = touching.into_iter().next() {
        return Err(PipelineError::Usage(format!(
            "output `{out}` of stage `{stage}` overlaps the cache folder `{}`; a run deletes and rewrites its outputs",
            layout.root().display()
        ))
        .into());
    }
    let prefetched = prefetch.take(layout.root(), &plan);
    let cache = Cache::open_exclusive(layout)?;
    let _folder = lock_folder(&plan)?;
    // Holding the lock: whatever a killed run left running is ended before
    // anything runs, and what it left in the scratch folder goes.
    for ended in tuneflow_stages::process::end_leftovers(&cache.layout.running()) {
        tracing::warn!("ended {ended}, left running by an earlier run that was killed");
    }
    // What this run leaves running when it ends, or is killed, is ended
    // by a watchdog at once (without one, by the next run).
    let running = cache.layout.running();
    let _watchdog = std::env::current_exe()
        .and_then(|exe| tuneflow_stages::process::start_watchdog(&exe, &["watch-groups"], &running))
        .map_err(|e| tracing::warn!("no watchdog for the run's processes: {e}"))
        .ok();
    let _ = std::fs::remove_dir_all(cache.layout.scratch());
    cache.store.clear_stale_temps();
    let (backend, slurm_jobs) = backend(&plan, args.executor)?;
    let source = remote(args, &plan, cache.layout.root())?;
    let options = EngineOptions {
        push: source.is_some() && (args.push || plan.remote.push),
        sweep,
        source: source.map(|r| r as Arc<dyn ResultSource>),
        force: args.force.clone(),
        keep_going: args.keep_going,
        jobs: args
            .jobs
            .or(slurm_jobs)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        backend,
    };
    let (reporter, render) = report::start(Mode::pick(args.json));
    let id = session::run_id();
    let run_dir = cache.index.run_dir(&id);
    let engine = Arc::new(Engine::new(
        plan,
        cache,
        reporter.clone(),
        options,
        run_dir,
        prefetched,
    ));
    let end = session::run(&engine, &reporter, &id);
    drop(reporter);
    drop(engine);
    let _ = render.join();
    Ok(match end {
        RunEnd::Success => exit::SUCCESS,
        RunEnd::Failed => exit::STAGE_FAILED,
        RunEnd::Interrupted => exit::INTERRUPTED,
    })
}

/// The remote cache a run reads through, unless `--no-remote`: none when
/// none is set; a URL that cannot be opened is an error.
fn remote(args: &RunArgs, plan: &Plan, cache: &Path) -> Result<Option<Arc<Remote>>, RunError> {
    if args.no_remote {
        return Ok(None);
    }
    let Some(url) = config::pick(args.remote.as_deref(), plan.remote.url.as_deref())? else {
        return Ok(None);
    };
    config::check_apart(&url, cache)?;
    match Remote::open(&url) {
        Ok(r) => Ok(Some(Arc::new(r))),
        // Settings that are wrong are an error; a remote that is not
        // there makes the run go on without it.
        Err(e) if e.is_configuration() => Err(e.into()),
        Err(e) => {
            tracing::warn!(target: "tuneflow::remote", "{e}; the run goes on without the remote");
            Ok(None)
        }
    }
}

/// Outputs live in the pipeline's folder, whatever the cache folder: one
/// run per folder at a time, through a lock in the user's temp folder
/// named after the folder's real path.
fn lock_folder(plan: &Plan) -> Result<tuneflow_cache::CacheLock, RunError> {
    #[expect(unsafe_code, reason = "getuid(2) has no safe wrapper in std")]
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let folder = tuneflow_stages::paths::resolve(&plan.dir);
    let hash = tuneflow_cache::BlobDigest::of(folder.as_os_str().as_encoded_bytes()).short();
    let path = std::env::temp_dir()
        .join(format!("tuneflow-{uid}"))
        .join(hash)
        .join("lock");
    tuneflow_cache::CacheLock::acquire(&path).map_err(|e| match e {
        tuneflow_cache::LockError::InUse { pid, .. } => RunError::FolderInUse { folder, pid },
        other => other.into(),
    })
}

/// The backend `--executor` or `[executor] kind` asks for, and, under
/// Slurm, the default bound on jobs in flight (the cluster decides what
/// runs at once).
fn backend(
    plan: &Plan,
    flag: Option<ExecutorKind>,
) -> Result<(Arc<dyn StageBackend>, Option<usize>), RunError> {
    let cfg = match (flag, &plan.executor) {
        (Some(ExecutorKind::Local), _) | (None, ExecutorConfig::Local) => {
            return Ok((Arc::new(Local), None))
        }
        (_, ExecutorConfig::Slurm(c)) => c.clone(),
        (Some(ExecutorKind::Slurm), ExecutorConfig::Local) => SlurmConfig::default(),
    };
    let jobs = cfg.max_in_flight;
    let slurm = crate::slurm::Slurm::new(cfg).map_err(PipelineError::Usage)?;
    Ok((Arc::new(slurm), Some(jobs)))
}
