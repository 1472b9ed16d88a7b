//! Real inputs for every reader, written with the project's own writers
//! (and the `image` crate's encoders): the starting points the mutator
//! damages.

use std::io::Cursor;
use std::path::Path;

use tuneflow_stages::data::pickle_bin::{encode_py2, PairFile};
use tuneflow_stages::data::recordio::write_insightface;
use tuneflow_stages::data::wav;

/// `img` encoded as `format`.
pub fn encode(img: &image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), format)
        .expect("in-memory encode");
    out
}

fn rgb(w: u32, h: u32, shade: u8) -> image::DynamicImage {
    image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([shade, (x * 9) as u8, (y * 5) as u8])
    }))
}

/// Small images in every format image-folder reads, in several layouts.
pub fn images() -> Vec<Vec<u8>> {
    use image::ImageFormat as F;
    let gray = image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(9, 7, |x, y| {
        image::Luma([(x * 20 + y) as u8])
    }));
    let rgba16 = image::DynamicImage::ImageRgba16(image::ImageBuffer::from_fn(6, 6, |x, y| {
        image::Rgba([x as u16 * 1000, y as u16 * 900, 7, 65535])
    }));
    let mut out = vec![
        encode(&rgb(16, 12, 40), F::Png),
        encode(&gray, F::Png),
        encode(&rgba16, F::Png),
        encode(&rgb(16, 16, 90), F::Jpeg),
        encode(&gray, F::Jpeg),
    ];
    for f in [F::Bmp, F::Pnm, F::Tiff, F::WebP] {
        out.push(encode(&rgb(8, 5, 200), f));
    }
    out
}

/// A JPEG for RecordIO and `.bin` payloads.
pub fn jpeg(shade: u8) -> Vec<u8> {
    encode(&rgb(8, 8, shade), image::ImageFormat::Jpeg)
}

/// An InsightFace package in `dir`; returns (`train.rec`, `train.idx`).
pub fn recordio(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let images: Vec<(u32, Vec<u8>)> = (0..6).map(|i| (i % 3, jpeg(i as u8 * 40))).collect();
    write_insightface(dir, &images, (8, 8), false).expect("temp dir");
    let read = |n: &str| std::fs::read(dir.join(n)).expect("just written");
    (read("train.rec"), read("train.idx"))
}

/// `.bin` pair files in the three variants seen in the wild.
pub fn pickles() -> Vec<Vec<u8>> {
    let pairs = PairFile {
        images: vec![jpeg(1), vec![1, 2, 3], jpeg(2), vec![]],
        same: vec![true, false],
    };
    vec![
        encode_py2(&pairs),
        // CPython 3.11: pickle.dumps(([b'\xff\xd8', b'ab'], [True]), protocol=2 and 4).
        b"\x80\x02]q\x00(c_codecs\nencode\nq\x01X\x04\x00\x00\x00\xc3\xbf\xc3\x98q\x02X\x06\x00\x00\x00latin1q\x03\x86q\x04Rq\x05h\x01X\x02\x00\x00\x00abq\x06h\x03\x86q\x07Rq\x08e]q\t\x88a\x86q\n.".to_vec(),
        b"\x80\x04\x95\x15\x00\x00\x00\x00\x00\x00\x00]\x94(C\x02\xff\xd8\x94C\x02ab\x94e]\x94\x88a\x86\x94.".to_vec(),
    ]
}

/// WAV files: plain, and with an extra chunk before the samples.
pub fn wavs() -> Vec<Vec<u8>> {
    let samples: Vec<i16> = (0..1200).map(|i| ((i * 37) % 2000 - 1000) as i16).collect();
    let plain = wav::encode(16000, &samples);
    let mut listed = plain[..36].to_vec();
    listed.extend_from_slice(b"LIST\x06\x00\x00\x00abcdef");
    listed.extend_from_slice(&plain[36..]);
    let riff = listed.len() as u32 - 8;
    listed[4..8].copy_from_slice(&riff.to_le_bytes());
    vec![plain, listed]
}

/// MNIST JSON files, nested and flat.
pub fn mnist() -> Vec<Vec<u8>> {
    let img = |k: usize| {
        (0..784)
            .map(|i| ((i * k) % 11) as f32 / 10.0)
            .collect::<Vec<f32>>()
    };
    let nested = serde_json::json!({ "data": [img(1), img(3)] });
    let flat: Vec<f32> = [img(2), img(5)].concat();
    let flat = serde_json::json!({ "labels": [1, 2], "data": flat });
    vec![
        nested.to_string().into_bytes(),
        flat.to_string().into_bytes(),
    ]
}

/// A VoxCeleb trial list, an `iden_split.txt` and an LFW `pairs.txt`.
pub fn lists() -> Vec<Vec<u8>> {
    vec![
        b"1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav\n0 id10270/x6uYqmx31kE/00001.wav id10300/ize_eiCFEg0/00003.wav\ntarget a/b.wav c/d.wav\n".to_vec(),
        b"1 id10006/nLEBBc9oIFs/00003.wav\n2 id10006/nLEBBc9oIFs/00004.wav\n3 id10007/abc/00001.wav\n".to_vec(),
        b"1\t1\nAnn_Lee\t1\t2\nAnn_Lee\t1\tBo_Wu\t4\n".to_vec(),
    ]
}
