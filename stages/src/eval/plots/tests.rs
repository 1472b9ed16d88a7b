use super::axes::nearest_tick;
use super::charts::{render_det, render_roc};
use super::training::{nice_ticks, render_training};
use super::*;
use crate::eval::metrics::Point;

fn normal_cdf(x: f64) -> f64 {
    // Abramowitz-Stegun 7.1.26 through erf.
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

fn need_font() {
    assert!(
        font_available(),
        "no DejaVu Sans: install fonts-dejavu-core (`make deps` does)"
    );
}

fn pts(rates: &[(f64, f64)]) -> Vec<Point> {
    rates
        .iter()
        .map(|&(far, frr)| Point {
            threshold: 0.0,
            far,
            frr,
        })
        .collect()
}

fn all_finite(pieces: &[Vec<Xy>]) -> bool {
    pieces
        .iter()
        .flatten()
        .all(|p| p.0.is_finite() && p.1.is_finite())
}

#[test]
fn probit_inverts_the_normal_cdf() {
    for p in [0.001, 0.01, 0.1, 0.5, 0.9, 0.999] {
        assert!((normal_cdf(probit(p)) - p).abs() < 1e-6, "{p}");
    }
    assert!((probit(0.975) - 1.959_964).abs() < 1e-5);
}

#[test]
fn det_ticks_are_the_conventional_ones() {
    assert_eq!(
        DET_TICKS,
        &[0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4]
    );
    let labels: Vec<String> = DET_TICKS.iter().map(|p| det_tick_label(*p)).collect();
    assert_eq!(
        labels,
        ["0.1", "0.2", "0.5", "1", "2", "5", "10", "20", "40"]
    );
    // The range holds every tick with room beyond the outer ones.
    assert!(DET_RANGE.0 < DET_TICKS[0] && DET_RANGE.1 > DET_TICKS[8]);
    // A mesh coordinate maps back to its tick.
    for p in DET_TICKS {
        assert_eq!(nearest_tick(probit(*p) + 1e-6, DET_TICKS, probit), *p);
    }
}

#[test]
fn roc_ticks_are_decades() {
    let labels: Vec<String> = ROC_FAR_TICKS.iter().map(|f| roc_tick_label(*f)).collect();
    assert_eq!(labels, ["1e-4", "1e-3", "0.01", "0.1", "1"]);
    assert_eq!(ROC_FAR_RANGE, (ROC_FAR_TICKS[0], ROC_FAR_TICKS[4]));
    assert_eq!(roc_rect().x0, -4.0);
}

#[test]
fn a_segment_crossing_the_border_ends_on_it() {
    let r = Rect {
        x0: 0.0,
        x1: 10.0,
        y0: 0.0,
        y1: 10.0,
    };
    // Leaves through the top: the inside end is kept, the other lands on y1.
    let (a, b) = clip_segment((2.0, 5.0), (4.0, 15.0), r).unwrap();
    assert_eq!(a, (2.0, 5.0));
    assert_eq!(b.1, 10.0);
    assert!((b.0 - 3.0).abs() < 1e-12);
    // Through two borders, both ends outside: each lands on its border.
    let (a, b) = clip_segment((-5.0, 5.0), (15.0, 5.0), r).unwrap();
    assert_eq!((a, b), ((0.0, 5.0), (10.0, 5.0)));
    let (a, b) = clip_segment((0.1 - 3.0, 0.3 - 3.0), (7.1, 10.3 + 0.2), r).unwrap();
    assert_eq!(a.0, 0.0, "{a:?}");
    assert_eq!(b.1, 10.0, "{b:?}");
    // A polyline that leaves and comes back is broken in two.
    let pieces = clip_polyline([(1.0, 1.0), (5.0, 20.0), (9.0, 1.0)], r);
    assert_eq!(pieces.len(), 2, "{pieces:?}");
    assert_eq!(pieces[0][1].1, 10.0);
    assert_eq!(pieces[1][0].1, 10.0);
    assert_eq!(pieces[1][1], (9.0, 1.0));
}

#[test]
fn a_segment_outside_is_dropped() {
    let r = Rect {
        x0: 0.0,
        x1: 10.0,
        y0: 0.0,
        y1: 10.0,
    };
    assert_eq!(clip_segment((2.0, 11.0), (8.0, 30.0), r), None);
    // Passes by a corner without touching the rectangle.
    assert_eq!(clip_segment((9.0, 12.0), (12.0, 9.0), r), None);
    assert_eq!(clip_segment((f64::NAN, 1.0), (2.0, 2.0), r), None);
    assert!(clip_polyline([(2.0, 11.0), (8.0, 30.0), (9.0, 40.0)], r).is_empty());
}

#[test]
fn zero_rates_are_clipped_on_the_det() {
    let r = det_rect();
    // FAR = 0 (probit -inf): the line enters at the left edge, level with
    // the finite end (the limit of a line from x = -inf).
    let pieces = det_polylines(&pts(&[(0.0, 0.3), (0.01, 0.2)]));
    assert!(all_finite(&pieces));
    assert_eq!(pieces.len(), 1);
    assert_eq!(pieces[0][0].0, r.x0);
    assert!((pieces[0][0].1 - probit(0.2)).abs() < 1e-9);
    // FRR = 0 likewise at the bottom edge.
    let pieces = det_polylines(&pts(&[(0.01, 0.05), (0.2, 0.0)]));
    assert!(all_finite(&pieces));
    assert_eq!(pieces[0].last().unwrap().1, r.y0);
    // Perfect separation: every segment at infinity, nothing drawn.
    let pieces = det_polylines(&pts(&[(0.0, 1.0), (0.0, 0.0), (1.0, 0.0)]));
    assert!(pieces.is_empty(), "{pieces:?}");
    // A real ROC with both ends at 0 and 1 draws only finite points.
    let roc = crate::eval::metrics::roc(&[(0.9, true), (0.4, false), (0.6, true), (0.5, false)]);
    assert!(all_finite(&det_polylines(&roc)));
}

#[test]
fn roc_far_zero_is_clipped_at_the_left_edge() {
    let pieces = roc_polylines(&pts(&[(0.0, 0.5), (0.01, 0.1)]));
    assert!(all_finite(&pieces));
    assert_eq!(pieces.len(), 1);
    let first = pieces[0][0];
    assert_eq!(first.0, -4.0);
    // TAR interpolated linearly in FAR: 0.5 + (1e-4 / 0.01) * 0.4.
    assert!((first.1 - 0.504).abs() < 1e-12, "{first:?}");
    assert_eq!(*pieces[0].last().unwrap(), (-2.0, 0.9));
    // Sampled along the log axis, so the straight ROC segment keeps its shape.
    assert!(pieces[0].len() > 10);
    // Left of the range altogether: dropped.
    assert!(roc_polylines(&pts(&[(0.0, 1.0), (0.0, 0.5), (5e-5, 0.4)])).is_empty());
    // The real ROC from accepting nothing to everything: one piece, finite.
    let roc = crate::eval::metrics::roc(&[(0.9, true), (0.4, false), (0.6, true), (0.5, false)]);
    let pieces = roc_polylines(&roc);
    assert!(all_finite(&pieces));
    assert_eq!(pieces.len(), 1);
}

#[test]
fn nice_ticks_are_round() {
    assert_eq!(
        nice_ticks(2.9, 12.4, 6, 0.0),
        (vec![4.0, 6.0, 8.0, 10.0, 12.0], 0)
    );
    let (t, d) = nice_ticks(0.0, 1.0, 6, 0.0);
    assert_eq!((t.len(), d), (6, 1));
    assert!((t[3] - 0.6).abs() < 1e-12);
    assert_eq!(nice_ticks(1.0, 5.0, 8, 1.0).0, [1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(nice_ticks(0.61, 0.74, 6, 0.0).1, 2);
}

#[test]
fn writes_pngs() {
    need_font();
    let dir = tempfile::tempdir().unwrap();
    let pts = crate::eval::metrics::roc(&[(0.9, true), (0.4, false), (0.6, true), (0.5, false)]);
    roc(&dir.path().join("roc.png"), &[("a", &pts)]).unwrap();
    det(&dir.path().join("det.png"), &[("a", &pts), ("b", &pts)]).unwrap();
    for name in ["roc.png", "det.png"] {
        let img = image::open(dir.path().join(name)).unwrap();
        assert_eq!((img.width(), img.height()), SIZE, "{name}");
    }
    let stage = |name| Curves {
        stage: name,
        series: vec![
            ("train_loss", vec![(1.0, 2.0), (2.0, 1.0)]),
            ("val_acc", vec![(1.0, 0.5), (2.0, 0.7)]),
        ],
    };
    let stages = [stage("pretrain"), stage("fine-tune"), stage("third")];
    training(&dir.path().join("training.png"), &stages).unwrap();
    let img = image::open(dir.path().join("training.png")).unwrap();
    assert_eq!((img.width(), img.height()), training_size(3));
    assert!(img.height() > SIZE.1);
}

/// An RGB buffer of `width` pixels a row.
struct Pixels<'a> {
    buf: &'a [u8],
    width: i32,
}

impl Pixels<'_> {
    fn is(&self, x: i32, y: i32, c: RGBColor) -> bool {
        let i = 3 * (y * self.width + x) as usize;
        self.buf[i..i + 3] == [c.0, c.1, c.2]
    }

    /// The pixels of colour `c` in `rect`.
    fn find(&self, rect: &PixelRect, c: RGBColor) -> Vec<(i32, i32)> {
        let mut out = Vec::new();
        for y in rect.1.clone() {
            for x in rect.0.clone() {
                if self.is(x, y, c) {
                    out.push((x, y));
                }
            }
        }
        out
    }
}

/// Every vertex of `pieces` (plot coordinates in `r`, drawn into `plot`)
/// shows colour `c` within 3 pixels: no legend box or other element hides
/// it.
fn check_visible(px: &Pixels<'_>, plot: &PixelRect, r: Rect, pieces: &[Vec<Xy>], c: RGBColor) {
    let (w, h) = (plot.0.len() as f64, plot.1.len() as f64);
    let vertices = pieces.concat();
    assert!(vertices.len() > 2);
    for (x, y) in vertices {
        let cx = plot.0.start + ((x - r.x0) / (r.x1 - r.x0) * w) as i32;
        let cy = plot.1.start + ((r.y1 - y) / (r.y1 - r.y0) * h) as i32;
        let near = (
            (cx - 3).max(plot.0.start)..cx + 4,
            (cy - 3).max(plot.1.start)..cy + 4,
        );
        assert!(!px.find(&near, c).is_empty(), "vertex ({x}, {y}) hidden");
    }
}

fn disjoint(a: &PixelRect, b: &PixelRect) -> bool {
    a.0.end <= b.0.start || b.0.end <= a.0.start || a.1.end <= b.1.start || b.1.end <= a.1.start
}

/// The legend lies outside every plot, and each series' colour appears in
/// the legend only in that series' own line sample.
fn check_legend(px: &Pixels<'_>, layout: &Layout, colours: &[RGBColor]) {
    let strip = layout.legend.clone();
    assert_eq!(layout.samples.len(), colours.len());
    for plot in &layout.plots {
        assert!(disjoint(plot, &strip), "{plot:?} {strip:?}");
    }
    for (sample, c) in layout.samples.iter().zip(colours) {
        let inside = px.find(sample, *c).len();
        assert!(inside > 10, "no sample of {c:?} in {sample:?}");
        assert_eq!(
            px.find(&strip, *c).len(),
            inside,
            "{c:?} outside its sample"
        );
    }
}

#[test]
fn det_curves_are_clipped_not_clamped_and_the_legend_is_apart() {
    need_font();
    // `a` runs above 60 % FRR at low FAR, then crosses into the plot; `b`
    // stays inside.
    let a = pts(&[
        (0.0001, 0.95),
        (0.001, 0.95),
        (0.005, 0.9),
        (0.02, 0.8),
        (0.05, 0.5),
        (0.2, 0.2),
        (0.5, 0.05),
    ]);
    let b = pts(&[(0.002, 0.3), (0.01, 0.1), (0.1, 0.02)]);
    let (buf, layout) = render(SIZE, |root| render_det(root, &[("a", &a), ("b", &b)])).unwrap();
    let px = Pixels {
        buf: &buf,
        width: SIZE.0 as i32,
    };
    let plot = layout.plots[0].clone();
    let (ca, cb) = (COLOURS[0], COLOURS[1]);
    assert!(px.find(&plot, ca).len() > 100, "curve a not drawn");
    // Along the top border, `a` shows only where it crosses it (clamping
    // drew it along the border from 0.01 % to 2 % FAR).
    let top = (plot.0.clone(), plot.1.start..plot.1.start + 4);
    let xs: Vec<i32> = px.find(&top, ca).iter().map(|p| p.0).collect();
    let (lo, hi) = (xs.iter().min().unwrap(), xs.iter().max().unwrap());
    assert!(
        hi - lo <= 12,
        "curve a runs along the top border: x {lo}..{hi}"
    );
    // Nothing of `a` left of its crossing: no line at the left edge either.
    let left = (plot.0.start..plot.0.start + 4, plot.1.clone());
    assert!(px.find(&left, ca).is_empty());
    // Nothing is drawn over the curves.
    check_visible(&px, &plot, det_rect(), &det_polylines(&b), cb);
    check_legend(&px, &layout, &[ca, cb]);
}

#[test]
fn roc_and_training_legends_are_apart() {
    need_font();
    let a = crate::eval::metrics::roc(&[(0.9, true), (0.4, false), (0.6, true), (0.5, false)]);
    // `b` runs through the lower right, where a legend box used to sit.
    let b = pts(&[
        (0.0, 1.0),
        (0.01, 0.98),
        (0.1, 0.95),
        (0.5, 0.9),
        (0.9, 0.5),
        (1.0, 0.0),
    ]);
    let (buf, layout) = render(SIZE, |root| render_roc(root, &[("a", &a), ("b", &b)])).unwrap();
    let px = Pixels {
        buf: &buf,
        width: SIZE.0 as i32,
    };
    check_visible(
        &px,
        &layout.plots[0],
        roc_rect(),
        &roc_polylines(&b),
        COLOURS[1],
    );
    check_legend(&px, &layout, &COLOURS[..2]);
    let stages = [
        Curves {
            stage: "pretrain",
            series: vec![
                ("train_loss", vec![(1.0, 12.0), (2.0, 8.0), (3.0, 5.5)]),
                ("val_loss", vec![(1.0, 12.5), (2.0, 9.0), (3.0, 7.0)]),
                ("train_acc", vec![(1.0, 0.2), (2.0, 0.5), (3.0, 0.7)]),
            ],
        },
        Curves {
            stage: "fine-tune",
            series: vec![("train_loss", vec![(1.0, 1.2), (2.0, 0.9)])],
        },
    ];
    let size = training_size(stages.len());
    let (buf, layout) = render(size, |root| render_training(root, &stages)).unwrap();
    // Loss and accuracy for the first stage, loss alone for the second.
    assert_eq!(layout.plots.len(), 3);
    let px = Pixels {
        buf: &buf,
        width: size.0 as i32,
    };
    check_legend(&px, &layout, &COLOURS[..2]);
    for plot in &layout.plots {
        assert!(
            px.find(plot, COLOURS[0]).len() > 20,
            "{plot:?} has no curve"
        );
    }
}

/// Sample plots for a look by eye: `TUNEFLOW_PLOTS_DUMP=DIR cargo test -p
/// tuneflow-stages --lib sample_plots -- --ignored`.
#[test]
#[ignore = "writes sample plots into $TUNEFLOW_PLOTS_DUMP for a visual check"]
fn sample_plots() {
    need_font();
    let dir = std::env::var("TUNEFLOW_PLOTS_DUMP").expect("TUNEFLOW_PLOTS_DUMP names a folder");
    let dir = std::path::PathBuf::from(dir);
    let mut state = 12345u64;
    let mut unif = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let mut gauss = move || {
        let (u, v) = (unif(), unif());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    };
    let mut trials = |sep: f64, pos: usize, neg: usize| {
        let mut t: Vec<(f64, bool)> = (0..pos).map(|_| (sep + gauss(), true)).collect();
        t.extend((0..neg).map(|_| (gauss(), false)));
        crate::eval::metrics::roc(&t)
    };
    let good = trials(3.5, 2000, 50000);
    let bad = trials(1.2, 2000, 50000);
    let tiny = trials(2.0, 20, 50);
    roc(
        &dir.join("roc.png"),
        &[("model", &good), ("baseline", &bad), ("tiny", &tiny)],
    )
    .unwrap();
    det(
        &dir.join("det.png"),
        &[("model", &good), ("baseline", &bad), ("tiny", &tiny)],
    )
    .unwrap();
    let ep = |f: &dyn Fn(f64) -> f64, n: usize| {
        (1..=n).map(|e| (e as f64, f(e as f64))).collect::<Vec<_>>()
    };
    let stages = [
        Curves {
            stage: "pretrain",
            series: vec![
                ("train_loss", ep(&|e| 4.0 + 9.0 * (-e / 6.0).exp(), 30)),
                ("val_loss", ep(&|e| 4.8 + 8.5 * (-e / 7.0).exp(), 30)),
                ("train_acc", ep(&|e| 0.95 - 0.9 * (-e / 6.0).exp(), 30)),
                ("val_acc", ep(&|e| 0.85 - 0.8 * (-e / 7.0).exp(), 30)),
            ],
        },
        Curves {
            stage: "fine-tune",
            series: vec![
                ("train_loss", ep(&|e| 0.3 + 1.0 * (-e / 2.0).exp(), 8)),
                ("val_loss", ep(&|e| 0.45 + 0.9 * (-e / 2.5).exp(), 8)),
                ("train_acc", ep(&|e| 0.97 - 0.3 * (-e / 2.0).exp(), 8)),
                ("val_acc", ep(&|e| 0.92 - 0.3 * (-e / 2.5).exp(), 8)),
            ],
        },
    ];
    training(&dir.join("training.png"), &stages).unwrap();
    training(&dir.join("training1.png"), &stages[1..]).unwrap();
}
