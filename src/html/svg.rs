//! Charts as inline SVG: linear, log10 and probit (normal-deviate) axes,
//! fixed tick sets, series clipped to the plot rectangle (never clamped
//! onto its edge) and the legend below the plot, outside the curves.

use std::fmt::Write as _;

use tuneflow_stages::eval::plots::{det_tick_label, probit, DET_RANGE, DET_TICKS};

use super::esc;

/// How values map onto an axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    /// Evenly.
    Linear,
    /// By decade (values <= 0 lie off the low end).
    Log10,
    /// By the standard normal quantile, as DET plots are drawn.
    Probit,
}

/// One axis: its range, its ticks (value, label) and its title.
#[derive(Debug, Clone)]
pub struct Axis {
    /// Title.
    pub label: String,
    /// Mapping.
    pub scale: Scale,
    /// Low end (in data units).
    pub lo: f64,
    /// High end.
    pub hi: f64,
    /// Tick positions and labels.
    pub ticks: Vec<(f64, String)>,
}

impl Axis {
    /// A linear axis with about `n` round ticks.
    pub fn linear(label: &str, lo: f64, hi: f64, n: usize) -> Self {
        let ticks = nice_ticks(lo, hi, n)
            .into_iter()
            .map(|v| (v, number(v)))
            .collect();
        Self {
            label: label.into(),
            scale: Scale::Linear,
            lo,
            hi,
            ticks,
        }
    }

    /// A log10 axis from `lo` to `hi` with a tick per decade.
    pub fn log10(label: &str, lo: f64, hi: f64) -> Self {
        let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        let ticks = (a..=b)
            .map(|e| 10f64.powi(e))
            .filter(|v| *v >= lo * 0.999 && *v <= hi * 1.001)
            .map(|v| (v, decade(v)))
            .collect();
        Self {
            label: label.into(),
            scale: Scale::Log10,
            lo,
            hi,
            ticks,
        }
    }

    /// A DET axis (in %): probit-scaled, the conventional ticks (the
    /// same as the PNGs').
    pub fn det(label: &str) -> Self {
        Self {
            label: label.into(),
            scale: Scale::Probit,
            lo: DET_RANGE.0,
            hi: DET_RANGE.1,
            ticks: DET_TICKS.iter().map(|&p| (p, det_tick_label(p))).collect(),
        }
    }

    /// Where `v` falls, 0 at `lo` and 1 at `hi`; values off the axis fall
    /// outside 0..1 (finite, so that the clip path hides them).
    pub fn place(&self, v: f64) -> f64 {
        let f = |x: f64| match self.scale {
            Scale::Linear => x,
            Scale::Log10 => x.log10(),
            Scale::Probit => probit(x),
        };
        let t = (f(v) - f(self.lo)) / (f(self.hi) - f(self.lo));
        if t.is_nan() {
            return -1.0;
        }
        t.clamp(-1.0, 2.0)
    }
}

fn decade(v: f64) -> String {
    if (0.01..=1000.0).contains(&v) {
        number(v)
    } else {
        format!("1e{}", v.log10().round() as i32)
    }
}

/// A short, exact-looking number for a tick label.
fn number(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

/// About `n` ticks at multiples of 1, 2 or 5 times a power of ten.
pub fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) || n == 0 {
        return vec![lo];
    }
    let raw = span / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= n as f64)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    // Rounded, so that 3 x 0.2 is 0.6.
    (first..=last)
        .map(|i| (i as f64 * step * 1e12).round() / 1e12)
        .collect()
}

/// One named line.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// (x, y) in data units.
    pub points: Vec<(f64, f64)>,
    /// Dotted (validation curves, baselines).
    pub dashed: bool,
    /// Draw a marker with a tooltip at each point (short series).
    pub markers: bool,
}

/// A chart.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Unique within the page (for the clip path's id).
    pub id: String,
    /// Title above the plot.
    pub title: String,
    /// Horizontal axis.
    pub x: Axis,
    /// Vertical axis.
    pub y: Axis,
    /// The lines.
    pub series: Vec<Series>,
    /// Draw the x = y diagonal (where EER lies on a DET plot).
    pub diagonal: bool,
}

