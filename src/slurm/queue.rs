//! Talking to Slurm: the job script, `sbatch --parsable`, and reading job
//! states from `squeue` and `scontrol` (one batched call per poll).

use std::collections::HashMap;
use std::process::Command;

use crate::pipeline::executor::SlurmConfig;

/// The built-in job script. A site template may use the same placeholders:
/// `{{sbatch}}` (the `#SBATCH` lines), `{{command}}`, `{{job_name}}`,
/// `{{log}}`, `{{spec}}`.
pub const DEFAULT_TEMPLATE: &str = "#!/bin/bash\n{{sbatch}}\n# tuneflow runs one stage against the shared object store; only the\n# coordinator writes the index.\nexec {{command}}\n";

/// What one job needs besides the config.
pub struct JobScript<'a> {
    /// `--job-name`.
    pub name: &'a str,
    /// `--output` (stdout and stderr).
    pub log: &'a str,
    /// The spec file `exec-stage` reads.
    pub spec: &'a str,
    /// The `tuneflow` binary on the nodes.
    pub tuneflow: &'a str,
    /// The stage's `resources`: GPUs (`--gres=gpu:N`), and cpus, mem and
    /// time overriding the executor's defaults.
    pub resources: &'a tuneflow_stages::Resources,
}

/// Renders the job script from `template`; unknown placeholders are errors.
pub fn render(template: &str, cfg: &SlurmConfig, job: &JobScript<'_>) -> Result<String, String> {
    let mut sbatch = vec![
        format!("#SBATCH --job-name={}", job.name),
        format!("#SBATCH --output={}", job.log),
        format!(
            "#SBATCH --cpus-per-task={}",
            job.resources.cpus.unwrap_or(cfg.cpus)
        ),
        // Requeued after preemption or a node failure, the job runs
        // `exec-stage` again, which resumes from the stage's checkpoint.
        "#SBATCH --requeue".to_owned(),
        // A warning before the time limit: the worker's checkpoints survive.
        "#SBATCH --signal=B:USR1@60".to_owned(),
    ];
    let optional = [
        ("mem", job.resources.mem.as_ref().or(cfg.mem.as_ref())),
        ("time", job.resources.time.as_ref().or(cfg.time.as_ref())),
        ("partition", cfg.partition.as_ref()),
        ("account", cfg.account.as_ref()),
    ];
    for (flag, value) in optional {
        if let Some(v) = value {
            sbatch.push(format!("#SBATCH --{flag}={v}"));
        }
    }
    if job.resources.gpu > 0 {
        sbatch.push(format!("#SBATCH --gres=gpu:{}", job.resources.gpu));
    }
    let command = format!(
        "{} exec-stage --spec {}",
        shell_quote(job.tuneflow),
        shell_quote(job.spec)
    );
    let values = [
        ("sbatch", sbatch.join("\n")),
        ("command", command),
        ("job_name", job.name.to_owned()),
        ("log", job.log.to_owned()),
        ("spec", job.spec.to_owned()),
    ];
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .ok_or("an unclosed `{{` in the job template")?;
        let name = rest[start + 2..start + end].trim();
        let value = values
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
            .ok_or_else(|| {
                format!("unknown placeholder `{{{{{name}}}}}` in the job template (known: sbatch, command, job_name, log, spec)")
            })?;
        out.push_str(value);
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// A job's state as Slurm names it (`PENDING`, `RUNNING`, `COMPLETED`...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    /// The state word.
    pub state: String,
    /// `Reason` (why pending, or why it ended).
    pub reason: String,
}

/// What to do about a job in a given state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Still queued or running (requeued jobs come back here).
    Waiting,
    /// Finished successfully.
    Completed,
    /// Failed for good: the stage fails with this reason.
    Failed,
    /// Lost to the cluster: submit again, within the retry budget.
    Retry,
}

/// Classifies a Slurm state word. Jobs are submitted with `--requeue`, so
/// after preemption or a node failure Slurm usually queues them again by
/// itself (they come back as PENDING, and the wait goes on); a job that
/// stays in one of these states is submitted again by tuneflow.
pub fn verdict(state: &str) -> Verdict {
    match state {
        "COMPLETED" => Verdict::Completed,
        "NODE_FAIL" | "BOOT_FAIL" | "PREEMPTED" | "DEADLINE" => Verdict::Retry,
        "FAILED" | "CANCELLED" | "TIMEOUT" | "OUT_OF_MEMORY" | "REVOKED" | "SPECIAL_EXIT" => {
            Verdict::Failed
        }
        _ => Verdict::Waiting,
    }
}

