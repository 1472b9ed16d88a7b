//! Progress is data: the engine sends [`RunEvent`]s and a reporter renders
//! them as JSON lines (`--json`, on stdout), a live view (a terminal), or
//! plain lines (anything else, on stderr).

use std::io::IsTerminal;
use std::sync::mpsc;
use std::time::Duration;

/// Something that happened during a run.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum RunEvent {
    /// The run began.
    RunStarted {
        /// The pipeline's name.
        pipeline: String,
        /// How many stages it has.
        stages: usize,
    },
    /// A stage's outputs came from the cache.
    StageCached {
        /// The stage.
        stage: String,
        /// Its key (full hex).
        key: String,
        /// Workspace outputs that had to be restored.
        restored: Vec<String>,
        /// Output name -> digest.
        outputs: std::collections::BTreeMap<String, String>,
    },
    /// A stage began running.
    StageStarted {
        /// The stage.
        stage: String,
        /// Its key.
        key: String,
        /// Why it runs.
        reason: String,
    },
    /// A stage finished and its outputs are committed.
    StageFinished {
        /// The stage.
        stage: String,
        /// Its key.
        key: String,
        /// Wall time.
        seconds: f64,
        /// Output name -> digest.
        outputs: std::collections::BTreeMap<String, String>,
        /// What the stage reported (counts, metrics), if anything.
        #[serde(skip_serializing_if = "serde_json::Value::is_null")]
        summary: serde_json::Value,
    },
    /// Progress a stage reported (e.g. a training epoch); `data` holds the
    /// stage's own `event` name and fields, flattened into the line.
    #[serde(skip)]
    Stage {
        /// The stage.
        stage: String,
        /// The stage's event.
        data: serde_json::Value,
    },
    /// A stage failed.
    StageFailed {
        /// The stage.
        stage: String,
        /// What went wrong.
        error: String,
    },
    /// A stage did not run because of a failure elsewhere.
    StageSkipped {
        /// The stage.
        stage: String,
        /// Why.
        reason: String,
    },
    /// The run ended.
    RunFinished {
        /// Stages that ran.
        ran: usize,
        /// Stages served from the cache.
        cached: usize,
        /// Stages that failed.
        failed: usize,
        /// Stages skipped.
        skipped: usize,
        /// Wall time.
        seconds: f64,
        /// Peak resident memory of the runner process (VmHWM), KiB.
        #[serde(rename = "peak-rss-kib", skip_serializing_if = "Option::is_none")]
        peak_rss_kib: Option<u64>,
    },
}

/// How events are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One JSON object per line on stdout.
    Json,
    /// A live view on the terminal.
    Live,
    /// Plain lines on stderr.
    Plain,
}

impl Mode {
    /// `Json` if asked, else `Live` on a terminal, else `Plain`.
    pub fn pick(json: bool) -> Self {
        if json {
            Self::Json
        } else if std::io::stderr().is_terminal()
            && std::env::var_os("TUNEFLOW_NO_PROGRESS").is_none()
        {
            Self::Live
        } else {
            Self::Plain
        }
    }
}

/// Sends events to the rendering thread.
#[derive(Clone)]
pub struct Reporter {
    tx: mpsc::Sender<RunEvent>,
}

impl Reporter {
    /// Starts the rendering thread; join the handle after dropping every
    /// `Reporter` to flush.
    pub fn start(mode: Mode) -> (Self, std::thread::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::spawn(move || match mode {
            Mode::Json => render_json(rx),
            Mode::Plain => render_plain(rx),
            Mode::Live => render_live(rx),
        });
        (Self { tx }, handle)
    }

    /// Reports an event.
    pub fn send(&self, event: RunEvent) {
        let _ = self.tx.send(event);
    }
}

