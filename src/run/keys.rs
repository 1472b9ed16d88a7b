//! Stage keys: what a stage's outputs are cached under, and why a key
//! differs from last time.
//!
//! key = H(format version, "stage", kind, kind version, params, inputs):
//! params are the kind's typed values ([`tuneflow_stages::KeyParams`])
//! written with [`KeyHasher::write_json`] (sorted, typed, length-prefixed);
//! inputs are sorted by name with their digests. Spans, TOML key order and
//! formatting never enter it. `tests::key_snapshots` pins the key of one
//! stage of every kind: a change of a kind's params that does not bump its
//! version fails there.

use std::collections::BTreeMap;

use tuneflow_cache::{BlobDigest, CacheError, KeyHasher, Manifest, StageRecord, StatCache};

use crate::pipeline::{Input, Plan};

/// Why a key could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A file dependency is missing.
    #[error("dependency `{path}` of stage `{stage}` does not exist")]
    MissingDep {
        /// The stage.
        stage: String,
        /// The dependency.
        path: String,
    },
    /// An upstream stage has no result (it has not finished).
    #[error("stage `{stage}` needs output `{output}` of `{upstream}`, which has no result")]
    NoUpstream {
        /// The stage.
        stage: String,
        /// The upstream stage.
        upstream: String,
        /// Its output.
        output: String,
    },
    /// Hashing failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// Computes stage `i`'s key. `manifest_of(j)` gives the manifest of each
/// upstream stage `j` (all of which must have finished).
pub fn compute(
    plan: &Plan,
    i: usize,
    manifest_of: &dyn Fn(usize) -> Option<Manifest>,
    stats: &StatCache,
) -> Result<StageRecord, KeyError> {
    let ps = &plan.stages[i];
    let mut inputs = BTreeMap::new();
    for (name, input) in &ps.inputs {
        let digest = match input {
            Input::File(path) => {
                let full = plan.dir.join(path);
                if let Some(d) = stats.seen(&full) {
                    inputs.insert(name.clone(), d);
                    continue;
                }
                let Ok(meta) = std::fs::symlink_metadata(&full) else {
                    return Err(KeyError::MissingDep {
                        stage: ps.name.clone(),
                        path: path.clone(),
                    });
                };
                // Not a symlink: `meta` is what following it would give.
                let digest = match meta.is_symlink() {
                    true => stats.hash(&full)?.digest,
                    false => stats.hash_with_meta(&full, &meta)?.digest,
                };
                stats.remember(&full, digest);
                digest
            }
            Input::Output { stage, output } => manifest_of(*stage)
                .and_then(|m| m.output(output).map(|o| o.digest))
                .ok_or_else(|| KeyError::NoUpstream {
                    stage: ps.name.clone(),
                    upstream: plan.stages[*stage].name.clone(),
                    output: output.clone(),
                })?,
        };
        inputs.insert(name.clone(), digest);
    }
    Ok(record(
        ps.stage.kind(),
        ps.stage.version(),
        ps.stage.params(),
        inputs,
    ))
}

/// The key record of a stage from its parts.
pub fn record(
    kind: &str,
    version: u32,
    params: BTreeMap<String, serde_json::Value>,
    inputs: BTreeMap<String, BlobDigest>,
) -> StageRecord {
    let mut h = KeyHasher::new();
    h.write_str("stage");
    h.write_str(kind);
    h.write_u64(u64::from(version));
    h.write_len(params.len());
    for (name, value) in &params {
        h.write_str(name);
        h.write_json(value);
    }
    h.write_len(inputs.len());
    for (name, digest) in &inputs {
        h.write_str(name);
        h.write_digest(digest);
    }
    StageRecord {
        key: h.finish(),
        kind: kind.to_owned(),
        version,
        params,
        inputs: inputs.into_iter().map(|(k, d)| (k, d.to_hex())).collect(),
    }
}

/// Says, in a few words, why `current` differs from `previous`.
pub fn explain(previous: Option<&StageRecord>, current: &StageRecord) -> String {
    let Some(prev) = previous else {
        return "never run".to_owned();
    };
    if prev.kind != current.kind || prev.version != current.version {
        return format!(
            "stage kind changed ({} v{} -> {} v{})",
            prev.kind, prev.version, current.kind, current.version
        );
    }
    let mut reasons = Vec::new();
    let old = serde_json::Value::Object(prev.params.clone().into_iter().collect());
    let new = serde_json::Value::Object(current.params.clone().into_iter().collect());
    diff_json("", &old, &new, &mut reasons);
    diff_inputs(&prev.inputs, &current.inputs, &mut reasons);
    if reasons.is_empty() {
        return "outputs are no longer in the cache".to_owned();
    }
    const SHOWN: usize = 4;
    if reasons.len() > SHOWN {
        let more = reasons.len() - SHOWN;
        reasons.truncate(SHOWN);
        reasons.push(format!("{more} more"));
    }
    reasons.join(", ")
}

/// Names every changed leaf of the params as `param `a.b.c` changed`.
fn diff_json(path: &str, old: &serde_json::Value, new: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    let join = |k: &str| {
        if path.is_empty() {
            k.to_owned()
        } else {
            format!("{path}.{k}")
        }
    };
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get(k) {
                    None => out.push(format!("param `{}` added", join(k))),
                    Some(o) => diff_json(&join(k), o, v, out),
                }
            }
            for k in a.keys().filter(|k| !b.contains_key(*k)) {
                out.push(format!("param `{}` removed", join(k)));
            }
        }
        (a, b) if a != b => out.push(format!("param `{path}` changed")),
        _ => {}
    }
}

