//! Stage kinds for tuneflow: the [`Stage`] and [`Kind`] traits, the table
//! of built-in kinds (one kind per file in `kinds/`) and the spanned params
//! model they read.
//!
//! Where things live:
//! - `kinds/`: one file per stage kind, and the table in `kinds/mod.rs`;
//! - `params/`: the pipeline's value tree with spans, the reader that
//!   collects located errors, the serde bridge for nested tables, and
//!   `stage.output` references;
//! - `formats/`: the artifacts stages exchange (model, embeddings, freeze
//!   file, augment policy, safetensors); the dataset artifact is in `data/`;
//! - `worker/`: the typed protocol with the `tuneflow-torch` worker;
//! - `train/`: training configs, their reading, LR schedules;
//! - `data/`: dataset readers, features, augmentation ops, the loader;
//! - `eval/`: verification and identification metrics, plots.
//!
//! Dependencies point one way: `kinds` use everything else; nothing else
//! uses `kinds` (only the table does), and kinds never import each other.
//! Stages never print, touch the cache index or know about the graph: the
//! runner does all three. A stage gets its inputs as paths, writes its
//! outputs as paths and returns them; the runner stores them by content.
#![warn(missing_docs)]

pub mod data;
pub mod device;
pub mod eval;
pub mod formats;
pub mod kinds;
pub mod params;
pub mod paths;
pub mod process;
pub mod rng;
mod stage;
pub mod train;
pub mod views;
pub mod worker;

pub use device::Device;
pub use kinds::{build_stage, decode, DecodeError, KindInfo, KINDS};
pub use params::{suggest, Diagnostic, OutputRef, ParamReader, Spanned, Table, Value, ValueKind};
pub use stage::{
    BuildContext, Builder, CancelFlag, EventSink, Inputs, KeyParams, Kind, Resources, Stage,
    StageContext, StageDecl, StageError, StageOutputs,
};
