//! Augmentation ops and the policy that applies them. Every random choice
//! comes from an RNG seeded by (pipeline seed, stage, epoch, item), so each
//! epoch differs but a rerun or a resume reproduces it exactly.
//!
//! Images are u8 C x H x W in, f32 C x H x W out (after `normalize`, or
//! scaled to [0, 1]). Audio features are f32 frames x bins in and out.

use crate::rng::Rng;

/// One op of a policy, as written in the pipeline (`{ op = "...", ... }`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Op {
    /// Mirror left-right with probability `p`.
    Flip {
        /// Probability.
        #[serde(default = "half")]
        p: f64,
    },
    /// Pad by `padding` pixels (zeros) and crop back to size at a random place.
    RandomCrop {
        /// Padding on each side.
        padding: u32,
    },
    /// Rotate by a random angle in `[-degrees, degrees]` (bilinear, zero fill).
    Rotate {
        /// Largest angle.
        degrees: f64,
    },
    /// Scale brightness and contrast by random factors in `1 ± amount`.
    ColorJitter {
        /// Brightness amount.
        brightness: f64,
        /// Contrast amount.
        contrast: f64,
    },
    /// `(x / 255 - mean) / std` per channel.
    Normalize {
        /// Per-channel means (one value applies to all).
        #[serde(deserialize_with = "one_or_many")]
        mean: Vec<f64>,
        /// Per-channel standard deviations.
        #[serde(deserialize_with = "one_or_many")]
        std: Vec<f64>,
    },
    /// A random window of `frames` frames (padded by repetition if shorter).
    SegmentCrop {
        /// Frames kept.
        frames: u32,
    },
    /// SpecAugment: one frequency mask of up to `freq` bins and one time
    /// mask of up to `time` frames, set to the mean.
    SpecAugment {
        /// Largest frequency mask.
        freq: u32,
        /// Largest time mask.
        time: u32,
    },
    /// Noise at `snr` dB added in the mel-energy domain.
    Noise {
        /// Signal-to-noise ratio, dB.
        snr: f64,
    },
}

fn half() -> f64 {
    0.5
}

impl Op {
    /// Whether the op applies to images (else to audio features).
    pub fn for_images(&self) -> bool {
        matches!(
            self,
            Op::Flip { .. }
                | Op::RandomCrop { .. }
                | Op::Rotate { .. }
                | Op::ColorJitter { .. }
                | Op::Normalize { .. }
        )
    }
}

/// A number or a list of numbers, as a list.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(f64),
        Many(Vec<f64>),
    }
    Ok(match serde::Deserialize::deserialize(d)? {
        OneOrMany::One(v) => vec![v],
        OneOrMany::Many(v) => v,
    })
}

/// An image being augmented: f32 planes, C x H x W.
pub struct Image {
    /// Channels.
    pub c: usize,
    /// Height and width.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Values, 0..255 until normalised.
    pub data: Vec<f32>,
}

/// Applies image ops in order; without a `normalize` op the result is
/// scaled to [0, 1].
pub fn augment_image(ops: &[Op], img: &mut Image, rng: &mut Rng) {
    let mut normalized = false;
    for op in ops {
        match op {
            Op::Flip { p } if rng.next_f64() < *p => flip(img),
            Op::RandomCrop { padding } => crop(img, *padding as usize, rng),
            Op::Rotate { degrees } => rotate(img, (rng.next_f64() * 2.0 - 1.0) * degrees, rng),
            Op::ColorJitter {
                brightness,
                contrast,
            } => jitter(img, *brightness, *contrast, rng),
            Op::Normalize { mean, std } => {
                normalize(img, mean, std);
                normalized = true;
            }
            _ => {}
        }
    }
    if !normalized {
        img.data.iter_mut().for_each(|v| *v /= 255.0);
    }
}

fn flip(img: &mut Image) {
    for row in img.data.chunks_mut(img.w) {
        row.reverse();
    }
}

