//! The PNGs `evaluate` writes, drawn with plotters into an RGB buffer and
//! encoded with the `image` crate: ROC (log FAR axis), DET (probit axes,
//! as in NIST evaluations) and per-epoch training curves, each with its
//! legend in a strip below the plots. Text needs a TrueType font; DejaVu
//! Sans (Debian `fonts-dejavu-core`) is looked up in the usual places, and
//! without one the plots are skipped (the metrics are not).
//!
//! [`axes`] holds the geometry (ranges, ticks, clipping), free of drawing,
//! for other renderers to share.

pub mod axes;
mod charts;
mod legend;
mod training;

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;

pub use axes::{
    clip_polyline, clip_segment, det_coord, det_polylines, det_rect, det_tick_label, roc_polylines,
    roc_rect, roc_tick_label, Rect, Xy, DET_RANGE, DET_TICKS, ROC_FAR_RANGE, ROC_FAR_TICKS,
};
pub use charts::{det, roc};
pub use training::{series_of, training, training_size, Curves, Series};

/// The size of `roc.png` and `det.png`; `training.png` is as wide and
/// grows taller with the number of training stages.
pub const SIZE: (u32, u32) = (720, 540);
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// Registers a font once; false when none was found.
pub fn font_available() -> bool {
    static FONT: OnceLock<bool> = OnceLock::new();
    *FONT.get_or_init(|| {
        let path = std::env::var("TUNEFLOW_FONT")
            .ok()
            .into_iter()
            .chain(FONTS.iter().map(|s| (*s).to_owned()))
            .find(|p| Path::new(p).is_file());
        let Some(bytes) = path.and_then(|p| std::fs::read(p).ok()) else {
            return false;
        };
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
    })
}

type DrawResult = Result<(), String>;
type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// A rectangle in pixels: (x range, y range), ends exclusive.
pub(crate) type PixelRect = (std::ops::Range<i32>, std::ops::Range<i32>);

/// Where a rendering put things, for the tests.
#[derive(Debug, Clone)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct Layout {
    /// Each plotting area (inside the axes).
    pub plots: Vec<PixelRect>,
    /// The legend strip.
    pub legend: PixelRect,
    /// Each legend entry's line sample.
    pub samples: Vec<PixelRect>,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Renders into an RGB buffer of `size`.
pub(crate) fn render<T>(
    size: (u32, u32),
    f: impl FnOnce(&Area<'_>) -> Result<T, String>,
) -> Result<(Vec<u8>, T), String> {
    let mut buf = vec![0u8; (size.0 * size.1 * 3) as usize];
    let out;
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        out = f(&root)?;
        root.present().map_err(err)?;
    }
    Ok((buf, out))
}

fn save(path: &Path, size: (u32, u32), buf: &[u8]) -> DrawResult {
    image::save_buffer(path, buf, size.0, size.1, image::ExtendedColorType::Rgb8)
        .map_err(|e| format!("failed to write `{}`: {e}", path.display()))
}

/// A linear f64 axis ticked at given values (labels at `bold`, light grid
/// lines at `light`). Plotters' own `with_key_points` loses the f64 label
/// formatting (0.3.7), so the mesh would not draw it.
pub(crate) struct Ticked {
    inner: plotters::coord::types::RangedCoordf64,
    bold: Vec<f64>,
    light: Vec<f64>,
}

impl Ticked {
    pub(crate) fn new(range: std::ops::Range<f64>, bold: Vec<f64>, light: Vec<f64>) -> Self {
        Ticked {
            inner: range.into(),
            bold,
            light,
        }
    }
}

impl Ranged for Ticked {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: plotters::coord::ranged1d::KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.light.clone()
        } else {
            self.bold.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

/// The curve colours, in order (matplotlib's first four).
pub(crate) const COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// The standard normal quantile (Acklam's rational approximation, relative
/// error below 1.2e-9), for DET axes.
pub fn probit(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383_577_518_672_69e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let p = p.clamp(1e-9, 1.0 - 1e-9);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests;
