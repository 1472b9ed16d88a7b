//! The command line (clap derive structs only).

use std::path::PathBuf;

/// Runs declarative machine-learning pipelines with a content-addressed cache.
///
/// A rerun does only what changed and resumes after a crash with no flags.
///
/// Exit codes: 0 success, 1 a stage failed, 2 invalid pipeline or usage,
/// 3 cache or IO unusable, 130 interrupted.
#[derive(Debug, clap::Parser)]
#[command(name = "tuneflow", version, max_term_width = 100)]
pub struct Cli {
    /// The cache folder (default: `.tuneflow/` beside the pipeline file).
    #[arg(long, global = true, env = "TUNEFLOW_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// More logging on stderr (repeat for more); `RUST_LOG` also works.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Runs a pipeline: stages whose inputs are unchanged come from the cache.
    Run(RunArgs),
    /// Says for every stage whether it is cached or will run, and why.
    Status(StatusArgs),
    /// Prints the stage graph.
    Graph(GraphArgs),
    /// Inspects and maintains the cache.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Runs one stage from a job spec (what a Slurm job executes).
    #[command(hide = true)]
    ExecStage(ExecStageArgs),
    /// Waits for the end of stdin, then ends the process groups a run left
    /// running (what `run` starts beside itself).
    #[command(hide = true)]
    WatchGroups {
        /// The run's file in the cache's `running/` folder.
        file: PathBuf,
    },
    /// Copies a cached stage output out of the cache (embeddings as .npy or .safetensors).
    Export(ExportArgs),
    /// Prints the evaluation metrics of the pipeline as it is now, or of a
    /// recorded run (--diff: against an earlier run, or run A against B).
    Metrics(MetricsArgs),
    /// Lists the recorded runs of a pipeline (all-cached ones too), oldest
    /// first, with their overrides, git commit, stage counts and metrics.
    Runs(RunsArgs),
    /// Writes a self-contained HTML report of a recorded run (the latest
    /// by default): stage graph, stage table, params, metrics, training
    /// curves, ROC and DET, the sweep, links to the other runs.
    Report(ReportArgs),
    /// Builds the small real datasets the tests and the demo use.
    Fixtures(crate::fixtures::FixtureArgs),
}

/// `tuneflow run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The pipeline file.
    pub pipeline: PathBuf,
    /// Stages running at once (default: number of cores).
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Overrides a value: `STAGE.KEY=VALUE`, `params.KEY=VALUE` or
    /// `pipeline.KEY=VALUE`. `KEY=A,B,C` is a sweep: one run per value
    /// (two lists: their grid), shared stages once; quote a value that
    /// holds a comma. A `[sweep]` table in the file declares the same
    /// (`"stage.key" = [a, b]`); a `--set` of the same key replaces it.
    /// `tuneflow runs PIPELINE --sweep` compares them.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Runs STAGE even if it is cached (repeatable).
    #[arg(long, value_name = "STAGE")]
    pub force: Vec<String>,
    /// After a failure, finish the branches that do not depend on it.
    #[arg(long)]
    pub keep_going: bool,
    /// One JSON object per line on stdout (every event, a training
    /// stage's batch progress too; keys in snake_case) instead of the live
    /// view (a terminal: bars with epoch, batch and ETA) or plain lines.
    #[arg(long)]
    pub json: bool,
    /// Where stages run: `local`, or `slurm` (one job per stage). Default:
    /// `[executor] kind`, else local.
    #[arg(long, value_enum)]
    pub executor: Option<ExecutorKind>,
    /// The shared remote cache (s3://, gs://, az://, http(s)://, a folder):
    /// a stage the local cache misses is fetched from it when it is there.
    /// Default: `[cache] remote`, else the user's config (docs/remote.md).
    #[arg(long, env = "TUNEFLOW_REMOTE", value_name = "URL")]
    pub remote: Option<String>,
    /// Do not ask the remote cache.
    #[arg(long, conflicts_with = "push")]
    pub no_remote: bool,
    /// Push each result this run computes to the remote cache
    /// (write-through; default `[cache] push`).
    #[arg(long)]
    pub push: bool,
}

/// `tuneflow status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The pipeline file.
    pub pipeline: PathBuf,
    /// Overrides, as for `run`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// One JSON object per stage.
    #[arg(long)]
    pub json: bool,
}

/// `tuneflow export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The pipeline file.
    pub pipeline: PathBuf,
    /// `STAGE` (its only output, or `model`) or `STAGE.OUTPUT`.
    pub output: String,
    /// Where to write it; must not exist yet.
    #[arg(long, value_name = "PATH")]
    pub to: PathBuf,
    /// `raw` copies the output as stored; `npy` and `safetensors` convert
    /// an embeddings artifact (from `extract`).
    #[arg(long, value_enum, default_value = "raw")]
    pub format: ExportFormat,
    /// Overrides, as for `run`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// `tuneflow exec-stage`.
#[derive(Debug, clap::Args)]
pub struct ExecStageArgs {
    /// The job spec the coordinator wrote.
    #[arg(long)]
    pub spec: PathBuf,
}

/// Where stages run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExecutorKind {
    /// Threads on this machine.
    Local,
    /// One Slurm job per stage (settings from `[executor]`).
    Slurm,
}

