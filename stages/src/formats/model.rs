//! The `model` artifact: a folder with `model.safetensors` (the weights,
//! tensors sorted by name), `config.json` ([`ModelFolderConfig`]: how to
//! rebuild the network and feed it), `metrics.json` (the training history)
//! and, from `freeze`, `freeze.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::data::augment_ops::Op;
use crate::formats::freeze::FreezeFile;

/// The backbone's settings, as written in a stage's `model = { ... }`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ModelConfig {
    /// The architecture family; only `resnet`.
    #[serde(default = "resnet")]
    pub arch: String,
    /// 10, 18 or 34 (basic blocks) or 50 (bottlenecks).
    pub depth: u32,
    /// Channels of the stem and `layer1` (doubled in each later layer).
    #[serde(default = "width")]
    pub width: i64,
    /// Embedding size.
    #[serde(default = "embedding")]
    pub embedding: i64,
    /// Input channels (1 for spectrograms and grayscale images).
    #[serde(default = "in_channels")]
    pub in_channels: i64,
    /// Stride of the stem convolution.
    #[serde(default = "one")]
    pub stem_stride: i64,
    /// `avg` (images) or `stats` (mean and standard deviation over time).
    #[serde(default = "avg")]
    pub pooling: String,
}

fn width() -> i64 {
    64
}
fn embedding() -> i64 {
    512
}
fn in_channels() -> i64 {
    3
}
fn one() -> i64 {
    1
}
fn avg() -> String {
    "avg".into()
}

impl ModelConfig {
    /// A ResNet of `depth` with every other setting at its default.
    pub fn resnet(depth: u32) -> Self {
        Self {
            arch: resnet(),
            depth,
            width: width(),
            embedding: embedding(),
            in_channels: in_channels(),
            stem_stride: one(),
            pooling: avg(),
        }
    }

    /// Blocks per layer, and whether they are bottlenecks.
    pub fn blocks(&self) -> Result<([i64; 4], bool), String> {
        match self.depth {
            10 => Ok(([1, 1, 1, 1], false)),
            18 => Ok(([2, 2, 2, 2], false)),
            34 => Ok(([3, 4, 6, 3], false)),
            50 => Ok(([3, 4, 6, 3], true)),
            d => Err(format!(
                "ResNet depth {d} is not supported (10, 18, 34 or 50)"
            )),
        }
    }
}

fn resnet() -> String {
    "resnet".into()
}

/// The head and loss, with every default resolved.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LossConfig {
    /// `softmax`, `arcface`, `cosface` or `triplet`.
    pub kind: String,
    /// Logit scale `s` (ArcFace, CosFace).
    pub scale: f64,
    /// Margin: angular (ArcFace), cosine (CosFace) or distance (triplet).
    pub margin: f64,
    /// ArcFace: apply the margin only where the angle is below 90 degrees.
    pub easy_margin: bool,
    /// Cross-entropy label smoothing.
    pub label_smoothing: f64,
    /// Triplet: items per class in a class-balanced batch.
    pub per_class: usize,
}

impl LossConfig {
    /// Plain softmax cross-entropy.
    pub fn softmax() -> Self {
        Self::with_defaults("softmax")
    }

    /// The defaults for `kind`: ArcFace s=30, m=0.5; CosFace s=30, m=0.35;
    /// triplet margin 0.3, 4 items per class.
    pub fn with_defaults(kind: &str) -> Self {
        let (scale, margin) = match kind {
            "arcface" => (30.0, 0.5),
            "cosface" => (30.0, 0.35),
            "triplet" => (1.0, 0.3),
            _ => (1.0, 0.0),
        };
        Self {
            kind: kind.into(),
            scale,
            margin,
            easy_margin: false,
            label_smoothing: 0.0,
            per_class: 4,
        }
    }
}

/// `config.json` of a model folder.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ModelFolderConfig {
    /// The backbone.
    pub model: ModelConfig,
    /// The head and loss it was trained with.
    #[serde(default = "LossConfig::softmax")]
    pub loss: LossConfig,
    /// The head's class names (rows of the head's weight).
    pub classes: Vec<String>,
    /// `image` or `fbank`: the data it was trained on.
    pub data_kind: String,
    /// That data's item shape (`[C, H, W]` or `[bins]`).
    pub data_shape: Vec<u32>,
    /// Deterministic ops to apply before inference (e.g. `normalize`).
    #[serde(default)]
    pub eval_ops: Vec<Op>,
    /// Where the weights started: `scratch`, `upstream` or `init`.
    #[serde(default)]
    pub source: String,
    /// Tensors that were frozen while training.
    #[serde(default)]
    pub frozen: Vec<String>,
}

/// A model folder's files, read and checked.
#[derive(Debug, Clone)]
pub struct ModelFolder {
    /// `config.json`.
    pub config: ModelFolderConfig,
    /// `model.safetensors`.
    pub weights: PathBuf,
    /// `freeze.json`, when a `freeze` stage wrote one.
    pub freeze: Option<FreezeFile>,
}

