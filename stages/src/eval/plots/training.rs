//! `training.png`: one row per training stage, its loss (train and
//! validation together, on the stage's own y range: a CosFace loss at scale
//! 16 is ten times a softmax loss) beside its accuracy (0..1), with the
//! legend below.

use std::path::Path;

use plotters::prelude::*;

use super::legend::{self, Entry};
use super::{err, render, save, Area, DrawResult, Layout, PixelRect, Ticked, COLOURS, SIZE};

/// Named per-epoch series: (`train_loss`, [(epoch, value)]), ...
pub type Series = Vec<(&'static str, Vec<(f64, f64)>)>;

/// The per-epoch series a training stage's `metrics.json` holds
/// (`{"epochs": [{"epoch": 1, "train_loss": ..}, ..]}`); epochs without a
/// value are skipped, so a series may be empty.
pub fn series_of(history: &serde_json::Value) -> Series {
    let epochs = history["epochs"].as_array().map_or(&[][..], Vec::as_slice);
    ["train_loss", "val_loss", "train_acc", "val_acc"]
        .into_iter()
        .map(|k| {
            let pts = epochs
                .iter()
                .filter_map(|e| Some((e["epoch"].as_f64()?, e[k].as_f64()?)))
                .collect();
            (k, pts)
        })
        .collect()
}

/// One training stage's curves.
pub struct Curves<'a> {
    /// The stage.
    pub stage: &'a str,
    /// `train_loss`, `val_loss`, `train_acc`, `val_acc`, where present.
    pub series: Series,
}

/// The height of one stage's row of panels.
const ROW_HEIGHT: u32 = 270;
/// Series with at most this many epochs get a marker per epoch (so that a
/// single epoch shows at all); longer ones are lines alone.
const MARKERS_UP_TO: usize = 40;
/// Room for the legend strip below the rows.
const LEGEND_ROOM: u32 = 40;

/// The size of `training.png` for `stages` training stages: [`SIZE`], or
/// taller where the rows need it.
pub fn training_size(stages: usize) -> (u32, u32) {
    (SIZE.0, SIZE.1.max(LEGEND_ROOM + ROW_HEIGHT * stages as u32))
}

/// Loss and accuracy per epoch, one row of panels per training stage.
pub fn training(path: &Path, stages: &[Curves<'_>]) -> DrawResult {
    let size = training_size(stages.len());
    let (buf, _) = render(size, |root| render_training(root, stages))?;
    save(path, size, &buf)
}

/// The colour of a series: train blue, validation red.
fn colour(name: &str) -> RGBColor {
    if name.starts_with("val") {
        COLOURS[1]
    } else {
        COLOURS[0]
    }
}

pub(crate) fn render_training(root: &Area<'_>, stages: &[Curves<'_>]) -> Result<Layout, String> {
    let has = |prefix: &str| {
        stages
            .iter()
            .any(|s| s.series.iter().any(|(n, _)| n.starts_with(prefix)))
    };
    let entries: Vec<Entry> = [("train", "train"), ("val", "validation")]
        .into_iter()
        .filter(|(prefix, _)| has(prefix))
        .map(|(prefix, label)| Entry {
            label: label.into(),
            colour: colour(prefix),
        })
        .collect();
    let (upper, strip, samples) = legend::below(root, &entries)?;
    let mut plots = Vec::new();
    for (row, s) in upper
        .split_evenly((stages.len().max(1), 1))
        .iter()
        .zip(stages)
    {
        let pick = |metric: &str| -> Vec<(&str, &[(f64, f64)])> {
            s.series
                .iter()
                .filter(|(n, _)| n.ends_with(metric))
                .map(|(n, p)| (*n, p.as_slice()))
                .collect()
        };
        let (loss, acc) = (pick("_loss"), pick("_acc"));
        let areas = match (loss.is_empty(), acc.is_empty()) {
            (false, false) => {
                let (l, r) = row.split_horizontally(row.get_pixel_range().0.len() as i32 / 2);
                vec![(l, loss, false), (r, acc, true)]
            }
            (false, true) => vec![(row.clone(), loss, false)],
            (true, false) => vec![(row.clone(), acc, true)],
            (true, true) => Vec::new(),
        };
        for (area, series, is_acc) in areas {
            let title = format!("{}: {}", s.stage, if is_acc { "accuracy" } else { "loss" });
            plots.push(panel(&area, &title, &series, is_acc)?);
        }
    }
    Ok(Layout {
        plots,
        legend: strip,
        samples,
    })
}

/// Evenly spaced round ticks (1, 2 or 5 times a power of ten, at least
/// `min_step` apart) within `lo..=hi`, at most about `max_n` of them, and
/// the decimals their labels need.
pub(crate) fn nice_ticks(lo: f64, hi: f64, max_n: usize, min_step: f64) -> (Vec<f64>, usize) {
    let span = (hi - lo).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf((span / max_n as f64).log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|step| span / step <= max_n as f64)
        .unwrap_or(10.0 * mag)
        .max(min_step);
    let first = (lo / step).ceil() as i64;
    let ticks = (first..)
        .map(|k| k as f64 * step)
        .take_while(|t| *t <= hi + step * 1e-9)
        .collect();
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    (ticks, decimals)
}

/// The y range of a panel: 0..1 for accuracy (wider if a value exceeds
/// 1), the data's range padded by 8 % for a loss.
fn y_range(values: &[f64], is_acc: bool) -> (f64, f64) {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if is_acc {
        return (0.0, hi.max(1.0));
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo {
        (hi - lo) * 0.08
    } else {
        (hi.abs() * 0.1).max(0.05)
    };
    (lo - pad, hi + pad)
}

/// One panel: the series against epoch. Returns its plotting area.
fn panel(
    area: &Area<'_>,
    title: &str,
    series: &[(&str, &[(f64, f64)])],
    is_acc: bool,
) -> Result<PixelRect, String> {
    let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let points = || series.iter().flat_map(|(_, p)| p.iter().filter(finite));
    let x_lo = points().map(|p| p.0).fold(f64::INFINITY, f64::min).min(1.0);
    let x_hi = points().map(|p| p.0).fold(2.0, f64::max);
    let ys: Vec<f64> = points().map(|p| p.1).collect();
    let (y_lo, y_hi) = y_range(&ys, is_acc);
    let (x_ticks, _) = nice_ticks(x_lo, x_hi, 8, 1.0);
    let (y_ticks, decimals) = nice_ticks(y_lo, y_hi, 6, 0.0);
    let x_pad = (x_hi - x_lo) * 0.03;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(8)
        .margin_right(16)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(
            Ticked::new(x_lo - x_pad..x_hi + x_pad, x_ticks, Vec::new()),
            Ticked::new(y_lo..y_hi, y_ticks, Vec::new()),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .bold_line_style(RGBColor(220, 220, 220).stroke_width(1))
        .x_desc("epoch")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.decimals$}"))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    for (name, pts) in series {
        let c = colour(name);
        let pts: Vec<(f64, f64)> = pts.iter().filter(finite).copied().collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(err)?;
        if pts.len() <= MARKERS_UP_TO {
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))
                .map_err(err)?;
        }
    }
    Ok(chart.plotting_area().get_pixel_range())
}
