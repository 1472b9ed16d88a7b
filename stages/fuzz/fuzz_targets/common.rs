//! Shared by the fuzz targets: a private folder per process for readers
//! that take paths, and the check that an error is located.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tuneflow_stages::data::error::DataError;

/// A folder of this process's own, created once.
pub fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tuneflow-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    })
}

/// Writes `bytes` as `name` in [`dir`].
pub fn put(name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir().join(name);
    std::fs::write(&path, bytes).expect("temp dir");
    path
}

/// Panics (a crash for libFuzzer) unless `err` names a file in [`dir`]
/// and gives a place in it, or is one of the `whole_file` messages.
pub fn assert_located(err: &DataError, whole_file: &[&str]) {
    let placed = match err {
        DataError::Bytes { .. }
        | DataError::Record { .. }
        | DataError::Line { .. }
        | DataError::Item { .. } => true,
        DataError::File { message, .. } => whole_file.iter().any(|w| message.contains(w)),
        DataError::Io { .. } => false,
    };
    assert!(
        placed && err.path().starts_with(dir()),
        "error is not located: {err} ({err:?})"
    );
}
