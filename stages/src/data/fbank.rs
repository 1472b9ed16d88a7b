//! Kaldi-compatible log-mel filterbank features, as
//! `torchaudio.compliance.kaldi.fbank` computes them (dither 0,
//! `snip_edges`, DC removal, pre-emphasis 0.97, povey window by default,
//! FFT padded to a power of two, power spectrum, triangular mel banks that
//! are not area-normalised, `log(max(e, f32::EPSILON))`). Computed in f64.

use std::f64::consts::PI;
use std::sync::Arc;

use realfft::RealFftPlanner;

/// The analysis window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Window {
    /// Kaldi's default: `hann(N, periodic = false) ^ 0.85`.
    Povey,
    /// `0.54 - 0.46 cos(2 pi n / (N - 1))`.
    Hamming,
    /// `0.5 - 0.5 cos(2 pi n / (N - 1))`.
    Hann,
}

/// Fbank options; the defaults are torchaudio's, except the bin count.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FbankOptions {
    /// Mel bins.
    pub num_bins: usize,
    /// Window type.
    pub window: Window,
    /// Samples per second.
    pub sample_rate: f64,
    /// Frame length in milliseconds.
    pub frame_length_ms: f64,
    /// Frame shift in milliseconds.
    pub frame_shift_ms: f64,
    /// Lowest mel frequency, Hz.
    pub low_freq: f64,
    /// Highest mel frequency, Hz; `<= 0` means Nyquist plus this.
    pub high_freq: f64,
    /// Pre-emphasis coefficient.
    pub preemphasis: f64,
}

impl Default for FbankOptions {
    fn default() -> Self {
        Self {
            num_bins: 23,
            window: Window::Povey,
            sample_rate: 16000.0,
            frame_length_ms: 25.0,
            frame_shift_ms: 10.0,
            low_freq: 20.0,
            high_freq: 0.0,
            preemphasis: 0.97,
        }
    }
}

/// A reusable fbank computer (window, mel banks and FFT plan built once).
pub struct Fbank {
    opts: FbankOptions,
    window_size: usize,
    shift: usize,
    fft_size: usize,
    window: Vec<f64>,
    /// Per bin: first FFT bin with a non-zero weight, and the weights.
    banks: Vec<(usize, Vec<f64>)>,
    fft: Arc<dyn realfft::RealToComplex<f64>>,
}

fn mel(f: f64) -> f64 {
    1127.0 * (1.0 + f / 700.0).ln()
}

impl Fbank {
    /// Builds the computer for `opts`.
    pub fn new(opts: FbankOptions) -> Self {
        let window_size = (opts.sample_rate * opts.frame_length_ms * 0.001) as usize;
        let shift = (opts.sample_rate * opts.frame_shift_ms * 0.001) as usize;
        let fft_size = window_size.next_power_of_two();
        let n = window_size as f64;
        let window = (0..window_size)
            .map(|i| {
                let c = (2.0 * PI * i as f64 / (n - 1.0)).cos();
                match opts.window {
                    Window::Povey => (0.5 - 0.5 * c).powf(0.85),
                    Window::Hamming => 0.54 - 0.46 * c,
                    Window::Hann => 0.5 - 0.5 * c,
                }
            })
            .collect();
        let banks = mel_banks(&opts, fft_size);
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(fft_size);
        Self {
            opts,
            window_size,
            shift,
            fft_size,
            window,
            banks,
            fft,
        }
    }

    /// Frames in `samples` samples (`snip_edges`).
    pub fn num_frames(&self, samples: usize) -> usize {
        if samples < self.window_size {
            0
        } else {
            1 + (samples - self.window_size) / self.shift
        }
    }

    /// Mel bins per frame.
    pub fn num_bins(&self) -> usize {
        self.opts.num_bins
    }

    /// Log-mel features, frames x bins, row-major. Samples are int16-scaled.
    pub fn compute(&self, samples: &[f32]) -> Vec<f32> {
        let frames = self.num_frames(samples.len());
        let mut out = Vec::with_capacity(frames * self.opts.num_bins);
        let mut buf = vec![0.0f64; self.fft_size];
        let mut spectrum = self.fft.make_output_vec();
        let mut power = vec![0.0f64; self.fft_size / 2 + 1];
        for m in 0..frames {
            let frame = &samples[m * self.shift..m * self.shift + self.window_size];
            let mean = frame.iter().map(|&x| f64::from(x)).sum::<f64>() / self.window_size as f64;
            for (b, &x) in buf.iter_mut().zip(frame) {
                *b = f64::from(x) - mean;
            }
            for j in (1..self.window_size).rev() {
                buf[j] -= self.opts.preemphasis * buf[j - 1];
            }
            buf[0] -= self.opts.preemphasis * buf[0];
            for (b, w) in buf.iter_mut().zip(&self.window) {
                *b *= w;
            }
            buf[self.window_size..].fill(0.0);
            self.fft
                .process(&mut buf, &mut spectrum)
                .expect("buffer sizes come from the plan");
            for (p, c) in power.iter_mut().zip(&spectrum) {
                *p = c.norm_sqr();
            }
            for (start, weights) in &self.banks {
                let e: f64 = weights
                    .iter()
                    .zip(&power[*start..])
                    .map(|(w, p)| w * p)
                    .sum();
                out.push(e.max(f64::from(f32::EPSILON)).ln() as f32);
            }
        }
        out
    }
}

