//! The `tuneflow-torch` worker protocol, typed on both sides: the runner
//! writes a [`WorkerJob`] (one variant per tensor kind) to a file, starts
//! `tuneflow-torch exec --spec FILE`, and reads [`WorkerEvent`]s back, one
//! JSON object per line on the worker's stdout. [`client`] is the runner's
//! side; the worker (package `tuneflow-torch`) deserializes the same types.
//! The artifact formats the jobs read and write are in [`crate::formats`].

pub mod client;
pub mod progress;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::device::Device;
use crate::train::config::TrainConfig;

/// An artifact folder as the worker sees it: relative path -> file.
pub type Files = BTreeMap<String, PathBuf>;

/// One stage for the worker to run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum WorkerJob {
    /// Train a backbone and head from scratch.
    Pretrain(TrainJob),
    /// Train from an upstream model, external weights, or scratch.
    FineTune(TrainJob),
    /// Embeddings of a model for every item of a dataset.
    Extract(ExtractJob),
    /// Projection heads of two modalities into a joint space.
    Associate(AssociateJob),
}

/// A training stage's job.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TrainJob {
    /// The stage's name (seeds the data order).
    pub stage: String,
    /// The typed training config.
    pub config: TrainConfig,
    /// Training data (a dataset artifact).
    pub train: Files,
    /// Validation data, if any.
    pub val: Option<Files>,
    /// An augmentation policy (`policy.json`), if any.
    pub policy: Option<PathBuf>,
    /// The model to start from (`fine-tune`): a `model` artifact.
    pub model: Option<Files>,
    /// External weights to start from (`fine-tune init = ...`).
    pub init: Option<PathBuf>,
    /// Where to write the `model` artifact.
    pub out: PathBuf,
    /// Where checkpoints live across attempts.
    pub checkpoints: PathBuf,
    /// The seed of every random choice (initial weights, data order).
    pub seed: i64,
    /// Where to train.
    pub device: Device,
}

/// How to extract.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ExtractConfig {
    /// L2-normalise each embedding.
    pub normalize: bool,
    /// Images: average with the horizontally flipped image.
    pub flip: bool,
    /// Spectrograms: average over windows of this many frames (0: pool the
    /// whole utterance at once).
    pub segment: u32,
    /// Items per batch (images).
    pub batch: usize,
}

/// An `extract` stage's job.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ExtractJob {
    /// The stage's name.
    pub stage: String,
    /// How to extract.
    pub config: ExtractConfig,
    /// The dataset to embed.
    pub data: Files,
    /// The `model` artifact.
    pub model: Files,
    /// Where to write the `embeddings` artifact.
    pub out: PathBuf,
    /// Where to run.
    pub device: Device,
}

/// How to train the projection heads of an `associate` stage.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AssociateConfig {
    /// Size of the joint space.
    pub dim: usize,
    /// Hidden units of each head (0: a linear head).
    pub hidden: usize,
    /// `contrastive` (symmetric InfoNCE over the identities of a batch) or
    /// `triplet` (hardest negative in the batch, both directions).
    pub loss: String,
    /// Contrastive temperature.
    pub temperature: f64,
    /// Triplet margin (on cosine similarity).
    pub margin: f64,
    /// Epochs.
    pub epochs: u64,
    /// Identities per batch.
    pub batch: usize,
    /// AdamW learning rate (constant).
    pub lr: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
}

/// An `associate` stage's job: train on the `train` identities, report
/// the `dev` ones per epoch, and project every row of both modalities.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AssociateJob {
    /// The stage's name.
    pub stage: String,
    /// How to train.
    pub config: AssociateConfig,
    /// Embeddings of the first modality (an `embeddings` artifact).
    pub a: Files,
    /// Embeddings of the second modality.
    pub b: Files,
    /// Training identities: (class in `a`, class in `b`).
    pub train: Vec<(String, String)>,
    /// Development identities (validation numbers per epoch).
    pub dev: Vec<(String, String)>,
    /// Where to write `heads.safetensors`, `a.f32`, `b.f32` (projected,
    /// L2-normalised, one row per input row) and `metrics.json`.
    pub out: PathBuf,
    /// Where checkpoints live across attempts.
    pub checkpoints: PathBuf,
    /// The seed of every random choice.
    pub seed: i64,
    /// Where to train.
    pub device: Device,
}

impl WorkerJob {
    /// The stage kind this job runs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Pretrain(_) => "pretrain",
            Self::FineTune(_) => "fine-tune",
            Self::Extract(_) => "extract",
            Self::Associate(_) => "associate",
        }
    }
}

/// One training epoch's numbers.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochStats {
    /// Epoch, from 1.
    pub epoch: u64,
    /// Mean training loss.
    pub train_loss: f64,
    /// Training accuracy (for triplet loss: anchors whose hardest positive
    /// is nearer than their hardest negative).
    pub train_acc: f64,
    /// Validation loss, when there is validation data.
    pub val_loss: Option<f64>,
    /// Validation accuracy.
    pub val_acc: Option<f64>,
    /// Learning rate at the epoch's last step.
    pub lr: f64,
    /// Training samples per second (events only, not stored).
    pub samples_per_s: f64,
    /// Share of the epoch spent waiting for the data loader (events only).
    pub data_wait_share: f64,
}

