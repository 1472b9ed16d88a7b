//! Which cache folder a pipeline uses, and opening it: for a run or a
//! maintenance command (exclusive: one writer at a time), or for reading
//! (no lock: the index is files replaced by renames, so `status`,
//! `export` and `metrics` work while a run holds the cache).

use std::path::{Path, PathBuf};

use tuneflow_cache::{CacheError, CacheLayout, CacheLock, Index, ObjectStore};

use crate::pipeline::Plan;

/// The cache folder: `--cache-dir`/`TUNEFLOW_CACHE_DIR`, else the
/// pipeline's `[pipeline] cache`, else `.tuneflow/` beside the pipeline.
pub fn layout_for(
    flag: Option<&Path>,
    plan: Option<&Plan>,
    pipeline: Option<&Path>,
) -> CacheLayout {
    if let Some(dir) = flag {
        return CacheLayout::new(absolute(dir));
    }
    if let Some(dir) = plan.and_then(|p| p.cache_dir.clone()) {
        return CacheLayout::new(dir);
    }
    let beside = pipeline
        .and_then(|p| std::path::absolute(p).ok())
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    CacheLayout::new(beside.join(".tuneflow"))
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// An open cache: its folders, index and object store.
pub struct Cache {
    /// The folders.
    pub layout: CacheLayout,
    /// Results, records, runs and stat caches.
    pub index: Index,
    /// The blobs.
    pub store: ObjectStore,
    _lock: Option<CacheLock>,
}

/// Why a cache could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another run or maintenance command holds it.
    #[error(transparent)]
    Locked(#[from] tuneflow_cache::LockError),
    /// It is unusable.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

impl Cache {
    /// Opens the cache for writing: one run or maintenance command at a
    /// time holds its lock.
    pub fn open_exclusive(layout: CacheLayout) -> Result<Self, OpenError> {
        let lock = CacheLock::acquire(&layout.lock())?;
        Self::open(layout, Some(lock))
    }

    /// Opens the cache for reading, without the lock.
    pub fn open_shared(layout: CacheLayout) -> Result<Self, OpenError> {
        Self::open(layout, None)
    }

    fn open(layout: CacheLayout, lock: Option<CacheLock>) -> Result<Self, OpenError> {
        let index = Index::open(layout.root())?;
        let store = ObjectStore::open(layout.objects())?;
        Ok(Self {
            layout,
            index,
            store,
            _lock: lock,
        })
    }
}
