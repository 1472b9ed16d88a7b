//! Building the network a training stage starts from: fresh for
//! `pretrain` (and a from-scratch `fine-tune`), or, for `fine-tune`, the
//! upstream model's backbone (or external weights) with a new head, the
//! stem adapted to other input channels, and the freeze policy applied.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

use tch::{nn, Device, Kind, Tensor};
use tuneflow_stages::data::dataset::DatasetInfo;
use tuneflow_stages::formats::freeze::in_module;
use tuneflow_stages::formats::model::{ModelConfig, ModelFolder};
use tuneflow_stages::train::config::{LossConfig, TrainConfig, TransferConfig};
use tuneflow_stages::worker::TrainJob;

use crate::heads::Head;
use crate::model::ResNet;

/// The model being trained.
pub struct Net {
    /// Every variable, named `backbone.*` and `head.*`.
    pub vs: nn::VarStore,
    /// Backbone plus embedding.
    pub backbone: ResNet,
    /// The head (none for triplet loss).
    pub head: Head,
    /// The model config with input channels and pooling resolved.
    pub model: ModelConfig,
}

/// A network ready to train, and what to train of it.
pub struct Setup {
    /// The network.
    pub net: Net,
    /// Frozen tensors, by name.
    pub frozen: BTreeSet<String>,
    /// Trainable parameters, sorted by name.
    pub params: Vec<Tensor>,
    /// Learning-rate multiplier per parameter.
    pub scales: Vec<f64>,
    /// Where the weights came from: `scratch`, `upstream` or `init`.
    pub source: &'static str,
}

/// `cfg` made to fit the data: input channels, and statistics pooling for
/// spectrograms (whose frequency bins size the embedding layer).
pub fn resolve_model(cfg: &ModelConfig, info: &DatasetInfo) -> (ModelConfig, i64) {
    let mut model = cfg.clone();
    let audio = info.kind != "image";
    model.in_channels = if audio { 1 } else { i64::from(info.shape[0]) };
    if audio {
        model.pooling = "stats".into();
    }
    let bins = if audio { i64::from(info.shape[0]) } else { 0 };
    (model, bins)
}

/// A fresh network for `info` with `classes` outputs.
pub fn build_net(
    model: &ModelConfig,
    info: &DatasetInfo,
    classes: i64,
    loss: &LossConfig,
    device: Device,
) -> Result<Net, String> {
    if model.arch != "resnet" {
        return Err(format!(
            "model arch `{}` is not supported (resnet)",
            model.arch
        ));
    }
    let (model, bins) = resolve_model(model, info);
    let vs = nn::VarStore::new(device);
    let backbone = ResNet::new(&(vs.root() / "backbone"), &model, bins)?;
    let head = Head::new(&(vs.root() / "head"), model.embedding, classes, loss);
    Ok(Net {
        vs,
        backbone,
        head,
        model,
    })
}

