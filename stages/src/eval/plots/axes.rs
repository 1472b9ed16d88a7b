//! The plot geometry, free of any drawing: the DET and ROC axis ranges and
//! ticks, the clipping of polylines to a plot rectangle, and the mapping of
//! operating points to the drawn coordinates. Public so that other
//! renderers (an HTML report) draw the same axes and the same curves.

use crate::eval::metrics::Point;

use super::probit;

/// The DET tick positions (fractions), as NIST DET plots label them.
pub const DET_TICKS: &[f64] = &[0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4];

/// The DET axis range (fractions, both axes): half a tick step beyond
/// 0.1 % at the low end and room above 40 % at the high end, so that curves
/// near an edge are not drawn on it.
pub const DET_RANGE: (f64, f64) = (0.0005, 0.6);

/// The ROC FAR axis range (log scale) and its decade ticks.
pub const ROC_FAR_RANGE: (f64, f64) = (1e-4, 1.0);

/// The ROC FAR ticks: one per decade of [`ROC_FAR_RANGE`].
pub const ROC_FAR_TICKS: &[f64] = &[1e-4, 1e-3, 1e-2, 0.1, 1.0];

/// The label of a DET tick, in percent: "0.1", "0.2", "0.5", "1", "2",
/// "5", "10", "20", "40".
pub fn det_tick_label(p: f64) -> String {
    let pct = 100.0 * p;
    if (pct - pct.round()).abs() < 1e-9 {
        format!("{}", pct.round())
    } else {
        // At most one decimal is needed by DET_TICKS; trim a trailing 0.
        let s = format!("{pct:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// The label of a ROC FAR tick: "1e-4", "1e-3", "0.01", "0.1", "1".
pub fn roc_tick_label(far: f64) -> String {
    let decade = far.log10().round() as i32;
    match decade {
        d if d >= 0 => format!("{}", 10f64.powi(d)),
        -1 => "0.1".into(),
        -2 => "0.01".into(),
        d => format!("1e{d}"),
    }
}

/// The closest of `ticks` to `v` after mapping each tick with `map`: turns
/// a mesh coordinate back into the tick it was made from.
pub(super) fn nearest_tick(v: f64, ticks: &[f64], map: impl Fn(f64) -> f64) -> f64 {
    ticks
        .iter()
        .copied()
        .min_by(|a, b| (map(*a) - v).abs().total_cmp(&(map(*b) - v).abs()))
        .unwrap_or(f64::NAN)
}

/// An axis-aligned rectangle in plot coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    /// Left edge.
    pub x0: f64,
    /// Right edge.
    pub x1: f64,
    /// Bottom edge.
    pub y0: f64,
    /// Top edge.
    pub y1: f64,
}

/// A point in plot coordinates.
pub type Xy = (f64, f64);

/// The DET plot rectangle in probit coordinates.
pub fn det_rect() -> Rect {
    let (lo, hi) = (probit(DET_RANGE.0), probit(DET_RANGE.1));
    Rect {
        x0: lo,
        x1: hi,
        y0: lo,
        y1: hi,
    }
}

/// Stands in for an infinite coordinate: far enough out that the clipped
/// segment enters the rectangle along the limit direction (a line towards
/// `x = -inf` at finite `y` is horizontal), near enough to stay exact in
/// f64 arithmetic.
const FAR_OUT: f64 = 1e12;

fn finite(v: f64) -> f64 {
    v.clamp(-FAR_OUT, FAR_OUT)
}

#[derive(Clone, Copy)]
enum Edge {
    X(f64),
    Y(f64),
}

/// The part of segment `a`-`b` inside `r` (Liang-Barsky), or `None` when
/// no part is. An endpoint inside is returned unchanged; one outside is
/// moved exactly onto the border where the segment crosses it. Infinite
/// coordinates (the probit of 0 or 1) are points out at infinity; a NaN
/// drops the segment.
pub fn clip_segment(a: Xy, b: Xy, r: Rect) -> Option<(Xy, Xy)> {
    if [a.0, a.1, b.0, b.1].iter().any(|v| v.is_nan()) {
        return None;
    }
    let (fa, fb) = ((finite(a.0), finite(a.1)), (finite(b.0), finite(b.1)));
    let (dx, dy) = (fb.0 - fa.0, fb.1 - fa.1);
    let (mut t0, mut e0) = (0.0, None);
    let (mut t1, mut e1) = (1.0, None);
    for (p, q, edge) in [
        (-dx, fa.0 - r.x0, Edge::X(r.x0)),
        (dx, r.x1 - fa.0, Edge::X(r.x1)),
        (-dy, fa.1 - r.y0, Edge::Y(r.y0)),
        (dy, r.y1 - fa.1, Edge::Y(r.y1)),
    ] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
            continue;
        }
        let t = q / p;
        if p < 0.0 {
            if t > t1 {
                return None;
            }
            if t > t0 {
                (t0, e0) = (t, Some(edge));
            }
        } else {
            if t < t0 {
                return None;
            }
            if t < t1 {
                (t1, e1) = (t, Some(edge));
            }
        }
    }
    let at = |t: f64, edge: Edge| {
        let mut p = (fa.0 + t * dx, fa.1 + t * dy);
        match edge {
            Edge::X(x) => p.0 = x,
            Edge::Y(y) => p.1 = y,
        }
        (p.0.clamp(r.x0, r.x1), p.1.clamp(r.y0, r.y1))
    };
    Some((e0.map_or(a, |e| at(t0, e)), e1.map_or(b, |e| at(t1, e))))
}

