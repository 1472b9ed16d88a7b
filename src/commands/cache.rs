//! `tuneflow cache verify | gc | du`.
#![expect(clippy::print_stdout, reason = "maintenance commands print reports")]

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use tuneflow_cache::{BlobDigest, CacheLayout, StageDigest};

use crate::cli::{CacheArgs, GcArgs};
use crate::error::{exit, RunError};
use crate::pipeline;
use crate::run::cache::{layout_for, Cache};
use crate::run::engine::entry_objects;
use crate::run::lookup::{resolve, Lookup};

fn layout(pipeline: Option<&Path>, flag: Option<&Path>) -> Result<CacheLayout, RunError> {
    let plan = pipeline.map(|p| pipeline::load(p, &[])).transpose()?;
    Ok(layout_for(flag, plan.as_ref(), pipeline))
}

fn emit<T: serde::Serialize>(json: bool, value: &T, text: String) {
    if json {
        println!(
            "{}",
            serde_json::to_string(value).expect("reports serialize")
        );
    } else {
        print!("{text}");
    }
}

/// What `cache verify` found.
#[derive(Debug, Default, serde::Serialize)]
struct Verified {
    event: &'static str,
    ok: u64,
    corrupt: Vec<String>,
    missing: Vec<String>,
    results_dropped: usize,
    unreadable_records: Vec<String>,
}

/// Re-hashes every object; quarantines corrupt ones; lists objects that
/// results name but the store lacks (files inside folder outputs too);
/// forgets every result that names a corrupt or missing object, so its
/// stage reruns.
pub fn verify(args: &CacheArgs, flag: Option<&Path>) -> Result<i32, RunError> {
    let cache = Cache::open_exclusive(layout(args.pipeline.as_deref(), flag)?)?;
    let (store, index) = (&cache.store, &cache.index);
    let report = store.verify(&cache.layout.quarantine())?;
    let unreadable = index.drop_unreadable()?;
    let mut v = Verified {
        event: "cache-verify",
        ok: report.ok,
        corrupt: report.corrupt,
        unreadable_records: unreadable.iter().map(|p| p.display().to_string()).collect(),
        ..Default::default()
    };
    let mut missing = BTreeSet::new();
    for (key, manifest) in index.results()? {
        let mut bad = false;
        for o in &manifest.outputs {
            if !store.contains(&o.digest) {
                missing.insert(o.digest.to_hex());
                bad = true;
                continue;
            }
            for d in entry_objects(store, o) {
                if !store.contains(&d) {
                    missing.insert(d.to_hex());
                    bad = true;
                }
            }
        }
        if bad {
            index.remove_result(&key)?;
            v.results_dropped += 1;
        }
    }
    for c in &v.corrupt {
        if let Some(d) = BlobDigest::from_hex(c) {
            index.forget_verified(&d);
        }
    }
    v.missing = missing.into_iter().collect();
    let mut text = format!(
        "{} objects ok, {} corrupt (quarantined), {} missing\n",
        v.ok,
        v.corrupt.len(),
        v.missing.len()
    );
    for c in &v.corrupt {
        text.push_str(&format!("  corrupt: {c}\n"));
    }
    for m in &v.missing {
        text.push_str(&format!("  missing: {m}\n"));
    }
    for r in &v.unreadable_records {
        text.push_str(&format!("  unreadable record removed: {r}\n"));
    }
    if v.results_dropped > 0 {
        text.push_str(&format!(
            "{} cached results named them and will rerun\n",
            v.results_dropped
        ));
    }
    emit(args.json, &v, text);
    Ok(
        if v.corrupt.is_empty() && v.missing.is_empty() && v.unreadable_records.is_empty() {
            exit::SUCCESS
        } else {
            exit::CACHE
        },
    )
}

