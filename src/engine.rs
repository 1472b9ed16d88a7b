//! The run engine: decides per stage whether the cache has its outputs,
//! runs what it must, commits each finished stage at once, and records what
//! went into every key.
//!
//! A first pass walks the stages in order and serves from the cache every
//! stage whose upstream stages are all cached (a no-op rerun ends there,
//! with no graph built). The rest run as dagrs nodes; each node computes
//! its key only when its upstream stages have finished, so a stage whose
//! inputs came out byte-identical is still a cache hit (early cutoff).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tuneflow_cache::{
    CacheLayout, Index, Manifest, ObjectStore, StageDigest, StageRecord, StatCache,
};
use tuneflow_stages::{CancelFlag, EventSink, Inputs, StageContext};

use crate::keys::{self, KeyError};
use crate::outputs::ensure_workspace;
use crate::plan::{Input, Plan};
use crate::report::{Reporter, RunEvent};
use crate::resources::GpuPool;

/// What happened to one stage.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Not decided yet.
    Pending,
    /// Served from the cache.
    Cached(StageDigest, Manifest),
    /// Ran and committed.
    Ran(StageDigest, Manifest),
    /// Failed, with the message.
    Failed(String),
    /// Not run, with the reason.
    Skipped(String),
}

impl Outcome {
    fn manifest(&self) -> Option<&Manifest> {
        match self {
            Self::Cached(_, m) | Self::Ran(_, m) => Some(m),
            _ => None,
        }
    }
    /// The stage's key, when known.
    pub fn key(&self) -> Option<StageDigest> {
        match self {
            Self::Cached(k, _) | Self::Ran(k, _) => Some(*k),
            _ => None,
        }
    }
    /// A short word for state files and status.
    pub fn word(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Cached(..) => "cached",
            Self::Ran(..) => "finished",
            Self::Failed(_) => "failed",
            Self::Skipped(_) => "skipped",
        }
    }
}

fn digests(m: &Manifest) -> std::collections::BTreeMap<String, String> {
    m.outputs
        .iter()
        .map(|o| (o.name.clone(), o.digest.to_hex()))
        .collect()
}

/// Knobs from the command line.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Stages to run even when cached.
    pub force: Vec<String>,
    /// Finish independent branches after a failure.
    pub keep_going: bool,
    /// Stages running at once.
    pub jobs: usize,
    /// Where stages run: this process, or Slurm jobs.
    pub backend: Arc<dyn crate::backend::StageBackend>,
    /// The run's `--set` overrides (Slurm jobs load the pipeline with them).
    pub sets: Vec<String>,
}

/// Shared state of one run.
pub struct Engine {
    /// The pipeline.
    pub plan: Arc<Plan>,
    index: Index,
    store: ObjectStore,
    outcomes: Mutex<Vec<Outcome>>,
    reporter: Reporter,
    /// Set on Ctrl-C; stages poll it.
    pub cancel: CancelFlag,
    stop: AtomicBool,
    options: EngineOptions,
    forced: Vec<bool>,
    jobs: tokio::sync::Semaphore,
    gpus: GpuPool,
    run_dir: PathBuf,
    layout: CacheLayout,
    /// When the state file was last written; also serializes the writes.
    state_written: Mutex<Option<Instant>>,
    state_dirty: AtomicBool,
}

/// The state file is rewritten at most this often while stages finish.
const STATE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

impl Engine {
    /// A new engine over an open cache.
    pub fn new(
        plan: Arc<Plan>,
        layout: CacheLayout,
        index: Index,
        reporter: Reporter,
        options: EngineOptions,
    ) -> Result<Self, tuneflow_cache::CacheError> {
        let store = ObjectStore::open(layout.objects())?;
        let forced = plan
            .stages
            .iter()
            .map(|s| options.force.contains(&s.name))
            .collect();
        let run_dir = layout.runs().join(crate::state::run_id());
        Ok(Self {
            outcomes: Mutex::new(vec![Outcome::Pending; plan.stages.len()]),
            jobs: tokio::sync::Semaphore::new(options.jobs.max(1)),
            gpus: GpuPool::detect(),
            plan,
            index,
            store,
            reporter,
            cancel: CancelFlag::default(),
            stop: AtomicBool::new(false),
            options,
            forced,
            run_dir,
            layout,
            state_written: Mutex::new(None),
            state_dirty: AtomicBool::new(false),
        })
    }