fn mel_banks(opts: &FbankOptions, fft_size: usize) -> Vec<(usize, Vec<f64>)> {
    let nyquist = opts.sample_rate / 2.0;
    let high = if opts.high_freq <= 0.0 {
        nyquist + opts.high_freq
    } else {
        opts.high_freq
    };
    let (mel_low, mel_high) = (mel(opts.low_freq), mel(high));
    let delta = (mel_high - mel_low) / (opts.num_bins as f64 + 1.0);
    let bin_width = opts.sample_rate / fft_size as f64;
    (0..opts.num_bins)
        .map(|b| {
            let left = mel_low + b as f64 * delta;
            let (center, right) = (left + delta, left + 2.0 * delta);
            // The Nyquist bin (fft_size / 2) always has weight 0.
            let weights: Vec<f64> = (0..fft_size / 2)
                .map(|k| {
                    let m = mel(k as f64 * bin_width);
                    ((m - left) / (center - left))
                        .min((right - m) / (right - center))
                        .max(0.0)
                })
                .collect();
            let start = weights.iter().position(|&w| w > 0.0).unwrap_or(0);
            let end = weights
                .iter()
                .rposition(|&w| w > 0.0)
                .map_or(start, |e| e + 1);
            (start, weights[start..end].to_vec())
        })
        .collect()
}

/// Subtracts each bin's mean over frames (per-utterance mean normalisation).
pub fn mean_normalize(features: &mut [f32], bins: usize) {
    let frames = features.len() / bins;
    if frames == 0 {
        return;
    }
    let mut mean = vec![0.0f64; bins];
    for row in features.chunks(bins) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += f64::from(v);
        }
    }
    for m in &mut mean {
        *m /= frames as f64;
    }
    for row in features.chunks_mut(bins) {
        for (v, m) in row.iter_mut().zip(&mean) {
            *v = (f64::from(*v) - m) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The golden signal of reference/data-formats.md.
    fn signal() -> Vec<f32> {
        (0..16000)
            .map(|n| {
                let t = n as f64 / 16000.0;
                (1000.0 * (2.0 * PI * 440.0 * t).sin()
                    + 500.0 * (2.0 * PI * 3000.0 * t).sin()
                    + 200.0 * (2.0 * PI * 97.0 * t).sin()) as f32
            })
            .collect()
    }

    fn mean(v: &[f32]) -> f64 {
        v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64
    }

    fn assert_close(got: &[f32], want: &[f64]) {
        for (g, w) in got.iter().zip(want) {
            assert!(
                (f64::from(*g) - w).abs() < 1e-3,
                "got {got:?}, want {want:?}"
            );
        }
    }

    #[test]
    fn golden_23_bins_povey() {
        let fb = Fbank::new(FbankOptions::default());
        let f = fb.compute(&signal());
        assert_eq!(f.len(), 98 * 23);
        assert_close(
            &f[..6],
            &[14.2262, 12.0531, 12.8753, 19.6786, 19.3759, 11.3670],
        );
        assert!((mean(&f) - 7.77701).abs() < 1e-3, "mean {}", mean(&f));
    }

    #[test]
    fn golden_80_bins_hamming() {
        let fb = Fbank::new(FbankOptions {
            num_bins: 80,
            window: Window::Hamming,
            ..Default::default()
        });
        let f = fb.compute(&signal());
        assert_eq!(f.len(), 98 * 80);
        assert_close(
            &f[..6],
            &[10.5891, 12.3342, 13.6982, 13.0899, 12.3299, 8.7493],
        );
        assert_close(&f[50 * 80 + 77..50 * 80 + 80], &[9.2848, 9.3044, 9.3237]);
        assert!((mean(&f) - 10.59055).abs() < 1e-3, "mean {}", mean(&f));
    }

    #[test]
    fn short_input_has_no_frames_and_cmn_centres_bins() {
        let fb = Fbank::new(FbankOptions::default());
        assert!(fb.compute(&[0.0; 399]).is_empty());
        let mut f = fb.compute(&signal());
        mean_normalize(&mut f, 23);
        let col0: Vec<f32> = f.chunks(23).map(|r| r[0]).collect();
        assert!(mean(&col0).abs() < 1e-4);
    }
}
