//! `tuneflow cache push | pull`, and the remote halves of `cache du` and
//! `cache gc` (docs/remote.md).
#![expect(clippy::print_stdout, reason = "transfer commands print reports")]

use std::path::Path;
use std::time::Instant;

use tuneflow_cache::{Manifest, StageDigest};

use crate::cli::SyncArgs;
use crate::error::{exit, RunError};
use crate::pipeline::{self, Plan};
use crate::remote::source::Transfer;
use crate::remote::transfer::Moved;
use crate::remote::{Remote, RemoteError};
use crate::run::cache::{layout_for, Cache};
use crate::run::lookup::{resolve, Decision, Lookup, Resolved};

/// The pipeline a sync command names, planned.
fn plan_of(args: &SyncArgs) -> Result<Option<Plan>, RunError> {
    Ok(args
        .pipeline
        .as_deref()
        .map(|p| pipeline::load(p, &args.set))
        .transpose()?)
}

/// The remote a command uses: `flag` (empty: the configured one), else the
/// pipeline's, else the user's.
pub(super) fn open(
    flag: Option<&str>,
    plan: Option<&Plan>,
    cache: &Path,
) -> Result<Remote, RunError> {
    let url = plan.and_then(|p| p.remote.url.as_deref());
    let flag = flag.filter(|f| !f.is_empty());
    let url = crate::remote::config::pick(flag, url)?.ok_or(RemoteError::NotConfigured)?;
    crate::remote::config::check_apart(&url, cache)?;
    Ok(Remote::open(&url)?)
}

fn human(b: u64) -> String {
    let (mut v, mut u) = (b as f64, 0);
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", units[u])
}

fn summary(verb: &str, n: usize, total: Moved, started: Instant, remote: &Remote, json: bool) {
    let secs = started.elapsed().as_secs_f64();
    let rate = total.bytes as f64 / secs.max(1e-9);
    if json {
        let v = serde_json::json!({"event": format!("cache-{verb}"), "results": n,
            "objects": total.objects, "bytes": total.bytes, "present": total.present,
            "seconds": secs, "remote": remote.shown()});
        println!("{v}");
    } else {
        println!(
            "{verb}: {n} results, {} objects ({}) in {secs:.2} s ({}/s), {} objects already there; remote {}",
            total.objects,
            human(total.bytes),
            human(rate as u64),
            total.present,
            remote.shown()
        );
    }
}

fn line(
    json: bool,
    stage: &str,
    key: Option<&StageDigest>,
    outcome: &str,
    m: Moved,
    err: Option<&str>,
) {
    let (hex, short) = key.map_or((None, "no key".to_owned()), |k| {
        (Some(k.to_hex()), k.short())
    });
    if json {
        let v = serde_json::json!({"event": "cache-transfer", "stage": stage, "key": hex,
            "outcome": outcome, "objects": m.objects, "bytes": m.bytes, "present": m.present,
            "error": err});
        println!("{v}");
        return;
    }
    match err {
        Some(e) => println!("{outcome:8} {stage} ({short}): {e}"),
        None => println!(
            "{outcome:8} {stage} ({short}): {} objects ({}), {} already there",
            m.objects,
            human(m.bytes),
            m.present
        ),
    }
}

