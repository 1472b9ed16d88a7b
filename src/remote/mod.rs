//! A remote for the cache: the content-addressed objects and the stage
//! results (key → manifest) in an object store a team, its CI and its
//! cluster share: S3 and S3-compatible servers, Google Cloud Storage,
//! Azure Blob Storage, a folder, or HTTP (WebDAV), through the
//! `object_store` crate.
//!
//! Under the remote's URL, `objects/<hex>` holds each blob (a file's bytes
//! or a folder's tree) and `results/<key>.json` each manifest. Writes are
//! by content address, and a manifest is written only after every object
//! it names is on the remote, so two pushers of one result, a pull during
//! a push, or many jobs reading at once leave it consistent.
//!
//! Nothing fetched is trusted unchecked: each object is hashed as it
//! downloads and is stored only if it hashes to its name (one that does
//! not is deleted from the remote, so that the next push repairs it), and
//! a result is recorded locally only when all its objects are. A remote
//! that cannot be reached, or answers too slowly, makes a run slower by a
//! timeout and a warning, never wrong: the stage runs.
//!
//! [`config`] says which remote a command uses; [`transfer`] moves results;
//! [`source`] makes the remote a run's read-through (and write-through)
//! source.

pub mod config;
pub mod source;
pub mod transfer;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path as StorePath;
use object_store::ObjectStore as _;
use tuneflow_cache::CacheError;

/// An open remote.
pub struct Remote {
    store: Arc<dyn object_store::ObjectStore>,
    /// The URL as shown to people (without credentials).
    shown: String,
    rt: Option<tokio::runtime::Runtime>,
    /// Set when the remote could not be reached: a run asks no more.
    down: AtomicBool,
    /// Transfers at once.
    pub jobs: usize,
    /// Log each stage fetched or pushed (a run does; `cache pull` prints
    /// its own lines).
    pub announce: bool,
    /// What a run fetched and pushed, stage by stage.
    log: std::sync::Mutex<Vec<source::Transfer>>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

/// Why a remote operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The URL names no store tuneflow can open.
    #[error("remote `{url}`: {reason}")]
    BadUrl {
        /// The URL as shown.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The store refused or failed a request.
    #[error("remote `{remote}`: cannot {what} `{path}`: {detail}")]
    Store {
        /// The remote.
        remote: String,
        /// The operation.
        what: &'static str,
        /// The path on the remote.
        path: String,
        /// The store's error, with any credentials in URLs removed (the
        /// store's own text repeats the full URL).
        detail: String,
        /// Whether the remote itself failed (as opposed to a missing or
        /// conflicting object).
        unreachable: bool,
    },
    /// A folder remote that cannot be created or opened.
    #[error("remote `{url}`: {reason}")]
    Unavailable {
        /// The URL as shown.
        url: String,
        /// What failed.
        reason: String,
    },
    /// An object of the local cache is damaged or missing: not pushed.
    #[error("object {digest} is damaged or missing in the local cache, so its result is not pushed; `tuneflow cache verify` repairs the cache")]
    LocalDamaged {
        /// The object.
        digest: String,
    },
    /// An object on the remote has other bytes than its name says.
    #[error("remote `{remote}`: object {digest} is damaged (its bytes hash to {actual}); it was deleted from the remote so that the next push repairs it")]
    Damaged {
        /// The remote.
        remote: String,
        /// The object.
        digest: String,
        /// What its bytes hash to.
        actual: String,
    },
    /// A result on the remote is not a manifest.
    #[error("remote `{remote}`: result `{path}` is not a readable manifest: {detail}")]
    BadManifest {
        /// The remote.
        remote: String,
        /// Its path.
        path: String,
        /// The parse error.
        detail: String,
    },
    /// The local cache failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The remote could not be reached (or answered too slowly).
    #[error("remote `{remote}` could not be reached; see the warnings above")]
    Unreachable {
        /// The remote.
        remote: String,
    },
    /// No remote is configured.
    #[error("no remote cache is set: pass --remote URL, set TUNEFLOW_REMOTE, or set `[cache] remote` in the pipeline or in ~/.config/tuneflow/config.toml (see docs/remote.md)")]
    NotConfigured,
    /// The remote's runtime could not start.
    #[error("remote: cannot start its I/O runtime: {0}")]
    Runtime(std::io::Error),
}

impl RemoteError {
    /// Whether the user's settings are wrong (no remote, a bad URL).
    pub fn is_configuration(&self) -> bool {
        matches!(self, Self::NotConfigured | Self::BadUrl { .. })
    }

