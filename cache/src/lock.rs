//! One run per cache at a time: an exclusive `flock` on `lock`, with the
//! holder's pid written inside so the second run can say who holds it. The
//! kernel releases the lock when the process dies, even by SIGKILL, so a
//! crashed run never leaves a stale lock behind. A child the holder forked
//! keeps the lock until it execs (the descriptor is close-on-exec) or
//! exits; a lock whose holder is already dead is such a straggler, and is
//! waited for briefly instead of refused.

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
    /// Takes the lock at `path`. A live holder is refused at once; a lock
    /// whose recorded holder has died (a forked child of it still holds the
    /// descriptor for a moment) is waited for, up to 10 s.
    pub fn acquire(path: &Path) -> Result<Self, LockError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match Self::try_acquire(path) {
                Err(LockError::InUse { pid, .. })
                    if !holder_alive(&pid) && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    #[expect(unsafe_code, reason = "flock(2) has no safe wrapper in std")]
    fn try_acquire(path: &Path) -> Result<Self, LockError> {
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
        // One write of a fixed width, never a truncation first: a reader
        // never sees an empty file.
        file.rewind().map_err(io)?;
        write!(file, "{:<12}", std::process::id()).map_err(io)?;
        Ok(Self { _file: file })
    }
}

/// Whether `pid` (as the lock file holds it) names a live process (not a
/// zombie). An unreadable pid counts as alive: refuse rather than wait.
fn holder_alive(pid: &str) -> bool {
    let Ok(pid) = pid.trim().parse::<u32>() else {
        return true;
    };
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next());
            !matches!(state, Some("Z" | "X"))
        }
        Err(_) => false,
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

    #[test]
    fn a_lock_kept_by_a_dead_holders_child_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = CacheLock::acquire(&path).unwrap();
        // The recorded holder is dead; something else still has the lock.
        let mut dead = std::process::Command::new("true").spawn().unwrap();
        dead.wait().unwrap();
        std::fs::write(&path, format!("{:<12}", dead.id())).unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(held);
        });
        let started = std::time::Instant::now();
        CacheLock::acquire(&path).unwrap();
        assert!(started.elapsed() >= std::time::Duration::from_millis(250));
        releaser.join().unwrap();
    }
}
