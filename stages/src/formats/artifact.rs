//! The artifact types a command stage may declare for an output (`outs =
//! { emb = { path = "out/emb", type = "embeddings" } }`), and the check
//! each gets when its stage commits: built-in kinds read typed command
//! outputs as they read their own, so a malformed one must fail its own
//! stage, naming the part that is wrong, before anything downstream runs.
//! docs/artifacts.md specifies every type.

use std::path::Path;

/// What a typed output holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArtifactType {
    /// A dataset folder (what `ingest` and `augment` write).
    Dataset,
    /// A model folder (`model.safetensors` + `config.json`).
    Model,
    /// An embeddings folder (what `extract` writes).
    Embeddings,
    /// A JSON object of numbers, flat or nested (what `evaluate` writes).
    Metrics,
    /// A folder of PNG or SVG images.
    Plots,
}

impl ArtifactType {
    /// Every type, as written in a pipeline.
    pub const NAMES: [&'static str; 5] = ["dataset", "model", "embeddings", "metrics", "plots"];

    /// The type called `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "dataset" => Self::Dataset,
            "model" => Self::Model,
            "embeddings" => Self::Embeddings,
            "metrics" => Self::Metrics,
            "plots" => Self::Plots,
            _ => return None,
        })
    }

    /// Its name in a pipeline, which is also the name of the built-in
    /// output it stands in for.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// Checks the output at `path` against the type's format; the error
    /// names the missing or malformed part.
    pub fn check(self, path: &Path) -> Result<(), String> {
        let folder = !matches!(self, Self::Metrics);
        if folder && !path.is_dir() {
            return Err(format!("a `{}` output must be a folder", self.name()));
        }
        match self {
            Self::Dataset => crate::data::dataset::check_dir(path),
            Self::Model => super::model::check_dir(path),
            Self::Embeddings => super::embeddings::check_dir(path),
            Self::Metrics => check_metrics(path),
            Self::Plots => check_plots(path),
        }
    }
}

/// A metrics file: a JSON object whose leaves are numbers (objects nest).
fn check_metrics(path: &Path) -> Result<(), String> {
    read_metrics(path).map(drop)
}

/// Reads and checks a metrics file, returning its JSON.
pub fn read_metrics(path: &Path) -> Result<serde_json::Value, String> {
    if !path.is_file() {
        return Err("a `metrics` output must be a JSON file".into());
    }
    let text = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let value: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| format!("not JSON: {e}"))?;
    if !value.is_object() {
        return Err("the metrics must be a JSON object (`{\"eer\": 0.05}`)".into());
    }
    flatten_metrics(&value)?;
    Ok(value)
}

/// The numbers of a metrics object by dotted name (`top.1`), or the first
/// leaf that is not a number.
pub fn flatten_metrics(
    v: &serde_json::Value,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let mut out = serde_json::Map::new();
    flatten_into(v, "", &mut out)?;
    Ok(out)
}

fn flatten_into(
    v: &serde_json::Value,
    at: &str,
    out: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<(), String> {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let here = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                flatten_into(v, &here, out)?;
            }
            Ok(())
        }
        serde_json::Value::Number(_) => {
            out.insert(at.to_owned(), v.clone());
            Ok(())
        }
        other => Err(format!(
            "`{at}` is {}, not a number (metrics are numbers, in objects that may nest)",
            json_type(other)
        )),
    }
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The file in a plots folder that holds the curves' operating points
/// (`evaluate` writes it; `tuneflow report` draws from it).
pub const CURVES: &str = "curves.json";

/// `curves.json`: `{"curves": [{"label": "...", "points": [[far, frr],
/// ...]}]}`, rates in 0..1.
fn check_curves(path: &Path) -> Result<(), String> {
    let bad = |why: &str| format!("`{CURVES}`: {why}");
    let bytes = std::fs::read(path).map_err(|e| bad(&e.to_string()))?;
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(&format!("not JSON: {e}")))?;
    let curves = v["curves"]
        .as_array()
        .ok_or_else(|| bad("expected {\"curves\": [...]}"))?;
    for c in curves {
        if !c["label"].is_string() {
            return Err(bad("each curve needs a string `label`"));
        }
        let points = c["points"]
            .as_array()
            .ok_or_else(|| bad("each curve needs `points`: [[far, frr], ...]"))?;
        let rate = |x: &serde_json::Value| x.as_f64().is_some_and(|r| (0.0..=1.0).contains(&r));
        if !points.iter().all(|p| {
            p.as_array()
                .is_some_and(|p| p.len() == 2 && p.iter().all(rate))
        }) {
            return Err(bad("every point is [far, frr], both rates in 0..1"));
        }
    }
    Ok(())
}

