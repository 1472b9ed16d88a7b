//! Running stages as Slurm jobs: `[executor] kind = "slurm"` or
//! `tuneflow run --executor slurm`. See docs/slurm.md.

pub mod backend;
pub mod job;
pub mod queue;

#[cfg(test)]
mod fake;

pub use backend::{JobRequest, Slurm};
