//! What a run records about itself (`.tuneflow/runs/<id>/run.json`), all
//! runs, all-cached ones too: a readable, sortable id, the overrides, the
//! pipeline file's digest, the git commit and dirty flag of the pipeline's
//! folder, each stage's outcome, key, time and resources, and the metrics
//! the run resolved to. `tuneflow runs` lists them; `tuneflow metrics RUN`
//! and `metrics --diff A B` read them.

use std::collections::BTreeMap;
use std::path::Path;
use std::thread::JoinHandle;

use tuneflow_cache::{GitState, StageRun};

use super::engine::Outcome;
use super::reports::{flatten, reports_in};
use crate::pipeline::Plan;

/// A sortable, readable id: UTC date and time to the millisecond, then
/// the process id (`20261129-064501.123-4242`).
pub fn run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}.{:03}-{}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis(),
        std::process::id()
    )
}

/// `now` as RFC 3339 UTC to the millisecond (`2026-11-29T07:40:01.123Z`),
/// the `time` of each `--json` event.
pub fn utc_stamp(now: std::time::SystemTime) -> String {
    let d = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The git state of a folder, asked on a thread of its own while the run
/// goes on (two `git` processes; nothing when the folder is in no
/// repository or git is not installed).
pub struct GitProbe(Option<JoinHandle<Option<GitState>>>);

impl GitProbe {
    /// Starts asking about `dir`.
    pub fn start(dir: &Path) -> Self {
        if !dir.ancestors().any(|a| a.join(".git").exists()) {
            return Self(None);
        }
        let dir = dir.to_path_buf();
        Self(
            std::thread::Builder::new()
                .name("git".into())
                .spawn(move || git_state(&dir))
                .ok(),
        )
    }

    /// The answer (waits for it).
    pub fn finish(self) -> Option<GitState> {
        self.0?.join().ok().flatten()
    }
}

fn git_state(dir: &Path) -> Option<GitState> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
    };
    let head = git(&["rev-parse", "HEAD"])?;
    let commit = String::from_utf8(head.stdout).ok()?.trim().to_owned();
    let status = git(&["status", "--porcelain", "--untracked-files=no"])?;
    Some(GitState {
        commit,
        dirty: !status.stdout.is_empty(),
    })
}

/// Each stage's line in the record; `reasons`: why each stage that ran
/// had to.
pub fn stage_runs(
    plan: &Plan,
    outcomes: &[Outcome],
    reasons: &[Option<String>],
) -> BTreeMap<String, StageRun> {
    plan.stages
        .iter()
        .zip(outcomes)
        .zip(reasons)
        .map(|((ps, o), why)| {
            let (word, seconds, reason) = match o {
                Outcome::Ran(_, m) => ("ran", m.seconds, why.clone()),
                Outcome::Cached(..) => ("cached", 0.0, None),
                Outcome::Failed(f) => ("failed", 0.0, Some(f.to_string())),
                Outcome::Skipped(r) => ("skipped", 0.0, Some(r.clone())),
                Outcome::Interrupted => ("interrupted", 0.0, None),
                Outcome::Pending => ("pending", 0.0, None),
            };
            let ran = matches!(o, Outcome::Ran(..));
            let run = StageRun {
                outcome: word.into(),
                key: o.key().map(|k| k.to_hex()),
                seconds,
                reason,
                resources: ran
                    .then(|| serde_json::to_value(&ps.resources).ok())
                    .flatten(),
            };
            (ps.name.clone(), run)
        })
        .collect()
}

/// The metrics of every report the run resolved to, by label (`stage`,
/// or `stage.output` for a command's metrics), flattened.
pub fn run_metrics(plan: &Plan, outcomes: &[Outcome]) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    for (ps, o) in plan.stages.iter().zip(outcomes) {
        let (Outcome::Ran(_, m) | Outcome::Cached(_, m)) = o else {
            continue;
        };
        for (suffix, report) in reports_in(&m.summary) {
            let flat = flatten(&report);
            out.insert(format!("{}{suffix}", ps.name), serde_json::json!(flat));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_rfc3339_utc() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_795_938_001_123);
        assert_eq!(utc_stamp(t), "2026-11-29T07:40:01.123Z");
    }

    #[test]
    fn days_become_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_786), (2026, 11, 29));
    }

    #[test]
    fn run_ids_sort_by_time_and_read_as_dates() {
        let a = run_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = run_id();
        assert!(a < b, "{a} {b}");
        assert_eq!(
            a.len(),
            "20261129-064501.123-".len() + std::process::id().to_string().len()
        );
        assert!(a.starts_with("20"), "{a}");
    }
}
