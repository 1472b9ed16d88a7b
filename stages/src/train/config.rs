//! What the training stages are configured with, as plain data: the runner
//! validates it from the pipeline file and the `tuneflow-torch` worker
//! trains with it, so both sides share these types.

pub use crate::formats::model::LossConfig;
use crate::formats::model::ModelConfig;
use crate::train::schedule::Shape;

/// Optimizer settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum OptimizerConfig {
    /// SGD with optional momentum, Nesterov and (coupled) weight decay.
    Sgd {
        /// Momentum factor.
        #[serde(default)]
        momentum: f64,
        /// Nesterov momentum.
        #[serde(default)]
        nesterov: bool,
        /// L2 penalty added to the gradient.
        #[serde(default, rename = "weight-decay")]
        weight_decay: f64,
    },
    /// Adam with decoupled weight decay.
    #[serde(rename = "adamw")]
    AdamW {
        /// First-moment decay.
        #[serde(default = "beta1")]
        beta1: f64,
        /// Second-moment decay.
        #[serde(default = "beta2")]
        beta2: f64,
        /// Denominator epsilon.
        #[serde(default = "eps")]
        eps: f64,
        /// Decoupled weight decay.
        #[serde(default = "adamw_decay", rename = "weight-decay")]
        weight_decay: f64,
    },
}

impl OptimizerConfig {
    /// SGD with `momentum` and no weight decay.
    pub fn sgd(momentum: f64) -> Self {
        Self::Sgd {
            momentum,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
}

fn beta1() -> f64 {
    0.9
}
fn beta2() -> f64 {
    0.999
}
fn eps() -> f64 {
    1e-8
}
fn adamw_decay() -> f64 {
    0.01
}

/// A training stage's settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TrainConfig {
    /// The backbone.
    pub model: ModelConfig,
    /// The head and loss.
    pub loss: LossConfig,
    /// The optimizer.
    pub optimizer: OptimizerConfig,
    /// Peak learning rate.
    pub lr: f64,
    /// The schedule's shape.
    pub schedule: Shape,
    /// Linear warmup, in epochs.
    pub warmup_epochs: u64,
    /// Epochs to train.
    pub epochs: u64,
    /// Batch size.
    pub batch: usize,
    /// Frames per item for fbank data when no policy crops them.
    pub frames: u32,
    /// Clip gradients to this global norm.
    pub clip_grad: Option<f64>,
    /// Stop when a validation metric stops improving; restore the best epoch.
    #[serde(default)]
    pub early_stopping: Option<EarlyStopping>,
    /// `fp32`, or `bf16` (autocast on CUDA; ignored on CPU).
    #[serde(default = "fp32")]
    pub precision: String,
    /// How `fine-tune` moves a model to the new task (`None` for `pretrain`).
    #[serde(default)]
    pub transfer: Option<TransferConfig>,
}

fn fp32() -> String {
    "fp32".into()
}

/// Early stopping on a validation metric.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct EarlyStopping {
    /// `val_acc` (higher is better) or `val_loss` (lower is better).
    pub metric: String,
    /// Epochs without improvement before stopping.
    pub patience: u64,
    /// The smallest change that counts as an improvement.
    pub min_delta: f64,
}

/// What `fine-tune` changes about the model it starts from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TransferConfig {
    /// Classes of the new head; `None` = from the data.
    pub classes: Option<usize>,
    /// `auto`, `linear-probe`, `partial` or `full`.
    pub strategy: String,
    /// Learning-rate multiplier for backbone parameters.
    pub backbone_lr: f64,
    /// Average (or spread) the stem's filters when input channels differ.
    pub adapt_channels: bool,
    /// Backbone modules that start from fresh weights instead of the
    /// source's (e.g. `backbone.embedding` when pooling changes its size).
    #[serde(default)]
    pub reinit: Vec<String>,
}
