//! The coordinator's side: submit a stage as a Slurm job, wait for it with
//! every other job in one batched `squeue` per poll, and hand back its
//! result once every object it names is in the store. Job ids are recorded
//! beside the spec, so a restarted coordinator re-attaches to a job that is
//! still queued or running instead of submitting it again.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use tuneflow_cache::ObjectStore;
use tuneflow_stages::worker::WorkerEvent;
use tuneflow_stages::CancelFlag;

use super::job::{write_atomic, JobOutcome, SlurmSpec};
use super::queue::{self, Cluster, JobScript, JobState, Verdict};
use crate::pipeline::executor::SlurmConfig;
use crate::run::backend::{JobControl, StageBackend, StageFailure, StageResult};
use crate::run::engine::entry_objects;
use crate::run::job::StageJob;

/// The Slurm backend of one run.
pub struct Slurm {
    cfg: SlurmConfig,
    template: String,
    tuneflow: PathBuf,
    /// Job ids in flight, for polling and for `scancel`.
    in_flight: Mutex<HashSet<String>>,
    slots: Condvar,
    /// The last poll: when, and what it saw.
    polled: Mutex<(Option<Instant>, HashMap<String, JobState>)>,
    last_submit: Mutex<Option<Instant>>,
    cluster: std::sync::Arc<dyn Cluster>,
}

/// One stage to run as a job.
pub struct JobRequest<'a> {
    /// The spec (its `result` and `events` paths are in `dir`).
    pub spec: &'a SlurmSpec,
    /// The job's folder: spec, script, log, job id, result.
    pub dir: &'a Path,
    /// The stage's `resources`.
    pub resources: &'a tuneflow_stages::Resources,
    /// Set when the run is cancelled.
    pub cancel: &'a CancelFlag,
    /// Receives the job's progress events (e.g. training epochs) as they
    /// appear in its events file.
    pub on_event: &'a (dyn Fn(WorkerEvent) + Sync),
}

/// Follows a job's events file (JSON lines) on the shared filesystem.
struct EventTail {
    offset: u64,
}

impl EventTail {
    /// Hands every complete line written since the last call to `f`.
    fn drain(&mut self, path: &Path, f: &dyn Fn(WorkerEvent)) {
        use std::io::{Read, Seek};
        let Ok(mut file) = std::fs::File::open(path) else {
            return;
        };
        // A requeued or resubmitted job starts the file again.
        if file.metadata().is_ok_and(|m| m.len() < self.offset) {
            self.offset = 0;
        }
        if file.seek(std::io::SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut text = String::new();
        if file.read_to_string(&mut text).is_err() {
            return;
        }
        // Only whole lines: the job may be halfway through one.
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        for line in text[..complete].lines() {
            if let Ok(v) = serde_json::from_str(line) {
                f(v);
            }
        }
        self.offset += complete as u64;
    }
}

impl std::fmt::Debug for Slurm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slurm")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Slurm {
    /// A backend for `cfg`; jobs run this same `tuneflow` binary.
    pub fn new(cfg: SlurmConfig) -> Result<Self, String> {
        Self::with_cluster(cfg, std::sync::Arc::new(queue::Commands))
    }

