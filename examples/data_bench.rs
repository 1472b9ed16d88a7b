//! Data-path throughput on real fixtures (`tuneflow fixtures`), for
//! BENCHMARKS.md: fbank ingest (utterances/s), image ingest (images/s), and
//! the loader with augmentation (batches/s).
//!
//! Usage: `cargo run --release --example data_bench -- FIXTURES_DIR`
#![expect(clippy::print_stdout, reason = "a benchmark prints its results")]

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use tuneflow_stages::data::augment_ops::Op;
use tuneflow_stages::data::dataset::{DatasetInfo, DatasetReader, DatasetWriter};
use tuneflow_stages::data::decode::{fbank_bytes, image_bytes, ImageSpec};
use tuneflow_stages::data::fbank::{Fbank, FbankOptions};
use tuneflow_stages::data::loader::{Loader, LoaderConfig};
use tuneflow_stages::data::sources::{list, Locator};

fn files(format: &str, root: &Path) -> Vec<(u32, Vec<u8>)> {
    let items = list(format, root).expect("fixtures exist");
    let mut classes: Vec<&str> = items.iter().map(|i| i.class.as_str()).collect();
    classes.dedup();
    items
        .iter()
        .map(|i| {
            let Locator::File(p) = &i.locator else {
                unreachable!("file formats")
            };
            (
                classes.iter().position(|c| *c == i.class).expect("listed") as u32,
                std::fs::read(p).expect("readable"),
            )
        })
        .collect()
}

fn write(
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
    let info = DatasetInfo::new(kind, shape, vec![]);
    w.finish(info, &[]).expect("finish");
    Arc::new(DatasetReader::open_dir(dir).expect("reopen"))
}

fn loader_rate(data: Arc<DatasetReader>, ops: Vec<Op>, batch: usize) -> (f64, usize) {
    let mut batches = 0;
    let t = Instant::now();
    for epoch in 1..=3 {
        let cfg = LoaderConfig {
            batch,
            shuffle: true,
            seed: 7,
            stage: 1,
            epoch,
            ops: ops.clone(),
            workers: 2,
            prefetch: 4,
            drop_last: true,
            per_class: None,
        };
        for b in Loader::new(data.clone(), cfg) {
            b.expect("batch");
            batches += 1;
        }
    }
    (batches as f64 / t.elapsed().as_secs_f64(), batch)
}

fn main() {
    let root = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: data_bench FIXTURES_DIR"),
    );
    let tmp = tempfile::tempdir().expect("temp dir");
    let wavs = files("voxceleb", &root.join("speakers/pretrain"));
    let fbank = Fbank::new(FbankOptions {
        num_bins: 40,
        ..Default::default()
    });
    let t = Instant::now();
    let feats: Vec<(u32, Vec<u8>, u32)> = wavs
        .par_iter()
        .map(|(l, b)| {
            let (bytes, frames) = fbank_bytes(b, 16000, &fbank, true).expect("valid wav");
            (*l, bytes, frames)
        })
        .collect();
    let secs = t.elapsed().as_secs_f64();
    let audio_s: f64 = wavs
        .iter()
        .map(|(_, b)| (b.len() - 44) as f64 / 32000.0)
        .sum();
    println!(
        "{}",
        serde_json::json!({"bench": "fbank-40", "utterances": wavs.len(), "utterances_per_s": wavs.len() as f64 / secs, "audio_seconds_per_s": audio_s / secs, "threads": rayon::current_num_threads()})
    );

    let images = files("image-folder", &root.join("digits/images"));
    for size in [28u32, 112] {
        let spec = ImageSpec { size, channels: 3 };
        let t = Instant::now();
        let decoded: Vec<(u32, Vec<u8>, u32)> = images
            .par_iter()
            .map(|(l, b)| (*l, image_bytes(b, spec).expect("valid png"), 1))
            .collect();
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{}",
            serde_json::json!({"bench": format!("png-decode-resize-{size}"), "images": images.len(), "images_per_s": images.len() as f64 / secs})
        );
        if size == 112 {
            let data = write(
                &tmp.path().join("img"),
                "image",
                vec![3, size, size],
                &decoded,
            );
            let ops = vec![
                Op::Flip { p: 0.5 },
                Op::RandomCrop { padding: 8 },
                Op::ColorJitter {
                    brightness: 0.2,
                    contrast: 0.2,
                },
                Op::Normalize {
                    mean: vec![0.5],
                    std: vec![0.5],
                },
            ];
            let (rate, batch) = loader_rate(data, ops, 64);
            println!(
                "{}",
                serde_json::json!({"bench": "loader-images-112-augmented", "batch": batch, "batches_per_s": rate, "items_per_s": rate * batch as f64})
            );
        }
    }
    let data = write(&tmp.path().join("fbank"), "fbank", vec![40], &feats);
    let ops = vec![
        Op::SegmentCrop { frames: 100 },
        Op::SpecAugment { freq: 8, time: 10 },
    ];
    let (rate, batch) = loader_rate(data, ops, 32);
    println!(
        "{}",
        serde_json::json!({"bench": "loader-fbank-40x100-augmented", "batch": batch, "batches_per_s": rate, "items_per_s": rate * batch as f64})
    );
}