fn crop(img: &mut Image, pad: usize, rng: &mut Rng) {
    let (dy, dx) = (
        rng.below(2 * pad as u64 + 1) as isize - pad as isize,
        rng.below(2 * pad as u64 + 1) as isize - pad as isize,
    );
    let src = img.data.clone();
    for c in 0..img.c {
        for y in 0..img.h {
            for x in 0..img.w {
                let (sy, sx) = (y as isize + dy, x as isize + dx);
                let inside = sy >= 0 && sx >= 0 && (sy as usize) < img.h && (sx as usize) < img.w;
                img.data[(c * img.h + y) * img.w + x] = if inside {
                    src[(c * img.h + sy as usize) * img.w + sx as usize]
                } else {
                    0.0
                };
            }
        }
    }
}

fn rotate(img: &mut Image, degrees: f64, _rng: &mut Rng) {
    let (sin, cos) = degrees.to_radians().sin_cos();
    let (cy, cx) = ((img.h as f64 - 1.0) / 2.0, (img.w as f64 - 1.0) / 2.0);
    let src = img.data.clone();
    let at = |c: usize, y: isize, x: isize| -> f64 {
        if y < 0 || x < 0 || y as usize >= img.h || x as usize >= img.w {
            0.0
        } else {
            f64::from(src[(c * img.h + y as usize) * img.w + x as usize])
        }
    };
    for c in 0..img.c {
        for y in 0..img.h {
            for x in 0..img.w {
                let (ry, rx) = (y as f64 - cy, x as f64 - cx);
                let (sy, sx) = (cos * ry - sin * rx + cy, sin * ry + cos * rx + cx);
                let (y0, x0) = (sy.floor(), sx.floor());
                let (fy, fx) = (sy - y0, sx - x0);
                let (y0, x0) = (y0 as isize, x0 as isize);
                let v = at(c, y0, x0) * (1.0 - fy) * (1.0 - fx)
                    + at(c, y0, x0 + 1) * (1.0 - fy) * fx
                    + at(c, y0 + 1, x0) * fy * (1.0 - fx)
                    + at(c, y0 + 1, x0 + 1) * fy * fx;
                img.data[(c * img.h + y) * img.w + x] = v as f32;
            }
        }
    }
}

fn jitter(img: &mut Image, brightness: f64, contrast: f64, rng: &mut Rng) {
    let b = 1.0 + (rng.next_f64() * 2.0 - 1.0) * brightness;
    let k = 1.0 + (rng.next_f64() * 2.0 - 1.0) * contrast;
    let mean = img.data.iter().map(|&v| f64::from(v)).sum::<f64>() / img.data.len().max(1) as f64;
    for v in &mut img.data {
        *v = ((f64::from(*v) * b - mean) * k + mean).clamp(0.0, 255.0) as f32;
    }
}

fn normalize(img: &mut Image, mean: &[f64], std: &[f64]) {
    let plane = img.h * img.w;
    for c in 0..img.c {
        let m = mean.get(c).or(mean.first()).copied().unwrap_or(0.0);
        let s = std.get(c).or(std.first()).copied().unwrap_or(1.0);
        for v in &mut img.data[c * plane..(c + 1) * plane] {
            *v = ((f64::from(*v) / 255.0 - m) / s) as f32;
        }
    }
}

/// Applies audio ops in order to frames x bins features; returns the new
/// frame count.
pub fn augment_features(ops: &[Op], feats: &mut Vec<f32>, bins: usize, rng: &mut Rng) -> usize {
    for op in ops {
        let frames = feats.len() / bins;
        match op {
            Op::SegmentCrop { frames: want } => {
                *feats = segment(feats, bins, frames, *want as usize, rng)
            }
            Op::SpecAugment { freq, time } => {
                spec_augment(feats, bins, frames, *freq as usize, *time as usize, rng)
            }
            Op::Noise { snr } => noise(feats, *snr, rng),
            _ => {}
        }
    }
    feats.len() / bins
}

