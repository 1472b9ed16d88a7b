//! `freeze.json`, written by `freeze` beside a model's weights: the policy
//! as written and every tensor it freezes. `fine-tune` honours it (frozen
//! parameters get no updates; their BatchNorm layers stay in eval mode).

use std::collections::BTreeSet;

/// The backbone's top-level modules.
pub const MODULES: &[&str] = &["stem", "layer1", "layer2", "layer3", "layer4", "embedding"];

/// Which modules to freeze.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FreezePolicy {
    /// These module prefixes are frozen.
    Freeze(Vec<String>),
    /// Only these are trained; the rest of the backbone is frozen.
    Trainable(Vec<String>),
}

/// What `freeze.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FreezeFile {
    /// The policy as written (prefixes normalised).
    pub policy: FreezePolicy,
    /// Every frozen tensor (parameters and BatchNorm statistics), sorted.
    pub frozen: Vec<String>,
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

/// The tensors `policy` freezes among `names`; an error names a prefix that
/// matches nothing.
pub fn frozen_names(policy: &FreezePolicy, names: &[String]) -> Result<BTreeSet<String>, String> {
    let prefixes = match policy {
        FreezePolicy::Freeze(p) | FreezePolicy::Trainable(p) => p,
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
            FreezePolicy::Freeze(_) => hit(n),
            FreezePolicy::Trainable(_) => !hit(n),
        })
        .cloned()
        .collect())
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
        let f = frozen_names(
            &FreezePolicy::Freeze(vec!["backbone.layer1".into()]),
            &names(),
        )
        .unwrap();
        assert_eq!(
            f.into_iter().collect::<Vec<_>>(),
            ["backbone.layer1.0.conv1.weight"]
        );
        let t = frozen_names(
            &FreezePolicy::Trainable(vec!["backbone.embedding".into()]),
            &names(),
        )
        .unwrap();
        assert_eq!(t.len(), 5, "all of the backbone but the embedding: {t:?}");
        assert!(!t.contains("head.weight"));
        let err = frozen_names(
            &FreezePolicy::Freeze(vec!["backbone.layer4".into()]),
            &names(),
        );
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
