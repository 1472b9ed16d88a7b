//! Renders a run's events ([`crate::run::events`]) as JSON lines (`--json`,
//! on stdout), a live view (a terminal), or plain lines (anything else, on
//! stderr), on a thread of its own.

use std::io::IsTerminal;
use std::sync::mpsc;
use std::time::Duration;

use tuneflow_stages::worker::WorkerEvent;

use crate::run::events::{Reporter, RunEvent};

/// Starts the rendering thread for `mode`; join the handle after dropping
/// every [`Reporter`] to flush.
pub fn start(mode: Mode) -> (Reporter, std::thread::JoinHandle<()>) {
    let (reporter, rx) = Reporter::channel();
    let handle = std::thread::spawn(move || match mode {
        Mode::Json => render_json(rx),
        Mode::Plain => render_plain(rx),
        Mode::Live => render_live(rx),
    });
    (reporter, handle)
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

// The renderers buffer in their own writer and take the stdout/stderr lock
// only to flush: holding it for the whole run would block anything else that
// writes there (a `tracing` warning, say) forever.
fn render_json(rx: mpsc::Receiver<RunEvent>) {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout());
    for event in rx {
        // Each line starts with the time it was written (RFC 3339, UTC).
        let time = crate::run::history::utc_stamp(std::time::SystemTime::now());
        let _ = write!(out, "{{\"time\":\"{time}\",");
        let body = match &event {
            RunEvent::Stage { stage, event } => {
                let mut line = serde_json::to_value(event).expect("events serialize");
                line["stage"] = stage.clone().into();
                serde_json::to_vec(&line)
            }
            other => serde_json::to_vec(other),
        }
        .expect("events serialize");
        // `body` is an object: its opening brace is already written.
        let _ = out.write_all(&body[1..]);
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
        RunEvent::Stage { stage, event } => stage_line(stage, event)?,
        RunEvent::StageInterrupted { stage } => format!("interrupted {stage}"),
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

/// A stage's own event as one line with fixed columns that fits 80
/// columns: `epoch  3/15 pretrain  loss 1.2345 acc 0.456 val 1.3000 0.400 lr 0.05000`.
fn stage_line(stage: &str, event: &WorkerEvent) -> Option<String> {
    match event {
        WorkerEvent::Epoch { stats, epochs, .. } => {
            let val = match (stats.val_loss, stats.val_acc) {
                (Some(l), Some(a)) => format!(" val {l:.4} {a:.3}"),
                _ => String::new(),
            };
            Some(format!(
                "epoch {:>2}/{:<2} {stage}  loss {:.4} acc {:.3}{val} lr {:.5}",
                stats.epoch, epochs, stats.train_loss, stats.train_acc, stats.lr
            ))
        }
        WorkerEvent::Resumed { epoch, epochs } => {
            Some(format!("resuming  {stage} from epoch {epoch} of {epochs}"))
        }
        WorkerEvent::TrainResult(_) | WorkerEvent::ExtractResult(_) => None,
    }
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
            | RunEvent::StageInterrupted { stage }
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
