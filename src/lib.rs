//! tuneflow: declarative machine-learning pipelines with a content-addressed
//! cache. `main.rs` parses the command line and calls [`commands::main`].
//!
//! Where things happen, top to bottom (a module uses only modules below
//! it; `tests/cli/layers.rs` checks it):
//!
//! - [`commands`]: one file per subcommand; with [`report`], the only code
//!   that prints;
//! - [`cli`], [`report`], [`html`], [`fixtures`], [`slurm`]: argument
//!   structs, event renderers, the HTML run report, test datasets, the
//!   Slurm backend;
//! - [`error`]: exit codes and the errors that stop a command;
//! - [`remote`]: the shared cache on a remote store (S3, GCS, Azure, a
//!   folder, HTTP): push, pull, read-through;
//! - [`run`]: the run path: keys, the cache decision, jobs, backends, the
//!   engine, the session;
//! - [`pipeline`]: the pipeline file, from TOML with spans to a validated
//!   plan.
//!
//! The stage kinds, the params model and the artifact formats are in the
//! `tuneflow-stages` crate; the object store and index in `tuneflow-cache`.

pub mod cli;
pub mod commands;
pub mod error;
pub mod fixtures;
pub mod html;
pub mod pipeline;
pub mod remote;
pub mod report;
pub mod run;
pub mod slurm;
