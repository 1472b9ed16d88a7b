//! `[executor]`: which backend runs the stages, and the Slurm settings.

use std::path::PathBuf;

use tuneflow_stages::{Diagnostic, ParamReader, Table};

/// The Slurm backend's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SlurmConfig {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// `--time` (Slurm's formats, e.g. `01:00:00`).
    pub time: Option<String>,
    /// `--mem` (e.g. `4G`).
    pub mem: Option<String>,
    /// `--cpus-per-task`.
    pub cpus: u32,
    /// A job-script template replacing the built-in one.
    pub template: Option<PathBuf>,
    /// Jobs submitted and not yet finished, at most.
    pub max_in_flight: usize,
    /// Submissions per second, at most.
    pub submit_per_second: f64,
    /// Seconds between polls of the queue.
    pub poll_seconds: f64,
    /// Resubmissions after NODE_FAIL, BOOT_FAIL or a vanished job.
    pub retries: u32,
    /// Seconds to wait for a completed job's result file (shared
    /// filesystems lag).
    pub result_wait_seconds: f64,
}

impl Default for SlurmConfig {
    fn default() -> Self {
        Self {
            partition: None,
            account: None,
            time: None,
            mem: None,
            cpus: 1,
            template: None,
            max_in_flight: 64,
            submit_per_second: 5.0,
            poll_seconds: 1.0,
            retries: 2,
            result_wait_seconds: 30.0,
        }
    }
}

/// Which backend runs the stages.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ExecutorConfig {
    /// Threads on this machine.
    #[default]
    Local,
    /// One Slurm job per stage.
    Slurm(SlurmConfig),
}

/// Reads `[executor]`; `dir` resolves a relative `template`.
pub fn read(table: &Table, dir: &std::path::Path) -> (ExecutorConfig, Vec<Diagnostic>) {
    let r = ParamReader::new(table, None);
    let kind = r
        .choice("kind", &["local", "slurm"])
        .map_or_else(|| "local".to_owned(), |k| k.value);
    let d = SlurmConfig::default();
    let cfg = SlurmConfig {
        partition: r.str("partition").map(|v| v.value),
        account: r.str("account").map(|v| v.value),
        time: r.str("time").map(|v| v.value),
        mem: r.str("mem").map(|v| v.value),
        cpus: r.uint("cpus").map_or(d.cpus, |v| v.value.max(1) as u32),
        template: r.str("template").map(|v| dir.join(v.value)),
        max_in_flight: r
            .uint("max-in-flight")
            .map_or(d.max_in_flight, |v| v.value.max(1) as usize),
        submit_per_second: r
            .float("submit-per-second")
            .map_or(d.submit_per_second, |v| v.value.max(0.01)),
        poll_seconds: r
            .float("poll-seconds")
            .map_or(d.poll_seconds, |v| v.value.max(0.05)),
        retries: r.uint("retries").map_or(d.retries, |v| v.value as u32),
        result_wait_seconds: r
            .float("result-wait-seconds")
            .map_or(d.result_wait_seconds, |v| v.value.max(0.0)),
    };
    let errors = r.finish();
    let exec = if kind == "slurm" {
        ExecutorConfig::Slurm(cfg)
    } else {
        ExecutorConfig::Local
    };
    (exec, errors)
}
