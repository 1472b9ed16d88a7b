//! The index: stage key -> output manifest, per-stage key records (for
//! `status` explanations), run records, and two pure caches (file stats,
//! verified objects), as plain files beside the object store:
//!
//! ```text
//! results/<key>.json         Manifest, written (fsynced) after its blobs
//! records/<pipeline>.json   what went into each stage's last key
//! runs/<run-id>/run.json     one record per run (logs sit beside it)
//! stats/<pipeline>.bin       stat records of the files a pipeline hashed
//! verified/ab/<digest>       the stat an object had when last verified
//! ```
//!
//! Every file is replaced by an atomic rename, so any number of processes
//! may read while one writes: `status`, `export` and `metrics` never need
//! the run lock. (This replaced sled, which lets one process open the
//! database at a time.) Formats carry a version in their folder or first
//! bytes; a format change bumps it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::digest::{BlobDigest, StageDigest};
use crate::error::{CacheError, IoContext};

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
    /// Peak resident memory of the processes the stage ran (a command,
    /// the torch worker), KiB; none for stages that run inside the runner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_kib: Option<u64>,
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
    /// Each param's typed value, as keyed.
    pub params: BTreeMap<String, serde_json::Value>,
    /// Each input's digest (hex).
    pub inputs: BTreeMap<String, String>,
}

/// What a pipeline's records file keeps of one stage: what went into its
/// last key, and the result it resolved to with the stat of that result's
/// file. While the file keeps that stat, the manifest here is its content,
/// so a no-op rerun does not read every result file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StageState {
    /// What went into the key.
    pub record: StageRecord,
    /// The result under that key, as last read or written.
    #[serde(default)]
    pub result: Option<KnownResult>,
}

/// A manifest and the stat of `results/<key>.json` when it was read.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KnownResult {
    /// The result file's stat.
    pub stat: ObjectStat,
    /// Its content.
    pub manifest: Manifest,
}

/// One `tuneflow run`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RunRecord {
    /// Start time, nanoseconds since the epoch.
    pub started: u64,
    /// The pipeline file.
    pub pipeline: String,
    /// Stage name -> key of every stage whose key was known.
    pub keys: BTreeMap<String, StageDigest>,
    /// "success", "failed" or "interrupted".
    pub outcome: String,
    /// Per report (`evaluate` stage, or `stage.output` for a command's
    /// metrics): metric name -> value, as the run resolved them.
    #[serde(default)]
    pub metrics: BTreeMap<String, serde_json::Value>,
    /// When it ended, nanoseconds since the epoch (0: not recorded).
    #[serde(default)]
    pub ended: u64,
    /// The `--set` overrides, as given.
    #[serde(default)]
    pub overrides: Vec<String>,
    /// BLAKE3 of the pipeline file's bytes.
    #[serde(default)]
    pub pipeline_digest: String,
    /// The git commit of the pipeline's folder, when it is in a repository.
    #[serde(default)]
    pub git: Option<GitState>,
    /// Every stage, by name: what happened to it.
    #[serde(default)]
    pub stages: BTreeMap<String, StageRun>,
    /// The sweep this run is a variant of, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepTag>,
}

/// One variant of a sweep (`--set key=a,b,c`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SweepTag {
    /// The sweep's id (its first variant's run id).
    pub id: String,
    /// This variant's place, from 0.
    pub index: usize,
    /// How many variants.
    pub of: usize,
    /// The swept keys (the `--set`s with a list).
    pub keys: Vec<String>,
}

/// Where the pipeline's folder stood in git when a run started.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GitState {
    /// The commit `HEAD` names (hex).
    pub commit: String,
    /// Whether tracked files differed from it.
    pub dirty: bool,
}

/// What one run did with one stage.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StageRun {
    /// "ran", "cached", "failed", "skipped", "interrupted" or "pending".
    pub outcome: String,
    /// Its key (hex), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Seconds it ran in this run (0 when cached).
    #[serde(default)]
    pub seconds: f64,
    /// Why it ran (`never run`, `params changed: ...`), failed or was
    /// skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// GPUs and the like it held (`resources`), when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<serde_json::Value>,
}

/// The stat an object had when its bytes last hashed to its name (also
/// used for result files: any rewrite changes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectStat {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns.
    pub mtime: i64,
    /// Change time, ns (any write, chmod or new link changes it).
    pub ctime: i64,
    /// Inode.
    pub ino: u64,
}

