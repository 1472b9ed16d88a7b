//! The run engine: decides each stage once ([`super::lookup`]), serves
//! hits, hands misses to a [`StageBackend`] as [`StageJob`]s, and commits
//! each finished stage at once.
//!
//! [`Engine::first_pass`] walks the stages in order and serves every stage
//! whose upstream stages are all cached (a no-op rerun ends there, with no
//! graph built). The rest run as graph nodes; each is decided only when
//! its upstream stages have finished, so a stage whose inputs came out
//! byte-identical is still a hit (early cutoff).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tuneflow_cache::{
    KnownResult, Manifest, ObjectStat, OutputEntry, OutputKind, StageDigest, StageRecord,
    StageState, Tree,
};
use tuneflow_stages::{CancelFlag, EventSink, Inputs};

use super::backend::{JobControl, StageBackend, StageFailure, StageResult};
use super::cache::Cache;
use super::events::{Reporter, RunEvent};
use super::job::{JobContext, StageJob};
use super::lookup::{verify_object, Decision, Lookup, ObjectState, ResultSource};
use super::prefetch::Prefetched;
use super::resources::GpuPool;
use crate::pipeline::{Input, Plan};

/// The least time between two saves of the stat cache and key records
/// during a run (see `Engine::save_records_spaced`).
const MIN_SAVE_SPACING: Duration = Duration::from_millis(500);

/// What happened to one stage.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Not decided yet.
    Pending,
    /// Served from the cache.
    Cached(StageDigest, Manifest),
    /// Ran and committed.
    Ran(StageDigest, Manifest),
    /// Failed.
    Failed(Arc<StageFailure>),
    /// Stopped by Ctrl-C or SIGTERM.
    Interrupted,
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
            Self::Interrupted => "interrupted",
            Self::Skipped(_) => "skipped",
        }
    }

    fn done(&self) -> bool {
        self.manifest().is_some()
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
    pub backend: Arc<dyn StageBackend>,
    /// Where results the local cache misses may be (the remote cache).
    pub source: Option<Arc<dyn ResultSource>>,
    /// Offer each computed result to `source` (write-through).
    pub push: bool,
    /// The sweep this run is a variant of, for its record.
    pub sweep: Option<tuneflow_cache::SweepTag>,
}

/// Shared state of one run.
pub struct Engine {
    /// The pipeline.
    pub plan: Arc<Plan>,
    cache: Cache,
    /// The run's stat cache, shared by every lookup, saved after each
    /// committed stage.
    stats: tuneflow_cache::StatCache,
    outcomes: Mutex<Vec<Outcome>>,
    /// Decisions made in the first pass, used when the stage runs.
    decided: Mutex<Vec<Option<Decision>>>,
    /// Why each stage that ran had to run (`never run`, `params changed`).
    reasons: Mutex<Vec<Option<String>>>,
    /// What went into each stage's key (saved with [`Engine::save_records`]),
    /// and whether it changed since it was read.
    records: Mutex<(std::collections::BTreeMap<String, StageState>, bool)>,
    /// The records as the run found them, shared by its lookups.
    found: Arc<super::lookup::Records>,
    /// When the records were last saved, and what that cost (saves after a
    /// commit are spaced so that they take at most 1/20 of the run).
    last_save: Mutex<(Instant, Duration)>,
    reporter: Reporter,
    /// Set on Ctrl-C; stages poll it.
    pub cancel: CancelFlag,
    stop: AtomicBool,
    /// Set whenever an outcome changes (the session rewrites its state
    /// file then).
    pub changed: AtomicBool,
    options: EngineOptions,
    forced: Vec<bool>,
    jobs: tokio::sync::Semaphore,
    gpus: GpuPool,
    run_dir: PathBuf,
}

impl Engine {
    /// A new engine over an open cache; stage logs go to `run_dir`. The
    /// stage records and stat cache come from `prefetched` when it was
    /// read for this plan and cache, else are read now.
    pub fn new(
        plan: Arc<Plan>,
        cache: Cache,
        reporter: Reporter,
        options: EngineOptions,
        run_dir: PathBuf,
        prefetched: Option<Prefetched>,
    ) -> Self {
        let n = plan.stages.len();
        let forced = plan
            .stages
            .iter()
            .map(|s| options.force.contains(&s.name))
            .collect();
        let (records, stats) = match prefetched {
            Some(p) => (p.records, p.stats),
            None => {
                let file = plan.file.to_string_lossy();
                let records = cache.index.stage_records(&file).unwrap_or_default();
                (records, tuneflow_cache::StatCache::new(&cache.index, &file))
            }
        };
        Self {
            stats,
            found: Arc::new(records.clone()),
            records: Mutex::new((records, false)),
            last_save: Mutex::new((Instant::now(), Duration::ZERO)),
            outcomes: Mutex::new(vec![Outcome::Pending; n]),
            decided: Mutex::new(vec![None; n]),
            reasons: Mutex::new(vec![None; n]),
            jobs: tokio::sync::Semaphore::new(options.jobs.max(1)),
            gpus: GpuPool::detect(),
            plan,
            cache,
            reporter,
            cancel: CancelFlag::default(),
            stop: AtomicBool::new(false),
            changed: AtomicBool::new(false),
            options,
            forced,
            run_dir,
        }
    }

