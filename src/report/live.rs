//! The live view on a terminal: an overall bar of the run's stages, and
//! below it one bar per training or extract stage that reports its batch
//! position, gone when the stage ends. Lines (epochs, finished stages)
//! print above the bars. Nothing is drawn wider than 80 columns.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tuneflow_stages::worker::WorkerEvent;

use super::lines::{bar_line, elide, MAX_WIDTH};
use super::plain_line;
use crate::run::events::RunEvent;

/// The overall bar's fixed part: spinner, elapsed time, bar, `pos/len`.
const OVERALL: &str = "{spinner} [{elapsed_precise}] {bar:24} {pos}/{len} {msg}";

struct Live {
    multi: MultiProgress,
    overall: ProgressBar,
    /// The bars of stages that reported their position.
    bars: BTreeMap<String, ProgressBar>,
    /// Stages running, in the order they started.
    running: Vec<String>,
    width: usize,
}

/// Draws events until the channel closes.
pub fn render(rx: mpsc::Receiver<RunEvent>) {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let overall = multi.add(ProgressBar::new(0));
    overall.set_style(
        ProgressStyle::with_template(OVERALL)
            .expect("static template")
            .progress_chars("=> "),
    );
    overall.enable_steady_tick(Duration::from_millis(120));
    let mut live = Live {
        multi,
        overall,
        bars: BTreeMap::new(),
        running: Vec::new(),
        width: terminal_width().min(MAX_WIDTH),
    };
    for event in rx {
        live.show(&event);
    }
    for (_, bar) in std::mem::take(&mut live.bars) {
        bar.finish_and_clear();
    }
    live.overall.finish_and_clear();
}

impl Live {
    fn show(&mut self, event: &RunEvent) {
        match event {
            RunEvent::RunStarted { stages, .. } => self.overall.set_length(*stages as u64),
            RunEvent::StageStarted { stage, .. } => self.running.push(stage.clone()),
            RunEvent::StageFinished { stage, .. }
            | RunEvent::StageFailed { stage, .. }
            | RunEvent::StageInterrupted { stage, .. }
            | RunEvent::StageCached { stage, .. }
            | RunEvent::StageSkipped { stage, .. } => {
                self.running.retain(|s| s != stage);
                if let Some(bar) = self.bars.remove(stage) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                self.overall.inc(1);
            }
            RunEvent::Stage {
                stage,
                event: WorkerEvent::Progress(p),
            } => {
                let line = bar_line(stage, p, self.width);
                self.bar(stage).set_message(line);
            }
            RunEvent::RunFinished { .. } | RunEvent::Stage { .. } => {}
        }
        // A cached stage that restored nothing is only counted.
        if !matches!(event, RunEvent::StageCached { restored, .. } if restored.is_empty()) {
            if let Some(line) = plain_line(event) {
                let _ = self.multi.println(line);
            }
        }
        self.overall.set_message(self.running_message());
    }

    /// The bar of `stage`, made on its first report.
    fn bar(&mut self, stage: &str) -> &ProgressBar {
        self.bars.entry(stage.to_owned()).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new_spinner());
            bar.set_style(ProgressStyle::with_template("{msg}").expect("static template"));
            bar
        })
    }

    /// `running: a, b, c` in what the overall bar leaves of the width.
    fn running_message(&self) -> String {
        if self.running.is_empty() {
            return String::new();
        }
        let len = self.overall.length().unwrap_or(0);
        let pos = self.overall.position();
        // spinner, " [hh:mm:ss] ", bar, " pos/len "
        let used = 1 + 12 + 24 + 1 + format!("{pos}/{len}").len() + 1;
        running_message(&self.running, self.width.saturating_sub(used))
    }
}

/// `running: a, b, c`, elided to `room` columns.
fn running_message(running: &[String], room: usize) -> String {
    let text = format!("running: {}", running.join(", "));
    elide(&text, room).trim_end().to_owned()
}

/// The terminal's width (stderr's), or 80 when it cannot be told.
#[expect(unsafe_code, reason = "ioctl(2) has no safe wrapper")]
fn terminal_width() -> usize {
    // SAFETY: TIOCGWINSZ fills a winsize struct and reads nothing else.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    if ok && size.ws_col > 0 {
        usize::from(size.ws_col)
    } else {
        MAX_WIDTH
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_list_is_elided_to_the_room_left() {
        let names: Vec<String> = (0..20).map(|i| format!("stage_{i}")).collect();
        let m = running_message(&names, 30);
        assert_eq!(m.chars().count(), 30, "{m}");
        assert!(m.starts_with("running: stage_0, stage_1"), "{m}");
        assert!(m.ends_with('…'), "{m}");
        assert_eq!(running_message(&names[..1], 30), "running: stage_0");
    }
}