    /// Whether the remote itself is unreachable or too slow (as opposed
    /// to one object or result being wrong).
    pub fn is_unreachable(&self) -> bool {
        match self {
            Self::Store { unreachable, .. } => *unreachable,
            Self::Unavailable { .. } => true,
            _ => false,
        }
    }
}

impl Remote {
    /// Opens the remote at `url` (see [`config`] for the schemes and
    /// where credentials come from).
    pub fn open(url: &str) -> Result<Self, RemoteError> {
        let (store, shown) = config::open_store(url, timeout())?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("remote")
            .enable_all()
            .build()
            .map_err(RemoteError::Runtime)?;
        Ok(Self {
            store,
            shown,
            rt: Some(rt),
            down: AtomicBool::new(false),
            jobs: 8,
            announce: true,
            log: std::sync::Mutex::default(),
        })
    }

    /// The URL, without credentials.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Whether an earlier request found the remote unreachable.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }

    /// Remembers that the remote is unreachable when `e` says so.
    pub(crate) fn note(&self, e: &RemoteError) {
        if e.is_unreachable() {
            self.down.store(true, Ordering::SeqCst);
        }
    }

    /// Runs `f` on the remote's own runtime and waits for it; callable
    /// from any thread, inside another runtime or not.
    pub(crate) fn block<F>(&self, f: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        self.rt
            .as_ref()
            .expect("the runtime lives as long as the remote")
            .spawn(async move {
                let _ = tx.send(f.await);
            });
        rx.recv()
            .expect("the remote's runtime runs its tasks to the end")
    }

    pub(crate) fn store(&self) -> Arc<dyn object_store::ObjectStore> {
        Arc::clone(&self.store)
    }

    pub(crate) fn err(
        &self,
        what: &'static str,
        path: &StorePath,
    ) -> impl FnOnce(object_store::Error) -> RemoteError + '_ {
        let path = path.to_string();
        move |source| RemoteError::Store {
            remote: self.shown.clone(),
            what,
            path,
            detail: config::redact(&source.to_string()),
            unreachable: !matches!(
                source,
                object_store::Error::NotFound { .. }
                    | object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. }
            ),
        }
    }

    /// Bytes stored on the remote and the number of objects and results
    /// (for `cache du --remote`).
    pub fn usage(&self) -> Result<Usage, RemoteError> {
        use futures_util::TryStreamExt;
        let store = self.store();
        let listed = self.block(async move { store.list(None).try_collect::<Vec<_>>().await });
        let all = listed.map_err(self.err("list", &StorePath::from("")))?;
        let mut u = Usage::default();
        for meta in all {
            match transfer::classify(&meta.location) {
                Some(transfer::Entry::Object(_)) => {
                    u.objects += 1;
                    u.object_bytes += meta.size;
                }
                Some(transfer::Entry::Result(_)) => u.results += 1,
                None => {}
            }
        }
        Ok(u)
    }
}

/// What a remote holds.
#[derive(Debug, Default, serde::Serialize)]
pub struct Usage {
    /// Objects.
    pub objects: u64,
    /// Their bytes.
    pub object_bytes: u64,
    /// Results.
    pub results: u64,
}

impl Drop for Remote {
    fn drop(&mut self) {
        // A runtime dropped inside another one's task would panic.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// How long a request may wait on the remote without receiving anything:
/// `TUNEFLOW_REMOTE_TIMEOUT` seconds, default 30 (connecting: at most 5);
/// a large object may take longer in all, as long as it keeps coming.
pub fn timeout() -> Duration {
    timeout_from(std::env::var("TUNEFLOW_REMOTE_TIMEOUT").ok().as_deref())
}

/// [`timeout`] from the variable's value: a positive number of seconds,
/// at most a day; anything else is the default.
fn timeout_from(value: Option<&str>) -> Duration {
    value
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s.min(86_400.0)).ok())
        .unwrap_or(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_is_a_positive_finite_number_of_seconds_or_the_default() {
        let t = |v: &str| timeout_from(Some(v));
        assert_eq!(t("2"), Duration::from_secs(2));
        assert_eq!(t("0.5"), Duration::from_millis(500));
        for bad in ["inf", "1e30", "-1", "0", "NaN", "x", ""] {
            let d = t(bad);
            assert!(
                d == Duration::from_secs(30) || d == Duration::from_secs(86_400),
                "{bad}"
            );
        }
        assert_eq!(timeout_from(None), Duration::from_secs(30));
    }
}
