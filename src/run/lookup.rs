//! The one decision of what is cached, shared by `run`, `status`, `export`
//! and `cache gc`: a stage is a hit when its key has a manifest and every
//! output it names is intact, in the workspace (for declared `outs`) or in
//! the object store. Intact means the bytes hash to the digest: an object
//! is re-hashed unless its stat still matches the one it had when it last
//! verified (any write to a file changes its ctime), so a no-op run stays
//! cheap while a missing, truncated or rewritten object is always a miss.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use tuneflow_cache::{
    BlobDigest, CacheError, Index, KnownResult, Manifest, ObjectStat, ObjectStore, OutputEntry,
    OutputKind, StageDigest, StageRecord, StageState, StatCache, Tree,
};

use super::keys::{self, KeyError};
use super::prefetch::Prefetched;
use crate::pipeline::Plan;

/// What the cache holds for a stage.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Cached: `manifest` is the result; the workspace outs in `restore`
    /// must be restored from the store (the rest are current).
    Hit {
        /// The key and what went into it.
        record: StageRecord,
        /// The result.
        manifest: Manifest,
        /// Workspace outputs to restore.
        restore: Vec<String>,
        /// The stat of the result's file when it was read.
        result_stat: ObjectStat,
    },
    /// The stage must run, and why.
    Miss {
        /// The key and what went into it.
        record: StageRecord,
        /// Why it runs, for people.
        reason: String,
    },
}

impl Decision {
    /// The key record.
    pub fn record(&self) -> &StageRecord {
        match self {
            Self::Hit { record, .. } | Self::Miss { record, .. } => record,
        }
    }
}

/// Somewhere else a stage's result may be: asked on a miss before the
/// stage runs, and offered each result a run computes (the remote cache,
/// implemented outside the run path in `crate::remote`).
pub trait ResultSource: Send + Sync + std::fmt::Debug {
    /// Brings the result under `key` into the local cache, every object
    /// verified; `true` when it did. A failure is a warning, and the
    /// stage runs.
    fn fetch(&self, stage: &str, key: &StageDigest, index: &Index, store: &ObjectStore) -> bool;

    /// Offers a result just committed (write-through, when asked for);
    /// a failure is a warning.
    fn offer(
        &self,
        stage: &str,
        key: &StageDigest,
        manifest: &Manifest,
        index: &Index,
        store: &ObjectStore,
    );
}

/// The stat cache a lookup hashes through: its own, or a run's.
pub enum Stats<'a> {
    /// A stat cache of the lookup's own.
    Own(StatCache),
    /// A run's, shared by every lookup of the run.
    Shared(&'a StatCache),
}

impl std::ops::Deref for Stats<'_> {
    type Target = StatCache;
    fn deref(&self) -> &StatCache {
        match self {
            Self::Own(s) => s,
            Self::Shared(s) => s,
        }
    }
}

/// The state of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectState {
    /// Its bytes hash to its name.
    Intact,
    /// Not in the store.
    Missing,
    /// Present, with other bytes.
    Damaged,
}

/// Looks stages up in a cache.
pub struct Lookup<'a> {
    plan: &'a Plan,
    index: &'a Index,
    store: &'a ObjectStore,
    stats: Stats<'a>,
    /// What went into each stage's key last time and the result it
    /// resolved to, read once.
    records: std::sync::OnceLock<Arc<Records>>,
    /// The stat of remembered results' files, taken on the prefetch
    /// thread (read-only lookups only; else each is taken when needed).
    result_stats: Option<HashMap<StageDigest, Option<ObjectStat>>>,
    /// Asked on a miss.
    source: Option<&'a dyn ResultSource>,
    /// The workspace outputs' `lstat`, taken on the prefetch thread
    /// (read-only lookups only).
    workspace: Option<HashMap<std::path::PathBuf, Option<std::fs::Metadata>>>,
}

/// Each stage's last key record and result, by stage name.
pub type Records = std::collections::BTreeMap<String, StageState>;

impl<'a> Lookup<'a> {
    /// A lookup of `plan`'s stages in a cache, with a stat cache of its
    /// own that sees the workspace as one snapshot (the commands that run
    /// no stage: `status`, `export`, `metrics`, `cache gc|push|pull`).
    pub fn new(plan: &'a Plan, index: &'a Index, store: &'a ObjectStore) -> Self {
        let stats = StatCache::new(index, &plan.file.to_string_lossy()).snapshot();
        Self::with_stats(plan, index, store, Stats::Own(stats))
    }

    /// A lookup hashing through `stats` (a run keeps one for all its
    /// lookups, and saves it).
    pub fn with_stats(
        plan: &'a Plan,
        index: &'a Index,
        store: &'a ObjectStore,
        stats: Stats<'a>,
    ) -> Self {
        Self {
            plan,
            index,
            store,
            stats,
            records: std::sync::OnceLock::new(),
            result_stats: None,
            source: None,
            workspace: None,
        }
    }

    /// Asks `source` for a result the local cache misses, before a stage
    /// runs.
    pub fn with_source(mut self, source: Option<&'a dyn ResultSource>) -> Self {
        self.source = source;
        self
    }