fn diff_inputs(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
    out: &mut Vec<String>,
) {
    for (k, v) in new {
        match old.get(k) {
            None => out.push(format!("input `{k}` added")),
            Some(o) if o != v => out.push(format!("input `{k}` changed")),
            Some(_) => {}
        }
    }
    for k in old.keys().filter(|k| !new.contains_key(*k)) {
        out.push(format!("input `{k}` removed"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(params: serde_json::Value, inputs: &[(&str, u8)]) -> StageRecord {
        let params = params.as_object().unwrap().clone().into_iter().collect();
        let inputs = inputs
            .iter()
            .map(|(k, b)| (k.to_string(), BlobDigest::from_bytes([*b; 32])))
            .collect();
        record("command", 1, params, inputs)
    }

    #[test]
    fn explains_what_changed_down_to_nested_params() {
        let a = rec(
            serde_json::json!({"cmd": "echo 1", "opt": {"lr": 0.1, "m": 0.9}}),
            &[("data.csv", 1)],
        );
        let b = rec(
            serde_json::json!({"cmd": "echo 2", "opt": {"lr": 0.2, "m": 0.9}}),
            &[("data.csv", 2), ("x", 3)],
        );
        assert_eq!(explain(None, &a), "never run");
        assert_eq!(
            explain(Some(&a), &b),
            "param `cmd` changed, param `opt.lr` changed, input `data.csv` changed, input `x` added"
        );
        assert_eq!(explain(Some(&a), &a), "outputs are no longer in the cache");
        assert_ne!(a.key, b.key);
    }

    /// One stage of every kind, as a pipeline would write it.
    #[cfg(feature = "torch")]
    const EVERY_KIND: &str = r#"
[pipeline]
seed = 7

[stage.cmd]
kind = "command"
cmd = "echo hi > out.txt"
outs = ["out.txt"]

[stage.ing]
kind = "ingest"
format = "voxceleb"
path = "data"
features = { kind = "fbank", bins = 40 }

[stage.aug]
kind = "augment"
data = "ing.train"
ops = [{ op = "segment-crop", frames = 100 }, { op = "spec-augment", freq = 8, time = 10 }]

[stage.pre]
kind = "pretrain"
data = "aug"
model = { depth = 10, width = 8, embedding = 128, stem-stride = 2 }
optimizer = { kind = "sgd", lr = 0.1, momentum = 0.9, weight-decay = 1e-4 }
schedule = { kind = "one-cycle" }
epochs = 6
batch = 32

[stage.frz]
kind = "freeze"
model = "pre"
freeze = ["stem", "layer1"]

[stage.ft]
kind = "fine-tune"
model = "frz"
data = "aug"
epochs = 15

[stage.ext]
kind = "extract"
model = "ft"
data = "ing.test"

[stage.ev]
kind = "evaluate"
embeddings = "ext"
"#;

    /// The key of every kind's example stage (params and version only).
    /// When one changes, the kind's params changed shape or meaning: bump
    /// its `VERSION` (the cached results of the old version must not be
    /// served) and then update the line here.
    #[cfg(feature = "torch")]
    const SNAPSHOT: &[(&str, u32, &str)] = &[
        (
            "command",
            2,
            "429a71c0035f68a96234b918e9cd6745a80bef04cdda38c88e77f90993c02f8d",
        ),
        (
            "ingest",
            3,
            "7f42367864a20c33fd823740830cd5c12fa75699d1ed4c589c4b7b8ef4daa89c",
        ),
        (
            "augment",
            2,
            "b69e4110cfefcd3a8064415cb85f6f820b4b63d8718223ad1b07ca3af27c6125",
        ),
        (
            "pretrain",
            4,
            "0a2d78c459190ff8d2cc990726ac63fceb491e8ad1033d781ede80af740ebe86",
        ),
        (
            "freeze",
            2,
            "64dc7328d9df2bea3bdf69e0e06d935ca1b350c43bb4029ba5b0218007cdf1db",
        ),
        (
            "fine-tune",
            3,
            "cc42d1725d5eb178bc5d2d0208c98a0f75b6394fa1994863d4cd27b1f848879b",
        ),
        (
            "extract",
            2,
            "b5f815f0a2218ea9f8450fde624db550dbc4831386f3656a066030c42e266605",
        ),
        (
            "evaluate",
            3,
            "e444098c7376662aa010678422be3b25a9d3562caa68d3f187c6909ee0b66382",
        ),
    ];

    #[cfg(feature = "torch")]
    #[test]
    fn key_snapshots() {
        let spec = crate::pipeline::spec::PipelineSpec::parse(
            std::path::Path::new("/p/pipeline.toml"),
            EVERY_KIND.into(),
        )
        .unwrap();
        let plan =
            crate::pipeline::plan::plan(&spec).unwrap_or_else(|e| panic!("{}", e.render(100)));
        let mut seen = Vec::new();
        for ps in &plan.stages {
            let s = &ps.stage;
            let key = record(s.kind(), s.version(), s.params(), BTreeMap::new()).key;
            seen.push((s.kind(), s.version(), key.to_hex()));
        }
        let mut problems = Vec::new();
        for (kind, version, key) in &seen {
            let line = format!("(\"{kind}\", {version}, \"{key}\")");
            match SNAPSHOT.iter().find(|(n, ..)| n == kind) {
                None => problems.push(format!("no snapshot for `{kind}`: add {line}")),
                Some((_, v, k)) if v == version && *k != key.as_str() => problems.push(format!(
                    "the key of a `{kind}` stage changed without a version bump: bump `{kind}`'s VERSION, then update its snapshot (now {line})"
                )),
                Some((_, v, k)) if v != version || *k != key.as_str() => {
                    problems.push(format!("`{kind}` is at version {version} now: update its snapshot to {line}"))
                }
                Some(_) => {}
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}