    /// A backend for `cfg` that talks to `cluster`.
    pub fn with_cluster(
        cfg: SlurmConfig,
        cluster: std::sync::Arc<dyn Cluster>,
    ) -> Result<Self, String> {
        let template = match &cfg.template {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| format!("failed to read the job template `{}`: {e}", p.display()))?,
            None => queue::DEFAULT_TEMPLATE.to_owned(),
        };
        let tuneflow = std::env::current_exe().map_err(|e| e.to_string())?;
        Ok(Self {
            cfg,
            template,
            tuneflow,
            in_flight: Mutex::default(),
            slots: Condvar::new(),
            polled: Mutex::default(),
            last_submit: Mutex::default(),
            cluster,
        })
    }

    /// Runs one stage as a job and returns its verified result.
    pub fn submit_and_wait(
        &self,
        req: &JobRequest<'_>,
        store: &ObjectStore,
    ) -> Result<StageResult, StageFailure> {
        let spec_path = req.dir.join("spec.json");
        std::fs::create_dir_all(req.dir)
            .and_then(|()| {
                write_atomic(
                    &spec_path,
                    &serde_json::to_vec_pretty(req.spec).expect("json"),
                )
            })
            .map_err(|e| {
                StageFailure::Cluster(format!("failed to write `{}`: {e}", spec_path.display()))
            })?;
        let mut retries = self.cfg.retries;
        let mut tail = EventTail { offset: 0 };
        let mut id = self
            .reattach(req.dir)
            .map_or_else(|| self.submit(req), Ok)
            .map_err(StageFailure::Cluster)?;
        loop {
            let verdict = self.wait(&id, req, &mut tail)?;
            tail.drain(&req.spec.events, req.on_event);
            match verdict {
                (Verdict::Completed, _) => {
                    self.release(&id);
                    return self.collect(req, &id, store);
                }
                (Verdict::Retry, why) if retries > 0 => {
                    retries -= 1;
                    // Never two copies: the old job goes before a new one.
                    self.cluster.scancel(std::slice::from_ref(&id));
                    self.release(&id);
                    tracing::warn!(
                        "job {id} of `{}` was lost ({why}); submitting again",
                        req.spec.job.stage
                    );
                    let _ = std::fs::remove_file(&req.spec.result);
                    id = self.submit(req).map_err(StageFailure::Cluster)?;
                }
                (_, why) => {
                    self.release(&id);
                    return Err(StageFailure::Cluster(self.failure(req, &id, &why)));
                }
            }
        }
    }

    /// A job id recorded by an earlier coordinator whose job Slurm still
    /// knows and has not finished badly.
    fn reattach(&self, dir: &Path) -> Option<String> {
        let id = std::fs::read_to_string(dir.join("job"))
            .ok()?
            .trim()
            .to_owned();
        let state = self
            .cluster
            .squeue(std::slice::from_ref(&id))
            .ok()?
            .remove(&id)?;
        match queue::verdict(&state.state) {
            Verdict::Waiting | Verdict::Completed => {
                tracing::info!("re-attaching to job {id} ({})", state.state);
                self.in_flight.lock().expect("lock").insert(id.clone());
                Some(id)
            }
            _ => None,
        }
    }

    fn submit(&self, req: &JobRequest<'_>) -> Result<String, String> {
        {
            let mut jobs = self.in_flight.lock().expect("lock");
            while jobs.len() >= self.cfg.max_in_flight {
                jobs = self.slots.wait(jobs).expect("lock");
            }
        }
        {
            let mut last = self.last_submit.lock().expect("lock");
            let gap = Duration::from_secs_f64(1.0 / self.cfg.submit_per_second);
            if let Some(t) = *last {
                if let Some(wait) = gap.checked_sub(t.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            *last = Some(Instant::now());
        }
        let dir = req.dir;
        let script = queue::render(
            &self.template,
            &self.cfg,
            &JobScript {
                name: &format!("tf-{}", req.spec.job.stage),
                log: &dir.join("job.log").to_string_lossy(),
                spec: &dir.join("spec.json").to_string_lossy(),
                tuneflow: &self.tuneflow.to_string_lossy(),
                resources: req.resources,
            },
        )?;
        let script_path = dir.join("job.sh");
        write_atomic(&script_path, script.as_bytes()).map_err(|e| e.to_string())?;
        let id = self.cluster.sbatch(&script_path)?;
        write_atomic(&dir.join("job"), id.as_bytes()).map_err(|e| e.to_string())?;
        self.in_flight.lock().expect("lock").insert(id.clone());
        tracing::info!("stage `{}` is Slurm job {id}", req.spec.job.stage);
        Ok(id)
    }

    fn release(&self, id: &str) {
        self.in_flight.lock().expect("lock").remove(id);
        self.slots.notify_all();
    }

    /// Waits until job `id` settles; returns the verdict and its reason.
    fn wait(
        &self,
        id: &str,
        req: &JobRequest<'_>,
        tail: &mut EventTail,
    ) -> Result<(Verdict, String), StageFailure> {
        let (cancel, result) = (req.cancel, &req.spec.result);
        let interval = Duration::from_secs_f64(self.cfg.poll_seconds);
        // A lost-job state must show on two polls in a row: in between,
        // Slurm may have requeued the job itself.
        let mut lost_once = false;
        loop {
            if cancel.is_cancelled() {
                self.cluster.scancel(&[id.to_owned()]);
                self.release(id);
                return Err(StageFailure::Interrupted);
            }
            let (verdict, why) = match self.state(id, interval) {
                Some(s) => (
                    queue::verdict(&s.state),
                    format!("{} ({})", s.state, s.reason),
                ),
                // Forgotten by Slurm: finished if it left a result.
                None if result.is_file() => (Verdict::Completed, "COMPLETED".into()),
                None => (Verdict::Retry, "the job vanished from the queue".into()),
            };
            match verdict {
                Verdict::Waiting => {
                    lost_once = false;
                    tail.drain(&req.spec.events, req.on_event);
                }
                Verdict::Retry if !lost_once => lost_once = true,
                v => return Ok((v, why)),
            }
            std::thread::sleep(interval);
        }
    }

    /// Job `id`'s state from the latest poll, polling all in-flight jobs
    /// at once when the last poll is older than `interval`.
    fn state(&self, id: &str, interval: Duration) -> Option<JobState> {
        let mut polled = self.polled.lock().expect("lock");
        let stale =
            polled.0.map_or(true, |t| t.elapsed() >= interval) || !polled.1.contains_key(id);
        if stale {
            let ids: Vec<String> = self
                .in_flight
                .lock()
                .expect("lock")
                .iter()
                .cloned()
                .collect();
            if let Ok(states) = self.cluster.squeue(&ids) {
                *polled = (Some(Instant::now()), states);
            }
        }
        polled.1.get(id).cloned()
    }

    /// Reads a completed job's result, waiting briefly for it, and checks
    /// that every object it names is in the store.
    fn collect(
        &self,
        req: &JobRequest<'_>,
        id: &str,
        store: &ObjectStore,
    ) -> Result<StageResult, StageFailure> {
        let cluster = |m: String| StageFailure::Cluster(m);
        let deadline = Instant::now() + Duration::from_secs_f64(self.cfg.result_wait_seconds);
        let bytes = loop {
            match std::fs::read(&req.spec.result) {
                Ok(b) => break b,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(e) => {
                    return Err(cluster(format!(
                    "job {id} completed but wrote no result `{}` ({e}); is the filesystem shared?",
                    req.spec.result.display()
                )))
                }
            }
        };
        let outcome: JobOutcome = serde_json::from_slice(&bytes)
            .map_err(|e| cluster(format!("job {id} wrote a bad result: {e}")))?;
        let result = match outcome {
            JobOutcome::Done(r) => r,
            JobOutcome::Failed { error } => {
                return Err(cluster(format!("{error} (Slurm job {id})")))
            }
            JobOutcome::Interrupted => {
                return Err(cluster(format!("Slurm job {id} was interrupted")))
            }
        };
        for o in &result.outputs {
            let missing = !store.contains(&o.digest)
                || entry_objects(store, o).iter().any(|d| !store.contains(d));
            if missing {
                return Err(cluster(format!(
                    "job {id} reported output `{}`, but its objects are not in the store",
                    o.name
                )));
            }
        }
        Ok(result)
    }

    fn failure(&self, req: &JobRequest<'_>, id: &str, why: &str) -> String {
        let exit = self
            .cluster
            .scontrol(id)
            .and_then(|m| m.get("ExitCode").cloned())
            .unwrap_or_else(|| "?".into());
        // The stage's own error, when the job got far enough to write it.
        let stage_error = match std::fs::read(&req.spec.result)
            .ok()
            .and_then(|b| serde_json::from_slice::<JobOutcome>(&b).ok())
        {
            Some(JobOutcome::Failed { error }) => format!("{error}\n"),
            _ => String::new(),
        };
        // The stage's log, then the job's (Slurm's `--output`).
        let tail: String = [&req.spec.job.context.log, &req.dir.join("job.log")]
            .into_iter()
            .map(|log| tuneflow_stages::worker::client::tail(log))
            .collect();
        format!(
            "Slurm job {id} ended {why}, exit code {exit}\n{stage_error}{tail}job folder: {}",
            req.dir.display()
        )
    }

    /// Cancels every job still in flight (Ctrl-C on the coordinator).
    pub fn cancel_all(&self) {
        let ids: Vec<String> = self
            .in_flight
            .lock()
            .expect("lock")
            .iter()
            .cloned()
            .collect();
        self.cluster.scancel(&ids);
    }
}

impl StageBackend for Slurm {
    /// The cluster hands out GPUs (`--gres`), not this host.
    fn local_gpus(&self, _requested: u32) -> u32 {
        0
    }

    /// Runs the job on the cluster: the node stores its outputs in the
    /// shared object store; this returns them once every object is there.
    fn run(&self, job: &StageJob, ctl: &JobControl<'_>) -> Result<StageResult, StageFailure> {
        let cache = job.objects.parent().unwrap_or(&job.objects);
        let dir = cache.join("slurm").join(job.record.key.to_hex());
        let mut job = job.clone();
        job.context.scratch = dir.join("scratch");
        job.context.gpus = vec![];
        job.context.running = None;
        let spec = SlurmSpec {
            job,
            result: dir.join("result.json"),
            events: dir.join("events.jsonl"),
        };
        let request = JobRequest {
            spec: &spec,
            dir: &dir,
            resources: &spec.job.resources,
            cancel: ctl.cancel,
            on_event: &|e| ctl.events.emit(e),
        };
        let result = self.submit_and_wait(&request, ctl.store)?;
        let _ = std::fs::remove_dir_all(&dir);
        Ok(result)
    }
}
