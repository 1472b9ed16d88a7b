//! The pipeline file, from text to a validated plan: [`spec`] parses the
//! TOML with spans and applies `--set`; [`plan`] builds every stage through
//! the kinds table and validates it; [`wire`] resolves references into a
//! graph; [`executor`] reads `[executor]`; [`error`] renders every problem
//! with file:line:col at once. Nothing here touches the cache.

pub mod error;
pub mod executor;
pub mod plan;
pub mod spec;
mod wire;

pub use error::{Diagnostic, PipelineError};
pub use plan::{load, Input, Plan, PlannedStage};
