//! `tuneflow export PIPELINE STAGE[.OUTPUT] --to PATH`: copies the output
//! the current pipeline resolves to (the same decision `run` and `status`
//! make) out of the cache. It never runs anything: a stage that is not
//! cached is an error that says why.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tuneflow_cache::{CacheError, OutputEntry, OutputKind, Tree};
use tuneflow_stages::formats::embeddings::{load, Embeddings};
use tuneflow_stages::OutputRef;

use crate::cli::{ExportArgs, ExportFormat};
use crate::error::{exit, RunError};
use crate::pipeline::{self, PipelineError};
use crate::run::cache::{layout_for, Cache};
use crate::run::lookup::{resolve, Decision, Lookup, Resolved};
use crate::run::prefetch::{Prefetch, ResultStats};

fn usage(message: String) -> RunError {
    PipelineError::Usage(message).into()
}

/// Runs `tuneflow export`. It takes no lock: exporting works while a run
/// holds the cache.
pub fn export(args: &ExportArgs, cache_flag: Option<&Path>) -> Result<i32, RunError> {
    let prefetch = Prefetch::start(cache_flag, &args.pipeline, ResultStats::Read);
    let plan = pipeline::load(&args.pipeline, &args.set)?;
    let wanted = OutputRef::parse(&args.output);
    let stage = wanted.stage.as_str();
    let i = plan
        .index_of(stage)
        .ok_or_else(|| usage(format!("no stage is called `{stage}`")))?;
    if args.to.exists() {
        return Err(usage(format!(
            "`{}` already exists; export writes only to a new path",
            args.to.display()
        )));
    }
    let layout = layout_for(cache_flag, Some(&plan), Some(&args.pipeline));
    let prefetched = prefetch.take(layout.root(), &plan);
    let cache = Cache::open_shared(layout)?;
    let lookup = Lookup::prefetched(&plan, &cache.index, &cache.store, prefetched);
    let resolved = resolve(&lookup)?;
    let manifest = match &resolved[i] {
        Resolved::Decided(Decision::Hit { manifest, .. }) => manifest,
        other => {
            return Err(usage(format!(
            "stage `{stage}` has no cached result for the pipeline as it is now ({}); run it first",
            why(&plan, other)
        )))
        }
    };
    let names: Vec<&str> = manifest.outputs.iter().map(|o| o.name.as_str()).collect();
    let entry = match wanted.output.as_str() {
        "" if manifest.outputs.len() == 1 => manifest.outputs.first(),
        "" => manifest.output("model"),
        o => manifest.output(o),
    }
    .ok_or_else(|| {
        usage(format!(
            "stage `{stage}` has outputs {}; name one as `{stage}.OUTPUT`",
            names.join(", ")
        ))
    })?;
    let in_workspace = plan.stages[i].outs.contains(&entry.name);
    // Written beside `--to` under a temp name and renamed at the end: a
    // failed or killed export leaves nothing at `--to`.
    let tmp = temp_beside(&args.to);
    let written = if args.format == ExportFormat::Raw {
        raw(&cache, &lookup, entry, in_workspace, &plan.dir, &tmp)
    } else {
        embeddings(&cache, entry, stage, args.format, &tmp)
    }
    .and_then(|()| {
        std::fs::rename(&tmp, &args.to)
            .map_err(|e| CacheError::io("rename into", &args.to, e).into())
    });
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&tmp).or_else(|_| std::fs::remove_file(&tmp));
    }
    written?;
    tracing::info!("exported {stage}.{} to {}", entry.name, args.to.display());
    Ok(exit::SUCCESS)
}

fn temp_beside(to: &Path) -> PathBuf {
    let name = to
        .file_name()
        .map_or_else(|| "export".into(), |n| n.to_string_lossy().into_owned());
    to.with_file_name(format!(".{name}.tuneflow-export-{}", std::process::id()))
}