/// A plots folder: at least one file, every file a PNG or an SVG image
/// (told by its bytes, not its name), no subfolders; and optionally
/// [`CURVES`], the curves' points.
fn check_plots(dir: &Path) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot list it: {e}"))?;
    let mut count = 0;
    for e in entries {
        let e = e.map_err(|e| format!("cannot list it: {e}"))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if !path.is_file() {
            return Err(format!(
                "`{name}` is not a file (plots are PNG or SVG files)"
            ));
        }
        if name == CURVES {
            check_curves(&path)?;
            continue;
        }
        let mut head = [0u8; 512];
        let n = std::io::Read::read(
            &mut std::fs::File::open(&path).map_err(|e| format!("`{name}`: {e}"))?,
            &mut head,
        )
        .map_err(|e| format!("`{name}`: {e}"))?;
        let head = &head[..n];
        let png = head.starts_with(b"\x89PNG\r\n\x1a\n");
        let svg = String::from_utf8_lossy(head).contains("<svg");
        if !(png && name.ends_with(".png") || svg && name.ends_with(".svg")) {
            return Err(format!(
                "`{name}` is not a PNG (`.png`) or SVG (`.svg`) image"
            ));
        }
        count += 1;
    }
    if count == 0 {
        return Err("the plots folder is empty".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_objects_of_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        let check = |text: &str| {
            std::fs::write(&p, text).unwrap();
            ArtifactType::Metrics.check(&p)
        };
        assert!(check(r#"{"eer": 0.05, "top": {"1": 0.8, "5": 0.9}}"#).is_ok());
        assert!(check("[1, 2]").unwrap_err().contains("JSON object"));
        let e = check(r#"{"top": {"1": "high"}}"#).unwrap_err();
        assert!(e.contains("`top.1` is a string"), "{e}");
        assert!(check("{").unwrap_err().contains("not JSON"));
        assert!(ArtifactType::Metrics.check(dir.path()).is_err());
    }

    #[test]
    fn plots_are_png_or_svg_by_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let plots = dir.path().join("plots");
        std::fs::create_dir(&plots).unwrap();
        let e = ArtifactType::Plots.check(&plots).unwrap_err();
        assert!(e.contains("empty"), "{e}");
        std::fs::write(plots.join("a.svg"), "<?xml version=\"1.0\"?><svg></svg>").unwrap();
        std::fs::write(plots.join("b.png"), b"\x89PNG\r\n\x1a\nrest").unwrap();
        ArtifactType::Plots.check(&plots).unwrap();
        std::fs::write(
            plots.join(CURVES),
            r#"{"curves":[{"label":"m","points":[[0,1],[0.5,0.25]]}]}"#,
        )
        .unwrap();
        ArtifactType::Plots.check(&plots).unwrap();
        std::fs::write(
            plots.join(CURVES),
            r#"{"curves":[{"label":"m","points":[[0,2]]}]}"#,
        )
        .unwrap();
        assert!(ArtifactType::Plots.check(&plots).is_err());
        std::fs::remove_file(plots.join(CURVES)).unwrap();
        std::fs::write(plots.join("c.png"), "not an image").unwrap();
        let e = ArtifactType::Plots.check(&plots).unwrap_err();
        assert!(e.contains("`c.png`"), "{e}");
        assert!(ArtifactType::Plots.check(&plots.join("a.svg")).is_err());
    }

    #[test]
    fn names_round_trip() {
        for n in ArtifactType::NAMES {
            assert_eq!(ArtifactType::parse(n).unwrap().name(), n);
        }
        assert!(ArtifactType::parse("tensor").is_none());
    }
}