    /// A read-only lookup from what [`super::prefetch`] read, else as
    /// [`Lookup::new`].
    pub fn prefetched(
        plan: &'a Plan,
        index: &'a Index,
        store: &'a ObjectStore,
        prefetched: Option<Prefetched>,
    ) -> Self {
        let Some(p) = prefetched else {
            return Self::new(plan, index, store);
        };
        let mut lookup = Self::with_stats(plan, index, store, Stats::Own(p.stats))
            .with_records(Arc::new(p.records));
        lookup.result_stats = p.result_stats;
        lookup.workspace = p.workspace;
        lookup
    }

    /// Decides stage `i`. `manifest_of(j)` gives the result of each
    /// upstream stage (all of which must be decided and cached or run).
    pub fn decide(
        &self,
        i: usize,
        manifest_of: &dyn Fn(usize) -> Option<Manifest>,
        forced: bool,
    ) -> Result<Decision, KeyError> {
        let record = keys::compute(self.plan, i, manifest_of, &self.stats)?;
        if forced {
            return Ok(Decision::Miss {
                record,
                reason: "forced".into(),
            });
        }
        let decision = self.decide_record(i, record)?;
        let Some(source) = self.source else {
            return Ok(decision);
        };
        match decision {
            Decision::Miss { record, reason } => {
                let name = &self.plan.stages[i].name;
                if source.fetch(name, &record.key, self.index, self.store) {
                    Ok(self.decide_record(i, record)?)
                } else {
                    Ok(Decision::Miss { record, reason })
                }
            }
            hit => Ok(hit),
        }
    }

    /// Decides stage `i` with key record `record`, from the local cache.
    fn decide_record(&self, i: usize, record: StageRecord) -> Result<Decision, CacheError> {
        let known = self.known(i, &record.key)?;
        let Some(KnownResult {
            stat: result_stat,
            manifest,
        }) = known
        else {
            let previous = self.records().get(&self.plan.stages[i].name);
            let reason = keys::explain(previous.map(|s| &s.record), &record);
            return Ok(Decision::Miss { record, reason });
        };
        let ps = &self.plan.stages[i];
        // A result must hold every output the stage declares (one from a
        // remote, or hand-edited, might not): else the stage runs.
        if let Some(absent) = ps
            .outs
            .iter()
            .chain(&ps.outputs)
            .find(|n| manifest.output(n).is_none())
        {
            return Ok(Decision::Miss {
                record,
                reason: format!("the cached result has no output `{absent}`"),
            });
        }
        let mut restore = Vec::new();
        for entry in &manifest.outputs {
            let in_workspace = ps.outs.contains(&entry.name);
            if in_workspace && self.workspace_matches(entry)? {
                continue;
            }
            let state = self.entry_state(entry)?;
            if state != ObjectState::Intact {
                let what = if state == ObjectState::Missing {
                    "missing from"
                } else {
                    "damaged in"
                };
                return Ok(Decision::Miss {
                    record,
                    reason: format!("output `{}` is {what} the cache", entry.name),
                });
            }
            if in_workspace {
                restore.push(entry.name.clone());
            }
        }
        Ok(Decision::Hit {
            record,
            manifest,
            restore,
            result_stat,
        })
    }

    /// Uses `records` (read once by a run for all its lookups) instead of
    /// reading the pipeline's records file again.
    pub fn with_records(self, records: Arc<Records>) -> Self {
        let _ = self.records.set(records);
        self
    }

    fn records(&self) -> &Records {
        self.records.get_or_init(|| {
            let pipeline = self.plan.file.to_string_lossy();
            Arc::new(self.index.stage_records(&pipeline).unwrap_or_default())
        })
    }

    /// The result under `key`: as the pipeline's records file remembers it
    /// while the result's file keeps the stat it had then, else read.
    fn known(&self, i: usize, key: &StageDigest) -> Result<Option<KnownResult>, CacheError> {
        let remembered = self
            .records()
            .get(&self.plan.stages[i].name)
            .filter(|s| s.record.key == *key)
            .and_then(|s| s.result.as_ref());
        if let Some(r) = remembered {
            let stat = match self.result_stats.as_ref().and_then(|m| m.get(key)) {
                Some(s) => *s,
                None => self.index.result_stat(key),
            };
            if stat == Some(r.stat) {
                return Ok(Some(r.clone()));
            }
        }
        match self.index.known_result(key) {
            // An unreadable result (garbled, half-written) is a miss: the
            // stage reruns and writes it again.
            Err(CacheError::CorruptRecord { .. }) => Ok(None),
            other => other,
        }
    }

