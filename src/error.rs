//! The exit codes and the errors that stop a command (as opposed to a stage
//! failing), in one place.

use crate::pipeline::PipelineError;

/// Exit codes, as documented in `tuneflow --help`.
pub mod exit {
    /// Everything succeeded.
    pub const SUCCESS: i32 = 0;
    /// A stage failed.
    pub const STAGE_FAILED: i32 = 1;
    /// The pipeline file or the command line is invalid.
    pub const INVALID: i32 = 2;
    /// The cache or the filesystem is unusable.
    pub const CACHE: i32 = 3;
    /// Interrupted by Ctrl-C or SIGTERM (128 + SIGINT).
    pub const INTERRUPTED: i32 = 130;
}

/// Why a run could not go on (as opposed to a stage failing).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The pipeline is invalid.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The cache is unusable.
    #[error(transparent)]
    Cache(#[from] tuneflow_cache::CacheError),
    /// Another run holds the cache.
    #[error(transparent)]
    Locked(#[from] tuneflow_cache::LockError),
    /// The remote cache is not set, cannot be opened, or failed (boxed:
    /// it carries the store's error).
    #[error(transparent)]
    Remote(Box<crate::remote::RemoteError>),
    /// Another run, with another cache folder, writes this pipeline's
    /// outputs.
    #[error("the pipeline folder `{folder}` is in use by another run (pid {pid}), with another cache folder")]
    FolderInUse {
        /// The pipeline's folder.
        folder: std::path::PathBuf,
        /// The other run.
        pid: String,
    },
}

impl From<crate::run::cache::OpenError> for RunError {
    fn from(e: crate::run::cache::OpenError) -> Self {
        match e {
            crate::run::cache::OpenError::Locked(l) => Self::Locked(l),
            crate::run::cache::OpenError::Cache(c) => Self::Cache(c),
        }
    }
}

impl From<crate::remote::RemoteError> for RunError {
    fn from(e: crate::remote::RemoteError) -> Self {
        Self::Remote(Box::new(e))
    }
}

impl RunError {
    /// The exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Pipeline(_) => exit::INVALID,
            Self::Remote(r) if r.is_configuration() => exit::INVALID,
            Self::Cache(_) | Self::Locked(_) | Self::FolderInUse { .. } | Self::Remote(_) => {
                exit::CACHE
            }
        }
    }

    /// The text shown to the user.
    pub fn render(&self, width: usize) -> String {
        match self {
            Self::Pipeline(p) => p.render(width),
            other => format!("error: {other}\n"),
        }
    }
}
