//! The HTML report of a run (`tuneflow report`): one self-contained file
//! (inline CSS, SVG and a little script; a Content-Security-Policy that
//! forbids every network load), rendered from a [`Report`], which
//! `commands::report` fills from the run record and the cache. Nothing
//! here reads the cache or prints.

pub mod graph;
mod page;
pub mod svg;

pub use page::render;

/// Everything the page shows.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// `[pipeline] name`.
    pub name: String,
    /// The pipeline file.
    pub pipeline: String,
    /// The run shown.
    pub run: RunInfo,
    /// Things the reader should know (a pipeline file changed since the
    /// run, a result no longer cached, ...).
    pub notes: Vec<String>,
    /// The stage graph (none when the plan is unknown or too large).
    pub graph: Option<Vec<graph::Node>>,
    /// One row per stage.
    pub stages: Vec<StageRow>,
    /// One table per report (an `evaluate` stage, a command's metrics).
    pub metrics: Vec<MetricsTable>,
    /// Per-epoch numbers of each training stage.
    pub training: Vec<TrainingCurves>,
    /// ROC and DET curves of each `evaluate` stage.
    pub curves: Vec<CurveSet>,
    /// The sweep this run belongs to.
    pub sweep: Option<SweepView>,
    /// The pipeline's runs, oldest first.
    pub runs: Vec<RunLink>,
    /// When the page was written (RFC 3339 UTC).
    pub generated: String,
    /// The tuneflow version that wrote it.
    pub version: String,
}

/// The run at the top of the page.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// Its id.
    pub id: String,
    /// `success`, `failed` or `interrupted`.
    pub outcome: String,
    /// Start (RFC 3339 UTC).
    pub started: String,
    /// Wall time, seconds.
    pub seconds: f64,
    /// `commit` plus ` (dirty)` when in a repository.
    pub git: Option<String>,
    /// BLAKE3 of the pipeline file as it ran.
    pub digest: String,
    /// `--set` values.
    pub overrides: Vec<String>,
    /// `sweep ID, variant i of n`.
    pub sweep: Option<String>,
}

/// A stage's row.
#[derive(Debug, Clone, Default)]
pub struct StageRow {
    /// Its name.
    pub name: String,
    /// Its kind (empty when unknown).
    pub kind: String,
    /// What happened in this run.
    pub outcome: String,
    /// Why it failed, was skipped, or ran.
    pub reason: Option<String>,
    /// Seconds it ran in this run.
    pub seconds: f64,
    /// Seconds the cached result took when it was computed.
    pub computed_seconds: Option<f64>,
    /// Peak resident memory of its process, KiB, when measured.
    pub peak_rss_kib: Option<u64>,
    /// Its key (hex).
    pub key: Option<String>,
    /// The params that went into its key.
    pub params: Option<serde_json::Value>,
    /// Its log, relative to the page.
    pub log: Option<String>,
}

/// One report's metrics: a row per metric, a column per model.
#[derive(Debug, Clone, Default)]
pub struct MetricsTable {
    /// `evaluate`, or `stage.output` for a command's metrics.
    pub label: String,
    /// Column names (`model`, `baseline`, `diff`).
    pub columns: Vec<String>,
    /// (metric, a value per column).
    pub rows: Vec<(String, Vec<Option<f64>>)>,
    /// How many trials, and where they came from.
    pub trials: Option<String>,
}

/// One epoch of a training stage.
#[derive(Debug, Clone, Copy, Default)]
pub struct Epoch {
    /// From 1.
    pub epoch: f64,
    /// Mean training loss.
    pub train_loss: Option<f64>,
    /// Validation loss.
    pub val_loss: Option<f64>,
    /// Training accuracy.
    pub train_acc: Option<f64>,
    /// Validation accuracy.
    pub val_acc: Option<f64>,
}

/// A training stage's curves.
#[derive(Debug, Clone, Default)]
pub struct TrainingCurves {
    /// The stage.
    pub stage: String,
    /// Its epochs.
    pub epochs: Vec<Epoch>,
}

/// An `evaluate` stage's operating points per model: (FAR, FRR).
#[derive(Debug, Clone, Default)]
pub struct CurveSet {
    /// The stage.
    pub stage: String,
    /// (model label, points).
    pub curves: Vec<(String, Vec<(f64, f64)>)>,
}

/// A sweep's variants.
#[derive(Debug, Clone, Default)]
pub struct SweepView {
    /// The sweep's id.
    pub id: String,
    /// The swept keys.
    pub keys: Vec<String>,
    /// Metric names (`label:column.metric`).
    pub metrics: Vec<String>,
    /// One row per variant.
    pub rows: Vec<SweepRow>,
}

/// A variant of a sweep.
#[derive(Debug, Clone, Default)]
pub struct SweepRow {
    /// The variant's run.
    pub run: String,
    /// Its value of each swept key.
    pub values: Vec<String>,
    /// How it ended.
    pub outcome: String,
    /// Its value of each metric, and whether it is the best.
    pub metrics: Vec<Option<(f64, bool)>>,
}

/// Another run of the pipeline.
#[derive(Debug, Clone, Default)]
pub struct RunLink {
    /// Its id.
    pub id: String,
    /// How it ended.
    pub outcome: String,
    /// Its overrides.
    pub overrides: Vec<String>,
    /// Stages that ran / were cached.
    pub ran: usize,
    /// Stages served from the cache.
    pub cached: usize,
    /// Whether it is the run shown.
    pub current: bool,
}

/// `text` with HTML's special characters escaped (for text and
/// attribute values).
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The file name of run `id`'s page (beside the others).
pub fn page_name(id: &str) -> String {
    format!("{id}.html")
}

/// The marker that says a file is a tuneflow report (so `report -o` may
/// replace it but nothing else).
pub const GENERATOR: &str = r#"<meta name="generator" content="tuneflow report">"#;