    /// The open cache.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The options the run was started with.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// A copy of every outcome so far.
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.outcomes.lock().expect("outcomes lock").clone()
    }

    /// Why each stage that ran had to run.
    pub fn reasons(&self) -> Vec<Option<String>> {
        self.reasons.lock().expect("reasons lock").clone()
    }

    /// Sends every stage whose outcome matches `pred` back to pending,
    /// for another round.
    pub(super) fn reset(&self, pred: impl Fn(&Outcome) -> bool) {
        for o in self.outcomes.lock().expect("outcomes lock").iter_mut() {
            if pred(o) {
                *o = Outcome::Pending;
            }
        }
        self.stop.store(false, Ordering::SeqCst);
    }

    fn set(&self, i: usize, o: Outcome) {
        self.outcomes.lock().expect("outcomes lock")[i] = o;
        self.changed.store(true, Ordering::SeqCst);
    }

    fn manifest_of(&self, j: usize) -> Option<Manifest> {
        self.outcomes.lock().expect("outcomes lock")[j]
            .manifest()
            .cloned()
    }

    fn lookup(&self) -> Lookup<'_> {
        let stats = super::lookup::Stats::Shared(&self.stats);
        Lookup::with_stats(&self.plan, &self.cache.index, &self.cache.store, stats)
            .with_records(Arc::clone(&self.found))
            .with_source(self.options.source.as_deref())
    }

    /// Serves from the cache every pending stage it can without running
    /// anything; returns the stages left to run.
    pub fn first_pass(&self) -> Vec<usize> {
        let lookup = self.lookup();
        let mut remaining = Vec::new();
        let n = self.plan.stages.len();
        let mut blocked = vec![false; n];
        for i in 0..n {
            if self.outcomes.lock().expect("outcomes lock")[i].done() {
                continue;
            }
            if self.plan.stages[i].upstream.iter().any(|&j| blocked[j]) {
                blocked[i] = true;
                remaining.push(i);
                continue;
            }
            let decision = lookup.decide(i, &|j| self.manifest_of(j), self.forced[i]);
            if let Ok(Decision::Hit {
                record,
                manifest,
                restore,
                result_stat,
            }) = &decision
            {
                if self.serve(i, record, manifest, restore, *result_stat) {
                    continue;
                }
            }
            self.decided.lock().expect("decided lock")[i] = decision.ok();
            blocked[i] = true;
            remaining.push(i);
        }
        self.save_records();
        remaining
    }

    /// Restores what a hit needs in the workspace and records it; `false`
    /// when a restore failed (the stage then runs).
    fn serve(
        &self,
        i: usize,
        record: &StageRecord,
        manifest: &Manifest,
        restore: &[String],
        result_stat: ObjectStat,
    ) -> bool {
        let ps = &self.plan.stages[i];
        for name in restore {
            let entry = manifest
                .output(name)
                .expect("restore names a manifest output");
            if let Err(e) = super::outputs::restore(&self.cache.store, &self.plan.dir, entry) {
                tracing::warn!(stage = %ps.name, "cached output unusable, rerunning: {e}");
                return false;
            }
        }
        self.save_record(&ps.name, record, Some((result_stat, manifest)));
        self.reporter.send(RunEvent::StageCached {
            stage: ps.name.clone(),
            key: record.key.to_hex(),
            restored: restore.to_vec(),
            outputs: digests(manifest),
        });
        self.set(i, Outcome::Cached(record.key, manifest.clone()));
        true
    }

    /// Remembers what went into `stage`'s key, and the result (with its
    /// file's stat) it resolved to.
    fn save_record(
        &self,
        stage: &str,
        record: &StageRecord,
        result: Option<(ObjectStat, &Manifest)>,
    ) {
        let state = StageState {
            record: record.clone(),
            result: result.map(|(stat, m)| KnownResult {
                stat,
                manifest: m.clone(),
            }),
        };
        let mut records = self.records.lock().expect("records lock");
        if records.0.get(stage) != Some(&state) {
            records.0.insert(stage.to_owned(), state);
            records.1 = true;
        }
    }

    /// [`Engine::save_records`] after a commit, unless the last save was
    /// too recent for its cost: both files grow with the pipeline, and
    /// saving them after each of 10,000 commits made a first run quadratic.
    /// Both are caches (a lost record costs a read of the result's file, a
    /// lost stat a re-hash), so a crash in between loses nothing; at most
    /// every [`MIN_SAVE_SPACING`] also spares a first run of many quick
    /// stages a new file per commit.
    fn save_records_spaced(&self) {
        let (at, cost) = *self.last_save.lock().expect("save lock");
        if at.elapsed() >= (cost * 20).max(MIN_SAVE_SPACING) {
            self.save_records();
        }
    }

    /// Writes the stat cache and the key records if they changed (after the
    /// first pass, after commits, and at the end of the run).
    pub fn save_records(&self) {
        let started = Instant::now();
        self.write_records();
        *self.last_save.lock().expect("save lock") = (Instant::now(), started.elapsed());
    }

    fn write_records(&self) {
        if let Err(e) = self.stats.save() {
            tracing::warn!("failed to save the stat cache: {e}");
        }
        let mut records = self.records.lock().expect("records lock");
        if !records.1 {
            return;
        }
        let pipeline = self.plan.file.to_string_lossy();
        match self.cache.index.put_stage_records(&pipeline, &records.0) {
            Ok(()) => records.1 = false,
            Err(e) => tracing::warn!("failed to record the stages' keys: {e}"),
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
            Err(StageFailure::Interrupted) => {
                self.reporter.send(RunEvent::StageInterrupted {
                    stage: name,
                    resume_epoch: None,
                });
                Outcome::Interrupted
            }
            Err(failure) => {
                if !self.options.keep_going {
                    self.stop.store(true, Ordering::SeqCst);
                }
                self.reporter.send(RunEvent::StageFailed {
                    stage: name,
                    error: failure.to_string(),
                });
                Outcome::Failed(Arc::new(failure))
            }
        };
        self.set(i, outcome);
    }

    fn skip_reason(&self, i: usize) -> Option<String> {
        let outcomes = self.outcomes.lock().expect("outcomes lock");
        for &j in &self.plan.stages[i].upstream {
            if !outcomes[j].done() {
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

    async fn run_stage(self: Arc<Self>, i: usize) -> Result<Outcome, StageFailure> {
        let this = self.clone();
        let decision = tokio::task::spawn_blocking(move || this.decide(i))
            .await
            .map_err(|e| StageFailure::Internal(format!("panicked while keying: {e}")))??;
        let (record, reason) = match decision {
            Decision::Hit {
                record,
                manifest,
                restore,
                result_stat,
            } => {
                if self.serve(i, &record, &manifest, &restore, result_stat) {
                    return Ok(Outcome::Cached(record.key, manifest));
                }
                (record, "a cached output could not be restored".to_owned())
            }
            Decision::Miss { record, reason } => (record, reason),
        };
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
            .map_err(|e| StageFailure::Internal(e.to_string()))?;
        if self.cancel.is_cancelled() {
            return Err(StageFailure::Interrupted);
        }
        let this = self.clone();
        let ids = gpus.ids().to_vec();
        tokio::task::spawn_blocking(move || this.run_blocking(i, record, &reason, ids))
            .await
            .map_err(|e| StageFailure::Internal(format!("panicked: {e}")))?
    }

    /// The first pass's decision for stage `i`, else a new one (its
    /// upstream stages ran in this run, so its key is computed now).
    fn decide(&self, i: usize) -> Result<Decision, StageFailure> {
        if let Some(d) = self.decided.lock().expect("decided lock")[i].take() {
            return Ok(d);
        }
        self.lookup()
            .decide(i, &|j| self.manifest_of(j), self.forced[i])
            .map_err(|e| StageFailure::Internal(e.to_string()))
    }

    fn run_blocking(
        &self,
        i: usize,
        record: StageRecord,
        reason: &str,
        gpus: Vec<u32>,
    ) -> Result<Outcome, StageFailure> {
        let ps = &self.plan.stages[i];
        self.verify_inputs(i)?;
        self.reasons.lock().expect("reasons lock")[i] = Some(reason.to_owned());
        self.reporter.send(RunEvent::StageStarted {
            stage: ps.name.clone(),
            key: record.key.to_hex(),
            reason: reason.to_owned(),
        });
        let job = self.job(i, record, gpus)?;
        let events = {
            let (reporter, stage) = (self.reporter.clone(), ps.name.clone());
            EventSink::new(move |event| {
                reporter.send(RunEvent::Stage {
                    stage: stage.clone(),
                    event,
                })
            })
        };
        let ctl = JobControl {
            store: &self.cache.store,
            cancel: &self.cancel,
            events: &events,
        };
        let started = Instant::now();
        let result = match self.options.backend.run(&job, &ctl) {
            Err(StageFailure::Interrupted) => {
                self.reporter.send(RunEvent::StageInterrupted {
                    stage: ps.name.clone(),
                    resume_epoch: resume_epoch(&job),
                });
                return Ok(Outcome::Interrupted);
            }
            result => result?,
        };
        self.inputs_unchanged(i, &job.record)?;
        self.commit(i, job, result, started.elapsed().as_secs_f64())
    }

    /// Records a finished stage: its manifest after every blob is durable,
    /// then its key record; its checkpoints are not needed any more.
    fn commit(
        &self,
        i: usize,
        job: StageJob,
        result: StageResult,
        seconds: f64,
    ) -> Result<Outcome, StageFailure> {
        let ps = &self.plan.stages[i];
        let mut entries = result.outputs;
        entries.extend(self.reexported(i, &result.reexports)?);
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let manifest = Manifest {
            stage: ps.name.clone(),
            outputs: entries,
            seconds,
            summary: result.summary,
            peak_rss_kib: result.peak_rss_kib,
        };
        let key = job.record.key;
        self.cache.index.put_result(&key, &manifest)?;
        self.remember_verified(&manifest);
        let stat = self.cache.index.result_stat(&key);
        self.save_record(&ps.name, &job.record, stat.map(|s| (s, &manifest)));
        self.save_records_spaced();
        if let (Some(source), true) = (&self.options.source, self.options.push) {
            let (index, store) = (&self.cache.index, &self.cache.store);
            source.offer(&ps.name, &key, &manifest, index, store);
        }
        let _ = std::fs::remove_dir_all(&job.context.checkpoints);
        self.reporter.send(RunEvent::StageFinished {
            stage: ps.name.clone(),
            key: key.to_hex(),
            seconds,
            outputs: digests(&manifest),
            summary: manifest.summary.clone(),
            peak_rss_kib: manifest.peak_rss_kib,
        });
        Ok(Outcome::Ran(key, manifest))
    }

    /// Objects just written are known to be intact: record their stat so
    /// the next lookup does not hash them again.
    fn remember_verified(&self, manifest: &Manifest) {
        let (store, index) = (&self.cache.store, &self.cache.index);
        for o in &manifest.outputs {
            for d in entry_objects(store, o) {
                if let Ok(meta) = std::fs::metadata(store.path_of(&d)) {
                    index.put_verified(&d, &tuneflow_cache::ObjectStat::of(&meta));
                }
            }
        }
    }

    /// Hashes every object stage `i` will read from results served from
    /// the cache in this run (streaming BLAKE3, far faster than a stage). A
    /// damaged one drops that result, so the upstream stage reruns.
    fn verify_inputs(&self, i: usize) -> Result<(), StageFailure> {
        let (store, index) = (&self.cache.store, &self.cache.index);
        for (name, input) in &self.plan.stages[i].inputs {
            let Input::Output { stage, output } = input else {
                continue;
            };
            let outcome = self.outcomes.lock().expect("outcomes lock")[*stage].clone();
            let Outcome::Cached(key, manifest) = outcome else {
                continue;
            };
            let upstream = &self.plan.stages[*stage];
            if upstream.outs.contains(output) {
                continue; // read from the workspace, checked by the lookup
            }
            let Some(entry) = manifest.output(output) else {
                continue;
            };
            for d in entry_objects(store, entry) {
                if verify_object(store, index, &d)? != ObjectState::Intact {
                    index.remove_result(&key)?;
                    self.set(*stage, Outcome::Pending);
                    return Err(StageFailure::DamagedInput {
                        input: name.clone(),
                        upstream: upstream.name.clone(),
                        object: d.to_hex(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Hashes again (through the stat cache) every workspace file or folder
    /// stage `i` read: one changed while it ran (an editor, a checkout, a
    /// process another stage left behind) means its outputs may come from
    /// bytes its key does not name, so they are not committed.
    fn inputs_unchanged(&self, i: usize, record: &StageRecord) -> Result<(), StageFailure> {
        let ps = &self.plan.stages[i];
        for (name, input) in &ps.inputs {
            let path = match input {
                Input::File(p) => self.plan.dir.join(p),
                Input::Output { stage, output }
                    if self.plan.stages[*stage].outs.contains(output) =>
                {
                    self.plan.dir.join(output)
                }
                Input::Output { .. } => continue,
            };
            let now = self.stats.hash(&path).map(|h| h.digest.to_hex()).ok();
            if now.as_ref() != record.inputs.get(name) {
                return Err(StageFailure::InputChanged {
                    input: name.clone(),
                });
            }
        }
        Ok(())
    }

    /// Manifest entries for outputs that are inputs passed through.
    fn reexported(
        &self,
        i: usize,
        reexports: &[(String, String)],
    ) -> Result<Vec<OutputEntry>, StageFailure> {
        reexports
            .iter()
            .map(|(output, input)| {
                let Some(Input::Output {
                    stage,
                    output: upstream,
                }) = self.plan.stages[i].inputs.get(input)
                else {
                    return Err(StageFailure::Internal(format!(
                        "re-exported input `{input}` is not an upstream output"
                    )));
                };
                let entry = self
                    .manifest_of(*stage)
                    .and_then(|m| m.output(upstream).cloned());
                let mut entry = entry.ok_or_else(|| {
                    StageFailure::Internal(format!("upstream output `{input}` is missing"))
                })?;
                entry.name = output.clone();
                Ok(entry)
            })
            .collect()
    }

    /// The job for stage `i`.
    fn job(&self, i: usize, record: StageRecord, gpus: Vec<u32>) -> Result<StageJob, StageFailure> {
        let ps = &self.plan.stages[i];
        let layout = &self.cache.layout;
        fs_err::create_dir_all(&self.run_dir).map_err(|e| StageFailure::Internal(e.to_string()))?;
        Ok(StageJob {
            stage: ps.name.clone(),
            kind: ps.stage.kind().to_owned(),
            encoded: ps.stage.encode(),
            inputs: self.inputs(i),
            context: JobContext {
                workdir: self.plan.dir.clone(),
                scratch: layout
                    .scratch()
                    .join(format!("{}-{}", ps.name, std::process::id())),
                log: self.run_dir.join(format!("{}.log", ps.name)),
                checkpoints: layout.checkpoints().join(record.key.to_hex()),
                device: self.plan.device,
                gpus,
                running: Some(layout.running()),
            },
            record,
            resources: ps.resources.clone(),
            objects: layout.objects(),
        })
    }

    /// Stage `i`'s resolved inputs. An upstream `outs` entry is its
    /// workspace path; any other output is its object in the store. A
    /// folder output also lists its files' objects, which built-in kinds
    /// read in place (a command's folder can be a typed artifact).
    fn inputs(&self, i: usize) -> Inputs {
        let store = &self.cache.store;
        let mut inputs = Inputs::default();
        for (name, input) in &self.plan.stages[i].inputs {
            let (stage, output) = match input {
                Input::File(p) => {
                    inputs.paths.insert(name.clone(), self.plan.dir.join(p));
                    continue;
                }
                Input::Output { stage, output } => (*stage, output),
            };
            let Some(entry) = self
                .manifest_of(stage)
                .and_then(|m| m.output(output).cloned())
            else {
                continue;
            };
            inputs.upstream.insert(name.clone());
            if entry.kind == OutputKind::Tree {
                if let Ok(tree) = Tree::load(store, &entry.digest) {
                    let files = tree
                        .entries
                        .iter()
                        .map(|e| (e.path.clone(), store.path_of(&e.digest)))
                        .collect();
                    inputs.trees.insert(name.clone(), files);
                }
            }
            let path = if self.plan.stages[stage].outs.contains(output) {
                self.plan.dir.join(output)
            } else {
                inputs.stored.insert(name.clone());
                store.path_of(&entry.digest)
            };
            inputs.paths.insert(name.clone(), path);
        }
        inputs
    }
}

/// Where a rerun picks up an interrupted training stage: its last
/// checkpointed epoch (0: none yet); `None` for other kinds.
fn resume_epoch(job: &StageJob) -> Option<u64> {
    matches!(job.kind.as_str(), "pretrain" | "fine-tune")
        .then(|| tuneflow_stages::worker::checkpointed_epoch(&job.context.checkpoints).unwrap_or(0))
}

/// Every object an output consists of: the file, or a tree and its files.
pub fn entry_objects(
    store: &tuneflow_cache::ObjectStore,
    entry: &OutputEntry,
) -> Vec<tuneflow_cache::BlobDigest> {
    let mut out = vec![entry.digest];
    if entry.kind == OutputKind::Tree {
        if let Ok(tree) = Tree::load(store, &entry.digest) {
            out.extend(tree.entries.iter().map(|e| e.digest));
        }
    }
    out
}