/// Shows counts and sizes: objects, results, runs, and what killed runs
/// left in the scratch and checkpoint folders.
pub fn du(args: &CacheArgs, flag: Option<&Path>) -> Result<i32, RunError> {
    let cache = Cache::open_shared(layout(args.pipeline.as_deref(), flag)?)?;
    let (objects, bytes) = cache.store.usage()?;
    let results = cache.index.results()?.len();
    let runs = cache.index.runs()?.len();
    let scratch =
        dir_bytes(&cache.layout.scratch()) + dir_bytes(&cache.layout.objects().join("tmp"));
    let checkpoints = dir_bytes(&cache.layout.checkpoints());
    let value = serde_json::json!({"event": "cache-du", "objects": objects, "bytes": bytes,
        "results": results, "runs": runs, "scratch_bytes": scratch, "checkpoint_bytes": checkpoints});
    let text = format!(
        "{}: {objects} objects, {} in all; {results} cached stage results; {runs} runs recorded; \
         scratch {}, checkpoints {}\n",
        cache.layout.root().display(),
        human_bytes(bytes),
        human_bytes(scratch),
        human_bytes(checkpoints),
    );
    emit(args.json, &value, text);
    if let Some(flag) = &args.remote {
        let plan = args
            .pipeline
            .as_deref()
            .map(|p| pipeline::load(p, &[]))
            .transpose()?;
        let remote = super::remote::open(Some(flag), plan.as_ref(), cache.layout.root())?;
        let u = remote.usage()?;
        let value = serde_json::json!({"event": "cache-du-remote", "remote": remote.shown(),
            "objects": u.objects, "bytes": u.object_bytes, "results": u.results});
        let text = format!(
            "{}: {} objects, {} in all; {} cached stage results\n",
            remote.shown(),
            u.objects,
            human_bytes(u.object_bytes),
            u.results
        );
        emit(args.json, &value, text);
    }
    Ok(exit::SUCCESS)
}

/// Bytes of every file below `dir` (0 when it does not exist).
fn dir_bytes(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn human_bytes(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", units[u])
}

/// Keeps the results the given pipelines' current keys name, plus those of
/// the last N runs; removes every other result and unreferenced object,
/// and what killed runs left in the scratch folder.
pub fn gc(args: &GcArgs, flag: Option<&Path>) -> Result<i32, RunError> {
    let first = pipeline::load(&args.pipelines[0], &[])?;
    let cache = Cache::open_exclusive(layout_for(flag, Some(&first), Some(&args.pipelines[0])))?;
    let (store, index) = (&cache.store, &cache.index);
    let mut live_keys: BTreeSet<StageDigest> = BTreeSet::new();
    for p in &args.pipelines {
        let plan = pipeline::load(p, &[])?;
        let lookup = Lookup::new(&plan, index, store);
        for r in resolve(&lookup)? {
            if let crate::run::lookup::Resolved::Decided(d) = r {
                live_keys.insert(d.record().key);
            }
        }
    }
    let mut runs = index.runs()?;
    let keep_from = runs.len().saturating_sub(args.keep_last);
    for (id, _) in runs.drain(..keep_from) {
        index.remove_run(&id)?;
    }
    for (_, run) in &runs {
        live_keys.extend(run.keys.values().copied());
    }
    let mut live: HashSet<BlobDigest> = HashSet::new();
    let mut dropped = 0;
    for (key, manifest) in index.results()? {
        if !live_keys.contains(&key) {
            index.remove_result(&key)?;
            dropped += 1;
            continue;
        }
        for o in &manifest.outputs {
            live.extend(entry_objects(store, o));
        }
    }
    let report = store.retain(&live)?;
    let _ = std::fs::remove_dir_all(cache.layout.scratch());
    store.clear_stale_temps();
    let value = serde_json::json!({"event": "cache-gc", "results_removed": dropped, "objects_removed": report.removed, "objects_kept": report.kept, "freed_bytes": report.freed_bytes});
    let text = format!(
        "removed {dropped} results and {} objects ({}); kept {} objects\n",
        report.removed,
        human_bytes(report.freed_bytes),
        report.kept
    );
    emit(args.json, &value, text);
    if let Some(flag) = &args.remote {
        let remote = super::remote::open(Some(flag), Some(&first), cache.layout.root())?;
        let r = remote.collect_orphans(std::time::Duration::from_secs(args.grace))?;
        let value = serde_json::json!({"event": "cache-gc-remote", "remote": remote.shown(),
            "objects_removed": r.removed, "objects_kept": r.kept, "freed_bytes": r.freed_bytes});
        let text = format!(
            "{}: removed {} unreferenced objects ({}); kept {}\n",
            remote.shown(),
            r.removed,
            human_bytes(r.freed_bytes),
            r.kept
        );
        emit(args.json, &value, text);
    }
    Ok(exit::SUCCESS)
}
