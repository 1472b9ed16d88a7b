//! What the training stages are configured with, as plain data: the runner
//! validates it from the pipeline file and the `tuneflow-torch` worker
//! trains with it, so both sides share these types.

use crate::schedule::Shape;

/// The backbone's settings, as written in a stage's `model = { ... }`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ModelConfig {
    /// The architecture family; only `resnet`.
    #[serde(default = "resnet")]
    pub arch: String,
    /// 10, 18 or 34 (basic blocks) or 50 (bottlenecks).
    pub depth: u32,
    /// Channels of the stem and `layer1` (doubled in each later layer).
    #[serde(default = "width")]
    pub width: i64,
    /// Embedding size.
    #[serde(default = "embedding")]
    pub embedding: i64,
    /// Input channels (1 for spectrograms and grayscale images).
    #[serde(default = "in_channels")]
    pub in_channels: i64,
    /// Stride of the stem convolution.
    #[serde(default = "one")]
    pub stem_stride: i64,
    /// `avg` (images) or `stats` (mean and standard deviation over time).
    #[serde(default = "avg")]
    pub pooling: String,
}

fn width() -> i64 {
    64
}
fn embedding() -> i64 {
    512
}
fn in_channels() -> i64 {
    3
}
fn one() -> i64 {
    1
}
fn avg() -> String {
    "avg".into()
}

impl ModelConfig {
    /// Blocks per layer, and whether they are bottlenecks.
    pub fn blocks(&self) -> Result<([i64; 4], bool), String> {
        match self.depth {
            10 => Ok(([1, 1, 1, 1], false)),
            18 => Ok(([2, 2, 2, 2], false)),
            34 => Ok(([3, 4, 6, 3], false)),
            50 => Ok(([3, 4, 6, 3], true)),
            d => Err(format!(
                "ResNet depth {d} is not supported (10, 18, 34 or 50)"
            )),
        }
    }
}

fn resnet() -> String {
    "resnet".into()
}

/// Optimizer settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
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

/// The head and loss, with every default resolved.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LossConfig {
    /// `softmax`, `arcface`, `cosface` or `triplet`.
    pub kind: String,
    /// Logit scale `s` (ArcFace, CosFace).
    pub scale: f64,
    /// Margin: angular (ArcFace), cosine (CosFace) or distance (triplet).
    pub margin: f64,
    /// ArcFace: apply the margin only where the angle is below 90 degrees.
    pub easy_margin: bool,
    /// Cross-entropy label smoothing.
    pub label_smoothing: f64,
    /// Triplet: items per class in a class-balanced batch.
    pub per_class: usize,
}

impl LossConfig {
    /// Plain softmax cross-entropy.
    pub fn softmax() -> Self {
        Self::with_defaults("softmax")
    }

    /// The defaults for `kind`: ArcFace s=30, m=0.5; CosFace s=30, m=0.35;
    /// triplet margin 0.3, 4 items per class.
    pub fn with_defaults(kind: &str) -> Self {
        let (scale, margin) = match kind {
            "arcface" => (30.0, 0.5),
            "cosface" => (30.0, 0.35),
            "triplet" => (1.0, 0.3),
            _ => (1.0, 0.0),
        };
        Self {
            kind: kind.into(),
            scale,
            margin,
            easy_margin: false,
            label_smoothing: 0.0,
            per_class: 4,
        }
    }
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
