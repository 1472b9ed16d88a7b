//! `tuneflow cache verify | gc | du`.
#![expect(clippy::print_stdout, reason = "maintenance commands print reports")]

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use tuneflow_cache::{BlobDigest, CacheLayout, Index, ObjectStore, OutputKind, StageDigest, Tree};

use crate::cli::{CacheArgs, GcArgs};
use crate::commands::{cache_layout, open_cache};
use crate::error::{exit, RunError};
use crate::plan;

fn layout_for(pipeline: Option<&Path>, flag: Option<&Path>) -> Result<CacheLayout, RunError> {
    let plan = pipeline.map(|p| plan::load(p, &[])).transpose()?;
    Ok(cache_layout(flag, plan.as_ref(), pipeline))
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

/// Re-hashes every object; quarantines corrupt ones and forgets results
/// that refer to objects no longer present.
pub fn verify(args: &CacheArgs, flag: Option<&Path>) -> Result<i32, RunError> {
    let layout = layout_for(args.pipeline.as_deref(), flag)?;
    let (_lock, index) = open_cache(&layout)?;
    let store = ObjectStore::open(layout.objects())?;
    let report = store.verify(&layout.root().join("quarantine"))?;
    let mut dropped = 0;
    for (key, manifest) in index.results()? {
        if manifest.outputs.iter().any(|o| !store.contains(&o.digest)) {
            index.remove_result(&key)?;
            dropped += 1;
        }
    }
    index.flush()?;
    let value = serde_json::json!({"event": "cache-verify", "ok": report.ok, "corrupt": report.corrupt, "results-dropped": dropped});
    let mut text = format!(
        "{} objects ok, {} corrupt (quarantined)\n",
        report.ok,
        report.corrupt.len()
    );
    for c in &report.corrupt {
        text.push_str(&format!("  corrupt: {c}\n"));
    }
    if dropped > 0 {
        text.push_str(&format!(
            "{dropped} cached results referred to them and will rerun\n"
        ));
    }
    emit(args.json, &value, text);
    Ok(if report.corrupt.is_empty() {
        exit::SUCCESS
    } else {
        exit::CACHE
    })
}

/// Shows counts and sizes.
pub fn du(args: &CacheArgs, flag: Option<&Path>) -> Result<i32, RunError> {
    let layout = layout_for(args.pipeline.as_deref(), flag)?;
    let (_lock, index) = open_cache(&layout)?;
    let (objects, bytes) = ObjectStore::open(layout.objects())?.usage()?;
    let results = index.results()?.len();
    let runs = index.runs()?.len();
    let value = serde_json::json!({"event": "cache-du", "objects": objects, "bytes": bytes, "results": results, "runs": runs});
    let text = format!(
        "{}: {objects} objects, {} in all; {results} cached stage results; {runs} runs recorded\n",
        layout.root().display(),
        human_bytes(bytes)
    );
    emit(args.json, &value, text);
    Ok(exit::SUCCESS)
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
/// the last N runs; removes every other result and unreferenced object.
pub fn gc(args: &GcArgs, flag: Option<&Path>) -> Result<i32, RunError> {
    let first = plan::load(&args.pipelines[0], &[])?;
    let layout = cache_layout(flag, Some(&first), Some(&args.pipelines[0]));
    let (_lock, index) = open_cache(&layout)?;
    let mut live_keys: BTreeSet<StageDigest> = BTreeSet::new();
    for p in &args.pipelines {
        let plan = plan::load(p, &[])?;
        live_keys.extend(current_keys(&plan, &index)?);
    }
    let mut runs = index.runs()?;
    let keep_from = runs.len().saturating_sub(args.keep_last);
    for run in runs.drain(..keep_from) {
        index.remove_run(run.started)?;
    }
    for run in &runs {
        live_keys.extend(run.keys.values().copied());
    }
    let store = ObjectStore::open(layout.objects())?;
    let mut live: HashSet<BlobDigest> = HashSet::new();
    let mut dropped = 0;
    for (key, manifest) in index.results()? {
        if !live_keys.contains(&key) {
            index.remove_result(&key)?;
            dropped += 1;
            continue;
        }
        for o in &manifest.outputs {
            live.insert(o.digest);
            if o.kind == OutputKind::Tree {
                if let Ok(tree) = Tree::load(&store, &o.digest) {
                    live.extend(tree.entries.iter().map(|e| e.digest));
                }
            }
        }
    }
    index.flush()?;
    let report = store.retain(&live)?;
    let value = serde_json::json!({"event": "cache-gc", "results-removed": dropped, "objects-removed": report.removed, "objects-kept": report.kept, "freed-bytes": report.freed_bytes});
    let text = format!(
        "removed {dropped} results and {} objects ({}); kept {} objects\n",
        report.removed,
        human_bytes(report.freed_bytes),
        report.kept
    );
    emit(args.json, &value, text);
    Ok(exit::SUCCESS)
}

/// The keys of every stage whose key can be known now (its upstream stages
/// are cached).
fn current_keys(plan: &plan::Plan, index: &Index) -> Result<Vec<StageDigest>, RunError> {
    let stats = tuneflow_cache::StatCache::new(index);
    let mut manifests = vec![None; plan.stages.len()];
    let mut keys = Vec::new();
    for (i, ps) in plan.stages.iter().enumerate() {
        if ps.upstream.iter().any(|&j| manifests[j].is_none()) {
            continue;
        }
        let Ok(record) = crate::keys::compute(plan, i, &|j| manifests[j].clone(), &stats) else {
            continue;
        };
        keys.push(record.key);
        manifests[i] = index.result(&record.key)?;
    }
    Ok(keys)
}