/// Line colours, in order (colour-blind safe).
pub const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
];

const W: f64 = 520.0;
const PLOT_H: f64 = 330.0;
const LEFT: f64 = 62.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 30.0;
const AXIS_H: f64 = 46.0;

/// The chart as an `<svg>` element.
pub fn chart(c: &Chart) -> String {
    let pw = W - LEFT - RIGHT;
    let legend = legend_rows(&c.series, W - LEFT);
    let h = TOP + PLOT_H + AXIS_H + 18.0 * legend.len() as f64 + 6.0;
    let px = |t: f64| LEFT + t * pw;
    let py = |t: f64| TOP + (1.0 - t) * PLOT_H;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" id="{id}" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" role="img" aria-label="{title}">"#,
        id = esc(&c.id),
        title = esc(&c.title)
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="19" class="ct">{}</text><clipPath id="{}-clip"><rect x="{LEFT}" y="{TOP}" width="{pw}" height="{PLOT_H}"/></clipPath>"#,
        LEFT + pw / 2.0,
        esc(&c.title),
        esc(&c.id)
    );
    axes(&mut s, c, pw);
    let _ = write!(s, r#"<g clip-path="url(#{}-clip)">"#, esc(&c.id));
    if c.diagonal {
        let _ = write!(
            s,
            r##"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#999" stroke-dasharray="2 3"/>"##,
            px(0.0),
            py(0.0),
            px(1.0),
            py(1.0)
        );
    }
    for (i, series) in c.series.iter().enumerate() {
        lines(&mut s, c, series, COLOURS[i % COLOURS.len()], (&px, &py));
    }
    s.push_str("</g>");
    let mut y = TOP + PLOT_H + AXIS_H;
    for row in legend {
        let mut x = LEFT;
        for i in row {
            let series = &c.series[i];
            let colour = COLOURS[i % COLOURS.len()];
            let dash = if series.dashed {
                r#" stroke-dasharray="5 3""#
            } else {
                ""
            };
            let _ = write!(
                s,
                r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{colour}" stroke-width="2"{dash}/><text x="{}" y="{}" class="lg">{}</text>"#,
                x + 22.0,
                x + 27.0,
                y + 4.0,
                esc(&series.name)
            );
            x += legend_width(&series.name);
        }
        y += 18.0;
    }
    s.push_str("</svg>");
    s
}

fn legend_width(name: &str) -> f64 {
    36.0 + 6.5 * name.chars().count() as f64
}

/// The legend's rows: series indices, as many per row as fit `width`.
fn legend_rows(series: &[Series], width: f64) -> Vec<Vec<usize>> {
    let mut rows: Vec<Vec<usize>> = Vec::new();
    let mut used = f64::INFINITY;
    for (i, s) in series.iter().enumerate() {
        let w = legend_width(&s.name);
        if used + w > width {
            rows.push(Vec::new());
            used = 0.0;
        }
        rows.last_mut().expect("a row").push(i);
        used += w;
    }
    rows
}

fn axes(s: &mut String, c: &Chart, pw: f64) {
    let _ = write!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{PLOT_H}" fill="none" stroke="#444"/>"##
    );
    for (v, label) in &c.x.ticks {
        let t = c.x.place(*v);
        if !(-0.001..=1.001).contains(&t) {
            continue;
        }
        let x = LEFT + t * pw;
        let _ = write!(
            s,
            r#"<line x1="{x}" y1="{TOP}" x2="{x}" y2="{}" class="grid"/><text x="{x}" y="{}" class="tk" text-anchor="middle">{}</text>"#,
            TOP + PLOT_H,
            TOP + PLOT_H + 15.0,
            esc(label)
        );
    }
    for (v, label) in &c.y.ticks {
        let t = c.y.place(*v);
        if !(-0.001..=1.001).contains(&t) {
            continue;
        }
        let y = TOP + (1.0 - t) * PLOT_H;
        let _ = write!(
            s,
            r#"<line x1="{LEFT}" y1="{y}" x2="{}" y2="{y}" class="grid"/><text x="{}" y="{}" class="tk" text-anchor="end">{}</text>"#,
            LEFT + pw,
            LEFT - 5.0,
            y + 4.0,
            esc(label)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" class="al" text-anchor="middle">{}</text><text transform="translate(15 {}) rotate(-90)" class="al" text-anchor="middle">{}</text>"#,
        LEFT + pw / 2.0,
        TOP + PLOT_H + 34.0,
        esc(&c.x.label),
        TOP + PLOT_H / 2.0,
        esc(&c.y.label)
    );
}

