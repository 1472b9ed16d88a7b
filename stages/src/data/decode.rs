//! Turns source bytes into item bytes: images decoded, centre-cropped to a
//! square, resized and stored as u8 C x H x W; audio read as 16-bit PCM,
//! turned into log-mel fbank frames with per-utterance mean normalisation
//! and stored as f32 frames x bins.

use std::io::{BufRead, Seek};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits};

use super::budget::MemoryBudget;
use super::error::{DataError, FormatError};
use super::fbank::{mean_normalize, Fbank};
use super::tiff_check;
use super::wav;

/// Default `max-pixels`: larger images are refused before decoding.
pub const DEFAULT_MAX_PIXELS: u64 = 50_000_000;
/// Default bytes that image decodes in flight may hold together.
pub const DEFAULT_DECODE_MEMORY: u64 = 1 << 30;

/// Image preprocessing settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageSpec {
    /// Output side length.
    pub size: u32,
    /// 1 (grayscale) or 3 (RGB).
    pub channels: u32,
}

/// Decodes images under limits: the pixel count, read from the header
/// before anything is decoded, and a memory budget shared by every thread
/// that uses the loader.
#[derive(Debug)]
pub struct ImageLoader {
    spec: ImageSpec,
    max_pixels: u64,
    budget: MemoryBudget,
}

impl ImageLoader {
    /// A loader producing `spec` images, refusing images of more than
    /// `max_pixels` pixels, with `memory` bytes for decodes in flight.
    pub fn new(spec: ImageSpec, max_pixels: u64, memory: u64) -> Self {
        Self {
            spec,
            max_pixels,
            budget: MemoryBudget::new(memory),
        }
    }

    /// What the loader produces.
    pub fn spec(&self) -> ImageSpec {
        self.spec
    }

    /// Decodes encoded bytes (PNG, JPEG...) into C x H x W u8.
    pub fn load(&self, encoded: &[u8]) -> Result<Vec<u8>, FormatError> {
        tiff_check::check(encoded)?;
        self.load_from(std::io::Cursor::new(encoded), encoded.len() as u64)
    }

    /// Decodes an image file; only its header is read before the size
    /// check (a TIFF file is read whole, to check its directory first).
    pub fn load_file(&self, path: &Path) -> Result<Vec<u8>, DataError> {
        let file = std::fs::File::open(path).map_err(|e| DataError::io("open", path, e))?;
        let len = file.metadata().map_or(0, |m| m.len());
        let mut reader = std::io::BufReader::new(file);
        let head = reader
            .fill_buf()
            .map_err(|e| DataError::io("read", path, e))?;
        if tiff_check::is_tiff(head) {
            let bytes = super::error::read_file(path)?;
            return self.load(&bytes).map_err(|e| e.in_file(path));
        }
        self.load_from(reader, len).map_err(|e| e.in_file(path))
    }

    /// Bytes a decode may allocate: the largest image at 8 bytes a pixel
    /// (RGBA, 16 bits), plus room for the decoder's own buffers.
    fn max_alloc(&self) -> u64 {
        self.max_pixels.saturating_mul(8).saturating_add(64 << 20)
    }

    fn load_from<R: BufRead + Seek>(
        &self,
        reader: R,
        encoded: u64,
    ) -> Result<Vec<u8>, FormatError> {
        let mut reader = ImageReader::new(reader)
            .with_guessed_format()
            .map_err(|e| FormatError::whole(format!("cannot read image: {e}")))?;
        if reader.format().is_none() {
            return Err(FormatError::whole(
                "cannot decode image: not a format tuneflow reads (png, jpeg, bmp, pnm, tiff, webp)",
            ));
        }
        let mut limits = Limits::default();
        limits.max_alloc = Some(self.max_alloc());
        reader.limits(limits);
        let decoder = guarded(|| reader.into_decoder())?;
        let (w, h) = decoder.dimensions();
        let pixels = u64::from(w) * u64::from(h);
        if pixels > self.max_pixels {
            return Err(FormatError::whole(format!(
                "image is {w} x {h} = {pixels} pixels, more than `max-pixels` ({})",
                self.max_pixels
            )));
        }
        if pixels == 0 {
            return Err(FormatError::whole(format!("image is {w} x {h}: no pixels")));
        }
        // The decoded image, a converted copy, and decoder state of about
        // the image's size (progressive JPEG keeps every coefficient).
        let bpp = u64::from(decoder.color_type().bytes_per_pixel());
        let estimate = pixels * (2 * bpp + u64::from(self.spec.channels)) + encoded;
        let _permit = self.budget.acquire(estimate);
        let img = guarded(|| DynamicImage::from_decoder(decoder))?;
        Ok(to_chw(img, self.spec))
    }
}

