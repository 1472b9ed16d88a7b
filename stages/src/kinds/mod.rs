//! The built-in stage kinds, one file each, and the one table that
//! registers them: name, whether it needs libtorch, what it does, how it is
//! built from its params and decoded from a job. The planner, `--help` and
//! the "this build lacks libtorch" error are all derived from [`KINDS`].
//! Adding a kind means its own file and one line here.
//!
//! Kinds never import each other; what they share lives in `params`,
//! `formats`, `train`, `worker`, `eval` and `data`.

pub mod associate;
pub mod augment;
pub mod command;
pub mod evaluate;
pub mod extract;
pub mod fine_tune;
pub mod freeze;
pub mod ingest;
pub mod pretrain;

use crate::params::{suggest, Diagnostic, ParamReader, Spanned};
use crate::stage::{BuildContext, Builder, Kind, Stage, StageDecl};

/// One built-in kind.
pub struct KindInfo {
    /// The `kind = "..."` name.
    pub name: &'static str,
    /// Whether it runs in the `tuneflow-torch` worker (and so needs a build
    /// with the `torch` feature).
    pub torch: bool,
    /// One line on what it does, for `--help`.
    pub summary: &'static str,
    /// The output a bare reference (`${stage}`) means when it has several.
    pub main: Option<&'static str>,
    build: Builder,
    decode: fn(serde_json::Value) -> Result<Box<dyn Stage>, serde_json::Error>,
}

impl KindInfo {
    const fn of<K: Kind>(
        build: Builder,
        torch: bool,
        main: Option<&'static str>,
        summary: &'static str,
    ) -> Self {
        Self {
            name: K::NAME,
            torch,
            summary,
            main,
            build,
            decode: decode_as::<K>,
        }
    }

    /// Whether this build can run the kind.
    pub fn available(&self) -> bool {
        !self.torch || cfg!(feature = "torch")
    }

    /// The kind's reference page, relative to the repository.
    pub fn doc(&self) -> String {
        format!("docs/stages/{}.md", self.name)
    }
}

fn decode_as<K: Kind>(v: serde_json::Value) -> Result<Box<dyn Stage>, serde_json::Error> {
    Ok(Box::new(serde_json::from_value::<K>(v)?))
}

/// Every built-in kind, in the order a pipeline usually uses them.
pub static KINDS: &[KindInfo] = &[
    KindInfo::of::<command::Command>(
        command::build,
        false,
        None,
        "any program, with declared deps and outs",
    ),
    KindInfo::of::<ingest::Ingest>(
        ingest::build,
        false,
        Some("dataset"),
        "a dataset on disk into a sharded dataset artifact",
    ),
    KindInfo::of::<augment::Augment>(
        augment::build,
        false,
        Some("dataset"),
        "a seeded augmentation policy over a dataset",
    ),
    KindInfo::of::<pretrain::Pretrain>(
        pretrain::build,
        true,
        Some("model"),
        "trains a backbone and head",
    ),
    KindInfo::of::<freeze::Freeze>(
        freeze::build,
        true,
        Some("model"),
        "marks modules of a model frozen",
    ),
    KindInfo::of::<fine_tune::FineTune>(
        fine_tune::build,
        true,
        Some("model"),
        "moves a model to a new task",
    ),
    KindInfo::of::<extract::Extract>(
        extract::build,
        true,
        Some("embeddings"),
        "embeddings of a model for a dataset",
    ),
    KindInfo::of::<evaluate::Evaluate>(
        evaluate::build,
        false,
        Some("metrics"),
        "identification and verification metrics",
    ),
    KindInfo::of::<associate::Associate>(
        associate::build,
        true,
        Some("metrics"),
        "joint space of two modalities; cross-modal measures",
    ),
];

/// The kind called `name`.
pub fn find(name: &str) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| k.name == name)
}

/// Builds a stage of `kind` from its params; `None` with an error in
/// `reader` when the kind is unknown or unavailable in this build, or when
/// the params have errors (recorded in `reader`).
pub fn build_stage(
    kind: &Spanned<String>,
    cx: &BuildContext<'_>,
    reader: &ParamReader<'_>,
) -> Option<StageDecl> {
    let Some(info) = find(&kind.value) else {
        let names = KINDS.iter().map(|k| k.name);
        reader.error(Diagnostic {
            message: format!("unknown stage kind `{}`", kind.value),
            span: kind.span.clone(),
            label: "not a built-in stage kind".into(),
            help: Some(match suggest(&kind.value, names.clone()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!(
                    "built-in kinds are: {}",
                    names.collect::<Vec<_>>().join(", ")
                ),
            }),
        });
        return None;
    };
    if !info.available() {
        reader.error(Diagnostic {
            message: format!(
                "stage kind `{}` needs libtorch, and this tuneflow was built without the `torch` feature",
                info.name
            ),
            span: kind.span.clone(),
            label: "a tensor stage kind".into(),
            help: Some("build with the default features (`cargo build`)".into()),
        });
        return None;
    }
    (info.build)(cx, reader)
}

/// Why a job's stage could not be rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// No such kind in this build.
    #[error("this tuneflow cannot run stage kind `{0}`")]
    Unknown(String),
    /// The encoded stage does not match the kind's config.
    #[error("bad `{kind}` stage config: {source}")]
    Bad {
        /// The kind.
        kind: String,
        /// Why.
        source: serde_json::Error,
    },
}

/// Rebuilds a stage from [`Stage::encode`]'s output (what a Slurm job runs).
pub fn decode(kind: &str, encoded: serde_json::Value) -> Result<Box<dyn Stage>, DecodeError> {
    let info = find(kind)
        .filter(|k| k.available())
        .ok_or_else(|| DecodeError::Unknown(kind.to_owned()))?;
    (info.decode)(encoded).map_err(|source| DecodeError::Bad {
        kind: kind.to_owned(),
        source,
    })
}

/// The `--help` text that lists the kinds and their pages.
pub fn help() -> String {
    let mut out = String::from("Stage kinds (reference pages in docs/stages/<kind>.md):\n");
    for k in KINDS {
        let note = if k.available() {
            ""
        } else {
            " [needs a build with libtorch]"
        };
        out.push_str(&format!("  {:<10} {}{note}\n", k.name, k.summary));
    }
    out.push_str("Slurm: docs/slurm.md.");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_kind_has_its_page() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for (i, k) in KINDS.iter().enumerate() {
            assert!(KINDS[..i].iter().all(|o| o.name != k.name), "{}", k.name);
            assert!(root.join(k.doc()).is_file(), "no {}", k.doc());
        }
    }
}
