//! Hashing files and folders on disk through a stat cache.
//!
//! For every hashed root the index keeps (size, mtime, ctime, inode, digest)
//! of each file. A re-check stats every file and re-reads only those whose
//! record differs, so an unchanged 100k-file tree is re-checked without
//! reading it. ctime is compared as well as mtime because mtime can be set
//! back by hand (`touch -d`), while ctime cannot. A file whose timestamps are
//! too close to when it was recorded ("racy", as git calls it) is re-read.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::digest::BlobDigest;
use crate::error::{CacheError, IoContext};
use crate::index::Index;
use crate::store::hash_file;
use crate::tree::{Tree, TreeEntry};

/// A racy window: files changed this close to the recording are re-read.
const RACY_NANOS: i64 = 100_000_000;

/// The digest of a file or folder on disk.
#[derive(Debug, Clone)]
pub struct HashedPath {
    /// File content digest, or tree digest for a folder.
    pub digest: BlobDigest,
    /// The listing, for a folder.
    pub tree: Option<Tree>,
    /// Whether a single file is executable.
    pub exec: bool,
    /// How many files had to be read (0 on a fully cached re-check).
    pub files_read: u64,
}

#[derive(Debug, Clone, PartialEq)]
struct StatEntry {
    path: String,
    size: u64,
    mtime: i64,
    ctime: i64,
    ino: u64,
    exec: bool,
    digest: BlobDigest,
}

impl StatEntry {
    fn same_stat(&self, other: &StatEntry, recorded_at: i64) -> bool {
        self.size == other.size
            && self.mtime == other.mtime
            && self.ctime == other.ctime
            && self.ino == other.ino
            && self.mtime.max(self.ctime) < recorded_at - RACY_NANOS
    }
}

/// Hashes paths, remembering stats in the index. The records of one
/// bucket (a pipeline's) live in one file, read once and written back by
/// [`StatCache::save`] when something changed; every use compares a record
/// with a fresh stat.
pub struct StatCache {
    index: Index,
    bucket: String,
    records: Mutex<Option<HashMap<Vec<u8>, Arc<Record>>>>,
    dirty: AtomicBool,
    /// Each dependency's digest as first seen, for a command that looks
    /// at the workspace once ([`StatCache::snapshot`]).
    seen: Option<Mutex<HashMap<std::path::PathBuf, BlobDigest>>>,
}

impl StatCache {
    /// A stat cache over `index`'s records of `bucket`.
    pub fn new(index: &Index, bucket: &str) -> Self {
        Self {
            index: index.clone(),
            bucket: bucket.to_owned(),
            records: Mutex::new(None),
            dirty: AtomicBool::new(false),
            seen: None,
        }
    }

    /// A stat cache that hashes each path once for its whole life and
    /// answers later asks from memory: for `status`, `export` and
    /// `metrics`, which show the workspace as one snapshot (10,000 stages
    /// reading one file stat it once, not 10,000 times). Never for a run,
    /// whose stages change files.
    pub fn snapshot(mut self) -> Self {
        self.seen = Some(Mutex::default());
        self
    }

    /// A digest remembered by a snapshot.
    pub fn seen(&self, path: &Path) -> Option<BlobDigest> {
        let seen = self.seen.as_ref()?.lock().expect("seen lock");
        seen.get(path).copied()
    }

    /// Remembers `path`'s digest, in a snapshot.
    pub fn remember(&self, path: &Path, digest: BlobDigest) {
        if let Some(seen) = &self.seen {
            seen.lock()
                .expect("seen lock")
                .insert(path.to_path_buf(), digest);
        }
    }

    fn with_records<T>(
        &self,
        f: impl FnOnce(&mut HashMap<Vec<u8>, Arc<Record>>) -> T,
    ) -> Result<T, CacheError> {
        let mut guard = self.records.lock().expect("stat records lock");
        if guard.is_none() {
            let bytes = self.index.stat_bucket(&self.bucket)?;
            *guard = Some(bytes.as_deref().map(decode_bucket).unwrap_or_default());
        }
        Ok(f(guard.as_mut().expect("just loaded")))
    }

    /// Reads the bucket now rather than at the first hash (a caller
    /// reading it on another thread).
    pub fn preload(&self) -> Result<(), CacheError> {
        self.with_records(|_| ())
    }

    /// Hashes `path` (a file or a folder), reusing unchanged records.
    pub fn hash(&self, path: &Path) -> Result<HashedPath, CacheError> {
        let meta = std::fs::metadata(path).ctx("read", path)?;
        self.hash_with_meta(path, &meta)
    }

