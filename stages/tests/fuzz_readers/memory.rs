//! Peak-memory regression tests for the inputs of issue #11, measured
//! with the counting allocator: each allocated gigabytes before the fix.

use std::io::Write;

use rayon::prelude::*;
use tuneflow_stages::data::decode::{ImageLoader, ImageSpec, DEFAULT_MAX_PIXELS};
use tuneflow_stages::data::pickle_bin;
use tuneflow_stages::data::recordio::RecordReader;

use super::alloc::{measure, serial};

/// Case 5: a 639-byte memo-doubling pickle (it grew past 3 GB) and
/// 50,000 nested lists in a 100 KB file (they overflowed the stack).
#[test]
fn pickle_bombs_stay_small() {
    let _serial = serial();
    let mut doubling = vec![0x80, 2, b'U', 16];
    doubling.extend([7; 16]);
    doubling.extend_from_slice(b"q\x00");
    for k in 0..88u8 {
        doubling.extend_from_slice(&[b'h', k, b'h', k, 0x86, b'q', k + 1]);
    }
    doubling.push(b'.');
    let (result, peak) = measure(|| pickle_bin::parse(&doubling));
    assert!(result.is_err());
    assert!(peak < 256 << 10, "{} bytes built {peak}", doubling.len());

    let mut nested = vec![0x80, 2];
    nested.extend(vec![b']'; 50_000]);
    nested.extend(vec![b'a'; 49_999]);
    nested.push(b'.');
    let (result, peak) = measure(|| pickle_bin::parse(&nested));
    assert!(result.is_err());
    // The machine's allowance (4 x + 1 MiB) counts what it keeps; the
    // allocator also sees the stack's old block while it grows.
    assert!(peak < 2 * (4 * nested.len() + (1 << 20)), "peak {peak}");
}

/// A valid `side` x `side` 8-bit grayscale PNG of one shade, written a
/// row at a time (the image is never held whole).
fn gray_png(side: u32, shade: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, side, side);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    let mut writer = enc.write_header().expect("in memory");
    let mut stream = writer.stream_writer().expect("in memory");
    let row = vec![shade; side as usize];
    for _ in 0..side {
        stream.write_all(&row).expect("in memory");
    }
    stream.finish().expect("in memory");
    drop(writer);
    out
}

/// Case 6: a valid 13000 x 13000 PNG (518 KB) decoded to 1.2 GB. It is
/// now refused from its header, having allocated next to nothing.
#[test]
fn a_huge_png_is_refused_before_decoding() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.png");
    std::fs::write(&path, gray_png(13000, 0)).unwrap();
    let spec = ImageSpec {
        size: 112,
        channels: 3,
    };
    let loader = ImageLoader::new(spec, DEFAULT_MAX_PIXELS, 1 << 30);
    let (result, peak) = measure(|| loader.load_file(&path));
    let err = result.unwrap_err().to_string();
    assert!(err.contains("huge.png`: image is 13000 x 13000"), "{err}");
    assert!(peak < 1 << 20, "peak {peak}");
}

/// Case 6: six large images decoding at once peaked at six times one.
/// With a budget below two images' estimates they take turns; with an
/// unlimited one (the old behaviour) the peak is several images.
#[test]
fn parallel_decodes_stay_within_the_memory_budget() {
    let _serial = serial();
    let png = gray_png(1000, 77);
    let spec = ImageSpec {
        size: 8,
        channels: 1,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(6)
        .build()
        .unwrap();
    let decode_six = |budget: u64| {
        let loader = ImageLoader::new(spec, DEFAULT_MAX_PIXELS, budget);
        let inputs = vec![png.clone(); 6];
        let (out, peak) = measure(|| {
            pool.install(|| {
                inputs
                    .par_iter()
                    .map(|p| loader.load(p).unwrap())
                    .collect::<Vec<_>>()
            })
        });
        assert!(out.iter().all(|o| o == &vec![77u8; 64]));
        peak
    };
    // One decode holds about twice the image (the image and the PNG
    // decoder's own buffer); its estimate is three times (1 byte a pixel,
    // twice, plus the 1-channel output), so a budget of one estimate lets
    // a single decode run at a time.
    let one_image = 1000 * 1000;
    let budget = 3 * one_image;
    let budgeted = decode_six(budget as u64);
    assert!(
        budgeted <= budget,
        "peak {budgeted} with a budget of {budget}"
    );
    let unlimited = decode_six(u64::MAX);
    assert!(
        unlimited > 2 * budgeted,
        "peak {unlimited} without a budget, {budgeted} with one"
    );
}

/// Case 7: a length field of 0x7FFFFFFF in a 60 KB file allocated 512 MB.
#[test]
fn a_huge_record_length_allocates_nothing() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (rec, idx) = (dir.path().join("a.rec"), dir.path().join("a.idx"));
    let mut w = tuneflow_stages::data::recordio::RecordWriter::create(&rec, &idx).unwrap();
    for k in 0..15 {
        w.write(k, &[k as u8; 4000]).unwrap();
    }
    w.finish().unwrap();
    let mut bytes = std::fs::read(&rec).unwrap();
    let at = 3 * 4008;
    bytes[at + 4..at + 8].copy_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
    std::fs::write(&rec, &bytes).unwrap();
    let reader = RecordReader::open(&rec, &idx).unwrap();
    let (result, peak) = measure(|| reader.read_at(3, at as u64));
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains(&format!("a.rec` record 3 at byte {at}: length")),
        "{err}"
    );
    assert!(peak < 64 << 10, "peak {peak}");
}
