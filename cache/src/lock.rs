//! One run per cache at a time: an exclusive `flock` on `lock`, with the
//! holder's pid written inside so the second run can say who holds it. The
//! kernel releases the lock when the process dies, even by SIGKILL, so a
//! crashed run never leaves a stale lock behind.

use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("cache `{path}` is in use by pid {pid}")]
    InUse {
        /// The cache folder.
        path: PathBuf,
        /// The holder's pid, as it wrote it.
        pid: String,
    },
    /// The lock file could not be opened.
    #[error("failed to open lock file `{path}`: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A held lock; released on drop.
#[derive(Debug)]
pub struct CacheLock {
    _file: std::fs::File,
}

impl CacheLock {
    /// Takes the lock at `path` without waiting.
    #[expect(unsafe_code, reason = "flock(2) has no safe wrapper in std")]
    pub fn acquire(path: &Path) -> Result<Self, LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        // SAFETY: the fd is valid for the life of `file`.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(LockError::InUse {
                path: path.parent().unwrap_or(path).to_path_buf(),
                pid: pid.trim().to_owned(),
            });
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = CacheLock::acquire(&path).unwrap();
        // flock locks belong to the open file description, so a second open
        // in the same process conflicts just as another process would.
        let err = CacheLock::acquire(&path).unwrap_err();
        assert!(
            err.to_string().contains(&std::process::id().to_string()),
            "{err}"
        );
        drop(held);
        CacheLock::acquire(&path).unwrap();
    }
}
