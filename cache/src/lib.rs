//! Content-addressed storage for tuneflow.
//!
//! Blobs live as files named by their BLAKE3 digest under `objects/`; the
//! index (stage key -> output manifest, key records, run records, stat
//! caches) is plain files beside them, replaced by atomic renames (see
//! [`Index`]). Dependencies point one way: this crate knows nothing about
//! pipelines, stages or the graph.
#![warn(missing_docs)]

mod digest;
mod error;
mod index;
mod key;
mod lock;
mod stat_cache;
mod store;
mod tree;

pub use digest::{Blob, BlobDigest, Digest, StageDigest, StageKey};
pub use error::CacheError;
pub use index::{
    GitState, Index, KnownResult, Manifest, ObjectStat, OutputEntry, OutputKind, RunRecord,
    StageRecord, StageRun, StageState, SweepTag,
};
pub use key::{CacheKey, KeyHasher, CACHE_FORMAT_VERSION};
pub use lock::{CacheLock, LockError};
pub use stat_cache::{hash_path, HashedPath, StatCache};
pub use store::{hash_file, GcReport, Incoming, ObjectStore, VerifyReport};
pub use tree::{Tree, TreeEntry};

/// The cache folder layout: objects, the index, the lock and run folders.
#[derive(Debug, Clone)]
pub struct CacheLayout {
    root: std::path::PathBuf,
}

impl CacheLayout {
    /// A layout rooted at `root` (created on first use).
    pub fn new(root: impl Into<std::path::PathBuf>) -> Self {
        Self { root: root.into() }
    }
    /// The cache folder itself.
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }
    /// Where blobs live.
    pub fn objects(&self) -> std::path::PathBuf {
        self.root.join("objects")
    }
    /// The lock file a run holds.
    pub fn lock(&self) -> std::path::PathBuf {
        self.root.join("lock")
    }
    /// The state file a run keeps for `status` while it holds the lock.
    pub fn run_state(&self) -> std::path::PathBuf {
        self.root.join("run-state.json")
    }
    /// Per-run folders: the run's record and its stage logs.
    pub fn runs(&self) -> std::path::PathBuf {
        self.root.join("runs")
    }
    /// Scratch space for stages that write outputs before they are stored.
    pub fn scratch(&self) -> std::path::PathBuf {
        self.root.join("scratch")
    }
    /// Where running stages record their child process groups.
    pub fn running(&self) -> std::path::PathBuf {
        self.root.join("running")
    }
    /// Where corrupt objects are moved.
    pub fn quarantine(&self) -> std::path::PathBuf {
        self.root.join("quarantine")
    }
    /// Checkpoints of training stages, by stage key.
    pub fn checkpoints(&self) -> std::path::PathBuf {
        self.root.join("checkpoints")
    }
}
