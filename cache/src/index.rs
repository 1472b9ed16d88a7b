//! The sled index: stage key -> output manifest, file stat records, per-stage
//! key records (for `status` explanations) and run records (for `gc`).
//!
//! Trees carry a version in their name; a format change bumps the suffix and
//! stale trees are dropped on open, as uv names its cache buckets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::digest::{BlobDigest, StageDigest};
use crate::error::CacheError;

const RESULTS: &str = "stage-results-v1";
const STATS: &str = "file-stats-v1";
const STAGES: &str = "stage-records-v1";
const RUNS: &str = "runs-v1";
const CURRENT: [&str; 4] = [RESULTS, STATS, STAGES, RUNS];

/// Whether an output is one file or a folder (a tree blob).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputKind {
    /// One file; the digest is its content.
    File,
    /// A folder; the digest names a tree blob.
    Tree,
}

/// One named output of a stage.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutputEntry {
    /// The output's name (for command stages, its path).
    pub name: String,
    /// File or folder.
    pub kind: OutputKind,
    /// Content digest, or tree digest.
    pub digest: BlobDigest,
    /// Whether a single file is executable.
    #[serde(default)]
    pub exec: bool,
}

/// What a stage produced, recorded only after every blob is durable.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// The stage that produced it (informational).
    pub stage: String,
    /// The outputs, sorted by name.
    pub outputs: Vec<OutputEntry>,
    /// How long the stage ran.
    pub seconds: f64,
    /// Free-form result data a stage reports (e.g. metrics, skipped files).
    #[serde(default)]
    pub summary: serde_json::Value,
}

impl Manifest {
    /// The output called `name`.
    pub fn output(&self, name: &str) -> Option<&OutputEntry> {
        self.outputs.iter().find(|o| o.name == name)
    }
}

/// What went into a stage's key last time, so `status` can say what changed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StageRecord {
    /// The key.
    pub key: StageDigest,
    /// The stage kind and its implementation version.
    pub kind: String,
    /// Implementation version of the kind.
    pub version: u32,
    /// Each param as canonical text.
    pub params: BTreeMap<String, String>,
    /// Each input's digest (hex).
    pub inputs: BTreeMap<String, String>,
}

/// One `tuneflow run`, for `gc --keep-last`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunRecord {
    /// Start time, nanoseconds since the epoch (also the record's id).
    pub started: u64,
    /// The pipeline file.
    pub pipeline: String,
    /// Stage name -> key of every stage whose key was known.
    pub keys: BTreeMap<String, StageDigest>,
    /// "success", "failed" or "interrupted".
    pub outcome: String,
    /// Per-stage metrics reported by stages (JSON).
    #[serde(default)]
    pub metrics: BTreeMap<String, serde_json::Value>,
}

/// The sled database.
pub struct Index {
    db: sled::Db,
    path: PathBuf,
    results: sled::Tree,
    stats: sled::Tree,
    stages: sled::Tree,
    runs: sled::Tree,
}

impl Index {
    /// Opens the index, dropping trees of older formats.
    pub fn open(path: &Path) -> Result<Self, CacheError> {
        let err = |source| CacheError::Index {
            path: path.to_path_buf(),
            source,
        };
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(64 << 20)
            .open()
            .map_err(err)?;
        for name in db.tree_names() {
            let name_str = String::from_utf8_lossy(&name);
            if name_str != "__sled__default" && !CURRENT.contains(&name_str.as_ref()) {
                db.drop_tree(&name).map_err(err)?;
            }
        }
        let tree = |name: &str| db.open_tree(name).map_err(err);
        Ok(Self {
            results: tree(RESULTS)?,
            stats: tree(STATS)?,
            stages: tree(STAGES)?,
            runs: tree(RUNS)?,
            path: path.to_path_buf(),
            db,
        })
    }

