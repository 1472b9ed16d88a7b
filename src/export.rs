//! `tuneflow export PIPELINE STAGE[.OUTPUT] --to PATH`: copies the output
//! the current pipeline would use (its cached result) out of the cache. It
//! never runs anything: a stage that is not cached is an error.

use std::path::Path;

use tuneflow_cache::{Index, ObjectStore, OutputKind, Tree};

use crate::cli::ExportArgs;
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
    match entry.kind {
        OutputKind::File => store.restore_file(&entry.digest, &args.to, entry.exec)?,
        OutputKind::Tree => Tree::load(&store, &entry.digest)?.restore_to(&store, &args.to)?,
    }
    tracing::info!("exported {stage}.{} to {}", entry.name, args.to.display());
    Ok(exit::SUCCESS)
}