/// Parses `squeue -h -t all -o '%i|%T|%r'` output.
pub fn parse_squeue(text: &str) -> HashMap<String, JobState> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().splitn(3, '|');
            let (id, state) = (f.next()?, f.next()?);
            (!id.is_empty()).then(|| {
                (
                    id.to_owned(),
                    JobState {
                        state: state.trim().to_owned(),
                        reason: f.next().unwrap_or("").trim().to_owned(),
                    },
                )
            })
        })
        .collect()
}

/// Parses one `scontrol -o show job ID` line into its `Key=Value` fields.
pub fn parse_scontrol(line: &str) -> HashMap<String, String> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// What the backend asks of a cluster: the four Slurm commands it uses.
/// [`Commands`] runs the real ones; tests use a fake that runs jobs in
/// the test process.
pub trait Cluster: Send + Sync {
    /// Submits `script`; returns the job id.
    fn sbatch(&self, script: &std::path::Path) -> Result<String, String>;
    /// The states of `ids` (jobs Slurm has forgotten are absent).
    fn squeue(&self, ids: &[String]) -> Result<HashMap<String, JobState>, String>;
    /// A job's fields, `None` when Slurm forgot it.
    fn scontrol(&self, id: &str) -> Option<HashMap<String, String>>;
    /// Cancels jobs (best effort).
    fn scancel(&self, ids: &[String]);
}

/// The real cluster: `sbatch`, `squeue`, `scontrol` and `scancel` on PATH.
#[derive(Debug, Default)]
pub struct Commands;

impl Cluster for Commands {
    fn sbatch(&self, script: &std::path::Path) -> Result<String, String> {
        sbatch(script)
    }
    fn squeue(&self, ids: &[String]) -> Result<HashMap<String, JobState>, String> {
        squeue(ids)
    }
    fn scontrol(&self, id: &str) -> Option<HashMap<String, String>> {
        scontrol(id)
    }
    fn scancel(&self, ids: &[String]) {
        scancel(ids)
    }
}

