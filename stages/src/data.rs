//! Dataset formats, features and the dataset artifact the data stages
//! write. Readers and writers are plain functions over files, so each can
//! be tested by round trips without a pipeline.

pub mod augment_ops;
pub mod budget;
pub mod dataset;
pub mod decode;
pub mod error;
pub mod fbank;
pub mod insightface;
pub mod loader;
pub mod pickle_bin;
pub mod recordio;
pub mod sources;
pub mod tiff_check;
pub mod wav;
