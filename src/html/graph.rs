//! The stage graph as inline SVG: stages in columns by depth (longest path
//! from a source), edges as curves, each box coloured by what happened to
//! the stage in the run (ran, cached, failed, ...).

use std::fmt::Write as _;

use super::esc;

/// A stage in the graph.
#[derive(Debug, Clone)]
pub struct Node {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// `ran`, `cached`, `failed`, `skipped`, `interrupted` or `pending`.
    pub state: String,
    /// Indices of the stages it waits for (each before it).
    pub upstream: Vec<usize>,
}

/// Graphs with more stages are left out (the table lists them).
pub const MAX_NODES: usize = 300;

const BOX_W: f64 = 168.0;
const BOX_H: f64 = 38.0;
const COL: f64 = 200.0;
const ROW: f64 = 50.0;
const PAD: f64 = 8.0;

/// Each stage's column: the length of the longest path reaching it.
fn depths(nodes: &[Node]) -> Vec<usize> {
    let mut depth = vec![0usize; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        depth[i] = n
            .upstream
            .iter()
            .filter(|&&u| u < i)
            .map(|&u| depth[u] + 1)
            .max()
            .unwrap_or(0);
    }
    depth
}

/// The graph as an `<svg>` element (nodes in topological order).
pub fn graph(nodes: &[Node]) -> String {
    let depth = depths(nodes);
    let mut rows_used: Vec<usize> = Vec::new();
    let mut at = Vec::with_capacity(nodes.len());
    for &d in &depth {
        if rows_used.len() <= d {
            rows_used.resize(d + 1, 0);
        }
        at.push((d, rows_used[d]));
        rows_used[d] += 1;
    }
    let cols = rows_used.len().max(1) as f64;
    let rows = rows_used.iter().copied().max().unwrap_or(1) as f64;
    let (w, h) = (
        PAD * 2.0 + (cols - 1.0) * COL + BOX_W,
        PAD * 2.0 + (rows - 1.0) * ROW + BOX_H,
    );
    let pos = |i: usize| {
        let (c, r) = at[i];
        (PAD + c as f64 * COL, PAD + r as f64 * ROW)
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="graph" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="stage graph">"#
    );
    for (i, n) in nodes.iter().enumerate() {
        let (x2, y2) = pos(i);
        for &u in n.upstream.iter().filter(|&&u| u < i) {
            let (x1, y1) = pos(u);
            let (sx, sy, ex, ey) = (x1 + BOX_W, y1 + BOX_H / 2.0, x2, y2 + BOX_H / 2.0);
            let mid = (sx + ex) / 2.0;
            let _ = write!(
                s,
                r#"<path class="edge" d="M{sx},{sy} C{mid},{sy} {mid},{ey} {ex},{ey}"/>"#
            );
        }
    }
    for (i, n) in nodes.iter().enumerate() {
        let (x, y) = pos(i);
        let name: String = if n.name.chars().count() > 22 {
            n.name.chars().take(21).chain(['…']).collect()
        } else {
            n.name.clone()
        };
        let _ = write!(
            s,
            r##"<a href="#stage-{anchor}"><g class="node {state}" data-stage="{full}"><title>{full}: {kind}, {state}</title><rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="5"/><text x="{tx}" y="{ty}" class="nn">{name}</text><text x="{tx}" y="{ky}" class="nk">{kind} · {state}</text></g></a>"##,
            anchor = esc(&n.name),
            state = esc(&n.state),
            full = esc(&n.name),
            kind = esc(&n.kind),
            name = esc(&name),
            tx = x + 8.0,
            ty = y + 16.0,
            ky = y + 31.0,
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, up: &[usize]) -> Node {
        Node {
            name: name.into(),
            kind: "command".into(),
            state: "cached".into(),
            upstream: up.to_vec(),
        }
    }

    #[test]
    fn columns_follow_the_longest_path() {
        let nodes = [
            node("a", &[]),
            node("b", &[0]),
            node("c", &[0, 1]),
            node("d", &[]),
        ];
        assert_eq!(depths(&nodes), [0, 1, 2, 0]);
        let svg = graph(&nodes);
        assert_eq!(svg.matches("class=\"edge\"").count(), 3);
        assert_eq!(svg.matches("data-stage=").count(), 4);
    }

    #[test]
    fn names_are_escaped_and_shortened() {
        let svg = graph(&[node("<script>a_very_long_stage_name_indeed", &[])]);
        assert!(!svg.contains("<script>"));
        assert!(svg.contains('…'));
    }
}