/// Runs a decoder step: its errors, and its panics (third-party code on
/// untrusted bytes), become located errors instead of ending the run.
fn guarded<T>(f: impl FnOnce() -> image::ImageResult<T>) -> Result<T, FormatError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(FormatError::whole(format!("cannot decode image: {e}"))),
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(FormatError::whole(format!(
                "cannot decode image: the decoder failed ({why})"
            )))
        }
    }
}

/// Decodes an encoded image (PNG, JPEG...) into C x H x W u8, with the
/// default limits.
pub fn image_bytes(encoded: &[u8], spec: ImageSpec) -> Result<Vec<u8>, FormatError> {
    ImageLoader::new(spec, DEFAULT_MAX_PIXELS, DEFAULT_DECODE_MEMORY).load(encoded)
}

/// Crops the centre square, resizes, and lays out channels first. The
/// image is converted first (a move when it already has the output's
/// layout) and cropped by indexing, so no cropped copy is made.
pub fn to_chw(img: DynamicImage, spec: ImageSpec) -> Vec<u8> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let c = spec.channels as usize;
    let raw = if c == 1 {
        img.into_luma8().into_raw()
    } else {
        img.into_rgb8().into_raw()
    };
    let side = w.min(h);
    let window = Window {
        stride: w,
        x0: (w - side) / 2,
        y0: (h - side) / 2,
        side,
    };
    let n = spec.size as usize;
    let hwc = resize_window(&raw, window, c, n);
    drop(raw);
    if c == 1 {
        return hwc;
    }
    let plane = n * n;
    let mut out = vec![0u8; c * plane];
    for (i, px) in hwc.chunks_exact(c).enumerate() {
        for (ch, v) in px.iter().enumerate() {
            out[ch * plane + i] = *v;
        }
    }
    out
}

/// A square window of an HWC image `stride` pixels wide.
#[derive(Debug, Clone, Copy)]
struct Window {
    stride: usize,
    x0: usize,
    y0: usize,
    side: usize,
}

impl Window {
    /// Row `y` of the window.
    fn row<'a>(&self, src: &'a [u8], y: usize, c: usize) -> &'a [u8] {
        let start = ((self.y0 + y) * self.stride + self.x0) * c;
        &src[start..start + self.side * c]
    }
}

/// Per output coordinate: the first input index and the normalised weights
/// of a triangle (bilinear) filter whose support widens when shrinking, so
/// downscaling averages instead of skipping pixels (as PIL's BILINEAR).
fn coefficients(input: usize, output: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = input as f64 / output as f64;
    let support = scale.max(1.0);
    (0..output)
        .map(|o| {
            let center = (o as f64 + 0.5) * scale;
            let lo = (center - support).floor().max(0.0) as usize;
            let hi = ((center + support).ceil() as usize).min(input);
            let mut w: Vec<f64> = (lo..hi)
                .map(|i| (1.0 - ((i as f64 + 0.5 - center) / support).abs()).max(0.0))
                .collect();
            let total: f64 = w.iter().sum();
            w.iter_mut()
                .for_each(|x| *x /= total.max(f64::MIN_POSITIVE));
            (lo, w.into_iter().map(|x| x as f32).collect())
        })
        .collect()
}

/// Resizes a square HWC u8 image of side `from` to side `to`.
#[cfg(test)]
fn resize(src: &[u8], from: usize, c: usize, to: usize) -> Vec<u8> {
    let window = Window {
        stride: from,
        x0: 0,
        y0: 0,
        side: from,
    };
    resize_window(src, window, c, to)
}

