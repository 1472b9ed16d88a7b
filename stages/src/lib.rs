//! Stage kinds for tuneflow: the [`Stage`] trait, the registry of built-in
//! kinds (one kind per file) and the spanned params model they read.
//!
//! Stages never print, touch the cache index or know about the graph: the
//! runner does all three. A stage gets its inputs as paths, writes its
//! outputs as paths and returns them; the runner stores them by content.
#![warn(missing_docs)]

pub mod augment;
pub mod command;
pub mod data;
pub mod evaluate;
pub mod extract;
pub mod finetune;
pub mod freeze;
pub mod ingest;
pub mod metrics;
mod params;
pub mod paths;
pub mod plots;
pub mod pretrain;
mod registry;
pub mod rng;
pub mod safetensors;
pub mod schedule;
mod stage;
pub mod train_config;
mod train_params;
pub mod worker;

pub use params::{suggest, ParamError, ParamReader, Spanned, Table, Value, ValueKind};
pub use registry::{build_stage, BuildContext, KINDS, TORCH_KINDS};
pub use stage::{
    CancelFlag, EventSink, Inputs, Resources, Stage, StageContext, StageDecl, StageError,
    StageOutputs,
};
