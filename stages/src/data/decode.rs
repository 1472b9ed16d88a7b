//! Turns source bytes into item bytes: images decoded, centre-cropped to a
//! square, resized and stored as u8 C x H x W; audio read as 16-bit PCM,
//! turned into log-mel fbank frames with per-utterance mean normalisation
//! and stored as f32 frames x bins.

use super::fbank::{mean_normalize, Fbank};
use super::wav;

/// Image preprocessing settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageSpec {
    /// Output side length.
    pub size: u32,
    /// 1 (grayscale) or 3 (RGB).
    pub channels: u32,
}

/// Decodes an encoded image (PNG, JPEG...) into C x H x W u8.
pub fn image_bytes(encoded: &[u8], spec: ImageSpec) -> Result<Vec<u8>, String> {
    let img = image::load_from_memory(encoded).map_err(|e| format!("cannot decode image: {e}"))?;
    Ok(to_chw(img, spec))
}

/// Crops the centre square, resizes, and lays out channels first.
pub fn to_chw(img: image::DynamicImage, spec: ImageSpec) -> Vec<u8> {
    let (w, h) = (img.width(), img.height());
    let side = w.min(h);
    let img = img.crop_imm((w - side) / 2, (h - side) / 2, side, side);
    let c = spec.channels as usize;
    let hwc = if c == 1 {
        img.to_luma8().into_raw()
    } else {
        img.to_rgb8().into_raw()
    };
    let n = spec.size as usize;
    let hwc = if side == spec.size {
        hwc
    } else {
        resize(&hwc, side as usize, c, n)
    };
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

/// Resizes a square HWC u8 image of side `from` to side `to` (separable:
/// rows, then columns; the column pass is whole-row multiply-adds, which
/// vectorise).
fn resize(src: &[u8], from: usize, c: usize, to: usize) -> Vec<u8> {
    let coef = coefficients(from, to);
    let width = to * c;
    let mut rows = vec![0f32; from * width];
    for (line, out) in src.chunks_exact(from * c).zip(rows.chunks_exact_mut(width)) {
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
) -> Result<Audio, String> {
    let w = wav::parse(bytes, rate).map_err(|e| e.to_string())?;
    let samples: Vec<f32> = w.samples.iter().map(|&s| f32::from(s)).collect();
    let mut feats = fbank.compute(&samples);
    if feats.is_empty() {
        return Err(format!(
            "{} samples is shorter than one frame",
            samples.len()
        ));
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
) -> Result<(Vec<u8>, u32), String> {
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
        .starts_with("cannot decode image"));
    }
}