fn segment(feats: &[f32], bins: usize, frames: usize, want: usize, rng: &mut Rng) -> Vec<f32> {
    if frames == 0 {
        return vec![0.0; want * bins];
    }
    let start = if frames > want {
        rng.below((frames - want + 1) as u64) as usize
    } else {
        0
    };
    (0..want)
        .flat_map(|t| {
            feats[((start + t) % frames) * bins..((start + t) % frames + 1) * bins]
                .iter()
                .copied()
        })
        .collect()
}

fn spec_augment(
    feats: &mut [f32],
    bins: usize,
    frames: usize,
    freq: usize,
    time: usize,
    rng: &mut Rng,
) {
    let mean = feats.iter().map(|&v| f64::from(v)).sum::<f64>() as f32 / feats.len().max(1) as f32;
    let f = rng.below(freq as u64 + 1) as usize;
    let f0 = rng.below((bins - f.min(bins) + 1) as u64) as usize;
    let t = rng.below(time as u64 + 1) as usize;
    let t0 = rng.below((frames - t.min(frames) + 1) as u64) as usize;
    for (i, row) in feats.chunks_mut(bins).enumerate() {
        for (b, v) in row.iter_mut().enumerate() {
            if (f0..f0 + f).contains(&b) || (t0..t0 + t).contains(&i) {
                *v = mean;
            }
        }
    }
}

fn noise(feats: &mut [f32], snr: f64, rng: &mut Rng) {
    let mean_energy =
        feats.iter().map(|&v| f64::from(v).exp()).sum::<f64>() / feats.len().max(1) as f64;
    let noise = mean_energy / 10f64.powf(snr / 10.0);
    for v in feats.iter_mut() {
        // Exponential draws: the power of complex Gaussian noise.
        let n = -noise * (1.0 - rng.next_f64()).ln();
        *v = (f64::from(*v).exp() + n).ln() as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> Image {
        Image {
            c: 1,
            h: 4,
            w: 4,
            data: (0..16).map(|v| v as f32 * 10.0).collect(),
        }
    }

    #[test]
    fn flip_crop_and_normalize_do_what_they_say() {
        let mut img = image();
        augment_image(&[Op::Flip { p: 1.0 }], &mut img, &mut Rng::new(1));
        assert_eq!(&img.data[..4], &[3.0 / 25.5, 2.0 / 25.5, 1.0 / 25.5, 0.0]);
        let mut img = image();
        augment_image(
            &[
                Op::RandomCrop { padding: 0 },
                Op::Normalize {
                    mean: vec![0.5],
                    std: vec![0.5],
                },
            ],
            &mut img,
            &mut Rng::new(1),
        );
        assert!((img.data[0] + 1.0).abs() < 1e-6);
        let mut img = image();
        augment_image(&[Op::Rotate { degrees: 0.0 }], &mut img, &mut Rng::new(1));
        assert!((img.data[5] - 50.0 / 255.0).abs() < 1e-6);
    }

    #[test]
    fn segment_crop_and_spec_augment_keep_shapes() {
        let bins = 3;
        let mut f: Vec<f32> = (0..30).map(|v| v as f32).collect();
        let frames = augment_features(
            &[
                Op::SegmentCrop { frames: 4 },
                Op::SpecAugment { freq: 1, time: 2 },
                Op::Noise { snr: 20.0 },
            ],
            &mut f,
            bins,
            &mut Rng::new(5),
        );
        assert_eq!((frames, f.len()), (4, 12));
        let mut short: Vec<f32> = vec![1.0; 6];
        assert_eq!(
            augment_features(
                &[Op::SegmentCrop { frames: 5 }],
                &mut short,
                bins,
                &mut Rng::new(5)
            ),
            5
        );
    }
}
