//! The `associate` kind: cross-modal association (voice–face, say). Its
//! inputs are the embeddings of two modalities (`extract` stages or typed
//! command outputs) and the identity link between their classes. The
//! identities are split, disjointly and seeded, into train, development and
//! test; the `tuneflow-torch` worker trains one projection head per
//! modality into a joint space on the train identities (contrastive or
//! triplet loss, per-epoch checkpoints, exact resume, epoch events), and
//! this side measures the test identities, never seen in training: 1:2
//! matching both ways, cross-modal verification EER and AUC, retrieval
//! top-1 and top-5 among N candidates, and verification with both
//! modalities by score-level fusion (weight learned on the development
//! identities) and feature-level fusion, beside each modality alone.

use std::collections::BTreeMap;
use std::path::Path;

use crate::device::Device;
use crate::formats::embeddings::Embeddings;
use crate::params::{input_name, output_ref, Diagnostic, ParamReader, Spanned};
use crate::rng::Rng;
use crate::stage::{BuildContext, Inputs, Kind, StageContext, StageDecl, StageError, StageOutputs};
use crate::train::read::{device, seed};
use crate::worker::AssociateConfig;

/// A configured `associate` stage.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Associate {
    /// The stage's own device, if set (not in the key).
    device: Option<Device>,
    config: AssociateConfig,
    a: String,
    b: String,
    /// A link file in the pipeline folder (`a-class b-class` lines).
    link: Option<String>,
    /// The modalities' names, for the metric keys.
    names: (String, String),
    /// Shares of the identities for development and test.
    dev: f64,
    test: f64,
    /// Candidates in retrieval.
    candidates: usize,
    /// The training seed (heads' weights, batches, sampled measures).
    seed: i64,
    /// The identity split's seed: the pipeline's, so that two `associate`
    /// stages of a pipeline (a real link and a control) split alike.
    split_seed: i64,
}

fn located(r: &ParamReader<'_>, key: &str, message: String, label: &str) {
    r.error(Diagnostic {
        message,
        span: r.raw(key).and_then(|v| v.span.clone()),
        label: label.into(),
        help: None,
    });
}

fn embeddings(r: &ParamReader<'_>, key: &str) -> Option<Spanned<String>> {
    let v = r.required_str(
        key,
        "embeddings: an `extract` stage or a typed command output",
    )?;
    Some(output_ref(v, "embeddings"))
}

/// The modality names (`names = ["voice", "face"]`), default `a` and `b`.
fn names(r: &ParamReader<'_>) -> (String, String) {
    let list = r.str_list("names");
    if r.raw("names").is_none() {
        return ("a".into(), "b".into());
    }
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    match list.as_slice() {
        [a, b] if ok(&a.value) && ok(&b.value) && a.value != b.value => {
            (a.value.clone(), b.value.clone())
        }
        _ => {
            located(
                r,
                "names",
                "`names` must be two different names of lowercase letters, digits or `_`".into(),
                "for example [\"voice\", \"face\"]",
            );
            ("a".into(), "b".into())
        }
    }
}

fn positive(r: &ParamReader<'_>, key: &str, default: f64) -> f64 {
    match r.float(key) {
        Some(v) if v.value > 0.0 && v.value.is_finite() => v.value,
        Some(v) => {
            located(
                r,
                key,
                format!("`{key}` must be above 0, not {}", v.value),
                "expected a positive number",
            );
            default
        }
        None => default,
    }
}

fn at_least(r: &ParamReader<'_>, key: &str, min: u64, default: u64) -> u64 {
    match r.uint(key) {
        Some(v) if v.value >= min => v.value,
        Some(v) => {
            located(
                r,
                key,
                format!("`{key}` must be at least {min}, not {}", v.value),
                &format!("expected {min} or more"),
            );
            default
        }
        None => default,
    }
}

fn config(r: &ParamReader<'_>) -> AssociateConfig {
    let loss = r
        .choice("loss", &["contrastive", "triplet"])
        .map_or_else(|| "contrastive".to_owned(), |l| l.value);
    let margin = match r.float("margin") {
        Some(m) if (0.0..=2.0).contains(&m.value) => m.value,
        Some(m) => {
            located(
                r,
                "margin",
                format!(
                    "`margin` must be between 0 and 2 (a cosine margin), not {}",
                    m.value
                ),
                "expected 0 to 2",
            );
            0.2
        }
        None => 0.2,
    };
    AssociateConfig {
        dim: at_least(r, "dim", 1, 64) as usize,
        hidden: r.uint("hidden").map_or(128, |h| h.value as usize),
        loss,
        temperature: positive(r, "temperature", 0.1),
        margin,
        epochs: at_least(r, "epochs", 1, 30),
        batch: at_least(r, "batch", 2, 16) as usize,
        lr: positive(r, "lr", 1e-3),
        weight_decay: r.float("weight-decay").map_or(1e-4, |w| w.value.max(0.0)),
    }
}

