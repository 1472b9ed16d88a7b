//! The `embeddings` artifact (from `extract`): `embeddings.f32` (`count x
//! dim`, f32 little-endian, row-major), `items.json` ([`EmbeddingsMeta`]),
//! and optionally `scores.f32` (`count x head classes`) and `trials.txt`
//! (`label i j` lines over dataset indices).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `items.json` of an embeddings artifact: row `r` of `embeddings.f32`
/// (`count x dim`, f32 little-endian) is item `ids[r]`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct EmbeddingsMeta {
    /// Rows.
    pub count: usize,
    /// Columns.
    pub dim: usize,
    /// Item ids.
    pub ids: Vec<String>,
    /// Class label of each row (an index into `classes`).
    pub labels: Vec<u32>,
    /// Each row's index in the whole dataset (what `trials.txt` refers to).
    pub indices: Vec<u32>,
    /// The data's class names.
    pub classes: Vec<String>,
    /// The head's class names when `scores.f32` (`count x classes`) exists.
    pub head_classes: Option<Vec<String>>,
    /// Whether rows are L2-normalised.
    pub normalized: bool,
}

/// An embeddings artifact in memory.
pub struct Embeddings {
    /// Its metadata.
    pub meta: EmbeddingsMeta,
    /// `count x dim`.
    pub matrix: Vec<f32>,
    /// `count x head classes`, if the model had a classification head.
    pub scores: Option<Vec<f32>>,
    /// `label i j` lines (dataset indices), if the data had trials.
    pub trials: Option<String>,
}

fn read_f32(path: &Path) -> Result<Vec<f32>, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("failed to read `{}`: {e}", path.display()))?;
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect())
}

/// Reads an embeddings artifact from its files.
pub fn load(files: &BTreeMap<String, PathBuf>, name: &str) -> Result<Embeddings, String> {
    let get = |f: &str| {
        files
            .get(f)
            .ok_or_else(|| format!("input `{name}` has no `{f}` (is it an `extract` stage?)"))
    };
    let meta: EmbeddingsMeta =
        serde_json::from_slice(&std::fs::read(get("items.json")?).map_err(|e| e.to_string())?)
            .map_err(|e| format!("`{name}`: bad items.json: {e}"))?;
    check_rows(&meta).map_err(|e| format!("`{name}`: {e}"))?;
    let matrix = exact_f32(
        get("embeddings.f32")?,
        "embeddings.f32",
        meta.count * meta.dim,
    )
    .map_err(|e| format!("`{name}`: {e}"))?;
    let scores = match (&meta.head_classes, files.get("scores.f32")) {
        (Some(h), Some(p)) => Some(
            exact_f32(p, "scores.f32", meta.count * h.len())
                .map_err(|e| format!("`{name}`: {e}"))?,
        ),
        _ => None,
    };
    let trials = files
        .get("trials.txt")
        .map(std::fs::read_to_string)
        .transpose()
        .map_err(|e| format!("`{name}`: {e}"))?;
    Ok(Embeddings {
        meta,
        matrix,
        scores,
        trials,
    })
}

/// The files of the folder `dir` (its direct children), by name.
pub(crate) fn files_of(dir: &Path) -> Result<BTreeMap<String, PathBuf>, String> {
    let mut files = BTreeMap::new();
    for e in std::fs::read_dir(dir).map_err(|e| format!("cannot list it: {e}"))? {
        let e = e.map_err(|e| format!("cannot list it: {e}"))?;
        files.insert(e.file_name().to_string_lossy().into_owned(), e.path());
    }
    Ok(files)
}

fn exact_f32(path: &Path, what: &str, want: usize) -> Result<Vec<f32>, String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("{what}: {e}"))?
        .len();
    if len != want as u64 * 4 {
        return Err(format!(
            "{what} has {len} bytes, not {want} f32 values ({} bytes)",
            want * 4
        ));
    }
    let v = read_f32(path)?;
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(format!(
            "{what} holds a value that is not finite (value {i})"
        ));
    }
    Ok(v)
}