/// What `tuneflow export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// The output as stored (a file or a folder).
    Raw,
    /// The embedding matrix as a NumPy `.npy` (float32, rows x dim).
    Npy,
    /// `embeddings` (F32) and `labels` (I64), with ids and class names in
    /// the metadata.
    Safetensors,
}

/// `tuneflow metrics`.
#[derive(Debug, clap::Args)]
pub struct MetricsArgs {
    /// The pipeline file.
    pub pipeline: PathBuf,
    /// Overrides, as for `run`: the metrics of that variant.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// A recorded run (`tuneflow runs` lists them; a unique part of an id
    /// is enough): its metrics instead of the pipeline's as it is now.
    pub run: Option<String>,
    /// Alone: beside the most recent earlier run whose result differs.
    /// With two runs A B: A against B (one run: the pipeline now against
    /// it).
    #[arg(long, value_name = "RUN", num_args = 0..=2)]
    pub diff: Option<Vec<String>>,
    /// One JSON object per stage.
    #[arg(long)]
    pub json: bool,
}

/// `tuneflow runs`.
#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    /// The pipeline file (its cache folder and its runs).
    pub pipeline: PathBuf,
    /// Only runs in which STAGE ran (was not served from the cache).
    #[arg(long, value_name = "STAGE")]
    pub stage: Option<String>,
    /// Only runs with this override, as given to `--set` (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub param: Vec<String>,
    /// Only runs that ended so.
    #[arg(long, value_enum)]
    pub status: Option<RunStatus>,
    /// Only the N most recent.
    #[arg(short = 'n', long, value_name = "N")]
    pub last: Option<usize>,
    /// One row per variant of a sweep (the latest, or the one whose id
    /// contains ID), with its values and metrics, the best marked `*`.
    #[arg(long, value_name = "ID", num_args = 0..=1, default_missing_value = "")]
    pub sweep: Option<String>,
    /// One JSON object per run.
    #[arg(long)]
    pub json: bool,
}

/// `tuneflow report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The pipeline file (its cache folder and its runs).
    pub pipeline: PathBuf,
    /// A recorded run (`tuneflow runs` lists them; a unique part of an id
    /// is enough). Default: the latest.
    pub run: Option<String>,
    /// Where to write the page. Default: `reports/RUN.html` in the cache
    /// folder, with the pages of the other runs it links to beside it. An
    /// existing file is replaced only if it is a tuneflow report.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RunStatus {
    /// Every stage ran or was cached.
    Success,
    /// A stage failed or was skipped.
    Failed,
    /// Ctrl-C or SIGTERM.
    Interrupted,
}

/// `tuneflow graph`.
#[derive(Debug, clap::Args)]
pub struct GraphArgs {
    /// The pipeline file.
    pub pipeline: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "dot")]
    pub format: GraphFormat,
}

/// Graph output formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum GraphFormat {
    /// Graphviz.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
}

/// `tuneflow cache ...`.
#[derive(Debug, clap::Subcommand)]
pub enum CacheCommand {
    /// Re-hashes every object; corrupt ones are quarantined and rerun later.
    Verify(CacheArgs),
    /// Removes what the given pipelines' current keys (and recent runs) do not use.
    Gc(GcArgs),
    /// Shows how much the cache holds (`--remote`: the remote cache too).
    Du(CacheArgs),
    /// Copies the results a pipeline resolves to now (or all, `--all`) to
    /// the remote cache: objects first, then manifests; resumable.
    Push(SyncArgs),
    /// Copies from the remote cache every result the pipeline resolves to
    /// now that the local cache lacks, each object verified.
    Pull(SyncArgs),
}

/// `tuneflow cache push | pull`.
#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// The pipeline (its cache folder and `[cache] remote`).
    pub pipeline: Option<PathBuf>,
    /// Every result in the local cache, not only the pipeline's (push).
    #[arg(long)]
    pub all: bool,
    /// The remote (default: `[cache] remote`, else the user's config).
    #[arg(long, env = "TUNEFLOW_REMOTE", value_name = "URL")]
    pub remote: Option<String>,
    /// Overrides, as for `run`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Transfers at once.
    #[arg(short, long, value_name = "N", default_value_t = 8)]
    pub jobs: usize,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

/// Which cache a `cache` subcommand works on.
#[derive(Debug, clap::Args)]
pub struct CacheArgs {
    /// A pipeline file whose default cache to use (else `--cache-dir`, else `./.tuneflow`).
    pub pipeline: Option<PathBuf>,
    /// `du`: the remote cache too (the configured one, or URL).
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "")]
    pub remote: Option<String>,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

/// `tuneflow cache gc`.
#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// Pipelines whose current results to keep.
    #[arg(required = true)]
    pub pipelines: Vec<PathBuf>,
    /// Also keep everything the last N runs used.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_last: usize,
    /// Also delete the remote cache's objects that no remote result names
    /// and that are older than `--grace` (left by interrupted pushes); the
    /// remote's results are never deleted.
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "")]
    pub remote: Option<String>,
    /// With `--remote`: how old (seconds) an unreferenced remote object
    /// must be to go (a push in flight writes objects before its manifest).
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub grace: u64,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

/// Parses the command line; `--help` lists the stage kinds from the kinds
/// table.
pub fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command()
        .after_help(tuneflow_stages::kinds::help())
        .get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}