impl EpochStats {
    /// The epochs as a model's `metrics.json` stores them: without the
    /// timing (it is in the events and the summary), so that the same
    /// training gives the same bytes, or reruns and early cutoff could
    /// never match.
    pub fn stored(history: &[Self]) -> Vec<serde_json::Value> {
        history
            .iter()
            .map(|e| {
                let mut v = serde_json::to_value(e).expect("stats serialize");
                let o = v.as_object_mut().expect("a struct");
                o.remove("samples_per_s");
                o.remove("data_wait_share");
                v
            })
            .collect()
    }
}

/// The validation numbers of the restored best epoch.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ValNumbers {
    /// Validation loss.
    pub val_loss: f64,
    /// Validation accuracy.
    pub val_acc: f64,
}

/// What a training job reports when it ends (the stage's summary).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainResult {
    /// Epochs trained.
    pub epochs: u64,
    /// The last epoch's numbers.
    #[serde(rename = "final")]
    pub last: Option<EpochStats>,
    /// The best epoch (early stopping).
    pub best_epoch: Option<u64>,
    /// The restored best epoch, evaluated again.
    pub restored_val: Option<ValNumbers>,
    /// Frozen tensors.
    pub frozen: usize,
    /// Trained tensors.
    pub trainable: usize,
    /// Where the weights started: `scratch`, `upstream` or `init`.
    pub source: String,
}

/// What an extract job reports when it ends.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExtractResult {
    /// Rows.
    pub items: usize,
    /// Embedding size.
    pub dim: usize,
    /// Whether the data's trials travel with the embeddings.
    pub trials: bool,
}

/// What part of a job a [`BatchProgress`] counts batches of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Training batches of an epoch.
    Train,
    /// Validation batches after an epoch's training.
    Val,
    /// An extract job's batches (one epoch).
    Extract,
}

/// A job's position: batch `batch` of `batches` in `phase` of epoch
/// `epoch` of `epochs` (an extract job is epoch 1 of 1).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BatchProgress {
    /// What the batches are.
    pub phase: Phase,
    /// Epoch, from 1.
    pub epoch: u64,
    /// Epochs in the run.
    pub epochs: u64,
    /// Batches done in this phase of the epoch.
    pub batch: u64,
    /// Batches in this phase of the epoch.
    pub batches: u64,
    /// Seconds left for every remaining batch of every remaining epoch at
    /// the rate of this attempt so far (none before a first batch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_s: Option<f64>,
}

/// The last finished epoch a training job's checkpoint folder holds, if
/// any: the worker names each checkpoint [`checkpoint_name`] and points the
/// file `latest` at the newest by rename, so the runner can tell where a
/// rerun resumes without reading the checkpoint.
pub fn checkpointed_epoch(dir: &std::path::Path) -> Option<u64> {
    let name = std::fs::read_to_string(dir.join("latest")).ok()?;
    name.trim().strip_prefix("epoch-")?.parse().ok()
}

/// The folder name of epoch `epoch`'s checkpoint.
pub fn checkpoint_name(epoch: u64) -> String {
    format!("epoch-{epoch:06}")
}

/// A line the worker prints.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum WorkerEvent {
    /// A training epoch finished (and was checkpointed).
    Epoch {
        /// Its numbers.
        #[serde(flatten)]
        stats: EpochStats,
        /// Epochs in the run.
        epochs: u64,
        /// The best epoch so far (early stopping).
        #[serde(skip_serializing_if = "Option::is_none")]
        best_epoch: Option<u64>,
    },
    /// A training job resumed from a checkpoint.
    Resumed {
        /// The last finished epoch it found.
        epoch: u64,
        /// Epochs in the run.
        epochs: u64,
    },
    /// Where a training or extract job is inside its epoch: throttled by
    /// the worker to a few per second, shown as a bar, never logged.
    Progress(BatchProgress),
    /// A training job ended.
    TrainResult(TrainResult),
    /// An extract job ended.
    ExtractResult(ExtractResult),
}

impl WorkerEvent {
    /// The event as one JSON line (no newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("events serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_epochs_stay_flat() {
        let stats = EpochStats {
            epoch: 2,
            train_loss: 1.5,
            train_acc: 0.25,
            val_loss: None,
            val_acc: Some(0.5),
            lr: 0.1,
            samples_per_s: 100.0,
            data_wait_share: 0.01,
        };
        let e = WorkerEvent::Epoch {
            stats,
            epochs: 5,
            best_epoch: None,
        };
        let line = e.to_line();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "epoch");
        assert_eq!(v["epoch"], 2);
        assert_eq!(v["epochs"], 5);
        assert_eq!(serde_json::from_str::<WorkerEvent>(&line).unwrap(), e);
    }

    #[test]
    fn progress_events_are_flat_snake_case_lines() {
        let e = WorkerEvent::Progress(BatchProgress {
            phase: Phase::Val,
            epoch: 3,
            epochs: 15,
            batch: 12,
            batches: 50,
            eta_s: Some(62.5),
        });
        let line = e.to_line();
        assert_eq!(
            line,
            r#"{"event":"progress","phase":"val","epoch":3,"epochs":15,"batch":12,"batches":50,"eta_s":62.5}"#
        );
        assert_eq!(serde_json::from_str::<WorkerEvent>(&line).unwrap(), e);
    }

    #[test]
    fn the_checkpointed_epoch_is_read_from_latest() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(checkpointed_epoch(dir.path()), None);
        std::fs::write(dir.path().join("latest"), checkpoint_name(3)).unwrap();
        assert_eq!(checkpointed_epoch(dir.path()), Some(3));
        std::fs::write(dir.path().join("latest"), "junk").unwrap();
        assert_eq!(checkpointed_epoch(dir.path()), None);
    }
}
