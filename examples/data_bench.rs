//! Data-path throughput on real fixtures (`tuneflow fixtures`), for
//! BENCHMARKS.md: fbank ingest (utterances/s), image ingest (images/s), and
//! the loader with augmentation (batches/s).
//!
//! Usage: `cargo run --release --example data_bench -- FIXTURES_DIR`
#![expect(clippy::print_stdout, reason = "a benchmark prints its results")]

mod common;

use std::path::Path;
use std::time::Instant;

use rayon::prelude::*;
use tuneflow_stages::data::augment_ops::Op;
use tuneflow_stages::data::decode::{fbank_bytes, image_bytes, ImageSpec};
use tuneflow_stages::data::fbank::{Fbank, FbankOptions};
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
            let data = common::write(
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
            let (batch, rate) = (64, common::items_per_s(&data, &ops, 64, 2, 3) / 64.0);
            println!(
                "{}",
                serde_json::json!({"bench": "loader-images-112-augmented", "batch": batch, "batches_per_s": rate, "items_per_s": rate * batch as f64})
            );
        }
    }
    let data = common::write(&tmp.path().join("fbank"), "fbank", vec![40], &feats);
    let ops = vec![
        Op::SegmentCrop { frames: 100 },
        Op::SpecAugment { freq: 8, time: 10 },
    ];
    let (batch, rate) = (32, common::items_per_s(&data, &ops, 32, 2, 3) / 32.0);
    println!(
        "{}",
        serde_json::json!({"bench": "loader-fbank-40x100-augmented", "batch": batch, "batches_per_s": rate, "items_per_s": rate * batch as f64})
    );
}
