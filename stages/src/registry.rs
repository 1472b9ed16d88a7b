//! The built-in stage kinds and how each is built from its params.

use crate::params::{ParamReader, Table};
use crate::stage::StageDecl;

/// Every built-in kind name, for suggestions and `--help`.
pub const KINDS: &[&str] = &[
    "command",
    "ingest",
    "augment",
    #[cfg(feature = "torch")]
    "pretrain",
    #[cfg(feature = "torch")]
    "freeze",
    #[cfg(feature = "torch")]
    "fine-tune",
    #[cfg(feature = "torch")]
    "extract",
    "evaluate",
];

/// The kinds that run in the `tuneflow-torch` worker: built only with the
/// `torch` feature, but always known, so that a build without it can say so.
pub const TORCH_KINDS: &[&str] = &["pretrain", "freeze", "fine-tune", "extract"];

/// What a kind's builder may see besides the stage's own params.
pub struct BuildContext<'a> {
    /// The stage's name.
    pub name: &'a str,
    /// The pipeline's `[params]` table, for `${params.x}` interpolation.
    pub params: &'a Table,
    /// `[pipeline] seed`.
    pub seed: i64,
}

/// Builds a stage of `kind`; `None` when `kind` is not built in or when the
/// params have errors (recorded in `reader`).
pub fn build_stage(
    kind: &str,
    cx: &BuildContext<'_>,
    reader: &ParamReader<'_>,
) -> Option<StageDecl> {
    match kind {
        "command" => crate::command::build(cx, reader),
        "ingest" => crate::ingest::build(cx, reader),
        "augment" => crate::augment::build(cx, reader),
        #[cfg(feature = "torch")]
        "pretrain" => crate::pretrain::build(cx, reader),
        #[cfg(feature = "torch")]
        "freeze" => crate::freeze::build(cx, reader),
        #[cfg(feature = "torch")]
        "fine-tune" => crate::finetune::build(cx, reader),
        #[cfg(feature = "torch")]
        "extract" => crate::extract::build(cx, reader),
        "evaluate" => crate::evaluate::build(cx, reader),
        _ => None,
    }
}