// The renderers buffer in their own writer and take the stdout/stderr lock
// only to flush: holding it for the whole run would block anything else that
// writes there (a `tracing` warning, say) forever.
fn render_json(rx: mpsc::Receiver<RunEvent>) {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout());
    for event in rx {
        let _ = match &event {
            RunEvent::Stage { stage, data } => {
                let mut line = data.as_object().cloned().unwrap_or_default();
                line.insert("stage".into(), stage.clone().into());
                serde_json::to_writer(&mut out, &line)
            }
            other => serde_json::to_writer(&mut out, other),
        };
        let _ = out.write_all(b"\n");
        // Flush per stage event so a consumer sees progress as it happens,
        // but not per cached stage of a 10,000-stage no-op run.
        if !matches!(event, RunEvent::StageCached { .. }) {
            let _ = out.flush();
        }
    }
}

fn plain_line(event: &RunEvent) -> Option<String> {
    Some(match event {
        RunEvent::RunStarted { .. } => return None,
        RunEvent::StageCached {
            stage, restored, ..
        } if restored.is_empty() => format!("cached    {stage}"),
        RunEvent::StageCached {
            stage, restored, ..
        } => {
            format!("cached    {stage} (restored {})", restored.join(", "))
        }
        RunEvent::StageStarted { stage, reason, .. } => format!("running   {stage} ({reason})"),
        RunEvent::StageFinished { stage, seconds, .. } => {
            format!("finished  {stage} in {seconds:.2}s")
        }
        RunEvent::StageFailed { stage, error } => format!("FAILED    {stage}: {error}"),
        RunEvent::Stage { stage, data } => stage_line(stage, data),
        RunEvent::StageSkipped { stage, reason } => format!("skipped   {stage} ({reason})"),
        RunEvent::RunFinished {
            ran,
            cached,
            failed,
            skipped,
            seconds,
            ..
        } => format!(
            "{ran} ran, {cached} cached, {failed} failed, {skipped} skipped in {seconds:.2}s"
        ),
    })
}

/// A stage's own event as one line: `epoch 3/10 pretrain: loss 1.234 ...`.
fn stage_line(stage: &str, data: &serde_json::Value) -> String {
    let kind = data["event"].as_str().unwrap_or("progress");
    let fields: Vec<String> = data
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| *k != "event")
        .map(|(k, v)| match v.as_f64() {
            Some(f) if f.fract() != 0.0 => format!("{k} {f:.4}"),
            _ => format!("{k} {v}"),
        })
        .collect();
    format!("{kind:<9} {stage}: {}", fields.join(", "))
}

fn render_plain(rx: mpsc::Receiver<RunEvent>) {
    use std::io::Write;
    let mut err = std::io::BufWriter::new(std::io::stderr());
    for event in rx {
        if let Some(line) = plain_line(&event) {
            let _ = writeln!(err, "{line}");
        }
        if !matches!(event, RunEvent::StageCached { .. }) {
            let _ = err.flush();
        }
    }
}

fn render_live(rx: mpsc::Receiver<RunEvent>) {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let mut running: Vec<String> = Vec::new();
    for event in rx {
        match &event {
            RunEvent::RunStarted { stages, .. } => bar.set_length(*stages as u64),
            RunEvent::StageStarted { stage, .. } => running.push(stage.clone()),
            RunEvent::StageFinished { stage, .. }
            | RunEvent::StageFailed { stage, .. }
            | RunEvent::StageCached { stage, .. }
            | RunEvent::StageSkipped { stage, .. } => {
                running.retain(|s| s != stage);
                bar.inc(1);
            }
            RunEvent::RunFinished { .. } | RunEvent::Stage { .. } => {}
        }
        if !matches!(event, RunEvent::StageCached { ref restored, .. } if restored.is_empty()) {
            if let Some(line) = plain_line(&event) {
                bar.println(line);
            }
        }
        bar.set_message(if running.is_empty() {
            String::new()
        } else {
            format!("running: {}", running.join(", "))
        });
    }
    bar.finish_and_clear();
}
