//! Dataset formats, features and the dataset artifact the data stages
//! write. Readers and writers are plain functions over files, so each can
//! be tested by round trips without a pipeline. Readers treat their input
//! as untrusted: their errors ([`error::DataError`]) name the file and the
//! place in it, and what they allocate is bounded by the input's size (or,
//! for images, by a pixel limit).

pub mod augment_ops;
pub mod budget;
pub mod dataset;
pub mod decode;
pub mod error;
pub mod fbank;
pub mod insightface;
pub mod lists;
pub mod loader;
pub mod mnist;
pub mod pickle_bin;
pub mod recordio;
pub mod sources;
pub mod tiff_check;
pub mod walk;
pub mod wav;
