//! tuneflow: declarative machine-learning pipelines with a content-addressed
//! cache. `main.rs` parses the command line and calls [`commands::main`].

pub mod backend;
pub mod cli;
pub mod commands;
pub mod engine;
pub mod error;
pub mod executor;
pub mod export;
pub mod fixtures;
pub mod graph;
pub mod keys;
pub mod maintenance;
pub mod metrics;
pub mod outputs;
pub mod plan;
pub mod report;
pub mod resources;
pub mod slurm;
pub mod spec;
pub mod state;
pub mod status;