impl ModelFolder {
    /// Reads the folder `name` from its files (relative path -> file).
    pub fn read(files: &BTreeMap<String, PathBuf>, name: &str) -> Result<Self, String> {
        let get = |f: &str| {
            files.get(f).ok_or_else(|| {
                format!("`{name}` has no `{f}` (is it the `model` output of a training or freeze stage?)")
            })
        };
        let config = read_json(get("config.json")?)?;
        let freeze = files.get("freeze.json").map(|p| read_json(p)).transpose()?;
        Ok(Self {
            config,
            weights: get("model.safetensors")?.clone(),
            freeze,
        })
    }
}

/// Reads a JSON file into `T`, naming the file in any error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("failed to read `{}`: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("bad `{}`: {e}", path.display()))
}

/// Checks a model folder as a typed output, without libtorch: `config.json`
/// is a model config this build knows (a supported depth, `avg` or `stats`
/// pooling, `image` or `fbank` data with its shape), `model.safetensors`
/// holds only f32 tensors whose byte ranges fit the file, the embedding
/// layer has `embedding` rows and the head one row per class. (Whether
/// every tensor of the network is there with its shape is checked by the
/// worker when a stage loads the folder.)
pub fn check_dir(dir: &Path) -> Result<(), String> {
    let files = super::embeddings::files_of(dir)?;
    let config: ModelFolderConfig = read_json(files.get("config.json").ok_or("no `config.json`")?)
        .map_err(|e| format!("config.json: {e}"))?;
    let m = &config.model;
    m.blocks().map_err(|e| format!("config.json: {e}"))?;
    if !matches!(m.pooling.as_str(), "avg" | "stats") {
        return Err(format!(
            "config.json: pooling `{}` is not `avg` or `stats`",
            m.pooling
        ));
    }
    let shape_ok = match config.data_kind.as_str() {
        "image" => config.data_shape.len() == 3,
        "fbank" => config.data_shape.len() == 1,
        other => {
            return Err(format!(
                "config.json: data-kind `{other}` is not `image` or `fbank`"
            ))
        }
    };
    if !shape_ok || config.data_shape.contains(&0) {
        return Err(format!(
            "config.json: data-shape {:?} does not fit `{}` data ([C, H, W] or [bins])",
            config.data_shape, config.data_kind
        ));
    }
    let weights = files
        .get("model.safetensors")
        .ok_or("no `model.safetensors`")?;
    let tensors = super::safetensors::read_header(weights)?;
    for (name, t) in &tensors {
        if t.dtype != "F32" {
            return Err(format!(
                "model.safetensors: `{name}` is {}, not F32",
                t.dtype
            ));
        }
        // `read_header` checked that the range lies inside the file.
        let [a, b] = t.data_offsets;
        if b - a != t.shape.iter().product::<u64>() * 4 {
            return Err(format!(
                "model.safetensors: `{name}` (shape {:?}) has a byte range that does not fit",
                t.shape
            ));
        }
    }
    let shape = |n: &str| tensors.iter().find(|(k, _)| k == n).map(|(_, t)| &t.shape);
    match shape("backbone.embedding.fc.weight") {
        Some(s) if s.first() == Some(&(m.embedding as u64)) => {}
        Some(s) => {
            return Err(format!(
                "model.safetensors: `backbone.embedding.fc.weight` has shape {s:?}, the config's embedding is {}",
                m.embedding
            ))
        }
        None => return Err("model.safetensors has no `backbone.embedding.fc.weight`".into()),
    }
    if let Some(s) = shape("head.weight") {
        if s.first() != Some(&(config.classes.len() as u64)) {
            return Err(format!(
                "model.safetensors: `head.weight` has {} rows, config.json names {} classes",
                s.first().copied().unwrap_or(0),
                config.classes.len()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod check_tests {
    use super::*;

    fn folder(dir: &Path, classes: usize, head_rows: u64, dtype: &str) {
        std::fs::create_dir_all(dir).unwrap();
        let names: Vec<String> = (0..classes).map(|c| format!("c{c}")).collect();
        let config = serde_json::json!({
            "model": {"depth": 10, "width": 4, "embedding": 8, "in-channels": 1},
            "classes": names, "data-kind": "image", "data-shape": [1, 8, 8],
        });
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let emb = vec![0u8; 8 * 16 * 4];
        let head = vec![0u8; (head_rows * 8 * 4) as usize];
        let tensors = [
            ("backbone.embedding.fc.weight", dtype, vec![8, 16], &emb[..]),
            ("head.weight", "F32", vec![head_rows, 8], &head[..]),
        ];
        super::super::safetensors::write(
            &dir.join("model.safetensors"),
            &tensors,
            &Default::default(),
        )
        .unwrap();
    }

    #[test]
    fn check_dir_names_what_is_wrong_in_a_model_folder() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok");
        folder(&ok, 3, 3, "F32");
        check_dir(&ok).unwrap();
        let wide = dir.path().join("wide");
        folder(&wide, 3, 7, "F32");
        let e = check_dir(&wide).unwrap_err();
        assert!(
            e.contains("`head.weight` has 7 rows, config.json names 3 classes"),
            "{e}"
        );
        let f64s = dir.path().join("f64");
        folder(&f64s, 3, 3, "F64");
        let e = check_dir(&f64s).unwrap_err();
        assert!(e.contains("is F64, not F32"), "{e}");
        std::fs::write(ok.join("config.json"), "{\"model\": {\"depth\": 11}}").unwrap();
        assert!(check_dir(&ok).unwrap_err().starts_with("config.json"));
    }
}
