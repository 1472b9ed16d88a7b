//! The PNGs `evaluate` writes, drawn with plotters into an RGB buffer and
//! encoded with the `image` crate: ROC, DET (probit axes, as in NIST
//! evaluations) and per-epoch training curves. Text needs a TrueType font;
//! DejaVu Sans (Debian `fonts-dejavu-core`) is looked up in the usual
//! places, and without one the plots are skipped (the metrics are not).

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;

use crate::eval::metrics::Point;

const SIZE: (u32, u32) = (720, 540);
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

fn draw(
    path: &Path,
    f: impl FnOnce(DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> DrawResult,
) -> DrawResult {
    let mut buf = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        f(root.clone())?;
        root.present().map_err(|e| e.to_string())?;
    }
    image::save_buffer(path, &buf, SIZE.0, SIZE.1, image::ExtendedColorType::Rgb8)
        .map_err(|e| format!("failed to write `{}`: {e}", path.display()))
}

const COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// TAR against FAR, one curve per (name, points).
pub fn roc(path: &Path, curves: &[(&str, &[Point])]) -> DrawResult {
    draw(path, |root| {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let mut chart = ChartBuilder::on(&root)
            .caption("ROC", ("sans-serif", 24))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_desc("false acceptance rate")
            .y_desc("true acceptance rate")
            .draw()
            .map_err(|x| e(&x))?;
        for (i, (name, points)) in curves.iter().enumerate() {
            let c = COLOURS[i % COLOURS.len()];
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|p| (p.far, 1.0 - p.frr)),
                    c.stroke_width(2),
                ))
                .map_err(|x| e(&x))?
                .label(*name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|x| e(&x))
    })
}

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

/// FRR against FAR on normal-deviate axes from 0.1 % to 50 %.
pub fn det(path: &Path, curves: &[(&str, &[Point])]) -> DrawResult {
    draw(path, |root| {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let (lo, hi) = (probit(0.001), probit(0.5));
        let pct = |v: &f64| {
            let p = 100.0 * normal_cdf(*v);
            if p < 1.0 {
                format!("{p:.1}")
            } else {
                format!("{p:.0}")
            }
        };
        let mut chart = ChartBuilder::on(&root)
            .caption("DET", ("sans-serif", 24))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(lo..hi, lo..hi)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_desc("false acceptance rate (%)")
            .y_desc("false rejection rate (%)")
            .x_label_formatter(&pct)
            .y_label_formatter(&pct)
            .draw()
            .map_err(|x| e(&x))?;
        for (i, (name, points)) in curves.iter().enumerate() {
            let c = COLOURS[i % COLOURS.len()];
            let pts = points
                .iter()
                .map(|p| (probit(p.far).clamp(lo, hi), probit(p.frr).clamp(lo, hi)));
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                .map_err(|x| e(&x))?
                .label(*name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()
            .map_err(|x| e(&x))
    })
}

fn normal_cdf(x: f64) -> f64 {
    // Abramowitz-Stegun 7.1.26 through erf; enough for tick labels.
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs() / std::f64::consts::SQRT_2);
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t
            + 0.254_829_592)
            * t
            * (-(x * x) / 2.0).exp();
    if x >= 0.0 {
        (1.0 + y) / 2.0
    } else {
        (1.0 - y) / 2.0
    }
}

/// Named per-epoch series: (`train_loss`, [(epoch, value)]), ...
pub type Series = Vec<(&'static str, Vec<(f64, f64)>)>;

/// One training stage's curves.
pub struct Curves<'a> {
    /// The stage.
    pub stage: &'a str,
    /// `train_loss`, `val_loss`, `train_acc`, `val_acc`, where present.
    pub series: Series,
}

/// Loss (left) and accuracy (right) per epoch for every training stage.
pub fn training(path: &Path, stages: &[Curves<'_>]) -> DrawResult {
    draw(path, |root| {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let panels = root.split_evenly((1, 2));
        for (panel, (title, metric)) in panels.iter().zip([("loss", "loss"), ("accuracy", "acc")]) {
            let all: Vec<(f64, f64)> = stages
                .iter()
                .flat_map(|s| {
                    s.series
                        .iter()
                        .filter(|(n, _)| n.ends_with(metric))
                        .flat_map(|(_, p)| p.clone())
                })
                .collect();
            let max_x = all.iter().map(|p| p.0).fold(1.0, f64::max);
            let max_y = if metric == "acc" {
                1.0
            } else {
                all.iter().map(|p| p.1).fold(0.1, f64::max) * 1.05
            };
            let mut chart = ChartBuilder::on(panel)
                .caption(title, ("sans-serif", 20))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(45)
                .build_cartesian_2d(1.0..max_x.max(2.0), 0.0..max_y)
                .map_err(|x| e(&x))?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .draw()
                .map_err(|x| e(&x))?;
            let mut colour = 0;
            for s in stages {
                for (name, points) in s.series.iter().filter(|(n, _)| n.ends_with(metric)) {
                    let c = COLOURS[colour % COLOURS.len()];
                    colour += 1;
                    let label = format!("{} {}", s.stage, name.split('_').next().unwrap_or(""));
                    chart
                        .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
                        .map_err(|x| e(&x))?
                        .label(label)
                        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c));
                }
            }
            chart
                .configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE)
                .draw()
                .map_err(|x| e(&x))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probit_inverts_the_normal_cdf() {
        for p in [0.001, 0.01, 0.1, 0.5, 0.9, 0.999] {
            assert!((normal_cdf(probit(p)) - p).abs() < 1e-6, "{p}");
        }
        assert!((probit(0.975) - 1.959_964).abs() < 1e-5);
    }

    #[test]
    fn writes_pngs() {
        assert!(
            font_available(),
            "no DejaVu Sans: install fonts-dejavu-core (`make deps` does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let pts =
            crate::eval::metrics::roc(&[(0.9, true), (0.4, false), (0.6, true), (0.5, false)]);
        roc(&dir.path().join("roc.png"), &[("a", &pts)]).unwrap();
        det(&dir.path().join("det.png"), &[("a", &pts), ("b", &pts)]).unwrap();
        let img = image::open(dir.path().join("det.png")).unwrap();
        assert_eq!((img.width(), img.height()), SIZE);
    }
}
