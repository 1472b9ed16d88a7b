//! Training, as far as the runner knows it: the typed configs the worker
//! trains with ([`config`]), how a stage's params are read into them
//! ([`read`]), and the learning-rate schedules ([`schedule`]).

pub mod config;
pub mod read;
pub mod schedule;
