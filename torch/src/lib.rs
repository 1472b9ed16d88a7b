//! The libtorch side of tuneflow: optimizers over tensors (so their state
//! is checkpointed with the model), and, as the training stages land, the
//! models and the training loop the `tuneflow-torch` worker runs.

pub mod model;
pub mod optim;
pub mod train;