type Place<'a> = &'a dyn Fn(f64) -> f64;

fn lines(s: &mut String, c: &Chart, series: &Series, colour: &str, (px, py): (Place, Place)) {
    let mut d = String::new();
    for &(x, y) in &series.points {
        let _ = write!(d, "{:.1},{:.1} ", px(c.x.place(x)), py(c.y.place(y)));
    }
    let dash = if series.dashed {
        r#" stroke-dasharray="5 3""#
    } else {
        ""
    };
    let _ = write!(
        s,
        r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"{dash}><title>{}</title></polyline>"#,
        d.trim_end(),
        esc(&series.name)
    );
    if series.markers {
        for &(x, y) in &series.points {
            let _ = write!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"><title>{}: {} {}, {} {}</title></circle>"#,
                px(c.x.place(x)),
                py(c.y.place(y)),
                esc(&series.name),
                esc(&c.x.label),
                number(x),
                esc(&c.y.label),
                format_args!("{y:.4}")
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn det_ticks_are_the_conventional_ones() {
        let a = Axis::det("far");
        let labels: Vec<&str> = a.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(
            labels,
            ["0.1", "0.2", "0.5", "1", "2", "5", "10", "20", "40"]
        );
        // Symmetric probit range: 50 % sits between 40 % and the top.
        assert!(a.place(0.4) < 1.0 && a.place(0.5) < 1.0);
        assert!((a.place(DET_RANGE.0)).abs() < 1e-12);
    }

    #[test]
    fn off_axis_values_stay_finite_and_outside() {
        let log = Axis::log10("far", 1e-4, 1.0);
        assert_eq!(log.place(0.0), -1.0);
        assert!((log.place(1e-3) - 0.25).abs() < 1e-12);
        let det = Axis::det("frr");
        assert!(det.place(0.0) < 0.0 && det.place(0.999) > 1.0);
        assert!(det.place(0.0).is_finite() && det.place(1.0).is_finite());
        let labels: Vec<String> = log.ticks.iter().map(|t| t.1.clone()).collect();
        assert_eq!(labels, ["1e-4", "1e-3", "0.01", "0.1", "1"]);
    }

    #[test]
    fn nice_ticks_are_round() {
        assert_eq!(nice_ticks(0.0, 1.0, 5), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(nice_ticks(0.0, 17.3, 5), [0.0, 5.0, 10.0, 15.0]);
        assert_eq!(number(0.30000000000000004), "0.3");
    }

    #[test]
    fn legends_sit_below_the_plot_and_wrap() {
        let series = |n: usize| Series {
            name: format!("a rather long series name {n}"),
            points: vec![(0.0, 0.0), (1.0, 1.0)],
            dashed: false,
            markers: false,
        };
        let c = Chart {
            id: "x".into(),
            title: "t".into(),
            x: Axis::linear("x", 0.0, 1.0, 5),
            y: Axis::linear("y", 0.0, 1.0, 5),
            series: (0..4).map(series).collect(),
            diagonal: false,
        };
        let svg = chart(&c);
        assert_eq!(legend_rows(&c.series, W - LEFT).len(), 2);
        // Every legend text lies below the plot rectangle.
        for part in svg.split(r#"class="lg""#).skip(1) {
            let before = &svg[..svg.find(part).unwrap()];
            let y: f64 = before
                .rsplit("y=\"")
                .next()
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!(y > TOP + PLOT_H, "{y}");
        }
        assert!(svg.contains("clip-path=\"url(#x-clip)\""));
    }
}