/// Submits `script`; returns the job id.
pub fn sbatch(script: &std::path::Path) -> Result<String, String> {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .arg(script)
        .output()
        .map_err(|e| format!("failed to run sbatch: {e} (is Slurm's client installed?)"))?;
    if !out.status.success() {
        return Err(format!(
            "sbatch refused the job: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // `--parsable` prints `id` or `id;cluster`.
    let id = text.trim().split(';').next().unwrap_or("").to_owned();
    if id.is_empty() {
        return Err("sbatch printed no job id".into());
    }
    Ok(id)
}

/// The states of `ids` in one `squeue` call (jobs Slurm has forgotten are
/// absent).
pub fn squeue(ids: &[String]) -> Result<HashMap<String, JobState>, String> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let out = Command::new("squeue")
        .args(["-h", "-t", "all", "-o", "%i|%T|%r", "-j"])
        .arg(ids.join(","))
        .output()
        .map_err(|e| format!("failed to run squeue: {e}"))?;
    // squeue exits non-zero when every id is unknown: that is an answer.
    Ok(parse_squeue(&String::from_utf8_lossy(&out.stdout)))
}

/// `scontrol -o show job ID`, parsed; `None` when Slurm forgot the job.
pub fn scontrol(id: &str) -> Option<HashMap<String, String>> {
    let out = Command::new("scontrol")
        .args(["-o", "show", "job", id])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .next()
        .map(parse_scontrol)
        .filter(|m| m.contains_key("JobState"))
}

/// `scancel` (best effort).
pub fn scancel(ids: &[String]) {
    if !ids.is_empty() {
        let _ = Command::new("scancel").args(ids).output();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(resources: &tuneflow_stages::Resources) -> JobScript<'_> {
        JobScript {
            name: "tf-train",
            log: "/shared/.tuneflow/slurm/k/job.log",
            spec: "/shared/.tuneflow/slurm/k/spec.json",
            tuneflow: "/opt/tuneflow/bin/tuneflow",
            resources,
        }
    }

    fn gpus(n: u32) -> tuneflow_stages::Resources {
        tuneflow_stages::Resources {
            gpu: n,
            ..Default::default()
        }
    }

    #[test]
    fn renders_sbatch_lines_and_the_command() {
        let cfg = SlurmConfig {
            partition: Some("gpu".into()),
            time: Some("02:00:00".into()),
            mem: Some("8G".into()),
            cpus: 4,
            ..SlurmConfig::default()
        };
        let s = render(DEFAULT_TEMPLATE, &cfg, &job(&gpus(2))).unwrap();
        for line in [
            "#SBATCH --job-name=tf-train",
            "#SBATCH --output=/shared/.tuneflow/slurm/k/job.log",
            "#SBATCH --cpus-per-task=4",
            "#SBATCH --mem=8G",
            "#SBATCH --time=02:00:00",
            "#SBATCH --partition=gpu",
            "#SBATCH --gres=gpu:2",
            "#SBATCH --requeue",
            "#SBATCH --signal=B:USR1@60",
            "exec /opt/tuneflow/bin/tuneflow exec-stage --spec /shared/.tuneflow/slurm/k/spec.json",
        ] {
            assert!(s.contains(line), "{line} missing from\n{s}");
        }
        assert!(!s.contains("--account"));
        assert!(s.starts_with("#!/bin/bash\n#SBATCH"));
        // A stage's own resources override the executor's defaults.
        let own = tuneflow_stages::Resources {
            gpu: 0,
            cpus: Some(16),
            mem: Some("64G".into()),
            time: Some("2-00:00:00".into()),
        };
        let s = render(DEFAULT_TEMPLATE, &cfg, &job(&own)).unwrap();
        for line in ["--cpus-per-task=16", "--mem=64G", "--time=2-00:00:00"] {
            assert!(s.contains(line), "{line} missing from\n{s}");
        }
        assert!(!s.contains("--gres") && !s.contains("--mem=8G"));
    }

    #[test]
    fn site_templates_use_placeholders_and_unknown_ones_are_errors() {
        let t = "#!/bin/sh\n{{sbatch}}\n#SBATCH --qos=long\nmodule load cuda\nsrun {{ command }}\n";
        let s = render(t, &SlurmConfig::default(), &job(&gpus(0))).unwrap();
        assert!(s.contains("module load cuda\nsrun /opt/tuneflow/bin/tuneflow exec-stage"));
        let e = render("{{nope}}", &SlurmConfig::default(), &job(&gpus(0))).unwrap_err();
        assert!(e.contains("`{{nope}}`"), "{e}");
    }

    // Captured from the slurm-local.sh cluster (Slurm 22.05.8): a job that
    // exited 3, one cancelled, one holding both fake GPUs and one waiting
    // for them.
    const SQUEUE: &str = "5|CANCELLED|None\n1|COMPLETED|None\n2|COMPLETED|None\n3|COMPLETED|None\n4|FAILED|NonZeroExitCode\n7|PENDING|Resources\n6|RUNNING|None\n";
    const SCONTROL: &str = "JobId=4 JobName=tf-fail UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901756 Nice=0 Account=(null) QOS=(null) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=3:0 RunTime=00:00:00 TimeLimit=365-00:00:00 TimeMin=N/A SubmitTime=2026-11-28T12:50:38 EligibleTime=2026-11-28T12:50:38 AccrueTime=2026-11-28T12:50:38";

    #[test]
    fn parses_squeue_and_scontrol() {
        let q = parse_squeue(SQUEUE);
        assert_eq!(q.len(), 7);
        assert_eq!(q["7"].state, "PENDING");
        assert_eq!(q["7"].reason, "Resources");
        assert_eq!(verdict(&q["7"].state), Verdict::Waiting);
        assert_eq!(verdict(&q["2"].state), Verdict::Completed);
        assert_eq!(verdict(&q["6"].state), Verdict::Waiting);
        assert_eq!(verdict(&q["4"].state), Verdict::Failed);
        assert_eq!(verdict(&q["5"].state), Verdict::Failed);
        assert_eq!(verdict("NODE_FAIL"), Verdict::Retry);
        assert_eq!(verdict("PREEMPTED"), Verdict::Retry);
        assert_eq!(verdict("REQUEUED"), Verdict::Waiting);
        let s = parse_scontrol(SCONTROL);
        assert_eq!(s["JobState"], "FAILED");
        assert_eq!(s["ExitCode"], "3:0");
        assert_eq!(s["Restarts"], "0");
    }
}
