//! The object store: blobs as files named by digest, written atomically.
//!
//! A blob is written to a unique temp file inside the store's own `tmp/`
//! folder (same filesystem), fsynced, renamed into `objects/ab/cdef...` and
//! the folder fsynced. Several processes (or Slurm nodes) writing the same
//! object at once is safe: each writes its own temp file and the rename is
//! atomic; whoever renames last replaces identical bytes.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::digest::BlobDigest;
use crate::error::{CacheError, IoContext};

/// Files up to this size are read whole when stored (see
/// [`ObjectStore::put_file`]).
const SMALL_FILE: u64 = 64 * 1024;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A number no other temp file of this process uses.
pub(crate) fn next_temp() -> u64 {
    TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// The blob store under a cache folder.
#[derive(Debug, Clone)]
pub struct ObjectStore {
    root: PathBuf,
}

/// What `verify` found.
#[derive(Debug, Default, serde::Serialize)]
pub struct VerifyReport {
    /// Objects whose bytes matched their name.
    pub ok: u64,
    /// Objects that did not, moved to `quarantine/`.
    pub corrupt: Vec<String>,
}

/// What `gc` removed.
#[derive(Debug, Default, serde::Serialize)]
pub struct GcReport {
    /// Objects kept.
    pub kept: u64,
    /// Objects removed.
    pub removed: u64,
    /// Bytes freed.
    pub freed_bytes: u64,
}

impl ObjectStore {
    /// Opens (and creates) the store at `root` (the `objects/` folder).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, CacheError> {
        let root = root.into();
        fs_err::create_dir_all(root.join("tmp")).ctx("create", &root)?;
        Ok(Self { root })
    }

    /// The path where a blob lives.
    pub fn path_of(&self, d: &BlobDigest) -> PathBuf {
        let hex = d.to_hex();
        self.root.join(&hex[..2]).join(&hex[2..])
    }

    /// Whether the blob is present.
    pub fn contains(&self, d: &BlobDigest) -> bool {
        self.path_of(d).is_file()
    }

    /// A temp name no other writer uses: several nodes of a cluster may
    /// store the same object at once into a shared store, so the name holds
    /// the host as well as the process. Each writer renames its own file
    /// into place; the last rename wins with identical bytes.
    fn temp_path(&self) -> PathBuf {
        static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let host = HOST.get_or_init(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().replace(['/', ' '], "_"))
                .unwrap_or_else(|_| "host".into())
        });
        let n = next_temp();
        self.root
            .join("tmp")
            .join(format!("{host}-{}-{}-{n}", std::process::id(), nanos()))
    }

    /// Stores `data`, returning its digest. An object already present is
    /// kept only if its bytes are right; a damaged one is replaced.
    pub fn put_bytes(&self, data: &[u8]) -> Result<BlobDigest, CacheError> {
        let digest = BlobDigest::of(data);
        if std::fs::read(self.path_of(&digest)).is_ok_and(|old| old == data) {
            return Ok(digest);
        }
        let tmp = self.temp_path();
        let result = (|| {
            let mut f = std::fs::File::create(&tmp).ctx("create", &tmp)?;
            f.write_all(data).ctx("write", &tmp)?;
            f.sync_all().ctx("fsync", &tmp)?;
            self.publish(&tmp, &digest)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map(|()| digest)
    }

    /// Streams the file at `src` into the store, hashing as it copies. The
    /// copy always replaces an object of the same name, so a damaged object
    /// is repaired by the stage that produces its bytes again (a small file
    /// goes through [`ObjectStore::put_bytes`], which compares the bytes).
    pub fn put_file(&self, src: &Path) -> Result<BlobDigest, CacheError> {
        // A small file is read whole: when its object is already present
        // with the right bytes, nothing is written at all.
        let small = std::fs::metadata(src).is_ok_and(|m| m.len() <= SMALL_FILE);
        if small {
            let data = std::fs::read(src).ctx("read", src)?;
            if data.len() as u64 <= SMALL_FILE {
                return self.put_bytes(&data);
            }
        }
        let tmp = self.temp_path();
        let result = (|| {
            let mut input = std::fs::File::open(src).ctx("read", src)?;
            let mut out = std::fs::File::create(&tmp).ctx("create", &tmp)?;
            let mut hasher = blake3::Hasher::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = input.read(&mut buf).ctx("read", src)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n]).ctx("write", &tmp)?;
            }
            let digest = BlobDigest::from_bytes(*hasher.finalize().as_bytes());
            out.sync_all().ctx("fsync", &tmp)?;
            self.publish(&tmp, &digest)?;
            Ok(digest)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// A writer for an object whose name is known before its bytes (one
    /// downloaded from a remote): the bytes are hashed as they are written
    /// and published only if they hash to the name.
    pub fn incoming(&self, expected: BlobDigest) -> Result<Incoming, CacheError> {
        let tmp = self.temp_path();
        let file = std::fs::File::create(&tmp).ctx("create", &tmp)?;
        Ok(Incoming {
            store: self.clone(),
            expected,
            tmp,
            file: Some(file),
            hasher: blake3::Hasher::new(),
        })
    }

    fn publish(&self, tmp: &Path, digest: &BlobDigest) -> Result<(), CacheError> {
        let dest = self.path_of(digest);
        let dir = dest.parent().expect("object paths have a parent");
        std::fs::create_dir_all(dir).ctx("create", dir)?;
        // Objects are never written in place: read-only makes an accidental
        // write through a restored hard link or by hand fail loudly.
        let mut perms = std::fs::metadata(tmp).ctx("stat", tmp)?.permissions();
        perms.set_readonly(true);
        std::fs::set_permissions(tmp, perms).ctx("chmod", tmp)?;
        std::fs::rename(tmp, &dest).ctx("rename into", &dest)?;
        fsync_dir(dir)
    }

    /// Reads a whole blob, verifying its digest.
    pub fn read_verified(&self, d: &BlobDigest) -> Result<Vec<u8>, CacheError> {
        let path = self.path_of(d);
        let data = match std::fs::read(&path) {
            Ok(data) => data,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CacheError::MissingObject { digest: d.to_hex() })
            }
            Err(e) => return Err(CacheError::io("read", path, e)),
        };
        let actual = BlobDigest::of(&data);
        if actual != *d {
            return Err(CacheError::CorruptObject {
                digest: d.to_hex(),
                actual: actual.to_hex(),
            });
        }
        Ok(data)
    }

    /// Copies a blob to `dest` (atomically, via a temp file beside it),
    /// verifying the digest on the way: a corrupt object is never restored.
    pub fn restore_file(&self, d: &BlobDigest, dest: &Path, exec: bool) -> Result<(), CacheError> {
        let src = self.path_of(d);
        let mut input = match std::fs::File::open(&src) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CacheError::MissingObject { digest: d.to_hex() })
            }
            Err(e) => return Err(CacheError::io("read", src, e)),
        };
        let dir = dest.parent().expect("restore targets have a parent");
        std::fs::create_dir_all(dir).ctx("create", dir)?;
        // The copy is made in the store's own temp folder when it is on the
        // same filesystem (a killed restore then leaves nothing in the
        // user's folder, and the next run clears it), else beside `dest`.
        let tmp = if same_filesystem(&self.root.join("tmp"), dir) {
            self.temp_path()
        } else {
            dir.join(format!(
                ".{}.tuneflow-tmp-{}",
                dest.file_name().and_then(|n| n.to_str()).unwrap_or("out"),
                std::process::id()
            ))
        };
        let result = (|| {
            let mut out = std::fs::File::create(&tmp).ctx("create", &tmp)?;
            let mut hasher = blake3::Hasher::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = input.read(&mut buf).ctx("read", &src)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n]).ctx("write", &tmp)?;
            }
            let actual = BlobDigest::from_bytes(*hasher.finalize().as_bytes());
            if actual != *d {
                return Err(CacheError::CorruptObject {
                    digest: d.to_hex(),
                    actual: actual.to_hex(),
                });
            }
            set_exec(&tmp, exec)?;
            // A symlink at the destination is replaced, never followed.
            std::fs::rename(&tmp, dest).ctx("rename into", dest)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Every blob digest in the store.
    pub fn list(&self) -> Result<Vec<BlobDigest>, CacheError> {
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(CacheError::io("list", &self.root, e)),
        };
        for prefix in rd {
            let prefix = prefix.ctx("list", &self.root)?;
            let name = prefix.file_name().to_string_lossy().into_owned();
            if name.len() != 2 {
                continue;
            }
            let dir = prefix.path();
            for entry in std::fs::read_dir(&dir).ctx("list", &dir)? {
                let entry = entry.ctx("list", &dir)?;
                let rest = entry.file_name().to_string_lossy().into_owned();
                if let Some(d) = BlobDigest::from_hex(&format!("{name}{rest}")) {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    /// Re-hashes every object; corrupt ones move to `quarantine` (beside
    /// `objects/`) so no later run can use them.
    pub fn verify(&self, quarantine: &Path) -> Result<VerifyReport, CacheError> {
        let mut report = VerifyReport::default();
        for d in self.list()? {
            let path = self.path_of(&d);
            let actual = hash_file(&path)?;
            if actual == d {
                report.ok += 1;
                continue;
            }
            fs_err::create_dir_all(quarantine).ctx("create", quarantine)?;
            let dest = quarantine.join(d.to_hex());
            std::fs::rename(&path, &dest).ctx("quarantine", &path)?;
            report.corrupt.push(d.to_hex());
        }
        Ok(report)
    }

    /// Removes every object not in `live`.
    pub fn retain(
        &self,
        live: &std::collections::HashSet<BlobDigest>,
    ) -> Result<GcReport, CacheError> {
        let mut report = GcReport::default();
        for d in self.list()? {
            if live.contains(&d) {
                report.kept += 1;
                continue;
            }
            let path = self.path_of(&d);
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            std::fs::remove_file(&path).ctx("remove", &path)?;
            report.removed += 1;
            report.freed_bytes += size;
        }
        Ok(report)
    }

    /// Total bytes and count of objects.
    pub fn usage(&self) -> Result<(u64, u64), CacheError> {
        let mut bytes = 0;
        let list = self.list()?;
        for d in &list {
            bytes += std::fs::metadata(self.path_of(d))
                .map(|m| m.len())
                .unwrap_or(0);
        }
        Ok((list.len() as u64, bytes))
    }
}

fn same_filesystem(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev(),
        _ => false,
    }
}

impl ObjectStore {
    /// Removes what killed processes of this host left in the store's temp
    /// folder (a temp name holds the host and the pid of its writer; other
    /// hosts' files, and live writers' files, are left alone). Returns the
    /// bytes freed.
    pub fn clear_stale_temps(&self) -> u64 {
        let dir = self.root.join("tmp");
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().replace(['/', ' '], "_"))
            .unwrap_or_else(|_| "host".into());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return 0;
        };
        let mut freed = 0;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(&format!("{host}-")) else {
                continue;
            };
            let pid: Option<u32> = rest.split('-').next().and_then(|p| p.parse().ok());
            let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
            if !alive {
                freed += e.metadata().map(|m| m.len()).unwrap_or(0);
                let _ = std::fs::remove_file(e.path());
            }
        }
        freed
    }
}