/// `split = { dev = 0.2, test = 0.4 }`: shares of the identities.
fn split(r: &ParamReader<'_>) -> (f64, f64) {
    let read = r.nested("split", |s| {
        (
            s.float("dev").map(|v| v.value),
            s.float("test").map(|v| v.value),
        )
    });
    let (dev, test) = read.map_or((0.2, 0.4), |(d, t)| (d.unwrap_or(0.2), t.unwrap_or(0.4)));
    if !(dev > 0.0 && test > 0.0 && dev + test < 1.0) {
        located(
            r,
            "split",
            format!("`split`: dev ({dev}) and test ({test}) must each be above 0, and leave identities to train on"),
            "shares of the identities",
        );
    }
    (dev, test)
}

/// Builds an `associate` stage from its params.
pub fn build(cx: &BuildContext<'_>, r: &ParamReader<'_>) -> Option<StageDecl> {
    let a = embeddings(r, "a");
    let b = embeddings(r, "b");
    let link = r.str("link");
    let names = names(r);
    let config = config(r);
    let (dev, test) = split(r);
    let candidates = at_least(r, "candidates", 2, 10) as usize;
    let stage_seed = seed(r, cx);
    let device = device(r);
    let (a, b) = (a?, b?);
    let stage = Associate {
        device,
        config,
        a: input_name(&a.value),
        b: input_name(&b.value),
        link: link.as_ref().map(|l| l.value.clone()),
        names,
        dev,
        test,
        candidates,
        seed: stage_seed,
        split_seed: cx.seed,
    };
    Some(StageDecl {
        stage: Box::new(stage),
        refs: vec![a, b],
        deps: link.into_iter().collect(),
        outs: vec![],
        outputs: vec!["metrics".into(), "plots".into(), "model".into()],
        uses: vec![],
    })
}

/// An identity: its class in `a` and in `b`.
pub type Identity = (String, String);

fn classes(e: &Embeddings) -> BTreeMap<&str, Vec<usize>> {
    let mut out: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (r, &l) in e.meta.labels.iter().enumerate() {
        if let Some(c) = e.meta.classes.get(l as usize) {
            out.entry(c.as_str()).or_default().push(r);
        }
    }
    out
}

/// The identities: from the link file's `a-class b-class` lines, or the
/// classes both modalities have, by name. Every class named must have
/// embeddings, and none may be linked twice.
pub fn identities(
    link: Option<(&Path, &str)>,
    a: &Embeddings,
    b: &Embeddings,
) -> Result<Vec<Identity>, String> {
    let (ca, cb) = (classes(a), classes(b));
    let Some((path, text)) = link else {
        let both: Vec<Identity> = ca
            .keys()
            .filter(|c| cb.contains_key(*c))
            .map(|c| ((*c).to_owned(), (*c).to_owned()))
            .collect();
        return Ok(both);
    };
    let mut out = Vec::new();
    let (mut seen_a, mut seen_b) = (BTreeMap::new(), BTreeMap::new());
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = format!("{}:{}", path.display(), n + 1);
        let f: Vec<&str> = line.split_whitespace().collect();
        let [x, y] = f[..] else {
            return Err(format!("{at}: expected `a-class b-class`, found `{line}`"));
        };
        if !ca.contains_key(x) {
            return Err(format!("{at}: class `{x}` has no embeddings in `a`"));
        }
        if !cb.contains_key(y) {
            return Err(format!("{at}: class `{y}` has no embeddings in `b`"));
        }
        if let Some(first) = seen_a.insert(x, n + 1).or(seen_b.insert(y, n + 1)) {
            return Err(format!(
                "{at}: `{line}` links a class already linked on line {first}"
            ));
        }
        out.push((x.to_owned(), y.to_owned()));
    }
    out.sort();
    Ok(out)
}

/// Splits identities (sorted, then shuffled by `seed`) into disjoint
/// train, development and test lists.
pub fn split_identities(
    ids: &[Identity],
    dev: f64,
    test: f64,
    seed: i64,
) -> Result<[Vec<Identity>; 3], String> {
    let n = ids.len();
    let n_test = ((n as f64 * test).round() as usize).max(2);
    let n_dev = ((n as f64 * dev).round() as usize).max(2);
    if n < n_test + n_dev + 2 {
        return Err(format!(
            "{n} linked identities are too few to split into {n_test} test, {n_dev} development and at least 2 training identities"
        ));
    }
    let mut order = ids.to_vec();
    order.sort();
    Rng::from_parts(&[seed as u64, 0x0073_706c_6974]).shuffle(&mut order);
    let train = order.split_off(n_test + n_dev);
    let dev_ids = order.split_off(n_test);
    Ok([train, dev_ids, order])
}

#[path = "associate_run.rs"]
mod run;

impl Kind for Associate {
    const NAME: &'static str = "associate";
    const VERSION: u32 = 1;
    const NOT_IN_KEY: &'static [&'static str] = &["device"];

    fn run(&self, cx: &StageContext, inputs: &Inputs) -> Result<StageOutputs, StageError> {
        run::run(self, cx, inputs)
    }
}

#[cfg(test)]
#[path = "associate_tests.rs"]
mod tests;
