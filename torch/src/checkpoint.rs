//! Per-epoch checkpoints in the stage's checkpoint folder: weights (with
//! BatchNorm statistics), optimizer state, progress (epoch, history, early
//! stopping state) and, with early stopping, the best epoch's weights.
//! `epoch-N/` is written whole and synced, then `latest` is switched by
//! rename, then older epochs go: a kill leaves the old checkpoint or the
//! new one, never a mix.

use std::collections::BTreeMap;
use std::path::Path;

use tch::{nn, Tensor};

use tuneflow_stages::worker::EpochStats;

use crate::optim::Optimizer;

/// Where training stands.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// Last finished epoch.
    pub epoch: u64,
    /// Every finished epoch's numbers.
    pub history: Vec<EpochStats>,
    /// Early stopping: the best epoch and its metric value.
    #[serde(default)]
    pub best: Option<(u64, f64)>,
    /// Early stopping: epochs since the best one.
    #[serde(default)]
    pub bad_epochs: u64,
    /// Early stopping fired.
    #[serde(default)]
    pub stopped: bool,
}

/// Writes every variable as safetensors, sorted by name: `VarStore::save`
/// follows a HashMap's order, so the same weights would give different
/// bytes (and digests) in different processes.
pub fn save_sorted(vs: &nn::VarStore, path: &Path) -> Result<(), String> {
    // Files hold the standard layout, whatever the strides in training.
    let sorted: BTreeMap<String, Tensor> = vs
        .variables()
        .into_iter()
        .map(|(k, v)| (k, v.contiguous()))
        .collect();
    let named: Vec<(String, Tensor)> = sorted.into_iter().collect();
    Tensor::write_safetensors(&named, path)
        .map_err(|e| format!("failed to write `{}`: {e}", path.display()))
}

/// Copies weights saved by `save_sorted` into `vs`, exactly: the file must
/// hold every tensor of the model, with its shape, as f32, and nothing
/// else (a model folder a user's script wrote is read through here: a
/// missing tensor must not stay at its random initial value).
pub fn load_into(vs: &nn::VarStore, path: &Path) -> Result<(), String> {
    let named = Tensor::read_safetensors(path)
        .map_err(|e| format!("failed to read `{}`: {e}", path.display()))?;
    let vars = vs.variables();
    let given: std::collections::BTreeSet<&str> = named.iter().map(|(k, _)| k.as_str()).collect();
    let mut missing: Vec<&str> = vars
        .keys()
        .map(String::as_str)
        .filter(|k| !given.contains(k))
        .collect();
    missing.sort_unstable();
    let unexpected: Vec<&str> = given
        .iter()
        .copied()
        .filter(|k| !vars.contains_key(*k))
        .collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        let show = |v: &[&str]| v.iter().take(8).copied().collect::<Vec<_>>().join(", ");
        return Err(format!(
            "`{}` does not fit the model: {} missing tensor(s) [{}], {} unexpected [{}]",
            path.display(),
            missing.len(),
            show(&missing),
            unexpected.len(),
            show(&unexpected)
        ));
    }
    tch::no_grad(|| {
        for (name, t) in &named {
            let mut v = vars[name].shallow_clone();
            if t.size() != v.size() || t.kind() != tch::Kind::Float {
                return Err(format!(
                    "`{}`: `{name}` is {:?} {:?}, the model needs Float {:?}",
                    path.display(),
                    t.kind(),
                    t.size(),
                    v.size()
                ));
            }
            v.copy_(t);
        }
        Ok(())
    })
}

/// Loads the checkpoint `latest` names, if any; returns whether it did.
pub fn load(
    dir: &Path,
    vs: &nn::VarStore,
    opt: &mut Optimizer,
    progress: &mut Progress,
) -> Result<bool, String> {
    let Ok(name) = std::fs::read_to_string(dir.join("latest")) else {
        return Ok(false);
    };
    let ckpt = dir.join(name.trim());
    let json = ckpt.join("progress.json");
    let bytes =
        std::fs::read(&json).map_err(|e| format!("failed to read `{}`: {e}", json.display()))?;
    *progress = serde_json::from_slice(&bytes)
        .map_err(|e| format!("bad checkpoint `{}`: {e}", json.display()))?;
    load_into(vs, &ckpt.join("model.safetensors"))?;
    let state = Tensor::read_safetensors(ckpt.join("optimizer.safetensors"))
        .map_err(|e| format!("failed to read the optimizer state: {e}"))?;
    opt.load_state(&state)?;
    Ok(true)
}

/// The best epoch's weights in the latest checkpoint, if early stopping
/// saved any.
pub fn best_weights(dir: &Path) -> Option<std::path::PathBuf> {
    let name = std::fs::read_to_string(dir.join("latest")).ok()?;
    let p = dir.join(name.trim()).join("best.safetensors");
    p.is_file().then_some(p)
}

/// Saves a checkpoint for `progress.epoch`. `improved`: this epoch is the
/// best so far (its weights become `best.safetensors`); otherwise the
/// previous checkpoint's best is carried over.
pub fn save(
    dir: &Path,
    vs: &nn::VarStore,
    opt: &Optimizer,
    progress: &Progress,
    improved: bool,
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| {
        format!("failed to write a checkpoint in `{}`: {e}", dir.display())
    };
    let previous_best = best_weights(dir);
    let name = tuneflow_stages::worker::checkpoint_name(progress.epoch);
    let ckpt = dir.join(&name);
    let _ = std::fs::remove_dir_all(&ckpt);
    std::fs::create_dir_all(&ckpt).map_err(|e| err(&e))?;
    save_sorted(vs, &ckpt.join("model.safetensors"))?;
    Tensor::write_safetensors(&opt.state(), ckpt.join("optimizer.safetensors"))
        .map_err(|e| err(&e))?;
    std::fs::write(
        ckpt.join("progress.json"),
        serde_json::to_vec(progress).expect("progress serializes"),
    )
    .map_err(|e| err(&e))?;
    let mut files = vec![
        "model.safetensors",
        "optimizer.safetensors",
        "progress.json",
    ];
    if improved {
        std::fs::copy(
            ckpt.join("model.safetensors"),
            ckpt.join("best.safetensors"),
        )
        .map_err(|e| err(&e))?;
        files.push("best.safetensors");
    } else if let Some(prev) = previous_best {
        std::fs::copy(prev, ckpt.join("best.safetensors")).map_err(|e| err(&e))?;
        files.push("best.safetensors");
    }
    for f in files {
        std::fs::File::open(ckpt.join(f))
            .and_then(|f| f.sync_all())
            .map_err(|e| err(&e))?;
    }
    let tmp = dir.join("latest.tmp");
    std::fs::write(&tmp, &name).map_err(|e| err(&e))?;
    std::fs::rename(&tmp, dir.join("latest")).map_err(|e| err(&e))?;
    for entry in std::fs::read_dir(dir).map_err(|e| err(&e))?.flatten() {
        let n = entry.file_name().to_string_lossy().into_owned();
        if n.starts_with("epoch-") && n != name {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}
