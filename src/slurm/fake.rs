//! The Slurm backend against a fake cluster that runs each job's
//! `exec-stage` in the test process: submission, polling, results, lost
//! jobs, failures and missing objects, without Slurm or an engine. (The
//! real cluster is tested in `tests/cli/slurm.rs`.)

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tuneflow_cache::ObjectStore;
use tuneflow_stages::{CancelFlag, EventSink};

use super::backend::Slurm;
use super::queue::{Cluster, JobState};
use crate::pipeline::executor::SlurmConfig;
use crate::run::backend::{JobControl, StageBackend, StageFailure};
use crate::run::job::StageJob;

/// Runs submitted jobs on threads; the first `lose` submissions end as
/// NODE_FAIL without running.
#[derive(Default)]
struct FakeCluster {
    states: Arc<Mutex<HashMap<String, String>>>,
    submitted: AtomicUsize,
    lose: AtomicUsize,
    cancelled: Mutex<Vec<String>>,
}

impl Cluster for FakeCluster {
    fn sbatch(&self, script: &Path) -> Result<String, String> {
        let n = self.submitted.fetch_add(1, Ordering::SeqCst) + 1;
        let id = format!("{}", 1000 + n);
        if self
            .lose
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| l.checked_sub(1))
            .is_ok()
        {
            self.set(&id, "NODE_FAIL");
            return Ok(id);
        }
        self.set(&id, "RUNNING");
        let spec = script.parent().unwrap().join("spec.json");
        let (states, job) = (self.states.clone(), id.clone());
        std::thread::spawn(move || {
            let code = super::job::exec_stage(&spec).unwrap_or(2);
            let state = if code == 0 { "COMPLETED" } else { "FAILED" };
            states.lock().unwrap().insert(job, state.to_owned());
        });
        Ok(id)
    }

    fn squeue(&self, ids: &[String]) -> Result<HashMap<String, JobState>, String> {
        let states = self.states.lock().unwrap();
        Ok(ids
            .iter()
            .filter_map(|id| {
                states.get(id).map(|s| {
                    let state = JobState {
                        state: s.clone(),
                        reason: "None".into(),
                    };
                    (id.clone(), state)
                })
            })
            .collect())
    }

    fn scontrol(&self, id: &str) -> Option<HashMap<String, String>> {
        let state = self.states.lock().unwrap().get(id).cloned()?;
        Some(HashMap::from([
            ("JobState".to_owned(), state),
            ("ExitCode".to_owned(), "1:0".to_owned()),
        ]))
    }

    fn scancel(&self, ids: &[String]) {
        self.cancelled.lock().unwrap().extend(ids.iter().cloned());
        for id in ids {
            self.set(id, "CANCELLED");
        }
    }
}

impl FakeCluster {
    fn set(&self, id: &str, state: &str) {
        self.states
            .lock()
            .unwrap()
            .insert(id.to_owned(), state.to_owned());
    }
}

fn cluster(lose: usize) -> Arc<FakeCluster> {
    let c = Arc::new(FakeCluster::default());
    c.lose.store(lose, Ordering::SeqCst);
    c
}

fn backend(c: &Arc<FakeCluster>) -> Slurm {
    let cfg = SlurmConfig {
        poll_seconds: 0.05,
        result_wait_seconds: 2.0,
        ..SlurmConfig::default()
    };
    Slurm::with_cluster(cfg, c.clone()).unwrap()
}

/// A command job whose objects are in the coordinator's store.
fn job(dir: &Path, cmd: &str, outs: &[&str]) -> StageJob {
    let mut j = crate::run::job::command_job(dir, cmd, outs);
    j.objects = dir.join("cache/objects");
    j
}

fn run(
    c: &Arc<FakeCluster>,
    j: &StageJob,
) -> Result<crate::run::backend::StageResult, StageFailure> {
    let store = ObjectStore::open(&j.objects).unwrap();
    let (cancel, events) = (CancelFlag::default(), EventSink::new(|_| {}));
    let ctl = JobControl {
        store: &store,
        cancel: &cancel,
        events: &events,
    };
    backend(c).run(j, &ctl)
}

#[test]
fn a_job_runs_on_the_cluster_and_its_objects_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(0);
    let j = job(dir.path(), "echo hi > a.txt", &["a.txt"]);
    let r = run(&c, &j).unwrap();
    assert_eq!(r.outputs[0].name, "a.txt");
    let store = ObjectStore::open(&j.objects).unwrap();
    assert_eq!(store.read_verified(&r.outputs[0].digest).unwrap(), b"hi\n");
    assert_eq!(c.submitted.load(Ordering::SeqCst), 1);
    assert!(!dir
        .path()
        .join("cache/slurm")
        .join(j.record.key.to_hex())
        .exists());
}

#[test]
fn a_lost_job_is_submitted_again_within_the_retries() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(1);
    let j = job(dir.path(), "echo again > a.txt", &["a.txt"]);
    run(&c, &j).unwrap();
    assert_eq!(c.submitted.load(Ordering::SeqCst), 2);
    assert_eq!(
        c.cancelled.lock().unwrap().len(),
        1,
        "the lost job is cancelled first"
    );
    let lost = cluster(3);
    let err = run(&lost, &job(dir.path(), "true", &[])).unwrap_err();
    assert!(matches!(err, StageFailure::Cluster(_)), "{err}");
    assert!(err.to_string().contains("NODE_FAIL"), "{err}");
}

#[test]
fn a_failing_job_reports_the_stage_error_and_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(0);
    let err = run(&c, &job(dir.path(), "echo 'disk on fire' >&2; exit 3", &[])).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StageFailure::Cluster(_)), "{text}");
    assert!(text.contains("exit status 3"), "{text}");
    assert!(text.contains("disk on fire"), "{text}");
}

#[test]
fn a_result_naming_objects_the_store_lacks_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(0);
    // The node writes its objects to another store than the coordinator's
    // (a filesystem that is not shared).
    let mut j = job(dir.path(), "echo x > a.txt", &["a.txt"]);
    let coordinator = ObjectStore::open(dir.path().join("elsewhere")).unwrap();
    let (cancel, events) = (CancelFlag::default(), EventSink::new(|_| {}));
    let ctl = JobControl {
        store: &coordinator,
        cancel: &cancel,
        events: &events,
    };
    j.objects = dir.path().join("cache/objects");
    let err = backend(&c).run(&j, &ctl).unwrap_err();
    assert!(err.to_string().contains("not in the store"), "{err}");
}