    /// Whether the workspace copy of a declared output has the cached
    /// bytes (through the stat cache). A symlink never matches.
    pub fn workspace_matches(&self, entry: &OutputEntry) -> Result<bool, CacheError> {
        let dest = self.plan.dir.join(&entry.name);
        let meta = match self.workspace.as_ref().and_then(|w| w.get(&dest)) {
            Some(taken) => taken.clone(),
            None => std::fs::symlink_metadata(&dest).ok(),
        };
        let Some(meta) = meta else {
            return Ok(false);
        };
        // Not a symlink, so `meta` is also what `metadata` would return.
        let present = !meta.is_symlink() && (meta.is_dir() == (entry.kind == OutputKind::Tree));
        Ok(present && self.stats.hash_with_meta(&dest, &meta)?.digest == entry.digest)
    }

    /// The state of an output's objects in the store (a folder: its tree
    /// and every file in it).
    pub fn entry_state(&self, entry: &OutputEntry) -> Result<ObjectState, CacheError> {
        entry_state(self.store, self.index, entry)
    }
}

/// The state of an output's objects in the store.
pub fn entry_state(
    store: &ObjectStore,
    index: &Index,
    entry: &OutputEntry,
) -> Result<ObjectState, CacheError> {
    if entry.kind == OutputKind::File {
        return object_state(store, index, &entry.digest);
    }
    let tree = match Tree::load(store, &entry.digest) {
        Ok(t) => t,
        Err(CacheError::MissingObject { .. }) => return Ok(ObjectState::Missing),
        Err(CacheError::CorruptObject { .. }) => return Ok(ObjectState::Damaged),
        Err(e) => return Err(e),
    };
    for e in &tree.entries {
        let s = object_state(store, index, &e.digest)?;
        if s != ObjectState::Intact {
            return Ok(s);
        }
    }
    Ok(ObjectState::Intact)
}

/// Whether object `d` is present with the right bytes: its stat matches
/// the one recorded when it last verified, or it is hashed again now.
pub fn object_state(
    store: &ObjectStore,
    index: &Index,
    d: &BlobDigest,
) -> Result<ObjectState, CacheError> {
    let path = store.path_of(d);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ObjectState::Missing),
        Err(e) => return Err(CacheError::io("stat", path, e)),
    };
    if !meta.is_file() {
        return Ok(ObjectState::Damaged);
    }
    let stat = ObjectStat::of(&meta);
    if index.verified(d) == Some(stat) {
        return Ok(ObjectState::Intact);
    }
    full_check(store, index, d, &path)
}

/// Hashes object `d` whatever its stat, and remembers a match.
pub fn verify_object(
    store: &ObjectStore,
    index: &Index,
    d: &BlobDigest,
) -> Result<ObjectState, CacheError> {
    let path = store.path_of(d);
    if !path.is_file() {
        return Ok(ObjectState::Missing);
    }
    full_check(store, index, d, &path)
}

fn full_check(
    _store: &ObjectStore,
    index: &Index,
    d: &BlobDigest,
    path: &Path,
) -> Result<ObjectState, CacheError> {
    let before = std::fs::metadata(path).map_err(|e| CacheError::io("stat", path, e))?;
    let actual = match tuneflow_cache::hash_file(path) {
        Ok(a) => a,
        Err(CacheError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(ObjectState::Missing)
        }
        Err(e) => return Err(e),
    };
    if actual != *d {
        index.forget_verified(d);
        return Ok(ObjectState::Damaged);
    }
    let after = std::fs::metadata(path).map_err(|e| CacheError::io("stat", path, e))?;
    let stat = ObjectStat::of(&after);
    // A file changed while it was read is not recorded as verified.
    if ObjectStat::of(&before) == stat {
        index.put_verified(d, &stat);
    }
    Ok(ObjectState::Intact)
}

/// A stage as the cache sees it now, without running anything.
#[derive(Debug)]
pub enum Resolved {
    /// Decided (a hit or a miss).
    Decided(Decision),
    /// An upstream stage will run, so this stage's key is not known yet.
    Blocked {
        /// The first upstream stage that will run.
        upstream: usize,
    },
    /// The key cannot be computed (a dependency is missing).
    Unkeyable(KeyError),
}

impl Resolved {
    /// The result, when the stage is cached.
    pub fn manifest(&self) -> Option<&Manifest> {
        match self {
            Self::Decided(Decision::Hit { manifest, .. }) => Some(manifest),
            _ => None,
        }
    }
}

/// Decides every stage in order, as a run's first pass would, without
/// running or restoring anything: what `status`, `export` and `gc` see.
pub fn resolve(lookup: &Lookup<'_>) -> Result<Vec<Resolved>, CacheError> {
    let plan = lookup.plan;
    let mut out: Vec<Resolved> = Vec::with_capacity(plan.stages.len());
    for (i, ps) in plan.stages.iter().enumerate() {
        if let Some(&upstream) = ps.upstream.iter().find(|&&j| out[j].manifest().is_none()) {
            out.push(Resolved::Blocked { upstream });
            continue;
        }
        let manifest_of = |j: usize| out[j].manifest().cloned();
        out.push(match lookup.decide(i, &manifest_of, false) {
            Ok(d) => Resolved::Decided(d),
            Err(KeyError::Cache(e)) => return Err(e),
            Err(e) => Resolved::Unkeyable(e),
        });
    }
    Ok(out)
}