    fn err(&self, source: sled::Error) -> CacheError {
        CacheError::Index {
            path: self.path.clone(),
            source,
        }
    }

    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        tree: &sled::Tree,
        key: &[u8],
        what: impl FnOnce() -> String,
    ) -> Result<Option<T>, CacheError> {
        let Some(bytes) = tree.get(key).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CacheError::CorruptRecord {
                what: what(),
                detail: e.to_string(),
            })
    }

    fn put_json<T: serde::Serialize>(
        &self,
        tree: &sled::Tree,
        key: &[u8],
        value: &T,
    ) -> Result<(), CacheError> {
        let bytes = serde_json::to_vec(value).expect("index records serialize");
        tree.insert(key, bytes).map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The manifest cached under `key`.
    pub fn result(&self, key: &StageDigest) -> Result<Option<Manifest>, CacheError> {
        self.get_json(&self.results, key.as_bytes(), || {
            format!("result {}", key.short())
        })
    }

    /// Records a manifest and makes it durable. Call only after every blob
    /// the manifest names is durable in the store.
    pub fn put_result(&self, key: &StageDigest, manifest: &Manifest) -> Result<(), CacheError> {
        self.put_json(&self.results, key.as_bytes(), manifest)?;
        self.flush()
    }

    /// Forgets a manifest (e.g. one whose blobs are gone).
    pub fn remove_result(&self, key: &StageDigest) -> Result<(), CacheError> {
        self.results
            .remove(key.as_bytes())
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Every (key, manifest).
    pub fn results(&self) -> Result<Vec<(StageDigest, Manifest)>, CacheError> {
        let mut out = Vec::new();
        for item in self.results.iter() {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let Ok(bytes) = <[u8; 32]>::try_from(k.as_ref()) else {
                continue;
            };
            let key = StageDigest::from_bytes(bytes);
            let manifest = serde_json::from_slice(&v).map_err(|e| CacheError::CorruptRecord {
                what: format!("result {}", key.short()),
                detail: e.to_string(),
            })?;
            out.push((key, manifest));
        }
        Ok(out)
    }

    /// The stat record of a hashed root.
    pub(crate) fn stat_record(&self, path: &[u8]) -> Result<Option<sled::IVec>, CacheError> {
        self.stats.get(path).map_err(|e| self.err(e))
    }

    /// Replaces the stat record of a hashed root.
    pub(crate) fn put_stat_record(&self, path: &[u8], record: &[u8]) -> Result<(), CacheError> {
        self.stats.insert(path, record).map_err(|e| self.err(e))?;
        Ok(())
    }

    /// What went into `stage`'s key last time, in pipeline `pipeline`.
    pub fn stage_record(
        &self,
        pipeline: &str,
        stage: &str,
    ) -> Result<Option<StageRecord>, CacheError> {
        let key = format!("{pipeline}\0{stage}");
        self.get_json(&self.stages, key.as_bytes(), || {
            format!("stage record `{stage}`")
        })
    }

    /// Remembers what went into `stage`'s key.
    pub fn put_stage_record(
        &self,
        pipeline: &str,
        stage: &str,
        record: &StageRecord,
    ) -> Result<(), CacheError> {
        let key = format!("{pipeline}\0{stage}");
        self.put_json(&self.stages, key.as_bytes(), record)
    }

    /// Records a run.
    pub fn put_run(&self, run: &RunRecord) -> Result<(), CacheError> {
        self.put_json(&self.runs, &run.started.to_be_bytes(), run)?;
        self.flush()
    }

    /// Every run, oldest first.
    pub fn runs(&self) -> Result<Vec<RunRecord>, CacheError> {
        let mut out = Vec::new();
        for item in self.runs.iter() {
            let (_, v) = item.map_err(|e| self.err(e))?;
            out.push(
                serde_json::from_slice(&v).map_err(|e| CacheError::CorruptRecord {
                    what: "run record".into(),
                    detail: e.to_string(),
                })?,
            );
        }
        Ok(out)
    }

    /// Forgets a run record.
    pub fn remove_run(&self, started: u64) -> Result<(), CacheError> {
        self.runs
            .remove(started.to_be_bytes())
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<(), CacheError> {
        self.db.flush().map_err(|e| self.err(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn miss_then_put_then_hit_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let key = StageDigest::from_bytes([1; 32]);
        let manifest = Manifest {
            stage: "a".into(),
            outputs: vec![OutputEntry {
                name: "out.txt".into(),
                kind: OutputKind::File,
                digest: BlobDigest::of(b"x"),
                exec: false,
            }],
            seconds: 0.5,
            summary: serde_json::Value::Null,
        };
        {
            let index = Index::open(&dir.path().join("index")).unwrap();
            assert!(index.result(&key).unwrap().is_none());
            index.put_result(&key, &manifest).unwrap();
        }
        let index = Index::open(&dir.path().join("index")).unwrap();
        assert_eq!(index.result(&key).unwrap(), Some(manifest));
    }

    #[test]
    fn stale_tree_versions_are_dropped_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path().join("index")).unwrap();
            db.open_tree("stage-results-v0")
                .unwrap()
                .insert(b"k", b"v")
                .unwrap();
            db.flush().unwrap();
        }
        let index = Index::open(&dir.path().join("index")).unwrap();
        let names: Vec<_> = index.db.tree_names();
        assert!(!names.iter().any(|n| n.as_ref() == b"stage-results-v0"));
    }
}
