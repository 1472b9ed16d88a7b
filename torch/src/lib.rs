//! The libtorch side of tuneflow: models, losses, optimizers and the
//! training loop the `tuneflow-torch` worker runs.

pub mod amp;
pub mod associate;
pub mod bench;
pub mod checkpoint;
pub mod extract;
pub mod heads;
pub mod model;
pub mod optim;
pub mod train;
pub mod transfer;
