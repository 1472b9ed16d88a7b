//! End-to-end tests: the real `tuneflow` binary on real pipelines in temp
//! folders. One test binary, built from modules (as ripgrep does).

mod agree;
mod artifacts;
#[cfg(feature = "torch")]
mod associate;
mod browser;
#[cfg(feature = "torch")]
mod byo;
mod cache;
mod data;
#[cfg(feature = "torch")]
mod demo;
mod failures;
mod fuzz_pipeline;
#[cfg(feature = "torch")]
mod gpu_bench;
mod harness;
mod history;
mod hostile;
#[cfg(feature = "torch")]
mod image_to_voice;
mod invalid;
mod layers;
#[cfg(feature = "torch")]
mod live;
#[cfg(feature = "torch")]
mod python;
mod remote;
mod report;
mod resume;
mod runs;
mod slurm;
mod torch;
#[cfg(feature = "torch")]
mod train;
#[cfg(feature = "torch")]
mod transfer;