/// Builds the network for `spec` and decides what trains.
pub fn setup(
    spec: &TrainJob,
    cfg: &TrainConfig,
    train: &DatasetInfo,
    device: Device,
) -> Result<Setup, String> {
    let data_classes = train.classes.len();
    let transfer = cfg.transfer.clone();
    let classes = match transfer.as_ref().and_then(|t| t.classes) {
        Some(n) if n < data_classes => {
            return Err(format!(
                "`classes = {n}`, but the data has {data_classes} classes"
            ))
        }
        Some(n) => n,
        None => data_classes,
    };
    let upstream = spec.model.as_ref().map(read_upstream).transpose()?;
    let base = upstream.as_ref().map_or(&cfg.model, |u| &u.model);
    let mut net = build_net(base, train, classes as i64, &cfg.loss, device)?;
    let adapt = transfer.as_ref().is_some_and(|t| t.adapt_channels);
    let reinit = transfer.as_ref().map_or(&[][..], |t| &t.reinit[..]);
    let source = match (&upstream, &spec.init) {
        (Some(u), _) => {
            load_backbone(&net.vs, &u.weights, adapt, reinit)?;
            "upstream"
        }
        (None, Some(init)) => {
            load_backbone(&net.vs, init, adapt, reinit)?;
            "init"
        }
        (None, None) => "scratch",
    };
    let upstream_frozen = upstream.and_then(|u| u.frozen);
    let frozen = frozen_set(&net.vs, transfer.as_ref(), upstream_frozen)?;
    let vars: BTreeMap<String, Tensor> = net.vs.variables().into_iter().collect();
    let mut ptrs = HashSet::new();
    for name in &frozen {
        let t = &vars[name];
        let _ = t.set_requires_grad(false);
        ptrs.insert(t.data_ptr() as usize);
    }
    net.backbone.freeze_batchnorm(&ptrs);
    let backbone_lr = transfer.as_ref().map_or(1.0, |t| t.backbone_lr);
    let (mut params, mut scales) = (Vec::new(), Vec::new());
    for (name, t) in vars {
        if t.requires_grad() {
            scales.push(if name.starts_with("backbone.") {
                backbone_lr
            } else {
                1.0
            });
            params.push(t);
        }
    }
    Ok(Setup {
        net,
        frozen,
        params,
        scales,
        source,
    })
}

/// What an upstream `model` folder holds.
struct Upstream {
    model: ModelConfig,
    weights: std::path::PathBuf,
    frozen: Option<Vec<String>>,
}

fn read_upstream(files: &BTreeMap<String, std::path::PathBuf>) -> Result<Upstream, String> {
    let folder = ModelFolder::read(files, "the upstream model")?;
    Ok(Upstream {
        model: folder.config.model,
        weights: folder.weights,
        frozen: folder.freeze.map(|f| f.frozen),
    })
}

/// The tensors to freeze: the strategy decides, with the upstream policy.
fn frozen_set(
    vs: &nn::VarStore,
    transfer: Option<&TransferConfig>,
    upstream: Option<Vec<String>>,
) -> Result<BTreeSet<String>, String> {
    let names: BTreeSet<String> = vs.variables().into_keys().collect();
    let strategy = transfer.map_or("full", |t| t.strategy.as_str());
    let list: Vec<String> = match (strategy, upstream) {
        ("linear-probe", _) => names
            .iter()
            .filter(|n| n.starts_with("backbone."))
            .cloned()
            .collect(),
        ("full", _) | ("auto", None) => vec![],
        (_, Some(frozen)) => frozen,
        (_, None) => {
            return Err(
                "`strategy = \"partial\"` needs a model from a `freeze` stage (it has no `freeze.json`)"
                    .into(),
            )
        }
    };
    for n in &list {
        if !names.contains(n) {
            return Err(format!(
                "the freeze policy names `{n}`, which this model does not have"
            ));
        }
    }
    Ok(list.into_iter().collect())
}

/// `stem.conv.weight` -> `backbone.stem.conv.weight`.
fn normalise_key(k: &str) -> String {
    if k.starts_with("backbone.") || k.starts_with("head.") {
        k.to_owned()
    } else {
        format!("backbone.{k}")
    }
}

