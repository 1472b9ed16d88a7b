//! Evaluation: verification and identification metrics over scores, and
//! the ROC, DET and training-curve plots. No libtorch.

pub mod assoc;
pub mod metrics;
pub mod plots;