/// `points` clipped to `r`: one polyline per stretch inside, broken where
/// the line leaves the rectangle.
pub fn clip_polyline(points: impl IntoIterator<Item = Xy>, r: Rect) -> Vec<Vec<Xy>> {
    let mut pieces = Vec::new();
    let mut current: Vec<Xy> = Vec::new();
    let mut prev: Option<Xy> = None;
    for p in points {
        if let Some(a) = prev {
            match clip_segment(a, p, r) {
                Some((s, e)) if current.last() == Some(&s) => current.push(e),
                Some((s, e)) => {
                    pieces.push(std::mem::take(&mut current));
                    current = vec![s, e];
                }
                None => pieces.push(std::mem::take(&mut current)),
            }
        }
        prev = Some(p);
    }
    pieces.push(current);
    pieces.retain(|p| !p.is_empty());
    pieces
}

/// The probit of a rate, with 0 and 1 mapped to -inf and +inf (which
/// [`clip_segment`] handles) rather than clamped to a finite value.
pub fn det_coord(p: f64) -> f64 {
    if p <= 0.0 {
        f64::NEG_INFINITY
    } else if p >= 1.0 {
        f64::INFINITY
    } else {
        probit(p)
    }
}

/// A DET curve as drawn: (probit FAR, probit FRR), clipped to
/// [`det_rect`]. The ROC's segments are horizontal or vertical except
/// across tied scores, so straight lines in probit space are exact.
pub fn det_polylines(points: &[Point]) -> Vec<Vec<Xy>> {
    clip_polyline(
        points.iter().map(|p| (det_coord(p.far), det_coord(p.frr))),
        det_rect(),
    )
}

/// The ROC plot rectangle: (log10 FAR, TAR).
pub fn roc_rect() -> Rect {
    Rect {
        x0: ROC_FAR_RANGE.0.log10(),
        x1: ROC_FAR_RANGE.1.log10(),
        y0: 0.0,
        y1: 1.0,
    }
}

/// A ROC curve as drawn: (log10 FAR, TAR). Each segment between operating
/// points is the straight ROC segment (TAR linear in FAR, as tied scores
/// interpolate); it is clipped to [`ROC_FAR_RANGE`] in FAR, so a segment
/// from FAR = 0 starts at the left edge at its interpolated TAR, and is
/// sampled every 0.05 decade where it is not horizontal, so that it keeps
/// its shape on the log axis.
pub fn roc_polylines(points: &[Point]) -> Vec<Vec<Xy>> {
    let mut pieces: Vec<Vec<Xy>> = Vec::new();
    for w in points.windows(2) {
        let (p, q) = ((w[0].far, 1.0 - w[0].frr), (w[1].far, 1.0 - w[1].frr));
        let Some(seg) = roc_segment(p, q) else {
            continue;
        };
        match pieces.last_mut() {
            Some(last) if last.last() == seg.first() => last.extend_from_slice(&seg[1..]),
            _ => pieces.push(seg),
        }
    }
    pieces
}

/// One ROC segment from `p` to `q`, both (FAR, TAR), as drawn; `None` when
/// it lies outside the FAR range or is not finite.
fn roc_segment((f0, t0): Xy, (f1, t1): Xy) -> Option<Vec<Xy>> {
    let (lo, hi) = ROC_FAR_RANGE;
    if ![f0, t0, f1, t1].iter().all(|v| v.is_finite()) {
        return None;
    }
    let (a, b) = (f0.min(f1).max(lo), f0.max(f1).min(hi));
    if a > b {
        return None;
    }
    if f0 == f1 {
        return Some(vec![(a.log10(), t0), (a.log10(), t1)]);
    }
    let tar = |f: f64| match f {
        f if f == f0 => t0,
        f if f == f1 => t1,
        f => t0 + (f - f0) / (f1 - f0) * (t1 - t0),
    };
    let (la, lb) = (a.log10(), b.log10());
    let steps = if t0 == t1 {
        1
    } else {
        ((lb - la) / 0.05).ceil().clamp(1.0, 200.0) as usize
    };
    let mut seg: Vec<Xy> = (0..=steps)
        .map(|i| {
            let f = match i {
                0 => a,
                i if i == steps => b,
                i => 10f64.powf(la + (lb - la) * i as f64 / steps as f64),
            };
            (f.log10(), tar(f))
        })
        .collect();
    if f1 < f0 {
        seg.reverse();
    }
    Some(seg)
}
