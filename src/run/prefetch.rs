//! What deciding a pipeline's stages reads from its cache before the
//! first decision, read on a second thread while the pipeline file is
//! parsed and planned (on a 10,000-stage pipeline the two take about as
//! long): the pipeline's stage records, its stat cache and, for the
//! read-only commands, the stat of every remembered result's file and of
//! its outputs in the workspace.
//!
//! The thread guesses the cache folder before the plan says where it is
//! (`--cache-dir`, else beside the pipeline file); when the plan names
//! another (`[pipeline] cache`), what it read is dropped and the lookup
//! reads for itself. Everything read here is only ever trusted after a
//! check, as when it is read later: a stage record's result is used only
//! while its file keeps the stat it had, a stat-cache record only while
//! the file keeps its stat. A run reads before it takes the cache's lock,
//! so a run that held the lock meanwhile may have rewritten the records:
//! those checks turn anything stale into a re-read, never a wrong hit.
//! The result stats themselves are not prefetched for a run, only for
//! the commands that take no lock and show a snapshot anyway.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use tuneflow_cache::{Index, ObjectStat, StageDigest, StageState, StatCache};

use super::cache::layout_for;
use crate::pipeline::Plan;

/// Reading in progress.
pub struct Prefetch {
    root: PathBuf,
    bucket: String,
    handle: Option<JoinHandle<Prefetched>>,
}

/// What was read.
pub struct Prefetched {
    /// The pipeline's stage records, by stage name.
    pub records: BTreeMap<String, StageState>,
    /// Its stat cache, loaded.
    pub stats: StatCache,
    /// The stat of each remembered result's file (`None`: gone), when
    /// asked for.
    pub result_stats: Option<HashMap<StageDigest, Option<ObjectStat>>>,
    /// With those: the `lstat` of each remembered result's outputs in the
    /// pipeline's folder (`None`: not there).
    pub workspace: Option<HashMap<PathBuf, Option<std::fs::Metadata>>>,
}

/// Whether to stat the remembered results too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultStats {
    /// Yes (a command that takes no lock).
    Read,
    /// No (a run: it stats them under the lock).
    Skip,
}

impl Prefetch {
    /// Starts reading for pipeline file `pipeline` (as given on the
    /// command line) in the cache `--cache-dir` names, else beside it.
    pub fn start(cache_flag: Option<&Path>, pipeline: &Path, results: ResultStats) -> Self {
        let root = layout_for(cache_flag, None, Some(pipeline))
            .root()
            .to_path_buf();
        let bucket = std::path::absolute(pipeline)
            .unwrap_or_else(|_| pipeline.to_path_buf())
            .to_string_lossy()
            .into_owned();
        let (r, b) = (root.clone(), bucket.clone());
        let handle = std::thread::Builder::new()
            .name("prefetch".into())
            .spawn(move || read(&r, &b, results))
            .map_err(|e| tracing::debug!("no prefetch thread: {e}"))
            .ok();
        Self {
            root,
            bucket,
            handle,
        }
    }

    /// What was read, if it was read for `plan` in cache folder `root`
    /// (waits for the thread to finish).
    pub fn take(self, root: &Path, plan: &Plan) -> Option<Prefetched> {
        if self.root != root || self.bucket != plan.file.to_string_lossy() {
            return None;
        }
        self.handle?.join().ok()
    }
}

fn read(root: &Path, bucket: &str, results: ResultStats) -> Prefetched {
    let index = Index::open(root).expect("opening an index touches nothing");
    let records = index.stage_records(bucket).unwrap_or_default();
    // A read-only command sees the workspace as one snapshot.
    let stats = match results {
        ResultStats::Read => StatCache::new(&index, bucket).snapshot(),
        ResultStats::Skip => StatCache::new(&index, bucket),
    };
    // An unreadable bucket is read (and its error reported) again by
    // the first lookup that needs it.
    let _ = stats.preload();
    let result_stats = (results == ResultStats::Read).then(|| {
        records
            .values()
            .filter(|s| s.result.is_some())
            .map(|s| (s.record.key, index.result_stat(&s.record.key)))
            .collect()
    });
    let dir = Path::new(bucket).parent().unwrap_or(Path::new("/"));
    let workspace = (results == ResultStats::Read).then(|| {
        records
            .values()
            .filter_map(|s| s.result.as_ref())
            .flat_map(|r| &r.manifest.outputs)
            .map(|o| {
                let path = dir.join(&o.name);
                let meta = std::fs::symlink_metadata(&path).ok();
                (path, meta)
            })
            .collect()
    });
    Prefetched {
        records,
        stats,
        result_stats,
        workspace,
    }
}