    /// [`StatCache::hash`] with `path`'s metadata already taken (by a
    /// caller that had to stat it anyway: one system call less per path).
    pub fn hash_with_meta(
        &self,
        path: &Path,
        meta: &std::fs::Metadata,
    ) -> Result<HashedPath, CacheError> {
        let key = path.as_os_str().as_encoded_bytes();
        let old = self
            .with_records(|r| r.get(key).cloned())?
            .unwrap_or_default();
        let now = now_nanos();
        let (hashed, entries) = if meta.is_dir() {
            hash_dir(path, &old)?
        } else {
            hash_single(path, meta, &old)?
        };
        if hashed.files_read > 0 || old.1.len() != entries.len() {
            self.with_records(|r| r.insert(key.to_vec(), Arc::new((now, entries))))?;
            self.dirty.store(true, Ordering::SeqCst);
        }
        Ok(hashed)
    }

    /// Writes the bucket back if a record changed since it was read.
    pub fn save(&self) -> Result<(), CacheError> {
        if !self.dirty.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        let bytes = self.with_records(|r| encode_bucket(r))?;
        self.index.put_stat_bucket(&self.bucket, &bytes)
    }
}

/// A bucket: `TFB1`, then (key length u32, key, record length u32,
/// record) for every hashed root.
fn encode_bucket(records: &HashMap<Vec<u8>, Arc<Record>>) -> Vec<u8> {
    let mut out = b"TFB1".to_vec();
    let mut keys: Vec<&Vec<u8>> = records.keys().collect();
    keys.sort();
    for k in keys {
        let (at, entries) = &*records[k];
        let rec = encode(*at, entries);
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(rec.len() as u32).to_le_bytes());
        out.extend_from_slice(&rec);
    }
    out
}

/// Reads a bucket; a damaged one is an empty cache (files are hashed again).
fn decode_bucket(data: &[u8]) -> HashMap<Vec<u8>, Arc<Record>> {
    let mut out = HashMap::new();
    let Some(mut rest) = data.strip_prefix(b"TFB1") else {
        return out;
    };
    let next = |rest: &mut &[u8]| -> Option<Vec<u8>> {
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let item = rest.get(4..4 + len)?.to_vec();
        *rest = &rest[4 + len..];
        Some(item)
    };
    while !rest.is_empty() {
        let (Some(k), Some(rec)) = (next(&mut rest), next(&mut rest)) else {
            return HashMap::new();
        };
        match decode(&rec) {
            Some(r) => out.insert(k, Arc::new(r)),
            None => return HashMap::new(),
        };
    }
    out
}

/// Hashes a path without a stat cache (reads every file).
pub fn hash_path(path: &Path) -> Result<HashedPath, CacheError> {
    let meta = std::fs::metadata(path).ctx("read", path)?;
    let none = (0, Vec::new());
    if meta.is_dir() {
        Ok(hash_dir(path, &none)?.0)
    } else {
        Ok(hash_single(path, &meta, &none)?.0)
    }
}

type Record = (i64, Vec<StatEntry>);

fn entry_for(rel: String, meta: &std::fs::Metadata) -> StatEntry {
    StatEntry {
        path: rel,
        size: meta.size(),
        mtime: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        ctime: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        ino: meta.ino(),
        exec: meta.mode() & 0o111 != 0,
        digest: BlobDigest::from_bytes([0; 32]),
    }
}

fn hash_single(
    path: &Path,
    meta: &std::fs::Metadata,
    old: &Record,
) -> Result<(HashedPath, Vec<StatEntry>), CacheError> {
    let mut e = entry_for(String::new(), meta);
    let mut files_read = 0;
    match old.1.first() {
        Some(prev) if old.1.len() == 1 && prev.same_stat(&e, old.0) => e.digest = prev.digest,
        _ => {
            e.digest = hash_file(path)?;
            files_read = 1;
        }
    }
    let hashed = HashedPath {
        digest: e.digest,
        tree: None,
        exec: e.exec,
        files_read,
    };
    Ok((hashed, vec![e]))
}

fn hash_dir(root: &Path, old: &Record) -> Result<(HashedPath, Vec<StatEntry>), CacheError> {
    let mut entries = Vec::new();
    for item in walkdir::WalkDir::new(root).follow_links(false).min_depth(1) {
        let item = item.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            CacheError::io("list", path, e.into())
        })?;
        let ft = item.file_type();
        if ft.is_dir() {
            continue;
        }
        let rel = item
            .path()
            .strip_prefix(root)
            .expect("walkdir yields paths below its root");
        let rel = rel.to_str().ok_or_else(|| {
            CacheError::io(
                "hash",
                item.path(),
                std::io::Error::other("file name is not valid UTF-8"),
            )
        })?;
        let meta = item
            .metadata()
            .map_err(|e| CacheError::io("stat", item.path(), e.into()))?;
        entries.push(entry_for(rel.to_owned(), &meta));
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let mut files_read = 0;
    let mut prev = old.1.iter().peekable();
    for e in &mut entries {
        while prev.next_if(|p| p.path < e.path).is_some() {}
        match prev.peek() {
            Some(p) if p.path == e.path && p.same_stat(e, old.0) => e.digest = p.digest,
            _ => {
                let full = root.join(&e.path);
                e.digest = if std::fs::symlink_metadata(&full)
                    .ctx("stat", &full)?
                    .is_symlink()
                {
                    // A link is recorded by its target text, as git does.
                    let target = std::fs::read_link(&full).ctx("read link", &full)?;
                    BlobDigest::of(target.as_os_str().as_encoded_bytes())
                } else {
                    hash_file(&full)?
                };
                files_read += 1;
            }
        }
    }
    let tree = Tree {
        entries: entries
            .iter()
            .map(|e| TreeEntry {
                path: e.path.clone(),
                digest: e.digest,
                exec: e.exec,
            })
            .collect(),
    };
    let hashed = HashedPath {
        digest: tree.digest(),
        tree: Some(tree),
        exec: false,
        files_read,
    };
    Ok((hashed, entries))
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn encode(recorded_at: i64, entries: &[StatEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + entries.len() * 96);
    out.extend_from_slice(b"TFS1");
    out.extend_from_slice(&recorded_at.to_le_bytes());
    for e in entries {
        out.extend_from_slice(&(e.path.len() as u32).to_le_bytes());
        out.extend_from_slice(e.path.as_bytes());
        out.extend_from_slice(&e.size.to_le_bytes());
        out.extend_from_slice(&e.mtime.to_le_bytes());
        out.extend_from_slice(&e.ctime.to_le_bytes());
        out.extend_from_slice(&e.ino.to_le_bytes());
        out.push(u8::from(e.exec));
        out.extend_from_slice(e.digest.as_bytes());
    }
    out
}