/// Pushes the results the pipeline resolves to now (or, with `--all` or
/// no pipeline, every local result). Objects the remote has are skipped,
/// so an interrupted push resumes where it stopped.
pub fn push(args: &SyncArgs, flag: Option<&Path>) -> Result<i32, RunError> {
    let plan = plan_of(args)?;
    let cache = Cache::open_shared(layout_for(flag, plan.as_ref(), args.pipeline.as_deref()))?;
    let mut remote = open(args.remote.as_deref(), plan.as_ref(), cache.layout.root())?;
    remote.jobs = args.jobs.max(1);
    let (index, store) = (&cache.index, &cache.store);
    let results: Vec<(String, StageDigest, Manifest)> = match &plan {
        Some(plan) if !args.all => {
            let lookup = Lookup::new(plan, index, store);
            let resolved = resolve(&lookup)?;
            let mut out = Vec::new();
            for (ps, r) in plan.stages.iter().zip(resolved) {
                match r {
                    Resolved::Decided(Decision::Hit {
                        record, manifest, ..
                    }) => out.push((ps.name.clone(), record.key, manifest)),
                    _ => line(
                        args.json,
                        &ps.name,
                        None,
                        "skipped",
                        Moved::default(),
                        Some("not cached here; run it first"),
                    ),
                }
            }
            out
        }
        _ => index
            .results()?
            .into_iter()
            .map(|(k, m)| (m.stage.clone(), k, m))
            .collect(),
    };
    let (started, mut total, mut failed) = (Instant::now(), Moved::default(), 0);
    for (stage, key, manifest) in &results {
        match remote.push(key, manifest, index, store) {
            Ok(m) => {
                total += m;
                line(args.json, stage, Some(key), "pushed", m, None);
            }
            Err(e) => {
                failed += 1;
                let e_text = e.to_string();
                line(
                    args.json,
                    stage,
                    Some(key),
                    "failed",
                    Moved::default(),
                    Some(&e_text),
                );
                if e.is_unreachable() {
                    return Err(e.into());
                }
            }
        }
    }
    summary(
        "push",
        results.len() - failed,
        total,
        started,
        &remote,
        args.json,
    );
    Ok(if failed == 0 {
        exit::SUCCESS
    } else {
        exit::CACHE
    })
}

/// Fetches every result the pipeline resolves to now that the local cache
/// lacks, in order (a stage's key needs its upstream results), each object
/// verified as it arrives. The workspace is left alone: the next `run`
/// restores what it needs.
pub fn pull(args: &SyncArgs, flag: Option<&Path>) -> Result<i32, RunError> {
    let Some(plan) = plan_of(args)? else {
        return Err(crate::pipeline::PipelineError::Usage(
            "`cache pull` needs the pipeline whose results to fetch".into(),
        )
        .into());
    };
    let cache = Cache::open_exclusive(layout_for(flag, Some(&plan), args.pipeline.as_deref()))?;
    let mut remote = open(args.remote.as_deref(), Some(&plan), cache.layout.root())?;
    remote.jobs = args.jobs.max(1);
    remote.announce = false;
    let started = Instant::now();
    let lookup = Lookup::new(&plan, &cache.index, &cache.store).with_source(Some(&remote));
    let resolved = resolve(&lookup)?;
    // Each stage's last transfer (a later one replaces an earlier).
    let transfers: std::collections::HashMap<String, Transfer> = remote
        .transfers()
        .into_iter()
        .map(|t| (t.stage.clone(), t))
        .collect();
    let (mut total, mut pulled, mut failed) = (Moved::default(), 0, 0);
    for (ps, r) in plan.stages.iter().zip(&resolved) {
        let t = transfers.get(&ps.name);
        let key = match r {
            Resolved::Decided(d) => Some(d.record().key),
            _ => None,
        };
        let (outcome, moved, err) = match (r, t) {
            (_, Some(t)) if t.outcome == "failed" => ("failed", t.moved, t.error.clone()),
            (Resolved::Decided(Decision::Hit { .. }), Some(t)) => ("pulled", t.moved, None),
            (Resolved::Decided(Decision::Hit { .. }), None) => ("present", Moved::default(), None),
            (Resolved::Decided(Decision::Miss { .. }), _) => {
                ("absent", Moved::default(), Some("not on the remote".into()))
            }
            _ => (
                "blocked",
                Moved::default(),
                Some("an upstream stage is not cached".into()),
            ),
        };
        pulled += usize::from(outcome == "pulled");
        failed += usize::from(outcome == "failed");
        total += moved;
        line(
            args.json,
            &ps.name,
            key.as_ref(),
            outcome,
            moved,
            err.as_deref(),
        );
    }
    summary("pull", pulled, total, started, &remote, args.json);
    if remote.is_down() {
        return Err(RemoteError::Unreachable {
            remote: remote.shown().to_owned(),
        }
        .into());
    }
    Ok(if failed == 0 {
        exit::SUCCESS
    } else {
        exit::CACHE
    })
}
