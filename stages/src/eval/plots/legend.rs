//! The legend, drawn in a strip below the plots so that it never covers a
//! curve: one line sample and label per series, centred, wrapped into as
//! many rows as the width needs.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{err, Area, PixelRect};

/// One series in the legend.
pub(super) struct Entry {
    pub label: String,
    pub colour: RGBColor,
}

const ROW: i32 = 24;
const PAD: i32 = 6;
const SAMPLE: i32 = 28;
const GAP: i32 = 6;
const SPACING: i32 = 28;

fn font() -> TextStyle<'static> {
    ("sans-serif", 16).into_font().color(&BLACK)
}

/// The entries in rows that fit `width`: (entry, its width) per row.
fn rows(area: &Area<'_>, entries: &[Entry], width: i32) -> Result<Vec<Vec<(usize, i32)>>, String> {
    let mut rows: Vec<Vec<(usize, i32)>> = vec![Vec::new()];
    let mut used = 0;
    for (i, e) in entries.iter().enumerate() {
        let (w, _) = area.estimate_text_size(&e.label, &font()).map_err(err)?;
        let w = SAMPLE + GAP + w as i32;
        let row = rows.last_mut().expect("a row");
        if !row.is_empty() && used + SPACING + w > width {
            rows.push(vec![(i, w)]);
            used = w;
        } else {
            used += if row.is_empty() { w } else { SPACING + w };
            row.push((i, w));
        }
    }
    Ok(rows)
}

/// Draws the legend at the bottom of `area` and returns the area above it,
/// the legend strip and each entry's line sample (image pixels).
pub(super) fn below<'a>(
    area: &Area<'a>,
    entries: &[Entry],
) -> Result<(Area<'a>, PixelRect, Vec<PixelRect>), String> {
    let (xs, ys) = area.get_pixel_range();
    let width = xs.end - xs.start - 2 * PAD;
    let rows = rows(area, entries, width)?;
    let height = rows.len() as i32 * ROW + 2 * PAD;
    let (upper, strip) = area.split_vertically(ys.end - ys.start - height);
    let (sx, sy) = strip.get_pixel_range();
    let mut samples = Vec::new();
    for (r, row) in rows.iter().enumerate() {
        let total: i32 = row.iter().map(|(_, w)| w).sum::<i32>() + SPACING * (row.len() as i32 - 1);
        let mut x = (sx.end - sx.start - total) / 2;
        let y = PAD + r as i32 * ROW + ROW / 2;
        for &(i, w) in row {
            let e = &entries[i];
            strip
                .draw(&PathElement::new(
                    [(x, y), (x + SAMPLE, y)],
                    e.colour.stroke_width(3),
                ))
                .map_err(err)?;
            let label = font().pos(Pos::new(HPos::Left, VPos::Center));
            strip
                .draw_text(&e.label, &label, (x + SAMPLE + GAP, y))
                .map_err(err)?;
            samples.push((
                sx.start + x..sx.start + x + SAMPLE + 1,
                sy.start + y - 2..sy.start + y + 3,
            ));
            x += w + SPACING;
        }
    }
    Ok((upper, (sx, sy), samples))
}
