//! Stage keys: what a stage's outputs are cached under, and why a key
//! differs from last time.
//!
//! key = H(format version, "stage", kind, kind version, params sorted by
//! name, inputs sorted by name with their digests). Spans, TOML key order
//! and formatting never enter it.

use std::collections::BTreeMap;

use tuneflow_cache::{
    BlobDigest, CacheError, CacheKey, KeyHasher, Manifest, StageRecord, StatCache,
};

use crate::plan::{Input, Plan};

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
    /// Hashing or the index failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// Computes stage `i`'s key. `manifest_of(j)` gives the manifest of each
/// upstream stage `j` (all of which must have finished).
pub fn compute(
    plan: &Plan,
    i: usize,
    manifest_of: &dyn Fn(usize) -> Option<Manifest>,
    stats: &StatCache<'_>,
) -> Result<StageRecord, KeyError> {
    let ps = &plan.stages[i];
    let mut inputs = BTreeMap::new();
    for (name, input) in &ps.inputs {
        let digest = match input {
            Input::File(path) => {
                let full = plan.dir.join(path);
                if std::fs::symlink_metadata(&full).is_err() {
                    return Err(KeyError::MissingDep {
                        stage: ps.name.clone(),
                        path: path.clone(),
                    });
                }
                stats.hash(&full)?.digest
            }
            Input::Output { stage, output } => upstream_digest(manifest_of(*stage), output)
                .expect("upstream stages finish before their dependants' keys are computed"),
        };
        inputs.insert(name.clone(), digest.to_hex());
    }
    let params = ps.stage.params();
    let mut h = KeyHasher::new();
    h.write_str("stage");
    h.write_str(ps.stage.kind());
    h.write_u64(u64::from(ps.stage.version()));
    params.cache_key(&mut h);
    h.write_len(inputs.len());
    for (name, digest) in &inputs {
        h.write_str(name);
        h.write_digest(&BlobDigest::from_hex(digest).expect("hex we just wrote"));
    }
    Ok(StageRecord {
        key: h.finish(),
        kind: ps.stage.kind().to_owned(),
        version: ps.stage.version(),
        params,
        inputs,
    })
}

fn upstream_digest(manifest: Option<Manifest>, output: &str) -> Option<BlobDigest> {
    manifest?.output(output).map(|o| o.digest)
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
    diff_maps(&prev.params, &current.params, "param", &mut reasons);
    diff_maps(&prev.inputs, &current.inputs, "input", &mut reasons);
    if reasons.is_empty() {
        return "outputs are no longer in the cache".to_owned();
    }
    reasons.join(", ")
}

fn diff_maps(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
    what: &str,
    reasons: &mut Vec<String>,
) {
    for (k, v) in new {
        match old.get(k) {
            None => reasons.push(format!("{what} `{k}` added")),
            Some(o) if o != v => reasons.push(format!("{what} `{k}` changed")),
            Some(_) => {}
        }
    }
    for k in old.keys().filter(|k| !new.contains_key(*k)) {
        reasons.push(format!("{what} `{k}` removed"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tuneflow_cache::StageDigest;

    fn record(params: &[(&str, &str)], inputs: &[(&str, &str)]) -> StageRecord {
        StageRecord {
            key: StageDigest::from_bytes([0; 32]),
            kind: "command".into(),
            version: 1,
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            inputs: inputs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn explains_what_changed() {
        let a = record(&[("cmd", "echo 1")], &[("data.csv", "aa")]);
        let b = record(&[("cmd", "echo 2")], &[("data.csv", "bb"), ("x", "cc")]);
        assert_eq!(explain(None, &a), "never run");
        assert_eq!(
            explain(Some(&a), &b),
            "param `cmd` changed, input `data.csv` changed, input `x` added"
        );
        assert_eq!(explain(Some(&a), &a), "outputs are no longer in the cache");
    }
}
