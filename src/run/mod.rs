//! Where a run happens, from plan to stage to cache:
//!
//! - [`cache`]: which cache folder, opened for writing (one holder) or
//!   reading (no lock);
//! - [`keys`]: a stage's key and why it changed;
//! - [`prefetch`]: what the lookup reads first, read while the pipeline
//!   is planned;
//! - [`lookup`]: the one decision of what is cached, shared by `run`,
//!   `status`, `export` and `cache gc`;
//! - [`job`]: a stage, resolved into a self-contained, serialisable job;
//! - [`backend`]: what runs a job (this process, or a Slurm job) and its
//!   typed failures;
//! - [`outputs`]: moving outputs between the workspace and the store;
//! - [`engine`]: decides, runs and commits each stage;
//! - [`executor`]: orders the stages as a dagrs graph;
//! - [`reports`]: the metrics a result's summary reports;
//! - [`history`]: the run record (id, overrides, git, each stage's
//!   outcome, the metrics);
//! - [`session`]: runtime, signals, the state file, repair rounds;
//! - [`events`]: what a run reports, as data;
//! - [`resources`]: GPU permits.
//!
//! Dependencies point down this list's reverse: `session` drives `engine`,
//! which uses `lookup`, `job` and `backend`; nothing here imports the
//! commands, the report renderers or the Slurm backend (which implements
//! [`backend::StageBackend`] from outside).

pub mod backend;
pub mod cache;
pub mod engine;
pub mod events;
pub mod executor;
pub mod history;
pub mod job;
pub mod keys;
pub mod lookup;
pub mod outputs;
pub mod prefetch;
pub mod reports;
pub mod resources;
pub mod session;