fn decode(data: &[u8]) -> Option<Record> {
    fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (rest.get(..n)?, rest.get(n..)?);
        *rest = tail;
        Some(head)
    }
    fn u64_of(b: &[u8]) -> u64 {
        u64::from_le_bytes(b.try_into().expect("8 bytes"))
    }
    let mut rest = data.strip_prefix(b"TFS1")?;
    let recorded_at = u64_of(take(&mut rest, 8)?) as i64;
    let mut entries = Vec::new();
    while !rest.is_empty() {
        let len = u32::from_le_bytes(take(&mut rest, 4)?.try_into().ok()?) as usize;
        let path = std::str::from_utf8(take(&mut rest, len)?).ok()?.to_owned();
        let size = u64_of(take(&mut rest, 8)?);
        let mtime = u64_of(take(&mut rest, 8)?) as i64;
        let ctime = u64_of(take(&mut rest, 8)?) as i64;
        let ino = u64_of(take(&mut rest, 8)?);
        let exec = take(&mut rest, 1)?[0] != 0;
        let digest = BlobDigest::from_bytes(take(&mut rest, 32)?.try_into().ok()?);
        entries.push(StatEntry {
            path,
            size,
            mtime,
            ctime,
            ino,
            exec,
            digest,
        });
    }
    Some((recorded_at, entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leave_racy_window() {
        // Files just written are "racy" (re-read every time); wait it out.
        std::thread::sleep(std::time::Duration::from_nanos(
            RACY_NANOS as u64 + 20_000_000,
        ));
    }

    #[test]
    fn unchanged_folder_is_not_reread_and_changes_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index")).unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("sub")).unwrap();
        std::fs::write(data.join("a"), b"one").unwrap();
        std::fs::write(data.join("sub/b"), b"two").unwrap();
        leave_racy_window();
        let cache = StatCache::new(&index, "t");
        let first = cache.hash(&data).unwrap();
        assert_eq!(first.files_read, 2);
        assert_eq!(first.digest, hash_path(&data).unwrap().digest);
        let second = cache.hash(&data).unwrap();
        assert_eq!(second.files_read, 0);
        assert_eq!(second.digest, first.digest);
        // Saved and read back by another process: still nothing to read.
        cache.save().unwrap();
        let reread = StatCache::new(&index, "t").hash(&data).unwrap();
        assert_eq!((reread.files_read, reread.digest), (0, first.digest));
        assert_eq!(
            StatCache::new(&index, "other")
                .hash(&data)
                .unwrap()
                .files_read,
            2
        );

        // Same size, mtime restored by hand: ctime still changes.
        let meta = std::fs::metadata(data.join("a")).unwrap();
        std::fs::write(data.join("a"), b"ONE").unwrap();
        let mtime = std::time::SystemTime::UNIX_EPOCH
            + std::time::Duration::new(meta.mtime() as u64, meta.mtime_nsec() as u32);
        std::fs::File::options()
            .write(true)
            .open(data.join("a"))
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let third = cache.hash(&data).unwrap();
        assert_ne!(third.digest, first.digest);
        assert_eq!(third.files_read, 1);
    }

    #[test]
    fn record_encoding_round_trips() {
        let e = StatEntry {
            path: "x/y".into(),
            size: 3,
            mtime: 5,
            ctime: 6,
            ino: 7,
            exec: true,
            digest: BlobDigest::of(b"x"),
        };
        let (at, entries) = decode(&encode(9, std::slice::from_ref(&e))).unwrap();
        assert_eq!((at, entries), (9, vec![e]));
        assert!(decode(b"TFS1\x01").is_none());
    }
}
