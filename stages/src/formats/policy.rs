//! `policy.json`, the output of `augment`: the ops the data loader applies
//! on the fly, and the seeds they draw from.

use crate::data::augment_ops::Op;

/// What the policy output holds; the loader reads it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AugmentPolicy {
    /// The ops, in order.
    pub ops: Vec<Op>,
    /// Pipeline seed.
    pub seed: i64,
    /// Seed part from the stage's name.
    pub stage: u64,
}
