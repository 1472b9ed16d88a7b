//! Errors of the cache: every IO error names its path.

use std::path::PathBuf;

/// What can go wrong in the store or the index.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A filesystem operation failed.
    #[error("failed to {action} `{path}`: {source}")]
    Io {
        /// What was being done, e.g. "write".
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A record in the index could not be decoded.
    #[error("cache index record `{what}` is corrupt: {detail}")]
    CorruptRecord {
        /// Which record.
        what: String,
        /// The decoder's message.
        detail: String,
    },
    /// A blob's bytes do not hash to its name.
    #[error("object `{digest}` is corrupt (its bytes hash to `{actual}`)")]
    CorruptObject {
        /// The expected digest.
        digest: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// A blob is missing from the store.
    #[error("object `{digest}` is missing from the store")]
    MissingObject {
        /// The digest looked for.
        digest: String,
    },
    /// A path that must stay inside a folder would escape it.
    #[error("path `{path}` escapes `{root}`")]
    Escape {
        /// The offending path.
        path: PathBuf,
        /// The folder it must stay in.
        root: PathBuf,
    },
}

impl CacheError {
    /// Builds an [`CacheError::Io`] from an `io::Error` and the path.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Adds the path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, action: &'static str, path: &std::path::Path) -> Result<T, CacheError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, action: &'static str, path: &std::path::Path) -> Result<T, CacheError> {
        self.map_err(|e| CacheError::io(action, path, e))
    }
}
