//! The `freeze` kind: marks modules of a trained model as frozen. It writes
//! the model folder again with a `freeze.json` naming every frozen tensor;
//! `fine-tune` honours it (frozen parameters get no updates, and their
//! BatchNorm layers stay in eval mode, so running statistics stay too).
//! No libtorch: the tensor names come from the safetensors header.

use std::collections::{BTreeMap, BTreeSet};

use crate::params::{input_name, output_ref, suggest, ParamError, ParamReader, Spanned};
use crate::registry::BuildContext;
use crate::safetensors::read_header;
use crate::stage::{Inputs, Stage, StageContext, StageDecl, StageError, StageOutputs};

/// The backbone's top-level modules.
pub const MODULES: &[&str] = &["stem", "layer1", "layer2", "layer3", "layer4", "embedding"];

/// Which modules to freeze.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// These module prefixes are frozen.
    Freeze(Vec<String>),
    /// Only these are trained; the rest of the backbone is frozen.
    Trainable(Vec<String>),
}

/// What `freeze.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FreezeFile {
    /// The policy as written (prefixes normalised).
    pub policy: Policy,
    /// Every frozen tensor (parameters and BatchNorm statistics), sorted.
    pub frozen: Vec<String>,
}

/// A configured `freeze` stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Freeze {
    input: String,
    policy: Policy,
}

/// `stem` -> `backbone.stem`; `backbone.layer2.0` stays.
pub fn normalise(prefix: &str) -> String {
    if prefix.starts_with("backbone.") || prefix == "backbone" {
        prefix.to_owned()
    } else {
        format!("backbone.{prefix}")
    }
}

/// Whether `name` lies in module `prefix` (at a `.` boundary).
pub fn in_module(name: &str, prefix: &str) -> bool {
    name == prefix
        || name
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.'))
}

fn check_prefix(r: &ParamReader<'_>, key: &str, p: &Spanned<String>) -> Option<String> {
    let full = normalise(&p.value);
    let top = full.split('.').nth(1);
    match top {
        None if full == "backbone" => Some(full),
        Some(m) if MODULES.contains(&m) => Some(full),
        _ => {
            let (message, help) = if p.value == "head" || p.value.starts_with("head.") {
                (
                    format!("`{key}` names the head, which `fine-tune` replaces"),
                    Some("freeze backbone modules only".into()),
                )
            } else {
                (
                    format!("`{key}` names an unknown module `{}`", p.value),
                    suggest(top.unwrap_or(""), MODULES.iter().copied())
                        .map(|c| format!("did you mean `{c}`?")),
                )
            };
            r.error(ParamError {
                message,
                span: p.span.clone(),
                label: format!("expected one of: {}", MODULES.join(", ")),
                help,
            });
            None
        }
    }
}

/// Builds a `freeze` stage from its params.
pub fn build(_cx: &BuildContext<'_>, r: &ParamReader<'_>) -> Option<StageDecl> {
    let model = r.required_str("model", "a trained model: `stage` or `stage.model`")?;
    let (freeze, trainable) = (r.str_list("freeze"), r.str_list("trainable"));
    let (key, list, make): (_, _, fn(Vec<String>) -> Policy) =
        match (freeze.is_empty(), trainable.is_empty()) {
            (false, true) => ("freeze", freeze, Policy::Freeze),
            (true, false) => ("trainable", trainable, Policy::Trainable),
            _ => {
                r.error(ParamError {
                    message: "set exactly one of `freeze` and `trainable`".into(),
                    span: model.span.clone(),
                    label: "e.g. freeze = [\"stem\", \"layer1\", \"layer2\"]".into(),
                    help: None,
                });
                return None;
            }
        };
    let prefixes: Vec<String> = list
        .iter()
        .filter_map(|p| check_prefix(r, key, p))
        .collect();
    if prefixes.len() != list.len() {
        return None;
    }
    let output = output_ref(model, "model");
    let stage = Freeze {
        input: input_name(&output.value),
        policy: make(prefixes),
    };
    Some(StageDecl {
        stage: Box::new(stage),
        refs: vec![output],
        deps: vec![],
        outs: vec![],
        outputs: vec!["model".into()],
    })
}