/// Resizes the window of `src` to side `to` (separable: rows, then
/// columns; the column pass is whole-row multiply-adds, which vectorise).
fn resize_window(src: &[u8], window: Window, c: usize, to: usize) -> Vec<u8> {
    let from = window.side;
    if from == to {
        return (0..from)
            .flat_map(|y| window.row(src, y, c))
            .copied()
            .collect();
    }
    let coef = coefficients(from, to);
    let width = to * c;
    let mut rows = vec![0f32; from * width];
    for (y, out) in rows.chunks_exact_mut(width).enumerate() {
        let line = window.row(src, y, c);
        for ((lo, w), o) in coef.iter().zip(out.chunks_exact_mut(c)) {
            for (k, wk) in w.iter().enumerate() {
                let px = &line[(lo + k) * c..(lo + k + 1) * c];
                for (a, p) in o.iter_mut().zip(px) {
                    *a += wk * f32::from(*p);
                }
            }
        }
    }
    let mut acc = vec![0f32; width];
    let mut out = vec![0u8; to * width];
    for ((lo, w), dest) in coef.iter().zip(out.chunks_exact_mut(width)) {
        acc.fill(0.0);
        for (k, wk) in w.iter().enumerate() {
            for (a, v) in acc
                .iter_mut()
                .zip(&rows[(lo + k) * width..(lo + k + 1) * width])
            {
                *a += wk * v;
            }
        }
        for (o, a) in dest.iter_mut().zip(&acc) {
            *o = a.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// An MNIST digit (784 values in [0, 1]) as an image item.
pub fn mnist_bytes(values: &[f32], spec: ImageSpec) -> Vec<u8> {
    let raw: Vec<u8> = values
        .iter()
        .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    let img = image::GrayImage::from_raw(28, 28, raw).expect("784 values");
    to_chw(image::DynamicImage::ImageLuma8(img), spec)
}

/// fbank bytes, frames, and the raw samples when kept.
pub type Audio = (Vec<u8>, u32, Option<Vec<u8>>);

/// Reads a WAV file into fbank frames; returns (f32 LE bytes, frames, and
/// the samples as i16 LE bytes when `keep_wave`). The file is parsed once.
pub fn audio(
    bytes: &[u8],
    rate: u32,
    fbank: &Fbank,
    cmn: bool,
    keep_wave: bool,
) -> Result<Audio, FormatError> {
    let w = wav::parse(bytes, rate)?;
    let samples: Vec<f32> = w.samples.iter().map(|&s| f32::from(s)).collect();
    let mut feats = fbank.compute(&samples);
    if feats.is_empty() {
        return Err(FormatError::whole(format!(
            "{} samples is shorter than one frame",
            samples.len()
        )));
    }
    if cmn {
        mean_normalize(&mut feats, fbank.num_bins());
    }
    let frames = (feats.len() / fbank.num_bins()) as u32;
    let wave = keep_wave.then(|| w.samples.iter().flat_map(|s| s.to_le_bytes()).collect());
    Ok((
        feats.iter().flat_map(|f| f.to_le_bytes()).collect(),
        frames,
        wave,
    ))
}

/// Reads a WAV file into fbank frames; returns (f32 LE bytes, frames).
pub fn fbank_bytes(
    bytes: &[u8],
    rate: u32,
    fbank: &Fbank,
    cmn: bool,
) -> Result<(Vec<u8>, u32), FormatError> {
    audio(bytes, rate, fbank, cmn, false).map(|(feats, frames, _)| (feats, frames))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_matches_pillow_bilinear() {
        let flat = vec![77u8; 5 * 5 * 3];
        assert!(resize(&flat, 5, 3, 9).iter().all(|&v| v == 77));
        // Expected values printed by Pillow 12's Image.resize(..., BILINEAR).
        let src: Vec<u8> = vec![
            0, 100, 0, 100, 0, 100, 0, 100, 10, 10, 30, 30, 10, 10, 30, 30,
        ];
        assert_eq!(resize(&src, 4, 1, 2), vec![39, 53, 17, 31]);
        let up = resize(&[0, 200, 0, 200], 2, 1, 4);
        assert_eq!(&up[..4], &[0, 50, 150, 200]);
        let ramp: Vec<u8> = (0..28 * 28).map(|i| (i % 251) as u8).collect();
        let big = resize(&ramp, 28, 1, 112);
        assert_eq!(&big[..8], &[0, 0, 0, 0, 1, 1, 1, 1]);
        let sum: i64 = big.iter().map(|&v| i64::from(v)).sum();
        assert!((sum - 1_518_792).abs() <= 112 * 112 / 2, "sum {sum}");
    }

    #[test]
    fn png_round_trip_crops_resizes_and_orders_channels() {
        let mut img = image::RgbImage::new(4, 2);
        for (x, _, px) in img.enumerate_pixels_mut() {
            *px = image::Rgb([x as u8 * 10, 100, 200]);
        }
        let mut png = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let out = image_bytes(
            &png,
            ImageSpec {
                size: 2,
                channels: 3,
            },
        )
        .unwrap();
        // Centre crop keeps columns 1..3; channel planes come first.
        assert_eq!(
            out,
            vec![10, 20, 10, 20, 100, 100, 100, 100, 200, 200, 200, 200]
        );
        let gray = image_bytes(
            &png,
            ImageSpec {
                size: 2,
                channels: 1,
            },
        )
        .unwrap();
        assert_eq!(gray.len(), 4);
        assert!(image_bytes(
            &png[..20],
            ImageSpec {
                size: 2,
                channels: 1
            }
        )
        .unwrap_err()
        .to_string()
        .starts_with("cannot decode image"));
    }

    /// CRC-32 (IEEE) of a PNG chunk's type and data.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
            }
        }
        !crc
    }

    /// A PNG that is only a header: `w` x `h` 8-bit grayscale, no pixels.
    pub(crate) fn png_header_only(w: u32, h: u32) -> Vec<u8> {
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut chunk = |kind: &[u8], data: &[u8]| {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let body = [kind, data].concat();
            out.extend_from_slice(&body);
            out.extend_from_slice(&crc32(&body).to_be_bytes());
        };
        let ihdr = [&w.to_be_bytes()[..], &h.to_be_bytes(), &[8, 0, 0, 0, 0]].concat();
        chunk(b"IHDR", &ihdr);
        chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
        chunk(b"IEND", &[]);
        out
    }

    /// Issue #11 (6): a 13000 x 13000 PNG decoded to 1.2 GB. Its header
    /// alone is now enough to refuse it, naming its size and the limit.
    #[test]
    fn images_over_max_pixels_are_refused_from_the_header() {
        let spec = ImageSpec {
            size: 8,
            channels: 1,
        };
        let err = image_bytes(&png_header_only(13000, 13000), spec).unwrap_err();
        assert_eq!(
            err.to_string(),
            "image is 13000 x 13000 = 169000000 pixels, more than `max-pixels` (50000000)"
        );
        let small = ImageLoader::new(spec, 100, 1 << 20);
        let err = small.load(&png_header_only(11, 10)).unwrap_err();
        assert!(err.message.contains("110 pixels"), "{err}");
    }

    /// Issue #11 (17): every extension image-folder lists decodes (ppm and
    /// the others used to fail with "format Pnm is not supported").
    #[test]
    fn every_listed_image_extension_decodes() {
        let dir = tempfile::tempdir().unwrap();
        let img =
            image::RgbImage::from_fn(6, 5, |x, y| image::Rgb([x as u8 * 40, y as u8 * 50, 9]));
        let spec = ImageSpec {
            size: 5,
            channels: 3,
        };
        let expected = to_chw(DynamicImage::ImageRgb8(img.clone()), spec);
        let loader = ImageLoader::new(spec, DEFAULT_MAX_PIXELS, 1 << 26);
        for ext in crate::data::sources::IMAGE_EXTENSIONS {
            let format = image::ImageFormat::from_extension(ext).unwrap();
            let path = dir.path().join(format!("a.{ext}"));
            DynamicImage::ImageRgb8(img.clone())
                .save_with_format(&path, format)
                .unwrap_or_else(|e| panic!("{ext}: {e}"));
            let out = loader
                .load_file(&path)
                .unwrap_or_else(|e| panic!("{ext}: {e}"));
            if !matches!(ext, &"jpg" | &"jpeg") {
                assert_eq!(out, expected, "{ext}");
            }
        }
    }
}
