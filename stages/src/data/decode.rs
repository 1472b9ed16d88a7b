//! Turns source bytes into item bytes: images decoded, centre-cropped to a
//! square, resized and stored as u8 C x H x W; audio read as 16-bit PCM,
//! turned into log-mel fbank frames with per-utterance mean normalisation
//! and stored as f32 frames x bins.

use image::imageops::FilterType;

use super::fbank::{mean_normalize, Fbank};
use super::wav;

/// Image preprocessing settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    let img = if side == spec.size {
        img
    } else {
        img.resize_exact(spec.size, spec.size, FilterType::Triangle)
    };
    let plane = (spec.size * spec.size) as usize;
    if spec.channels == 1 {
        return img.to_luma8().into_raw();
    }
    let rgb = img.to_rgb8().into_raw();
    let mut out = vec![0u8; 3 * plane];
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = px[c];
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
/// the samples as i16 LE bytes when `keep_wave`).
pub fn audio(
    bytes: &[u8],
    rate: u32,
    fbank: &Fbank,
    cmn: bool,
    keep_wave: bool,
) -> Result<Audio, String> {
    let (feats, frames) = fbank_bytes(bytes, rate, fbank, cmn)?;
    let wave = keep_wave
        .then(|| {
            wav::parse(bytes, rate)
                .map(|w| w.samples.iter().flat_map(|s| s.to_le_bytes()).collect())
        })
        .transpose()
        .map_err(|e| e.to_string())?;
    Ok((feats, frames, wave))
}

/// Reads a WAV file into fbank frames; returns (f32 LE bytes, frames).
pub fn fbank_bytes(
    bytes: &[u8],
    rate: u32,
    fbank: &Fbank,
    cmn: bool,
) -> Result<(Vec<u8>, u32), String> {
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
    Ok((feats.iter().flat_map(|f| f.to_le_bytes()).collect(), frames))
}

#[cfg(test)]
mod tests {
    use super::*;

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
