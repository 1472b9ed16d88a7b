//! Moving one stage result between the local cache and the remote: its
//! objects first (several at once), its manifest last.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path as StorePath;
use object_store::{ObjectStoreExt, PutPayload};
use tuneflow_cache::{
    BlobDigest, CacheError, Index, Manifest, ObjectStat, ObjectStore, OutputKind, StageDigest, Tree,
};

use super::{Remote, RemoteError};
use crate::run::lookup::{object_state, ObjectState};

/// What one transfer moved.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Moved {
    /// Objects copied.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Objects the other side already had.
    pub present: u64,
}

impl std::ops::AddAssign for Moved {
    fn add_assign(&mut self, o: Self) {
        self.objects += o.objects;
        self.bytes += o.bytes;
        self.present += o.present;
    }
}

/// What a path on the remote holds, by its name: `objects/<hex>` or
/// `results/<hex>.json` and nothing else (anything else there, such as
/// another tool's files, is neither counted nor ever deleted).
pub(crate) enum Entry {
    /// An object.
    Object(BlobDigest),
    /// A result.
    Result(StageDigest),
}

/// See [`Entry`].
pub(crate) fn classify(path: &StorePath) -> Option<Entry> {
    let parts: Vec<_> = path.parts().collect();
    match parts.as_slice() {
        [dir, name] if dir.as_ref() == "objects" => {
            BlobDigest::from_hex(name.as_ref()).map(Entry::Object)
        }
        [dir, name] if dir.as_ref() == "results" => name
            .as_ref()
            .strip_suffix(".json")
            .and_then(StageDigest::from_hex)
            .map(Entry::Result),
        _ => None,
    }
}

fn object_path(d: &BlobDigest) -> StorePath {
    StorePath::from(format!("objects/{}", d.to_hex()))
}

fn result_path(key: &StageDigest) -> StorePath {
    StorePath::from(format!("results/{}.json", key.to_hex()))
}

