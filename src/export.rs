//! `tuneflow export PIPELINE STAGE[.OUTPUT] --to PATH`: copies the output
//! the current pipeline would use (its cached result) out of the cache. It
//! never runs anything: a stage that is not cached is an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tuneflow_cache::{CacheError, Index, ObjectStore, OutputKind, Tree};
use tuneflow_stages::evaluate::Embeddings;

use crate::cli::{ExportArgs, ExportFormat};
use crate::commands::{cache_layout, open_cache};
use crate::error::{exit, PipelineError, RunError};
use crate::plan;

fn usage(message: String) -> RunError {
    PipelineError::Usage(message).into()
}

/// Runs `tuneflow export`.
pub fn export(args: &ExportArgs, cache_flag: Option<&Path>) -> Result<i32, RunError> {
    let plan = plan::load(&args.pipeline, &args.set)?;
    let (stage, output) = match args.output.split_once('.') {
        Some((s, o)) => (s, Some(o)),
        None => (args.output.as_str(), None),
    };
    let i = plan
        .index_of(stage)
        .ok_or_else(|| usage(format!("no stage is called `{stage}`")))?;
    if args.to.exists() {
        return Err(usage(format!(
            "`{}` already exists; export writes only to a new path",
            args.to.display()
        )));
    }
    let layout = cache_layout(cache_flag, Some(&plan), Some(&args.pipeline));
    let (_lock, index): (_, Index) = open_cache(&layout)?;
    let (statuses, manifests) = crate::status::compute(&plan, &index)?;
    let Some(manifest) = &manifests[i] else {
        return Err(usage(format!(
            "stage `{stage}` has no cached result for the pipeline as it is now ({}); run it first",
            statuses[i].reason
        )));
    };
    let names: Vec<&str> = manifest.outputs.iter().map(|o| o.name.as_str()).collect();
    let entry = match output {
        Some(o) => manifest.output(o),
        None if manifest.outputs.len() == 1 => manifest.outputs.first(),
        None => manifest.output("model"),
    }
    .ok_or_else(|| {
        usage(format!(
            "stage `{stage}` has outputs {}; name one as `{stage}.OUTPUT`",
            names.join(", ")
        ))
    })?;
    let store = ObjectStore::open(layout.objects())?;
    if args.format == ExportFormat::Raw {
        match entry.kind {
            OutputKind::File => store.restore_file(&entry.digest, &args.to, entry.exec)?,
            OutputKind::Tree => Tree::load(&store, &entry.digest)?.restore_to(&store, &args.to)?,
        }
    } else {
        let not_embeddings = || {
            usage(format!(
                "`{stage}.{}` is not an embeddings artifact (from `extract`); only `--format raw` applies",
                entry.name
            ))
        };
        if entry.kind != OutputKind::Tree {
            return Err(not_embeddings());
        }
        let tree = Tree::load(&store, &entry.digest)?;
        let files: BTreeMap<String, PathBuf> = tree
            .entries
            .iter()
            .map(|e| (e.path.clone(), store.path_of(&e.digest)))
            .collect();
        if !files.contains_key("items.json") {
            return Err(not_embeddings());
        }
        let e = tuneflow_stages::evaluate::load(&files, stage)
            .map_err(|m| usage(format!("cannot read `{stage}`: {m}")))?;
        write_embeddings(&e, args.format, &args.to)
            .map_err(|err| RunError::from(CacheError::io("write", &args.to, err)))?;
    }
    tracing::info!("exported {stage}.{} to {}", entry.name, args.to.display());
    Ok(exit::SUCCESS)
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
    tuneflow_stages::safetensors::write(
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
