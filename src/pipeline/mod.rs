//! The pipeline file, from text to a validated plan: [`spec`] parses the
//! TOML with spans and applies `--set`; [`plan`] builds every stage through
//! the kinds table and validates it; [`wire`] resolves references into a
//! graph; [`executor`] reads `[executor]`; [`error`] renders every problem
//! with file:line:col at once. Nothing here touches the cache.

pub mod error;
pub mod executor;
pub mod plan;
pub mod spec;
pub mod sweep;
mod wire;

pub use error::{Diagnostic, PipelineError};
pub use plan::{load, Input, Plan, PlannedStage};

/// Leaves `value` to the end of the process when `large`, instead of
/// freeing it piece by piece now: the parsed document, the spec and the
/// drafts of a 10,000-stage pipeline take 20 ms to free, and a command
/// plans its pipeline once (a freeing thread was tried: freeing memory
/// another thread allocated contends for glibc's arena lock, and the
/// planning got slower).
pub(crate) fn keep_to_exit<T>(value: T, large: bool) {
    if large {
        std::mem::forget(value);
    }
}