/// `items.json` describes its rows consistently: a non-zero `dim`, one id,
/// label and index per row, labels within `classes` (every reader checks
/// this: `evaluate` indexes by them).
fn check_rows(meta: &EmbeddingsMeta) -> Result<(), String> {
    let n = meta.count;
    if meta.dim == 0 {
        return Err("items.json: `dim` is 0".into());
    }
    for (field, len) in [
        ("ids", meta.ids.len()),
        ("labels", meta.labels.len()),
        ("indices", meta.indices.len()),
    ] {
        if len != n {
            return Err(format!(
                "items.json: `{field}` has {len} entries, `count` is {n}"
            ));
        }
    }
    if let Some(l) = meta
        .labels
        .iter()
        .find(|&&l| l as usize >= meta.classes.len())
    {
        return Err(format!(
            "items.json: label {l} is not an index into `classes` ({} names)",
            meta.classes.len()
        ));
    }
    Ok(())
}

/// Checks an embeddings folder as a typed output: everything [`load`]
/// reads, and that every part agrees with `items.json` (no trailing bytes,
/// one id, label and index per row, labels within `classes`, scores only
/// with `head-classes`, unit rows when `normalized`, `trials.txt` lines
/// of `label i j` over the rows' indices).
pub fn check_dir(dir: &Path) -> Result<(), String> {
    let files = files_of(dir)?;
    let items = files.get("items.json").ok_or("no `items.json`")?;
    let meta: EmbeddingsMeta =
        serde_json::from_slice(&std::fs::read(items).map_err(|e| format!("items.json: {e}"))?)
            .map_err(|e| format!("items.json: {e}"))?;
    check_rows(&meta)?;
    let (n, dim) = (meta.count, meta.dim);
    let matrix = exact_f32(
        files.get("embeddings.f32").ok_or("no `embeddings.f32`")?,
        "embeddings.f32",
        n * dim,
    )?;
    if meta.normalized {
        for (r, row) in matrix.chunks_exact(dim).enumerate() {
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            if (norm - 1.0).abs() > 1e-3 {
                return Err(format!(
                    "row {r} has norm {norm}, but items.json says `normalized = true`"
                ));
            }
        }
    }
    match (&meta.head_classes, files.get("scores.f32")) {
        (Some(h), Some(p)) => {
            exact_f32(p, "scores.f32", n * h.len())?;
        }
        (Some(_), None) => {
            return Err("items.json has `head-classes` but there is no `scores.f32`".into())
        }
        (None, Some(_)) => return Err("`scores.f32` needs `head-classes` in items.json".into()),
        (None, None) => {}
    }
    if let Some(p) = files.get("trials.txt") {
        let text = std::fs::read_to_string(p).map_err(|e| format!("trials.txt: {e}"))?;
        let known: std::collections::HashSet<u32> = meta.indices.iter().copied().collect();
        for (no, line) in text.lines().enumerate() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let ok = matches!(f[..], [l, i, j]
                if matches!(l, "0" | "1")
                    && [i, j].iter().all(|x| x.parse::<u32>().is_ok_and(|x| known.contains(&x))));
            if !ok {
                return Err(format!(
                    "trials.txt line {}: `{line}` is not `LABEL I J` (label 0 or 1, I and J among `indices`)",
                    no + 1
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, meta: &serde_json::Value, values: usize, extra: usize) {
        std::fs::write(dir.join("items.json"), meta.to_string()).unwrap();
        std::fs::write(dir.join("embeddings.f32"), vec![0u8; values * 4 + extra]).unwrap();
    }

    #[test]
    fn load_refuses_meta_that_does_not_describe_the_rows() {
        let dir = tempfile::tempdir().unwrap();
        let meta = |ids: &[&str], labels: &[u32]| {
            serde_json::json!({"count": 2, "dim": 3, "ids": ids, "labels": labels,
                "indices": [0, 1], "classes": ["a", "b"], "head-classes": null, "normalized": false})
        };
        let load_err = |m: &serde_json::Value, extra: usize| {
            write(dir.path(), m, 6, extra);
            load(&files_of(dir.path()).unwrap(), "x")
                .err()
                .unwrap_or_default()
        };
        assert_eq!(load_err(&meta(&["p", "q"], &[0, 1]), 0), "");
        let e = load_err(&meta(&["p"], &[0, 1]), 0);
        assert!(e.contains("`ids` has 1 entries, `count` is 2"), "{e}");
        let e = load_err(&meta(&["p", "q"], &[0, 5]), 0);
        assert!(e.contains("label 5 is not an index"), "{e}");
        let e = load_err(&meta(&["p", "q"], &[0, 1]), 2);
        assert!(e.contains("embeddings.f32 has 26 bytes"), "{e}");
    }
}
