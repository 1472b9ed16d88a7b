//! Folder digests: a tree is the sorted list of (relative path, file digest,
//! exec bit) of every file below a folder, and its digest is the BLAKE3 of a
//! canonical encoding of that list (a Merkle digest). The same encoding is
//! stored as a blob for folder outputs, so a tree digest names its listing.

use std::path::Path;

use crate::digest::BlobDigest;
use crate::error::{CacheError, IoContext};
use crate::store::ObjectStore;

/// One file in a tree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TreeEntry {
    /// Path relative to the tree's root, `/`-separated.
    pub path: String,
    /// The file's content digest.
    pub digest: BlobDigest,
    /// Whether the file is executable.
    pub exec: bool,
}

/// A folder's listing, sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tree {
    /// The files, sorted by `path`.
    pub entries: Vec<TreeEntry>,
}

impl Tree {
    /// Builds a tree from entries in any order.
    pub fn new(mut entries: Vec<TreeEntry>) -> Self {
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Self { entries }
    }

    /// The canonical bytes: a versioned header, then one record a file.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.entries.len() * 80);
        out.extend_from_slice(b"tuneflow-tree-v1\n");
        for e in &self.entries {
            out.extend_from_slice(&(e.path.len() as u64).to_le_bytes());
            out.extend_from_slice(e.path.as_bytes());
            out.extend_from_slice(e.digest.as_bytes());
            out.push(u8::from(e.exec));
        }
        out
    }

    /// Decodes [`Tree::encode`]'s bytes.
    pub fn decode(data: &[u8]) -> Option<Self> {
        let mut rest = data.strip_prefix(b"tuneflow-tree-v1\n")?;
        let mut entries = Vec::new();
        while !rest.is_empty() {
            let len = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?) as usize;
            rest = &rest[8..];
            let path = std::str::from_utf8(rest.get(..len)?).ok()?.to_owned();
            if !is_plain_relative(&path) {
                return None;
            }
            rest = &rest[len..];
            let digest = BlobDigest::from_bytes(rest.get(..32)?.try_into().ok()?);
            let exec = *rest.get(32)? != 0;
            rest = &rest[33..];
            entries.push(TreeEntry { path, digest, exec });
        }
        Some(Self { entries })
    }

    /// The tree's digest.
    pub fn digest(&self) -> BlobDigest {
        BlobDigest::of(&self.encode())
    }

    /// Loads a stored tree, verifying it.
    pub fn load(store: &ObjectStore, digest: &BlobDigest) -> Result<Self, CacheError> {
        let data = store.read_verified(digest)?;
        Self::decode(&data).ok_or_else(|| CacheError::CorruptRecord {
            what: format!("tree {}", digest.short()),
            detail: "not a tree listing".into(),
        })
    }

    /// Restores the folder at `dest` so it holds exactly this tree's files.
    pub fn restore_to(&self, store: &ObjectStore, dest: &Path) -> Result<(), CacheError> {
        if dest.exists() || dest.is_symlink() {
            remove_path(dest)?;
        }
        fs_err::create_dir_all(dest).ctx("create", dest)?;
        for e in &self.entries {
            store.restore_file(&e.digest, &dest.join(&e.path), e.exec)?;
        }
        Ok(())
    }
}

/// Whether `path` names a file strictly inside a folder: relative, `/`
/// separated, no empty, `.` or `..` part. A tree read from elsewhere (a
/// shared remote) with any other path is refused: restoring it would
/// write outside its folder.
fn is_plain_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\0')
        && path
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..")
}

/// Removes a file, symlink or folder (never following a symlink).
pub(crate) fn remove_path(path: &Path) -> Result<(), CacheError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(CacheError::io("stat", path, e)),
    };
    if meta.is_dir() {
        std::fs::remove_dir_all(path).ctx("remove", path)
    } else {
        std::fs::remove_file(path).ctx("remove", path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_with_a_path_leaving_its_folder_is_refused() {
        for bad in ["../x", "a/../../x", "/etc/passwd", "", "a//b", "./a", "a/"] {
            let t = Tree {
                entries: vec![TreeEntry {
                    path: bad.into(),
                    digest: BlobDigest::of(b"x"),
                    exec: false,
                }],
            };
            assert!(Tree::decode(&t.encode()).is_none(), "{bad:?}");
        }
        let ok = Tree {
            entries: vec![TreeEntry {
                path: "a/b.c/..d".into(),
                digest: BlobDigest::of(b"x"),
                exec: false,
            }],
        };
        assert!(Tree::decode(&ok.encode()).is_some());
    }

    #[test]
    fn encoding_round_trips_and_is_order_independent() {
        let a = TreeEntry {
            path: "a.txt".into(),
            digest: BlobDigest::of(b"a"),
            exec: false,
        };
        let b = TreeEntry {
            path: "sub/b".into(),
            digest: BlobDigest::of(b"b"),
            exec: true,
        };
        let t1 = Tree::new(vec![a.clone(), b.clone()]);
        let t2 = Tree::new(vec![b, a]);
        assert_eq!(t1.digest(), t2.digest());
        assert_eq!(Tree::decode(&t1.encode()).unwrap(), t1);
        assert!(Tree::decode(b"garbage").is_none());
    }
}
