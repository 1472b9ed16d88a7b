//! `roc.png` (TAR against FAR on a log FAR axis) and `det.png` (FRR
//! against FAR on probit axes), one curve per (name, points), with the
//! legend below the chart.

use std::path::Path;

use plotters::prelude::*;

use super::axes::{
    det_polylines, det_rect, det_tick_label, nearest_tick, roc_polylines, roc_rect, roc_tick_label,
    DET_TICKS, ROC_FAR_TICKS,
};
use super::legend::{self, Entry};
use super::{err, probit, render, save, Area, DrawResult, Layout, Ticked, COLOURS, SIZE};
use crate::eval::metrics::Point;

/// The curves' names and colours.
fn entries(curves: &[(&str, &[Point])]) -> Vec<Entry> {
    curves
        .iter()
        .enumerate()
        .map(|(i, (name, _))| Entry {
            label: (*name).to_owned(),
            colour: COLOURS[i % COLOURS.len()],
        })
        .collect()
}

/// `lo`, `lo + step`, ... up to `hi`.
fn ticks(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let n = ((hi - lo) / step).round() as usize;
    (0..=n).map(|i| lo + step * i as f64).collect()
}

/// The mesh's line styles: light grey grid, darker at the ticks.
fn grid() -> (ShapeStyle, ShapeStyle) {
    (
        RGBColor(200, 200, 200).stroke_width(1),
        RGBColor(235, 235, 235).stroke_width(1),
    )
}

/// TAR against FAR, the FAR axis log-scaled over [`super::ROC_FAR_RANGE`]
/// with decade ticks; one curve per (name, points).
pub fn roc(path: &Path, curves: &[(&str, &[Point])]) -> DrawResult {
    let (buf, _) = render(SIZE, |root| render_roc(root, curves))?;
    save(path, SIZE, &buf)
}

pub(crate) fn render_roc(root: &Area<'_>, curves: &[(&str, &[Point])]) -> Result<Layout, String> {
    let (upper, strip, samples) = legend::below(root, &entries(curves))?;
    let r = roc_rect();
    let decades = ROC_FAR_TICKS.iter().map(|f| f.log10());
    let minor: Vec<f64> = decades
        .clone()
        .flat_map(|d| (2..10).map(move |k| d + f64::from(k).log10()))
        .filter(|l| *l < r.x1)
        .collect();
    let x = Ticked::new(r.x0..r.x1, decades.collect(), minor);
    let mut chart = ChartBuilder::on(&upper)
        .caption("ROC", ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(x, Ticked::new(r.y0..r.y1, ticks(0.0, 1.0, 0.1), Vec::new()))
        .map_err(err)?;
    let (bold, light) = grid();
    chart
        .configure_mesh()
        .bold_line_style(bold)
        .light_line_style(light)
        .x_desc("false acceptance rate (log scale)")
        .y_desc("true acceptance rate")
        .x_label_formatter(&|v| roc_tick_label(nearest_tick(*v, ROC_FAR_TICKS, f64::log10)))
        .y_label_formatter(&|v| format!("{v:.1}"))
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    for (i, (_, points)) in curves.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        for piece in roc_polylines(points) {
            chart
                .draw_series(LineSeries::new(piece, c.stroke_width(2)))
                .map_err(err)?;
        }
    }
    Ok(Layout {
        plots: vec![chart.plotting_area().get_pixel_range()],
        legend: strip,
        samples,
    })
}

/// FRR against FAR on normal-deviate (probit) axes over
/// [`super::DET_RANGE`], ticked at [`DET_TICKS`]; curves are clipped at
/// the border, not clamped onto it.
pub fn det(path: &Path, curves: &[(&str, &[Point])]) -> DrawResult {
    let (buf, _) = render(SIZE, |root| render_det(root, curves))?;
    save(path, SIZE, &buf)
}

pub(crate) fn render_det(root: &Area<'_>, curves: &[(&str, &[Point])]) -> Result<Layout, String> {
    let (upper, strip, samples) = legend::below(root, &entries(curves))?;
    let r = det_rect();
    let ticks: Vec<f64> = DET_TICKS.iter().map(|p| probit(*p)).collect();
    let mut chart = ChartBuilder::on(&upper)
        .caption("DET", ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(
            Ticked::new(r.x0..r.x1, ticks.clone(), Vec::new()),
            Ticked::new(r.y0..r.y1, ticks, Vec::new()),
        )
        .map_err(err)?;
    let label = |v: &f64| det_tick_label(nearest_tick(*v, DET_TICKS, probit));
    let (bold, _) = grid();
    chart
        .configure_mesh()
        .bold_line_style(bold)
        .x_desc("false acceptance rate (%)")
        .y_desc("false rejection rate (%)")
        .x_label_formatter(&label)
        .y_label_formatter(&label)
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    for (i, (_, points)) in curves.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        for piece in det_polylines(points) {
            chart
                .draw_series(LineSeries::new(piece, c.stroke_width(2)))
                .map_err(err)?;
        }
    }
    Ok(Layout {
        plots: vec![chart.plotting_area().get_pixel_range()],
        legend: strip,
        samples,
    })
}