/// The tensors `policy` freezes among `names`; an error names a prefix that
/// matches nothing.
pub fn frozen_names(policy: &Policy, names: &[String]) -> Result<BTreeSet<String>, String> {
    let prefixes = match policy {
        Policy::Freeze(p) | Policy::Trainable(p) => p,
    };
    for p in prefixes {
        if !names.iter().any(|n| in_module(n, p)) {
            let mut modules: BTreeSet<String> = BTreeSet::new();
            for n in names.iter().filter(|n| n.starts_with("backbone.")) {
                modules.insert(n.split('.').take(2).collect::<Vec<_>>().join("."));
            }
            return Err(format!(
                "module `{p}` is not in the model (its modules: {})",
                modules.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    let hit = |n: &String| prefixes.iter().any(|p| in_module(n, p));
    Ok(names
        .iter()
        .filter(|n| n.starts_with("backbone."))
        .filter(|n| match policy {
            Policy::Freeze(_) => hit(n),
            Policy::Trainable(_) => !hit(n),
        })
        .cloned()
        .collect())
}

impl Stage for Freeze {
    fn kind(&self) -> &'static str {
        "freeze"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> BTreeMap<String, String> {
        let json = serde_json::to_string(&self.policy).expect("policies serialize");
        BTreeMap::from([("policy".into(), json)])
    }

    fn run(&self, cx: &StageContext, inputs: &Inputs) -> Result<StageOutputs, StageError> {
        let files = inputs.tree(&self.input)?;
        let weights = files.get("model.safetensors").ok_or_else(|| {
            StageError::Other(format!(
                "input `{}` has no `model.safetensors` (is it a training stage's `model`?)",
                self.input
            ))
        })?;
        let names: Vec<String> = read_header(weights)
            .map_err(StageError::Other)?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let mut frozen = frozen_names(&self.policy, &names).map_err(StageError::Other)?;
        // Freezing a model that was frozen before adds to its policy.
        if let Some(prev) = files.get("freeze.json") {
            let bytes = std::fs::read(prev).map_err(|e| StageError::io("read", prev, e))?;
            let prev: FreezeFile = serde_json::from_slice(&bytes)
                .map_err(|e| StageError::Other(format!("bad `freeze.json` upstream: {e}")))?;
            frozen.extend(prev.frozen);
        }
        let out = cx.scratch.join("model");
        for (rel, src) in &files {
            let dst = out.join(rel);
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent).map_err(|e| StageError::io("create", parent, e))?;
            }
            std::fs::copy(src, &dst).map_err(|e| StageError::io("copy", src, e))?;
        }
        let file = FreezeFile {
            policy: self.policy.clone(),
            frozen: frozen.into_iter().collect(),
        };
        let path = out.join("freeze.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&file).expect("json"))
            .map_err(|e| StageError::io("write", &path, e))?;
        Ok(StageOutputs {
            paths: vec![("model".into(), out)],
            summary: serde_json::json!({ "frozen": file.frozen.len(), "tensors": names.len() }),
            reexports: vec![],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        [
            "backbone.stem.conv.weight",
            "backbone.stem.bn.running_mean",
            "backbone.layer1.0.conv1.weight",
            "backbone.layer10.0.conv1.weight",
            "backbone.layer2.0.conv1.weight",
            "backbone.embedding.fc.weight",
            "head.weight",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn prefixes_match_at_module_boundaries() {
        let f = frozen_names(&Policy::Freeze(vec!["backbone.layer1".into()]), &names()).unwrap();
        assert_eq!(
            f.into_iter().collect::<Vec<_>>(),
            ["backbone.layer1.0.conv1.weight"]
        );
        let t = frozen_names(
            &Policy::Trainable(vec!["backbone.embedding".into()]),
            &names(),
        )
        .unwrap();
        assert_eq!(t.len(), 5, "all of the backbone but the embedding: {t:?}");
        assert!(!t.contains("head.weight"));
        let err = frozen_names(&Policy::Freeze(vec!["backbone.layer4".into()]), &names());
        assert!(err.unwrap_err().contains("backbone.layer2"));
    }

    #[test]
    fn short_names_are_backbone_modules() {
        assert_eq!(normalise("stem"), "backbone.stem");
        assert_eq!(normalise("backbone.layer2.1"), "backbone.layer2.1");
        assert!(in_module("backbone.stem.conv.weight", "backbone.stem"));
        assert!(!in_module("backbone.stemx.weight", "backbone.stem"));
    }
}