/// BLAKE3 of a file's bytes, streamed.
pub fn hash_file(path: &Path) -> Result<BlobDigest, CacheError> {
    let mut f = std::fs::File::open(path).ctx("read", path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).ctx("read", path)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(BlobDigest::from_bytes(*hasher.finalize().as_bytes()))
}

fn set_exec(path: &Path, exec: bool) -> Result<(), CacheError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = if exec { 0o755 } else { 0o644 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).ctx("chmod", path)
}

/// fsyncs a folder so a rename in it is durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), CacheError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .ctx("fsync", dir)
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incoming_object_is_published_only_with_the_bytes_of_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = ObjectStore::open(dir.path().join("objects")).unwrap();
        let good = BlobDigest::of(b"hello world");
        let mut w = store.incoming(good).unwrap();
        w.write(b"hello ").unwrap();
        w.write(b"world").unwrap();
        w.finish().unwrap();
        assert_eq!(store.read_verified(&good).unwrap(), b"hello world");
        let wanted = BlobDigest::of(b"other bytes");
        let mut w = store.incoming(wanted).unwrap();
        w.write(b"hello world").unwrap();
        let err = w.finish().unwrap_err();
        assert!(matches!(err, CacheError::CorruptObject { .. }), "{err}");
        assert!(!store.contains(&wanted));
        // An abandoned download leaves no temp file.
        drop(store.incoming(wanted).unwrap());
        assert_eq!(
            std::fs::read_dir(dir.path().join("objects/tmp"))
                .unwrap()
                .count(),
            0
        );
    }

    /// Many writers (as on the nodes of a cluster sharing one store) put
    /// the same object at once: every put succeeds, one object results,
    /// it verifies, and no temp file is left.
    #[test]
    fn concurrent_writers_of_one_object() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("objects");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let src = dir.path().join("src.bin");
        std::fs::write(&src, &data).unwrap();
        let digests: Vec<BlobDigest> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let (root, data, src) = (&root, &data, &src);
                    s.spawn(move || {
                        // Each writer opens its own store handle.
                        let store = ObjectStore::open(root).unwrap();
                        if i % 2 == 0 {
                            store.put_bytes(data).unwrap()
                        } else {
                            store.put_file(src).unwrap()
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(digests.windows(2).all(|w| w[0] == w[1]));
        let store = ObjectStore::open(&root).unwrap();
        assert_eq!(store.read_verified(&digests[0]).unwrap(), data);
        assert_eq!(store.list().unwrap().len(), 1);
        assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn put_then_read_and_restore() {
        let dir = tempfile::tempdir().unwrap();
        let store = ObjectStore::open(dir.path().join("objects")).unwrap();
        let d = store.put_bytes(b"hello").unwrap();
        assert_eq!(d, BlobDigest::of(b"hello"));
        assert_eq!(store.read_verified(&d).unwrap(), b"hello");
        let out = dir.path().join("w/out.txt");
        store.restore_file(&d, &out, false).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"hello");
        // Nothing is left in tmp/ after a successful write.
        assert_eq!(
            std::fs::read_dir(dir.path().join("objects/tmp"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn put_file_streams_and_dedups() {
        let dir = tempfile::tempdir().unwrap();
        let store = ObjectStore::open(dir.path().join("objects")).unwrap();
        let src = dir.path().join("big");
        std::fs::write(&src, vec![7u8; 3 << 20]).unwrap();
        let a = store.put_file(&src).unwrap();
        let b = store.put_file(&src).unwrap();
        assert_eq!(a, b);
        assert_eq!(store.list().unwrap(), vec![a]);
    }

    #[test]
    fn failed_write_leaves_no_partial_object() {
        let dir = tempfile::tempdir().unwrap();
        let store = ObjectStore::open(dir.path().join("objects")).unwrap();
        let err = store.put_file(&dir.path().join("missing")).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        assert!(store.list().unwrap().is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path().join("objects/tmp"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn corrupt_object_is_detected_quarantined_and_never_restored() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = ObjectStore::open(dir.path().join("objects")).unwrap();
        let d = store.put_bytes(b"precious").unwrap();
        let path = store.path_of(&d);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&path, b"precioux").unwrap();
        let err = store
            .restore_file(&d, &dir.path().join("o"), false)
            .unwrap_err();
        assert!(matches!(err, CacheError::CorruptObject { .. }), "{err}");
        assert!(!dir.path().join("o").exists());
        let report = store.verify(&dir.path().join("quarantine")).unwrap();
        assert_eq!(report.corrupt, vec![d.to_hex()]);
        assert!(!store.contains(&d));
    }
}

/// An object being written under a name known in advance (see
/// [`ObjectStore::incoming`]); dropped unfinished, it leaves nothing.
#[derive(Debug)]
pub struct Incoming {
    store: ObjectStore,
    expected: BlobDigest,
    tmp: PathBuf,
    file: Option<std::fs::File>,
    hasher: blake3::Hasher,
}

impl Incoming {
    /// Appends bytes.
    pub fn write(&mut self, data: &[u8]) -> Result<(), CacheError> {
        self.hasher.update(data);
        let file = self.file.as_mut().expect("open until finished");
        file.write_all(data).ctx("write", &self.tmp)
    }

    /// Publishes the object if its bytes hash to its name; else removes
    /// them and says what they hash to ([`CacheError::CorruptObject`]).
    pub fn finish(mut self) -> Result<(), CacheError> {
        let actual = BlobDigest::from_bytes(*self.hasher.finalize().as_bytes());
        if actual != self.expected {
            return Err(CacheError::CorruptObject {
                digest: self.expected.to_hex(),
                actual: actual.to_hex(),
            });
        }
        let file = self.file.take().expect("open until finished");
        file.sync_all().ctx("fsync", &self.tmp)?;
        drop(file);
        self.store.publish(&self.tmp, &self.expected)
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        // Published objects were renamed away; anything else goes.
        let _ = std::fs::remove_file(&self.tmp);
    }
}