fn why(plan: &pipeline::Plan, r: &Resolved) -> String {
    match r {
        Resolved::Decided(Decision::Miss { reason, .. }) => reason.clone(),
        Resolved::Blocked { upstream } => {
            format!("upstream `{}` would run", plan.stages[*upstream].name)
        }
        Resolved::Unkeyable(e) => e.to_string(),
        Resolved::Decided(Decision::Hit { .. }) => "cached".into(),
    }
}

/// Copies the output as stored: from the workspace copy when it is the
/// cached one, else from the store (verified on the way).
fn raw(
    cache: &Cache,
    lookup: &Lookup<'_>,
    entry: &OutputEntry,
    in_workspace: bool,
    dir: &Path,
    to: &Path,
) -> Result<(), RunError> {
    if in_workspace && lookup.workspace_matches(entry)? {
        let src = dir.join(&entry.name);
        let copied = match entry.kind {
            OutputKind::File => std::fs::copy(&src, to).map(|_| ()),
            OutputKind::Tree => copy_dir(&src, to),
        };
        return copied.map_err(|e| CacheError::io("copy", &src, e).into());
    }
    match entry.kind {
        OutputKind::File => cache.store.restore_file(&entry.digest, to, entry.exec)?,
        OutputKind::Tree => {
            Tree::load(&cache.store, &entry.digest)?.restore_to(&cache.store, to)?
        }
    }
    Ok(())
}

fn copy_dir(src: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let dest = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &dest)?;
        } else {
            std::fs::copy(e.path(), dest)?;
        }
    }
    Ok(())
}

/// Converts an embeddings artifact (from `extract`) to `.npy` or
/// `.safetensors`.
fn embeddings(
    cache: &Cache,
    entry: &OutputEntry,
    stage: &str,
    format: ExportFormat,
    to: &Path,
) -> Result<(), RunError> {
    let not_embeddings = || {
        usage(format!(
            "`{stage}.{}` is not an embeddings artifact (from `extract`); only `--format raw` applies",
            entry.name
        ))
    };
    if entry.kind != OutputKind::Tree {
        return Err(not_embeddings());
    }
    let store = &cache.store;
    let tree = Tree::load(store, &entry.digest)?;
    let files: BTreeMap<String, PathBuf> = tree
        .entries
        .iter()
        .map(|e| (e.path.clone(), store.path_of(&e.digest)))
        .collect();
    if !files.contains_key("items.json") {
        return Err(not_embeddings());
    }
    let e = load(&files, stage).map_err(|m| usage(format!("cannot read `{stage}`: {m}")))?;
    write_embeddings(&e, format, to).map_err(|err| RunError::from(CacheError::io("write", to, err)))
}

fn write_embeddings(e: &Embeddings, format: ExportFormat, to: &Path) -> std::io::Result<()> {
    let matrix: Vec<u8> = e.matrix.iter().flat_map(|v| v.to_le_bytes()).collect();
    let (rows, dim) = (e.meta.count as u64, e.meta.dim as u64);
    if format == ExportFormat::Npy {
        return write_npy(to, &matrix, rows, dim);
    }
    let labels: Vec<u8> = e
        .meta
        .labels
        .iter()
        .flat_map(|&l| i64::from(l).to_le_bytes())
        .collect();
    let metadata = BTreeMap::from([
        (
            "ids".to_owned(),
            serde_json::to_string(&e.meta.ids).expect("json"),
        ),
        (
            "classes".to_owned(),
            serde_json::to_string(&e.meta.classes).expect("json"),
        ),
        ("normalized".to_owned(), e.meta.normalized.to_string()),
    ]);
    tuneflow_stages::formats::safetensors::write(
        to,
        &[
            ("embeddings", "F32", vec![rows, dim], &matrix),
            ("labels", "I64", vec![rows], &labels),
        ],
        &metadata,
    )
}

/// NumPy format 1.0: magic, header length, a Python dict literal padded
/// with spaces to a multiple of 64 bytes (newline last), then the data.
fn write_npy(to: &Path, data: &[u8], rows: u64, dim: u64) -> std::io::Result<()> {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(to, bytes)
}