impl ObjectStat {
    /// The stat of `meta`.
    pub fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            size: meta.size(),
            mtime: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            ino: meta.ino(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = b"TFV1".to_vec();
        for v in [self.size, self.mtime as u64, self.ctime as u64, self.ino] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let rest = b.strip_prefix(b"TFV1")?;
        if rest.len() != 32 {
            return None;
        }
        let at = |i: usize| u64::from_le_bytes(rest[i * 8..i * 8 + 8].try_into().expect("8"));
        Some(Self {
            size: at(0),
            mtime: at(1) as i64,
            ctime: at(2) as i64,
            ino: at(3),
        })
    }
}

/// The index of one cache folder.
#[derive(Debug, Clone)]
pub struct Index {
    root: PathBuf,
}

/// `ab/cdef...` for a hex name.
fn fan_out(dir: &Path, hex: &str, ext: &str) -> PathBuf {
    dir.join(&hex[..2]).join(format!("{}{ext}", &hex[2..]))
}

impl Index {
    /// The index of the cache folder `root`. Nothing is created until the
    /// first write, so reading commands work on a cache they may not write.
    pub fn open(root: &Path) -> Result<Self, CacheError> {
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    fn results_dir(&self) -> PathBuf {
        self.root.join("results")
    }

    /// `results/<key>.json`, in one folder: a first run of many stages
    /// then creates its files in one place (fanned out into 256 folders,
    /// each new folder and each file in another cost ext4 a search for a
    /// free inode in another block group: 0.4 s a 1,000-stage first run).
    fn result_path(&self, key: &StageDigest) -> PathBuf {
        self.results_dir().join(format!("{}.json", key.to_hex()))
    }

    /// The manifest cached under `key`.
    pub fn result(&self, key: &StageDigest) -> Result<Option<Manifest>, CacheError> {
        read_json(&self.result_path(key), || format!("result {}", key.short()))
    }

    /// The stat of the result file of `key`, if there is one.
    pub fn result_stat(&self, key: &StageDigest) -> Option<ObjectStat> {
        std::fs::metadata(self.result_path(key))
            .ok()
            .map(|m| ObjectStat::of(&m))
    }

    /// The manifest cached under `key`, and the stat of its file (taken
    /// before reading it: a rewrite in between changes the stat).
    pub fn known_result(&self, key: &StageDigest) -> Result<Option<KnownResult>, CacheError> {
        let Some(stat) = self.result_stat(key) else {
            return Ok(None);
        };
        Ok(self
            .result(key)?
            .map(|manifest| KnownResult { stat, manifest }))
    }

    /// Records a manifest durably. Call only after every blob the manifest
    /// names is durable in the store.
    pub fn put_result(&self, key: &StageDigest, manifest: &Manifest) -> Result<(), CacheError> {
        let bytes = serde_json::to_vec(manifest).expect("manifests serialize");
        write_atomic(&self.result_path(key), &bytes, true)
    }

    /// Forgets a manifest (e.g. one whose blobs are gone).
    pub fn remove_result(&self, key: &StageDigest) -> Result<(), CacheError> {
        remove_file(&self.result_path(key))
    }

    /// Every (key, manifest) that can be read (an unreadable result is a
    /// miss; [`Index::drop_unreadable`] removes it).
    pub fn results(&self) -> Result<Vec<(StageDigest, Manifest)>, CacheError> {
        let mut out = Vec::new();
        for (hex, path) in flat(&self.results_dir(), ".json")? {
            let Some(key) = StageDigest::from_hex(&hex) else {
                continue;
            };
            match read_json(&path, || format!("result {}", key.short())) {
                Ok(Some(m)) => out.push((key, m)),
                Ok(None) | Err(CacheError::CorruptRecord { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Removes every result and run record that cannot be read (a
    /// half-written file after a power cut, a file garbled by hand);
    /// returns their paths.
    pub fn drop_unreadable(&self) -> Result<Vec<PathBuf>, CacheError> {
        let mut dropped = Vec::new();
        for (_, path) in flat(&self.results_dir(), ".json")? {
            if read_json::<Manifest>(&path, String::new).is_err() {
                remove_file(&path)?;
                dropped.push(path);
            }
        }
        for id in self.run_ids()? {
            let path = self.run_dir(&id).join("run.json");
            if path.exists() && read_json::<RunRecord>(&path, String::new).is_err() {
                remove_file(&path)?;
                dropped.push(path);
            }
        }
        Ok(dropped)
    }

    fn stage_records_path(&self, pipeline: &str) -> PathBuf {
        let id = blake3::hash(pipeline.as_bytes()).to_hex();
        self.root
            .join("records")
            .join(format!("{}.json", &id[..16]))
    }

    /// What went into each stage's key last time, in pipeline `pipeline`,
    /// and the result it resolved to (by stage name).
    pub fn stage_records(
        &self,
        pipeline: &str,
    ) -> Result<BTreeMap<String, StageState>, CacheError> {
        let path = self.stage_records_path(pipeline);
        Ok(read_json(&path, || format!("stage records of `{pipeline}`"))?.unwrap_or_default())
    }

    /// Remembers what went into every stage's key (one file a pipeline).
    pub fn put_stage_records(
        &self,
        pipeline: &str,
        records: &BTreeMap<String, StageState>,
    ) -> Result<(), CacheError> {
        let bytes = serde_json::to_vec(records).expect("records serialize");
        write_atomic(&self.stage_records_path(pipeline), &bytes, false)
    }

    /// The folder of run `id` (its record and its stage logs).
    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.root.join("runs").join(id)
    }

    /// Records a run in its folder.
    pub fn put_run(&self, id: &str, run: &RunRecord) -> Result<(), CacheError> {
        let bytes = serde_json::to_vec(run).expect("run records serialize");
        write_atomic(&self.run_dir(id).join("run.json"), &bytes, false)
    }

    fn run_ids(&self) -> Result<Vec<String>, CacheError> {
        let dir = self.root.join("runs");
        let mut ids: Vec<String> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(CacheError::io("list", &dir, e)),
        };
        ids.sort();
        Ok(ids)
    }

    /// Every recorded run that can be read, oldest first, with its id.
    pub fn runs(&self) -> Result<Vec<(String, RunRecord)>, CacheError> {
        let mut out = Vec::new();
        for id in self.run_ids()? {
            let path = self.run_dir(&id).join("run.json");
            // A record that cannot be read (garbled, or not a file) is
            // left out: one bad run does not hide the others.
            if let Ok(Some(r)) = read_json(&path, || format!("run record `{id}`")) {
                out.push((id, r));
            }
        }
        Ok(out)
    }

    /// Forgets a run and its logs.
    pub fn remove_run(&self, id: &str) -> Result<(), CacheError> {
        let dir = self.run_dir(id);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(CacheError::io("remove", &dir, e))
            }
            _ => Ok(()),
        }
    }

    fn stat_bucket_path(&self, bucket: &str) -> PathBuf {
        let id = blake3::hash(bucket.as_bytes()).to_hex();
        self.root.join("stats").join(format!("{}.bin", &id[..16]))
    }

    /// The stat records of a bucket (a pipeline's), as written.
    pub(crate) fn stat_bucket(&self, bucket: &str) -> Result<Option<Vec<u8>>, CacheError> {
        read_bytes(&self.stat_bucket_path(bucket))
    }

    /// Replaces the stat records of a bucket.
    pub(crate) fn put_stat_bucket(&self, bucket: &str, bytes: &[u8]) -> Result<(), CacheError> {
        write_atomic(&self.stat_bucket_path(bucket), bytes, false)
    }

    fn verified_path(&self, d: &BlobDigest) -> PathBuf {
        fan_out(&self.root.join("verified"), &d.to_hex(), "")
    }

    /// The stat object `d` had when its bytes last matched its name.
    pub fn verified(&self, d: &BlobDigest) -> Option<ObjectStat> {
        read_bytes(&self.verified_path(d))
            .ok()
            .flatten()
            .and_then(|b| ObjectStat::decode(&b))
    }

    /// Remembers that object `d` with stat `stat` hashes to its name. A
    /// cache only: losing it costs a re-hash.
    pub fn put_verified(&self, d: &BlobDigest, stat: &ObjectStat) {
        // Rewriting an identical record would cost a new file and a rename
        // (an object shared by many outputs is committed many times).
        if self.verified(d) == Some(*stat) {
            return;
        }
        let _ = write_atomic(&self.verified_path(d), &stat.encode(), false);
    }

    /// Forgets object `d`'s verification (it was quarantined or removed).
    pub fn forget_verified(&self, d: &BlobDigest) {
        let _ = std::fs::remove_file(self.verified_path(d));
    }
}

/// (name without `ext`, path) of each file `NAME{ext}` in `dir` whose
/// name has no other dot (temp files start with one).
fn flat(dir: &Path, ext: &str) -> Result<Vec<(String, PathBuf)>, CacheError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CacheError::io("list", dir, e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.ctx("list", dir)?;
        let file = entry.file_name().to_string_lossy().into_owned();
        if let Some(rest) = file.strip_suffix(ext) {
            if !rest.contains('.') {
                out.push((rest.to_owned(), entry.path()));
            }
        }
    }
    Ok(out)
}

fn read_bytes(path: &Path) -> Result<Option<Vec<u8>>, CacheError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CacheError::io("read", path, e)),
    }
}

fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: impl FnOnce() -> String,
) -> Result<Option<T>, CacheError> {
    let Some(bytes) = read_bytes(path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| CacheError::CorruptRecord {
            what: format!("{} ({})", what(), path.display()),
            detail: e.to_string(),
        })
}

fn remove_file(path: &Path) -> Result<(), CacheError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(CacheError::io("remove", path, e))
        }
        _ => Ok(()),
    }
}

/// Replaces `path` with `bytes` by a rename from a temp file beside it;
/// `durable` fsyncs the file before the rename, so that after a power
/// loss the name holds these bytes or is absent (or the old bytes). The
/// folder is not fsynced: every durable write of the index is a cache of
/// work (a result), whose loss costs a rerun of the stage, never a wrong
/// answer, and an fsync of the folder per commit doubled the cost of a
/// commit.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> Result<(), CacheError> {
    let dir = path.parent().expect("index paths have a parent");
    std::fs::create_dir_all(dir).ctx("create", dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("x"),
        std::process::id(),
        crate::store::next_temp()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).ctx("create", &tmp)?;
        f.write_all(bytes).ctx("write", &tmp)?;
        if durable {
            f.sync_all().ctx("fsync", &tmp)?;
        }
        std::fs::rename(&tmp, path).ctx("rename into", path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            stage: "a".into(),
            outputs: vec![OutputEntry {
                name: "out.txt".into(),
                kind: OutputKind::File,
                digest: BlobDigest::of(b"x"),
                exec: false,
            }],
            seconds: 0.5,
            summary: serde_json::Value::Null,
            peak_rss_kib: None,
        }
    }

    #[test]
    fn miss_then_put_then_hit_survives_reopen_and_lists() {
        let dir = tempfile::tempdir().unwrap();
        let key = StageDigest::from_bytes([1; 32]);
        {
            let index = Index::open(dir.path()).unwrap();
            assert!(index.result(&key).unwrap().is_none());
            index.put_result(&key, &manifest()).unwrap();
        }
        let index = Index::open(dir.path()).unwrap();
        assert_eq!(index.result(&key).unwrap(), Some(manifest()));
        assert_eq!(index.results().unwrap(), vec![(key, manifest())]);
        index.remove_result(&key).unwrap();
        assert!(index.result(&key).unwrap().is_none());
    }

    #[test]
    fn a_damaged_record_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        let key = StageDigest::from_bytes([2; 32]);
        index.put_result(&key, &manifest()).unwrap();
        std::fs::write(index.result_path(&key), b"{not json").unwrap();
        let err = index.result(&key).unwrap_err().to_string();
        assert!(err.contains(&key.short()), "{err}");
    }

    #[test]
    fn runs_list_in_id_order_and_verified_stats_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        for id in ["2", "1"] {
            let r = RunRecord {
                pipeline: id.into(),
                outcome: "success".into(),
                ..RunRecord::default()
            };
            index.put_run(id, &r).unwrap();
        }
        let ids: Vec<String> = index.runs().unwrap().into_iter().map(|r| r.0).collect();
        assert_eq!(ids, ["1", "2"]);
        let d = BlobDigest::of(b"y");
        let s = ObjectStat {
            size: 1,
            mtime: -2,
            ctime: 3,
            ino: 4,
        };
        assert_eq!(index.verified(&d), None);
        index.put_verified(&d, &s);
        assert_eq!(index.verified(&d), Some(s));
    }
}