    /// The object store.
    pub(crate) fn store(&self) -> &ObjectStore {
        &self.store
    }

    /// The cache's folders.
    pub(crate) fn layout(&self) -> &CacheLayout {
        &self.layout
    }

    /// The run's options.
    pub(crate) fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// The index, for run records.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// A copy of every outcome so far.
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.outcomes.lock().expect("outcomes lock").clone()
    }

    fn set(&self, i: usize, o: Outcome) {
        self.outcomes.lock().expect("outcomes lock")[i] = o;
        self.state_dirty.store(true, Ordering::SeqCst);
        self.write_state(false);
    }

    /// Rewrites the state file `status` reads while this run holds the lock:
    /// at most every [`STATE_INTERVAL`] unless `now`, one writer at a time.
    /// A large pipeline would otherwise rewrite it once per stage.
    pub fn write_state(&self, now: bool) {
        let mut last = self.state_written.lock().expect("state lock");
        if !now && last.is_some_and(|t| t.elapsed() < STATE_INTERVAL) {
            return;
        }
        self.state_dirty.store(false, Ordering::SeqCst);
        let outcomes = self.outcomes();
        crate::state::write(&self.layout, &self.plan, &outcomes);
        *last = Some(Instant::now());
    }

    /// Writes the state file if a change was held back by the throttle.
    pub fn flush_state(&self) {
        if self.state_dirty.load(Ordering::SeqCst) {
            self.write_state(true);
        }
    }

    fn manifest_of(&self, j: usize) -> Option<Manifest> {
        self.outcomes.lock().expect("outcomes lock")[j]
            .manifest()
            .cloned()
    }

    /// Serves from the cache every stage it can without running anything;
    /// returns the stages left to run.
    pub fn first_pass(&self) -> Vec<usize> {
        let mut remaining = Vec::new();
        let mut blocked = vec![false; self.plan.stages.len()];
        for i in 0..self.plan.stages.len() {
            if self.plan.stages[i].upstream.iter().any(|&j| blocked[j]) {
                blocked[i] = true;
                remaining.push(i);
                continue;
            }
            match self.try_cache(i) {
                Ok(Some((record, manifest, restored))) => {
                    self.record_hit(i, record, manifest, restored)
                }
                _ => {
                    blocked[i] = true;
                    remaining.push(i);
                }
            }
        }
        remaining
    }

    /// Looks stage `i` up; on a hit, makes its workspace outputs current.
    /// A hit whose objects are missing or corrupt counts as a miss.
    fn try_cache(
        &self,
        i: usize,
    ) -> Result<Option<(StageRecord, Manifest, Vec<String>)>, KeyError> {
        let stats = StatCache::new(&self.index);
        let record = keys::compute(&self.plan, i, &|j| self.manifest_of(j), &stats)?;
        if self.forced[i] {
            return Ok(None);
        }
        let Some(manifest) = self.index.result(&record.key)? else {
            return Ok(None);
        };
        let ps = &self.plan.stages[i];
        let mut restored = Vec::new();
        for entry in &manifest.outputs {
            let usable = if ps.outs.contains(&entry.name) {
                match ensure_workspace(&self.store, &stats, &self.plan.dir, entry) {
                    Ok(did) => {
                        if did {
                            restored.push(entry.name.clone());
                        }
                        true
                    }
                    Err(e) => {
                        tracing::warn!(stage = %ps.name, "cached output unusable, rerunning: {e}");
                        false
                    }
                }
            } else {
                self.store.contains(&entry.digest)
            };
            if !usable {
                return Ok(None);
            }
        }
        Ok(Some((record, manifest, restored)))
    }

    fn record_hit(&self, i: usize, record: StageRecord, manifest: Manifest, restored: Vec<String>) {
        let ps = &self.plan.stages[i];
        self.save_record(&ps.name, &record);
        self.reporter.send(RunEvent::StageCached {
            stage: ps.name.clone(),
            key: record.key.to_hex(),
            restored,
            outputs: digests(&manifest),
        });
        self.outcomes.lock().expect("outcomes lock")[i] = Outcome::Cached(record.key, manifest);
    }

    fn save_record(&self, stage: &str, record: &StageRecord) {
        let pipeline = self.plan.file.to_string_lossy();
        let previous = self.index.stage_record(&pipeline, stage).ok().flatten();
        if previous.as_ref() != Some(record) {
            if let Err(e) = self.index.put_stage_record(&pipeline, stage, record) {
                tracing::warn!("failed to record the key of `{stage}`: {e}");
            }
        }
    }

    /// Runs stage `i` (its upstream stages have finished). Never panics and
    /// always settles the stage's outcome, so dependants are never stuck.
    pub async fn execute(self: Arc<Self>, i: usize) {
        let name = self.plan.stages[i].name.clone();
        if let Some(reason) = self.skip_reason(i) {
            self.reporter.send(RunEvent::StageSkipped {
                stage: name,
                reason: reason.clone(),
            });
            self.set(i, Outcome::Skipped(reason));
            return;
        }
        let outcome = match self.clone().run_stage(i).await {
            Ok(outcome) => outcome,
            Err(error) => {
                if !self.options.keep_going {
                    self.stop.store(true, Ordering::SeqCst);
                }
                self.reporter.send(RunEvent::StageFailed {
                    stage: name,
                    error: error.clone(),
                });
                Outcome::Failed(error)
            }
        };
        self.set(i, outcome);
    }

    fn skip_reason(&self, i: usize) -> Option<String> {
        let outcomes = self.outcomes.lock().expect("outcomes lock");
        for &j in &self.plan.stages[i].upstream {
            if matches!(outcomes[j], Outcome::Failed(_) | Outcome::Skipped(_)) {
                return Some(format!(
                    "upstream `{}` did not finish",
                    self.plan.stages[j].name
                ));
            }
        }
        if self.cancel.is_cancelled() {
            return Some("the run was interrupted".into());
        }
        if self.stop.load(Ordering::SeqCst) {
            return Some("the run stopped after a failure (use --keep-going to go on)".into());
        }
        None
    }

    async fn run_stage(self: Arc<Self>, i: usize) -> Result<Outcome, String> {
        let this = self.clone();
        let cached = tokio::task::spawn_blocking(move || this.try_cache(i))
            .await
            .map_err(|e| format!("panicked while computing its key: {e}"))?;
        match cached {
            Ok(Some((record, manifest, restored))) => {
                self.record_hit(i, record.clone(), manifest.clone(), restored);
                return Ok(Outcome::Cached(record.key, manifest));
            }
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        let _job = self
            .jobs
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let ps = &self.plan.stages[i];
        // Under Slurm the cluster hands out GPUs (`--gres`), not this host.
        let local_gpus = self.options.backend.local_gpus(ps.resources.gpu);
        let gpus = self
            .gpus
            .acquire(local_gpus)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(reason) = self.skip_reason(i) {
            return Ok(Outcome::Skipped(reason));
        }
        let this = self.clone();
        let ids = gpus.ids().to_vec();
        tokio::task::spawn_blocking(move || this.run_blocking(i, ids))
            .await
            .map_err(|e| format!("panicked: {e}"))?
    }

    fn run_blocking(&self, i: usize, gpus: Vec<u32>) -> Result<Outcome, String> {
        let ps = &self.plan.stages[i];
        let stats = StatCache::new(&self.index);
        let record = keys::compute(&self.plan, i, &|j| self.manifest_of(j), &stats)
            .map_err(|e| e.to_string())?;
        let pipeline = self.plan.file.to_string_lossy();
        let previous = self.index.stage_record(&pipeline, &ps.name).ok().flatten();
        let reason = if self.forced[i] {
            "forced".to_owned()
        } else {
            keys::explain(previous.as_ref(), &record)
        };
        self.reporter.send(RunEvent::StageStarted {
            stage: ps.name.clone(),
            key: record.key.to_hex(),
            reason,
        });
        let cx = self
            .context(i, gpus, &record.key)
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let stored = self.options.backend.run(self, i, &cx, &record);
        // Scratch outputs are in the store now (or the stage failed).
        let _ = std::fs::remove_dir_all(&cx.scratch);
        let (mut entries, summary, reexports) = stored?;
        entries.extend(self.reexported(i, &reexports)?);
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let seconds = started.elapsed().as_secs_f64();
        let manifest = Manifest {
            stage: ps.name.clone(),
            outputs: entries,
            seconds,
            summary,
        };
        // Every blob is durable now; only then is the manifest recorded.
        self.index
            .put_result(&record.key, &manifest)
            .map_err(|e| e.to_string())?;
        self.save_record(&ps.name, &record);
        // The result is committed; a stage's checkpoints are not needed now.
        let _ = std::fs::remove_dir_all(&cx.checkpoints);
        self.reporter.send(RunEvent::StageFinished {
            stage: ps.name.clone(),
            key: record.key.to_hex(),
            seconds,
            outputs: digests(&manifest),
            summary: manifest.summary.clone(),
        });
        Ok(Outcome::Ran(record.key, manifest))
    }

    /// Manifest entries for outputs that are inputs passed through.
    fn reexported(
        &self,
        i: usize,
        reexports: &[(String, String)],
    ) -> Result<Vec<tuneflow_cache::OutputEntry>, String> {
        reexports
            .iter()
            .map(|(output, input)| {
                let Some(Input::Output {
                    stage,
                    output: upstream,
                }) = self.plan.stages[i].inputs.get(input)
                else {
                    return Err(format!(
                        "re-exported input `{input}` is not an upstream output"
                    ));
                };
                let entry = self
                    .manifest_of(*stage)
                    .and_then(|m| m.output(upstream).cloned());
                let mut entry =
                    entry.ok_or_else(|| format!("upstream output `{input}` is missing"))?;
                entry.name = output.clone();
                Ok(entry)
            })
            .collect()
    }

    fn context(
        &self,
        i: usize,
        gpus: Vec<u32>,
        key: &StageDigest,
    ) -> std::io::Result<StageContext> {
        let name = self.plan.stages[i].name.clone();
        fs_err::create_dir_all(&self.run_dir)?;
        let scratch = self
            .layout
            .scratch()
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        fs_err::create_dir_all(&scratch)?;
        Ok(StageContext {
            log: self.run_dir.join(format!("{name}.log")),
            name,
            workdir: self.plan.dir.clone(),
            scratch,
            cancel: self.cancel.clone(),
            gpus,
            checkpoints: self.layout.root().join("checkpoints").join(key.to_hex()),
            events: {
                let (reporter, stage) = (self.reporter.clone(), self.plan.stages[i].name.clone());
                EventSink::new(move |data| {
                    reporter.send(RunEvent::Stage {
                        stage: stage.clone(),
                        data,
                    })
                })
            },
            device: self.plan.device.clone(),
        })
    }

    /// Stage `i`'s resolved inputs.
    pub(crate) fn inputs(&self, i: usize) -> Inputs {
        let mut inputs = Inputs::default();
        for (name, input) in &self.plan.stages[i].inputs {
            let path = match input {
                Input::File(p) => self.plan.dir.join(p),
                Input::Output { stage, output }
                    if self.plan.stages[*stage].outs.contains(output) =>
                {
                    self.plan.dir.join(output)
                }
                Input::Output { stage, output } => {
                    let Some(entry) = self
                        .manifest_of(*stage)
                        .and_then(|m| m.output(output).cloned())
                    else {
                        continue;
                    };
                    if entry.kind == tuneflow_cache::OutputKind::Tree {
                        // Folder outputs are read in place from the store.
                        if let Ok(tree) = tuneflow_cache::Tree::load(&self.store, &entry.digest) {
                            let files = tree
                                .entries
                                .iter()
                                .map(|e| (e.path.clone(), self.store.path_of(&e.digest)))
                                .collect();
                            inputs.trees.insert(name.clone(), files);
                        }
                    }
                    self.store.path_of(&entry.digest)
                }
            };
            inputs.paths.insert(name.clone(), path);
        }
        inputs
    }
}
