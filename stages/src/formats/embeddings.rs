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
    let matrix = read_f32(get("embeddings.f32")?)?;
    if matrix.len() != meta.count * meta.dim {
        return Err(format!(
            "`{name}`: embeddings.f32 holds {} values, not {} x {}",
            matrix.len(),
            meta.count,
            meta.dim
        ));
    }
    let scores = files.get("scores.f32").map(|p| read_f32(p)).transpose()?;
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