/// Every object a manifest names, in the local store: each file's, each
/// folder's tree and the files in it (a tree must be local to be read).
fn local_objects(store: &ObjectStore, m: &Manifest) -> Result<Vec<BlobDigest>, CacheError> {
    let mut out = Vec::new();
    for e in &m.outputs {
        out.push(e.digest);
        if e.kind == OutputKind::Tree {
            out.extend(
                Tree::load(store, &e.digest)?
                    .entries
                    .iter()
                    .map(|t| t.digest),
            );
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

impl Remote {
    /// The manifest the remote holds under `key`, if any.
    pub fn result(&self, key: &StageDigest) -> Result<Option<Manifest>, RemoteError> {
        let path = result_path(key);
        let (store, p) = (self.store(), path.clone());
        let got = self.block(async move {
            match store.get(&p).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        let Some(bytes) = got.map_err(self.err("read", &path))? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RemoteError::BadManifest {
                remote: self.shown.clone(),
                path: path.to_string(),
                detail: e.to_string(),
            })
    }

    /// Fetches the result under `key` into the local cache: every object
    /// it names that is not already intact here, each checked against
    /// its digest as it arrives, then the manifest. `None`: the remote has
    /// no result under `key`.
    pub fn fetch(
        &self,
        key: &StageDigest,
        index: &Index,
        store: &ObjectStore,
    ) -> Result<Option<(Manifest, Moved)>, RemoteError> {
        let Some(manifest) = self.result(key)? else {
            return Ok(None);
        };
        let mut moved = Moved::default();
        // Trees first: what is in a folder is known once its tree is here.
        let trees: Vec<BlobDigest> = manifest
            .outputs
            .iter()
            .filter(|e| e.kind == OutputKind::Tree)
            .map(|e| e.digest)
            .collect();
        moved += self.download(&trees, index, store)?;
        let rest: Vec<BlobDigest> = local_objects(store, &manifest)?
            .into_iter()
            .filter(|d| !trees.contains(d))
            .collect();
        moved += self.download(&rest, index, store)?;
        index.put_result(key, &manifest)?;
        Ok(Some((manifest, moved)))
    }

    /// Downloads the objects of `wanted` the local store lacks (or has
    /// damaged), several at once.
    fn download(
        &self,
        wanted: &[BlobDigest],
        index: &Index,
        store: &ObjectStore,
    ) -> Result<Moved, RemoteError> {
        let mut missing = Vec::new();
        let mut moved = Moved::default();
        for d in wanted {
            match object_state(store, index, d)? {
                ObjectState::Intact => moved.present += 1,
                _ => missing.push(*d),
            }
        }
        let results = self.each_object(missing, store, download_one);
        for r in results {
            match r {
                Ok((d, bytes)) => {
                    moved.objects += 1;
                    moved.bytes += bytes;
                    // Hashed as it arrived: later lookups need not hash it.
                    if let Ok(meta) = std::fs::metadata(store.path_of(&d)) {
                        index.put_verified(&d, &ObjectStat::of(&meta));
                    }
                }
                Err((d, DownloadError::Store(e))) => {
                    return Err(self.err("read", &object_path(&d))(e));
                }
                Err((_, DownloadError::Local(CacheError::CorruptObject { digest, actual }))) => {
                    self.delete_damaged(&digest);
                    return Err(RemoteError::Damaged {
                        remote: self.shown.clone(),
                        digest,
                        actual,
                    });
                }
                Err((_, DownloadError::Local(e))) => return Err(e.into()),
            }
        }
        Ok(moved)
    }

    fn delete_damaged(&self, hex: &str) {
        let path = StorePath::from(format!("objects/{hex}"));
        let (store, p) = (self.store(), path.clone());
        if let Err(e) = self.block(async move { store.delete(&p).await }) {
            tracing::warn!(
                "remote `{}`: cannot delete damaged `{path}`: {e}",
                self.shown
            );
        }
    }

    /// Pushes the local result `manifest` under `key`: the objects the
    /// remote lacks, then the manifest (unless the remote has a readable
    /// one already). Every object is checked locally before it goes.
    pub fn push(
        &self,
        key: &StageDigest,
        manifest: &Manifest,
        index: &Index,
        store: &ObjectStore,
    ) -> Result<Moved, RemoteError> {
        let all = local_objects(store, manifest)?;
        for d in &all {
            if object_state(store, index, d)? != ObjectState::Intact {
                return Err(RemoteError::LocalDamaged { digest: d.to_hex() });
            }
        }
        let (mut moved, skipped) = self.upload_many(all, store)?;
        if self.keeps_remote_manifest(key, manifest)? {
            return Ok(moved);
        }
        let path = result_path(key);
        let bytes = Bytes::from(serde_json::to_vec(manifest).expect("manifests serialize"));
        let (remote, p) = (self.store(), path.clone());
        self.block(async move { remote.put(&p, PutPayload::from(bytes)).await })
            .map_err(self.err("write", &path))?;
        // An object found on the remote (so not written now) may have been
        // judged an orphan by a `cache gc --remote` running meanwhile:
        // what is gone now is sent again.
        let gone: Vec<BlobDigest> = skipped
            .into_iter()
            .filter(|d| !self.exists(&object_path(d)))
            .collect();
        if !gone.is_empty() {
            let (again, _) = self.upload_many(gone, store)?;
            moved.objects += again.objects;
            moved.bytes += again.bytes;
        }
        Ok(moved)
    }

    /// Runs `f` on every object of `digests`, `self.jobs` at once, on the
    /// remote's runtime; each answer comes with its object.
    fn each_object<T, E, Fut>(
        &self,
        digests: Vec<BlobDigest>,
        store: &ObjectStore,
        f: fn(Arc<dyn object_store::ObjectStore>, ObjectStore, BlobDigest) -> Fut,
    ) -> Vec<Result<(BlobDigest, T), (BlobDigest, E)>>
    where
        T: Send + 'static,
        E: Send + 'static,
        Fut: std::future::Future<Output = Result<T, E>> + Send + 'static,
    {
        let (remote, local, jobs) = (self.store(), store.clone(), self.jobs);
        self.block(async move {
            futures_util::stream::iter(digests)
                .map(|d| {
                    let done = f(Arc::clone(&remote), local.clone(), d);
                    async move { done.await.map(|n| (d, n)).map_err(|e| (d, e)) }
                })
                .buffer_unordered(jobs)
                .collect()
                .await
        })
    }

    /// Uploads the objects of `all` the remote lacks, several at once;
    /// returns what moved and the objects the remote already had.
    fn upload_many(
        &self,
        all: Vec<BlobDigest>,
        store: &ObjectStore,
    ) -> Result<(Moved, Vec<BlobDigest>), RemoteError> {
        let results = self.each_object(all, store, upload_one);
        let (mut moved, mut skipped) = (Moved::default(), Vec::new());
        for r in results {
            match r {
                Ok((_, Some(bytes))) => {
                    moved.objects += 1;
                    moved.bytes += bytes;
                }
                Ok((d, None)) => {
                    moved.present += 1;
                    skipped.push(d);
                }
                Err((d, UploadError::Store(e))) => {
                    return Err(self.err("write", &object_path(&d))(e))
                }
                Err((_, UploadError::Local(e))) => return Err(e.into()),
            }
        }
        Ok((moved, skipped))
    }

    /// Whether the remote already has a manifest under `key` to keep: the
    /// same one, or another (a stage that is not deterministic, pushed
    /// from elsewhere first) whose outputs are the same names and kinds
    /// and whose objects are all there. One that is unreadable, names
    /// other outputs or lacks an object is replaced.
    fn keeps_remote_manifest(
        &self,
        key: &StageDigest,
        ours: &Manifest,
    ) -> Result<bool, RemoteError> {
        let theirs = match self.result(key) {
            Ok(Some(m)) => m,
            Ok(None) | Err(RemoteError::BadManifest { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let shape = |m: &Manifest| -> Vec<(String, OutputKind)> {
            m.outputs.iter().map(|o| (o.name.clone(), o.kind)).collect()
        };
        if theirs.outputs == ours.outputs {
            return Ok(true);
        }
        Ok(shape(&theirs) == shape(ours)
            && theirs
                .outputs
                .iter()
                .all(|o| self.exists(&object_path(&o.digest))))
    }

    fn exists(&self, path: &StorePath) -> bool {
        let (store, p) = (self.store(), path.clone());
        self.block(async move { store.head(&p).await }).is_ok()
    }
}

enum DownloadError {
    Store(object_store::Error),
    Local(CacheError),
}

/// Streams one object into the local store, checked as it arrives.
async fn download_one(
    remote: Arc<dyn object_store::ObjectStore>,
    local: ObjectStore,
    d: BlobDigest,
) -> Result<u64, DownloadError> {
    let got = remote
        .get(&object_path(&d))
        .await
        .map_err(DownloadError::Store)?;
    let mut incoming = local.incoming(d).map_err(DownloadError::Local)?;
    let mut stream = got.into_stream();
    let mut n = 0u64;
    while let Some(chunk) = stream.try_next().await.map_err(DownloadError::Store)? {
        n += chunk.len() as u64;
        incoming.write(&chunk).map_err(DownloadError::Local)?;
    }
    incoming.finish().map_err(DownloadError::Local)?;
    Ok(n)
}

enum UploadError {
    Store(object_store::Error),
    Local(CacheError),
}

/// Objects up to this size go in one request; larger ones in parts.
const PART: usize = 16 << 20;

/// Uploads one object unless the remote has one of its size (`None`).
async fn upload_one(
    remote: Arc<dyn object_store::ObjectStore>,
    local: ObjectStore,
    d: BlobDigest,
) -> Result<Option<u64>, UploadError> {
    let path = object_path(&d);
    let file = local.path_of(&d);
    let size = std::fs::metadata(&file)
        .map_err(|e| UploadError::Local(CacheError::io("stat", &file, e)))?
        .len();
    match remote.head(&path).await {
        Ok(meta) if meta.size == size => return Ok(None),
        Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(UploadError::Store(e)),
    }
    let read = |e| UploadError::Local(CacheError::io("read", &file, e));
    if size as usize <= PART {
        let data = tokio::fs::read(&file).await.map_err(read)?;
        remote
            .put(&path, PutPayload::from(data))
            .await
            .map_err(UploadError::Store)?;
        return Ok(Some(size));
    }
    let upload = remote
        .put_multipart(&path)
        .await
        .map_err(UploadError::Store)?;
    let mut w = object_store::WriteMultipart::new_with_chunk_size(upload, PART);
    let mut f = tokio::fs::File::open(&file).await.map_err(read)?;
    let mut buf = vec![0u8; PART];
    loop {
        use tokio::io::AsyncReadExt;
        let n = f.read(&mut buf).await.map_err(read)?;
        if n == 0 {
            break;
        }
        w.wait_for_capacity(4).await.map_err(UploadError::Store)?;
        w.write(&buf[..n]);
    }
    w.finish().await.map_err(UploadError::Store)?;
    Ok(Some(size))
}

/// What `cache gc --remote` removed.
#[derive(Debug, Default, serde::Serialize)]
pub struct RemoteGc {
    /// Objects deleted.
    pub removed: u64,
    /// Their bytes.
    pub freed_bytes: u64,
    /// Objects kept (named by a result, or too young to judge).
    pub kept: u64,
}

impl Remote {
    /// Deletes the objects no result on the remote names that are older
    /// than `grace` (a push in flight writes its objects before its
    /// manifest). Results are never deleted: the remote is shared.
    pub fn collect_orphans(&self, grace: std::time::Duration) -> Result<RemoteGc, RemoteError> {
        let store = self.store();
        let listed = self.block(async move { store.list(None).try_collect::<Vec<_>>().await });
        let all = listed.map_err(self.err("list", &StorePath::from("")))?;
        let live = self.referenced(&all)?;
        let cutoff = chrono::Utc::now() - grace;
        let mut gc = RemoteGc::default();
        for meta in &all {
            // Only `objects/<hex>`: anything else there is not ours to judge.
            let Some(Entry::Object(d)) = classify(&meta.location) else {
                continue;
            };
            if live.contains(&d) || meta.last_modified > cutoff {
                gc.kept += 1;
                continue;
            }
            let (store, p) = (self.store(), meta.location.clone());
            self.block(async move { store.delete(&p).await })
                .map_err(self.err("delete", &meta.location))?;
            gc.removed += 1;
            gc.freed_bytes += meta.size;
        }
        Ok(gc)
    }

    /// Every object the remote's results name (a folder's files too). A
    /// result that cannot be read, or whose tree is missing or damaged,
    /// names nothing (it is of no use as it is) and is reported.
    fn referenced(
        &self,
        all: &[object_store::ObjectMeta],
    ) -> Result<std::collections::HashSet<BlobDigest>, RemoteError> {
        let mut live = std::collections::HashSet::new();
        for meta in all {
            let Some(Entry::Result(key)) = classify(&meta.location) else {
                continue;
            };
            let m = match self.result(&key) {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e) if !e.is_unreachable() => {
                    tracing::warn!(target: "tuneflow::remote", "{e}; its objects are not kept for it");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut named = vec![];
            for e in &m.outputs {
                named.push(e.digest);
                if e.kind != OutputKind::Tree {
                    continue;
                }
                match self.read_object(&e.digest).map(|b| Tree::decode(&b)) {
                    Ok(Some(tree)) => named.extend(tree.entries.iter().map(|t| t.digest)),
                    Ok(None) => tracing::warn!(target: "tuneflow::remote",
                        "result {}: `{}` is not a folder tree", key.short(), e.name),
                    Err(err) if !err.is_unreachable() => tracing::warn!(
                        target: "tuneflow::remote", "result {}: {err}", key.short()),
                    Err(err) => return Err(err),
                }
            }
            live.extend(named);
        }
        Ok(live)
    }

    /// One object's bytes, verified.
    fn read_object(&self, d: &BlobDigest) -> Result<Bytes, RemoteError> {
        let path = object_path(d);
        let (store, p) = (self.store(), path.clone());
        let bytes = self
            .block(async move { store.get(&p).await?.bytes().await })
            .map_err(self.err("read", &path))?;
        let actual = BlobDigest::of(&bytes);
        if actual != *d {
            self.delete_damaged(&d.to_hex());
            return Err(RemoteError::Damaged {
                remote: self.shown.clone(),
                digest: d.to_hex(),
                actual: actual.to_hex(),
            });
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_objects_and_results_named_by_digest_are_the_remotes() {
        let hex = "ab".repeat(32);
        assert!(matches!(
            classify(&StorePath::from(format!("objects/{hex}"))),
            Some(Entry::Object(_))
        ));
        assert!(matches!(
            classify(&StorePath::from(format!("results/{hex}.json"))),
            Some(Entry::Result(_))
        ));
        for other in [
            format!("objects/ab/{}", &hex[2..]),
            format!("objects/{hex}/x"),
            "objects/tmp".to_owned(),
            format!("results/{hex}"),
            format!("stats/{hex}"),
            hex.clone(),
        ] {
            assert!(
                classify(&StorePath::from(other.as_str())).is_none(),
                "{other}"
            );
        }
    }
}
