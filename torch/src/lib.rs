//! The libtorch side of tuneflow: models, losses, optimizers and the
//! training loop the `tuneflow-torch` worker runs.

pub mod amp;
pub mod associate;
pub mod bench;
pub mod checkpoint;
pub mod extract;
pub mod feed;
pub mod flat;
pub mod heads;
pub mod layout;
pub mod model;
pub mod optim;
pub mod step;
pub mod train;
pub mod transfer;

/// Serialises the tests that seed or draw from libtorch's global random
/// generator: the test harness runs them on parallel threads of one
/// process, and a draw in one test would change another's "same seed,
/// same weights" (the worker runs one job per process, so it needs none).
#[cfg(test)]
pub(crate) fn torch_rng() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
