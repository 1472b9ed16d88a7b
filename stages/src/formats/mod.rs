//! The artifact formats stages exchange, as plain data: what is inside a
//! `model` folder, an `embeddings` folder, a `freeze.json`, an augment
//! `policy.json`, and the safetensors container. The dataset artifact is
//! in [`crate::data::dataset`]. Kinds write and read these; the
//! `tuneflow-torch` worker shares them, and never imports a kind.

pub mod artifact;
pub mod embeddings;
pub mod freeze;
pub mod model;
pub mod policy;
pub mod safetensors;
