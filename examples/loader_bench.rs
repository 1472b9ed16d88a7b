//! The data path a GPU training stage needs (issue #14, BENCHMARKS.md):
//! 112×112 RGB JPEG decode (what `ingest` does once per image) and the
//! loader's augmentation and batching per epoch for faces (3×112×112,
//! batch 128) and for speaker crops (80-bin fbank, 200 frames, batch 128),
//! each with 1 and with N worker threads, so the rate per core is known.
//! Inputs are generated (deterministic), so no fixtures are needed.
//!
//! Usage: `cargo run --release --example loader_bench -- [THREADS]`
#![expect(clippy::print_stdout, reason = "a benchmark prints its results")]

mod common;

use std::io::Cursor;
use std::path::Path;
use std::time::Instant;

use rayon::prelude::*;
use tuneflow_stages::data::augment_ops::Op;
use tuneflow_stages::data::decode::{image_bytes, ImageSpec};

/// A 112×112 face-like JPEG: smooth gradients, an ellipse and some noise
/// (plain noise would be a worst case no camera produces).
fn jpeg(i: u32) -> Vec<u8> {
    let mut state = u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 24) as u8
    };
    let img = image::RgbImage::from_fn(112, 112, |x, y| {
        let (dx, dy) = (x as f32 - 56.0, y as f32 - 60.0);
        let face = (dx * dx / 1400.0 + dy * dy / 2200.0) < 1.0;
        let base = if face { 170 } else { 40 + (x + y) as u8 / 3 };
        let n = noise();
        image::Rgb([
            base.saturating_add(n),
            (base / 2 + (i % 50) as u8).saturating_add(n),
            base / 3 + n,
        ])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut Cursor::new(&mut out), 90)
        .encode_image(&img)
        .expect("encode");
    out
}

fn print(bench: &str, threads: usize, rate: f64) {
    println!(
        "{}",
        serde_json::json!({"bench": bench, "threads": threads, "items_per_s": rate, "per_thread": rate / threads as f64})
    );
}

/// JPEG decode on 1 and `n` threads; returns the decoded pixels.
fn decode(jpegs: &[Vec<u8>], n: usize) -> Vec<(u32, Vec<u8>, u32)> {
    let spec = ImageSpec {
        size: 112,
        channels: 3,
    };
    let mut decoded = Vec::new();
    for threads in [1, n] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        let t = Instant::now();
        decoded = pool.install(|| {
            jpegs
                .par_iter()
                .enumerate()
                .map(|(i, b)| {
                    (
                        (i % 64) as u32,
                        image_bytes(b, spec).expect("valid jpeg"),
                        1,
                    )
                })
                .collect()
        });
        let rate = jpegs.len() as f64 / t.elapsed().as_secs_f64();
        print("jpeg-decode-112", threads, rate);
    }
    decoded
}

/// The loader over faces with the usual face augmentation.
fn faces(dir: &Path, decoded: &[(u32, Vec<u8>, u32)], n: usize) {
    let faces = common::write(dir, "image", vec![3, 112, 112], decoded);
    let ops = [
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
    for w in [1, n] {
        let rate = common::items_per_s(&faces, &ops, 128, w, 2);
        print("loader-faces-3x112x112-b128", w, rate);
    }
}

/// The loader over 80-bin fbank utterances of 3-6 s (300-600 frames),
/// cropped to 200 frames with SpecAugment.
fn speech(dir: &Path, n: usize) {
    let feats: Vec<(u32, Vec<u8>, u32)> = (0..1024u32)
        .map(|i| {
            let frames = 300 + (i * 37) % 300;
            let bytes = (0..frames * 80)
                .flat_map(|k| ((k % 97) as f32 * 0.01 + i as f32 * 1e-3).to_le_bytes())
                .collect();
            (i % 64, bytes, frames)
        })
        .collect();
    let speech = common::write(dir, "fbank", vec![80], &feats);
    let ops = [
        Op::SegmentCrop { frames: 200 },
        Op::SpecAugment { freq: 8, time: 10 },
    ];
    for w in [1, n] {
        let rate = common::items_per_s(&speech, &ops, 128, w, 2);
        print("loader-fbank-80x200-b128", w, rate);
    }
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(2, |a| a.parse().expect("usage: loader_bench [THREADS]"));
    let tmp = tempfile::tempdir().expect("temp dir");
    let jpegs: Vec<Vec<u8>> = (0..2048).into_par_iter().map(jpeg).collect();
    let decoded = decode(&jpegs, n);
    faces(&tmp.path().join("faces"), &decoded, n);
    speech(&tmp.path().join("fbank"), n);
}
