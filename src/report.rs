//! Renders a run's events ([`crate::run::events`]) as JSON lines (`--json`,
//! on stdout), a live view (a terminal: [`live`]), or plain lines (anything
//! else, on stderr), on a thread of its own. JSON lines carry every event,
//! the throttled `progress` reports of training and extract stages too;
//! plain lines leave those out. Every key is snake_case.

mod lines;
mod live;

use std::io::IsTerminal;
use std::sync::mpsc;

use crate::run::events::{Reporter, RunEvent};
use lines::stage_line;

/// Starts the rendering thread for `mode`; join the handle after dropping
/// every [`Reporter`] to flush.
pub fn start(mode: Mode) -> (Reporter, std::thread::JoinHandle<()>) {
    let (reporter, rx) = Reporter::channel();
    let handle = std::thread::spawn(move || match mode {
        Mode::Json => render_json(rx),
        Mode::Plain => render_plain(rx),
        Mode::Live => live::render(rx),
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
        RunEvent::StageInterrupted {
            stage,
            resume_epoch,
        } => interrupted_line(stage, *resume_epoch),
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

/// What an interrupted stage leaves: a training stage says where a rerun
/// picks it up.
fn interrupted_line(stage: &str, resume_epoch: Option<u64>) -> String {
    match resume_epoch {
        Some(0) => format!("interrupted; a rerun starts {stage} from the beginning"),
        Some(epoch) => format!("interrupted; a rerun resumes {stage} from epoch {epoch}"),
        None => format!("interrupted {stage}"),
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