/// Copies the backbone weights in `path` into `vs` (the head stays new,
/// and so do the modules in `reinit`). Every other backbone tensor must be
/// there with its shape, and nothing else: an error lists missing and
/// unexpected keys.
pub fn load_backbone(
    vs: &nn::VarStore,
    path: &Path,
    adapt_channels: bool,
    reinit: &[String],
) -> Result<(), String> {
    let fresh = |k: &str| reinit.iter().any(|m| in_module(k, m));
    let named = Tensor::read_safetensors(path)
        .map_err(|e| format!("failed to read weights `{}`: {e}", path.display()))?;
    let source: BTreeMap<String, Tensor> = named
        .into_iter()
        .map(|(k, t)| (normalise_key(&k), t))
        .filter(|(k, _)| !k.starts_with("head.") && !fresh(k))
        .collect();
    let vars: BTreeMap<String, Tensor> = vs
        .variables()
        .into_iter()
        .filter(|(k, _)| k.starts_with("backbone.") && !fresh(k))
        .collect();
    let missing: Vec<&String> = vars.keys().filter(|k| !source.contains_key(*k)).collect();
    let unexpected: Vec<&String> = source.keys().filter(|k| !vars.contains_key(*k)).collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        return Err(format!(
            "weights `{}` do not fit the model: {} missing key(s){}, {} unexpected key(s){}",
            path.display(),
            missing.len(),
            list(&missing),
            unexpected.len(),
            list(&unexpected)
        ));
    }
    tch::no_grad(|| {
        for (name, var) in &vars {
            let mut src = source[name].to_kind(var.kind()).to_device(var.device());
            if src.size() != var.size() {
                if name == "backbone.stem.conv.weight" && adapt_channels {
                    src = adapt_stem(&src, var.size()[1]);
                }
                if src.size() != var.size() {
                    return Err(shape_error(name, &source[name], var, adapt_channels));
                }
            }
            var.shallow_clone().copy_(&src);
        }
        Ok(())
    })
}

fn list(keys: &[&String]) -> String {
    if keys.is_empty() {
        return String::new();
    }
    let shown: Vec<&str> = keys.iter().take(8).map(|k| k.as_str()).collect();
    let more = keys.len().saturating_sub(8);
    let tail = if more > 0 {
        format!(", and {more} more")
    } else {
        String::new()
    };
    format!(" ({}{tail})", shown.join(", "))
}

fn shape_error(name: &str, src: &Tensor, var: &Tensor, adapt: bool) -> String {
    let hint = if name == "backbone.stem.conv.weight" && !adapt {
        " (the input channels differ: set `adapt-channels = true`)"
    } else if name.starts_with("backbone.embedding.fc") {
        " (its input size follows the pooling and, for spectrograms, the frequency bins: set `reinit = [\"embedding\"]` to train it afresh)"
    } else {
        ""
    };
    format!(
        "`{name}` has shape {:?} in the weights but {:?} in the model{hint}",
        src.size(),
        var.size()
    )
}

/// The stem's filters for `cin` input channels: the mean over the source's
/// input channels, scaled by `source / cin` so that an image whose channels
/// are equal (grey) gives the same response as before.
pub fn adapt_stem(w: &Tensor, cin: i64) -> Tensor {
    let src = w.size()[1];
    let mean = w.mean_dim(1, true, Kind::Float).to_kind(w.kind());
    mean.repeat([1, cin, 1, 1]) * (src as f64 / cin as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::Module;

    #[test]
    fn an_adapted_stem_answers_grey_input_as_before() {
        let _rng = crate::torch_rng();
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = nn::ConvConfig {
            padding: 1,
            bias: false,
            ..Default::default()
        };
        let rgb = nn::conv2d(vs.root() / "rgb", 3, 4, 3, cfg);
        let grey = Tensor::randn([2, 1, 8, 8], (Kind::Float, Device::Cpu));
        let want = rgb.forward(&grey.repeat([1, 3, 1, 1]));
        let w1 = adapt_stem(&rgb.ws, 1);
        assert_eq!(w1.size(), [4, 1, 3, 3]);
        let got = grey.conv2d::<Tensor>(&w1, None, [1], [1], [1], 1);
        assert!(got.allclose(&want, 1e-5, 1e-5, false));
        // And back up to 3 channels.
        let w3 = adapt_stem(&w1, 3);
        assert_eq!(w3.size(), [4, 3, 3, 3]);
        let got3 = grey
            .repeat([1, 3, 1, 1])
            .conv2d::<Tensor>(&w3, None, [1], [1], [1], 1);
        assert!(got3.allclose(&want, 1e-5, 1e-5, false));
    }
}
