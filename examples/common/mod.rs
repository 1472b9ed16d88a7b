//! What the data benchmarks share: a dataset written to a folder, and the
//! loader's rate over it.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tuneflow_stages::data::augment_ops::Op;
use tuneflow_stages::data::dataset::{DatasetInfo, DatasetReader, DatasetWriter};
use tuneflow_stages::data::loader::{Loader, LoaderConfig};

/// Writes `(label, bytes, frames)` items as a `kind` dataset of `shape`
/// in `dir` and opens it.
pub fn write(
    dir: &Path,
    kind: &str,
    shape: Vec<u32>,
    items: &[(u32, Vec<u8>, u32)],
) -> Arc<DatasetReader> {
    let mut w = DatasetWriter::create(dir).expect("temp dir");
    for (i, (label, bytes, frames)) in items.iter().enumerate() {
        w.push(&i.to_string(), *label, *frames, bytes)
            .expect("write");
    }
    w.finish(DatasetInfo::new(kind, shape, vec![]), &[])
        .expect("finish");
    Arc::new(DatasetReader::open_dir(dir).expect("reopen"))
}

/// Items per second the loader hands out over `epochs` shuffled epochs
/// (batches of `batch`, the last partial one dropped) with `workers`
/// threads and 4 batches prefetched.
pub fn items_per_s(
    data: &Arc<DatasetReader>,
    ops: &[Op],
    batch: usize,
    workers: usize,
    epochs: u64,
) -> f64 {
    let mut items = 0;
    let t = Instant::now();
    for epoch in 1..=epochs {
        let cfg = LoaderConfig {
            batch,
            shuffle: true,
            seed: 7,
            stage: 1,
            epoch,
            ops: ops.to_vec(),
            workers,
            prefetch: 4,
            drop_last: true,
            per_class: None,
        };
        for b in Loader::new(data.clone(), cfg) {
            items += b.expect("batch").labels.len();
        }
    }
    items as f64 / t.elapsed().as_secs_f64()
}
