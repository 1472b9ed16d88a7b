//! The `freeze` kind: marks modules of a trained model as frozen. It writes
//! the model folder again with a `freeze.json` naming every frozen tensor;
//! `fine-tune` honours it (frozen parameters get no updates, and their
//! BatchNorm layers stay in eval mode, so running statistics stay too).
//! No libtorch: the tensor names come from the safetensors header.

use crate::formats::freeze::{frozen_names, normalise, FreezeFile, FreezePolicy, MODULES};
use crate::formats::safetensors::read_header;
use crate::params::{input_name, output_ref, suggest, Diagnostic, ParamReader, Spanned};
use crate::stage::{BuildContext, Inputs, Kind, StageContext, StageDecl, StageError, StageOutputs};

/// A configured `freeze` stage.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Freeze {
    input: String,
    policy: FreezePolicy,
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
            r.error(Diagnostic {
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
    let (key, list, make): (_, _, fn(Vec<String>) -> FreezePolicy) =
        match (freeze.is_empty(), trainable.is_empty()) {
            (false, true) => ("freeze", freeze, FreezePolicy::Freeze),
            (true, false) => ("trainable", trainable, FreezePolicy::Trainable),
            _ => {
                r.error(Diagnostic {
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
        uses: vec![],
    })
}

impl Kind for Freeze {
    const NAME: &'static str = "freeze";
    const VERSION: u32 = 2;

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
