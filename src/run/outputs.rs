//! Moving stage outputs between the workspace and the object store.

use std::path::{Component, Path};

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;

use tuneflow_cache::{
    BlobDigest, CacheError, ObjectStore, OutputEntry, OutputKind, Tree, TreeEntry,
};

/// Digests of files already stored in this call, by (device, inode): split
/// outputs hard-link the same shards, which must be read only once.
type Stored = HashMap<(u64, u64), BlobDigest>;

fn store_file(
    store: &ObjectStore,
    path: &Path,
    meta: &std::fs::Metadata,
    seen: &mut Stored,
) -> Result<BlobDigest, CacheError> {
    if let Some(d) = seen.get(&(meta.dev(), meta.ino())) {
        return Ok(*d);
    }
    let d = store.put_file(path)?;
    seen.insert((meta.dev(), meta.ino()), d);
    Ok(d)
}

/// Stores every file below `root` and the tree listing them.
fn store_tree(
    store: &ObjectStore,
    root: &Path,
    seen: &mut Stored,
) -> Result<BlobDigest, CacheError> {
    let mut entries = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for item in std::fs::read_dir(&dir).map_err(|e| CacheError::io("list", &dir, e))? {
            let path = item.map_err(|e| CacheError::io("list", &dir, e))?.path();
            let meta =
                std::fs::symlink_metadata(&path).map_err(|e| CacheError::io("stat", &path, e))?;
            if meta.is_symlink() {
                return Err(CacheError::io(
                    "store",
                    &path,
                    std::io::Error::other("outputs must not contain symlinks"),
                ));
            }
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(root)
                .expect("below root")
                .to_str()
                .ok_or_else(|| {
                    CacheError::io(
                        "store",
                        &path,
                        std::io::Error::other("file name is not valid UTF-8"),
                    )
                })?;
            entries.push(TreeEntry {
                path: rel.to_owned(),
                digest: store_file(store, &path, &meta, seen)?,
                exec: meta.mode() & 0o111 != 0,
            });
        }
    }
    store.put_bytes(&Tree::new(entries).encode())
}

/// Stores each (name, path) a stage returned; blobs are durable on return.
pub fn store_outputs(
    store: &ObjectStore,
    outputs: &[(String, std::path::PathBuf)],
) -> Result<Vec<OutputEntry>, CacheError> {
    let mut entries = Vec::with_capacity(outputs.len());
    let mut seen = Stored::new();
    for (name, path) in outputs {
        let meta = std::fs::symlink_metadata(path).map_err(|e| CacheError::io("read", path, e))?;
        if meta.is_symlink() {
            return Err(CacheError::io(
                "store",
                path,
                std::io::Error::other("outputs must be files or folders, not symlinks"),
            ));
        }
        let entry = if meta.is_dir() {
            OutputEntry {
                name: name.clone(),
                kind: OutputKind::Tree,
                digest: store_tree(store, path, &mut seen)?,
                exec: false,
            }
        } else {
            OutputEntry {
                name: name.clone(),
                kind: OutputKind::File,
                digest: store_file(store, path, &meta, &mut seen)?,
                exec: meta.mode() & 0o111 != 0,
            }
        };
        entries.push(entry);
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// Restores the workspace copy of a cached output from the store (bytes
/// verified on the way). Never writes through a symlink in the path.
pub fn restore(store: &ObjectStore, dir: &Path, entry: &OutputEntry) -> Result<(), CacheError> {
    let dest = dir.join(&entry.name);
    refuse_symlinked_parents(dir, &entry.name)?;
    match entry.kind {
        OutputKind::File => {
            if std::fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir()) {
                std::fs::remove_dir_all(&dest).map_err(|e| CacheError::io("remove", &dest, e))?;
            }
            store.restore_file(&entry.digest, &dest, entry.exec)?;
        }
        OutputKind::Tree => Tree::load(store, &entry.digest)?.restore_to(store, &dest)?,
    }
    Ok(())
}

fn refuse_symlinked_parents(dir: &Path, rel: &str) -> Result<(), CacheError> {
    let mut cur = dir.to_path_buf();
    let parts: Vec<_> = Path::new(rel).components().collect();
    for c in &parts[..parts.len().saturating_sub(1)] {
        if let Component::Normal(s) = c {
            cur.push(s);
            if std::fs::symlink_metadata(&cur).is_ok_and(|m| m.is_symlink()) {
                return Err(CacheError::Escape {
                    path: cur,
                    root: dir.to_path_buf(),
                });
            }
        }
    }
    Ok(())
}
