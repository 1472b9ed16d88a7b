//! One-line renderings of a stage's own events: epoch lines with fixed
//! columns, the resume line, and a training or extract stage's bar. Every
//! line fits the width it is given (80 columns at most), whatever the
//! stage's name and numbers: a long name is elided.

use tuneflow_stages::worker::{BatchProgress, EpochStats, Phase, WorkerEvent};

/// The widest any line is drawn.
pub const MAX_WIDTH: usize = 80;

/// Columns a stage's name gets in epoch and bar lines (less when the
/// numbers need more room).
const NAME: usize = 14;

/// A stage's own event as a plain line, if it has one (progress reports
/// are drawn as bars, not lines; results end in `finished`).
pub fn stage_line(stage: &str, event: &WorkerEvent) -> Option<String> {
    match event {
        WorkerEvent::Epoch { stats, epochs, .. } => Some(epoch_line(stage, stats, *epochs)),
        WorkerEvent::Resumed { epoch, epochs } => Some(fit(
            &format!("resuming {stage} from epoch {epoch} of {epochs}"),
            MAX_WIDTH,
        )),
        WorkerEvent::Progress(_) | WorkerEvent::TrainResult(_) | WorkerEvent::ExtractResult(_) => {
            None
        }
    }
}

/// `epoch  3/15  pretrain       loss  1.2345 acc 0.456 val  1.3000 0.400 lr 0.05000`:
/// the same columns in the same order for every epoch of a stage.
pub fn epoch_line(stage: &str, stats: &EpochStats, epochs: u64) -> String {
    let head = format!("epoch {:>3}/{:<3}", stats.epoch, epochs);
    let mut numbers = format!("loss {} acc {:.3}", loss(stats.train_loss), stats.train_acc);
    if let (Some(l), Some(acc)) = (stats.val_loss, stats.val_acc) {
        numbers.push_str(&format!(" val {} {acc:.3}", loss(l)));
    }
    numbers.push_str(&format!(" lr {:.5}", stats.lr));
    columns(&head, stage, &numbers, MAX_WIDTH)
}

/// A loss in 7 columns: `{:.4}`, or `{:.1e}` when that would be wider.
fn loss(x: f64) -> String {
    if x.is_finite() && x.abs() < 99.99995 {
        format!("{x:>7.4}")
    } else {
        format!("{x:>7.1e}")
    }
}

/// `pretrain       epoch   3/15  batch   120/400   [=====>      ] ETA  1m02s`
/// in `width` columns (at most [`MAX_WIDTH`]).
pub fn bar_line(stage: &str, p: &BatchProgress, width: usize) -> String {
    let width = width.min(MAX_WIDTH);
    let position = match p.phase {
        Phase::Extract => format!("{:13}", ""),
        _ => format!("epoch {:>3}/{:<3}", p.epoch, p.epochs),
    };
    let what = if p.phase == Phase::Val {
        "val  "
    } else {
        "batch"
    };
    let batches = format!("{what} {:>5}/{:<5}", p.batch, p.batches);
    let eta = format!("ETA {:>6}", eta(p.eta_s));
    // name, " ", position, " ", batches, " [", bar, "] ", eta
    let fixed = NAME + 1 + position.len() + 1 + batches.len() + 2 + 2 + eta.len();
    let bar_width = width.saturating_sub(fixed).clamp(5, 30);
    let filled = (bar_width as u64 * p.batch.min(p.batches))
        .checked_div(p.batches)
        .unwrap_or(0) as usize;
    let mut bar = "=".repeat(filled);
    if filled < bar_width {
        bar.push('>');
        bar.push_str(&" ".repeat(bar_width - filled - 1));
    }
    let rest = format!("{position} {batches} [{bar}] {eta}");
    columns("", stage, &rest, width)
}

/// `head name rest`, the name padded to [`NAME`] columns or elided to what
/// `width` leaves; the whole cut at `width` if the numbers alone are wider.
fn columns(head: &str, stage: &str, rest: &str, width: usize) -> String {
    let sep = usize::from(!head.is_empty());
    let room = width.saturating_sub(head.chars().count() + sep + 1 + rest.chars().count());
    let name = elide(stage, room.clamp(4, NAME));
    let line = if head.is_empty() {
        format!("{name} {rest}")
    } else {
        format!("{head} {name} {rest}")
    };
    fit(&line, width)
}

/// `name` padded to `width` columns, or cut to `width - 1` and `…`.
pub fn elide(name: &str, width: usize) -> String {
    let n = name.chars().count();
    if n <= width {
        format!("{name:<width$}")
    } else {
        let kept: String = name.chars().take(width.saturating_sub(1)).collect();
        format!("{kept}…")
    }
}

/// `line` cut to `width` columns (a last resort: names are elided first).
pub fn fit(line: &str, width: usize) -> String {
    if line.chars().count() <= width {
        line.to_owned()
    } else {
        let kept: String = line.chars().take(width.saturating_sub(1)).collect();
        format!("{kept}…")
    }
}

/// Seconds left as `45s`, `1m02s`, `3h05m` (`?` while unknown).
pub fn eta(seconds: Option<f64>) -> String {
    let Some(s) = seconds.filter(|s| s.is_finite() && *s >= 0.0) else {
        return "?".into();
    };
    let s = s.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=359_999 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => ">99h".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(epoch: u64, loss: f64, val: Option<(f64, f64)>) -> EpochStats {
        EpochStats {
            epoch,
            train_loss: loss,
            train_acc: 0.456,
            val_loss: val.map(|v| v.0),
            val_acc: val.map(|v| v.1),
            lr: 0.05,
            samples_per_s: 1234.5,
            data_wait_share: 0.01,
        }
    }

    fn width(s: &str) -> usize {
        s.chars().count()
    }

    #[test]
    fn epoch_lines_have_fixed_columns_within_80() {
        let a = epoch_line("pretrain", &stats(3, 1.2345, Some((1.3, 0.4))), 15);
        assert_eq!(
            a,
            "epoch   3/15  pretrain       loss  1.2345 acc 0.456 val  1.3000 0.400 lr 0.05000"
        );
        let b = epoch_line("pretrain", &stats(12, 0.05, Some((0.1, 0.97))), 15);
        assert_eq!(a.find("loss"), b.find("loss"));
        assert_eq!(a.find(" val "), b.find(" val "));
        assert_eq!(a.find(" lr "), b.find(" lr "));
        assert!(width(&a) <= 80, "{a}");
    }

    #[test]
    fn long_names_and_big_numbers_still_fit_80_columns() {
        let name = "a_very_long_stage_name_for_the_speaker_pretraining_run";
        let usual = epoch_line(name, &stats(3, 1.5, Some((1.5, 0.5))), 15);
        assert!(usual.contains(" a_very_long_s… loss"), "{usual}");
        for (epoch, epochs, loss) in [(1, 5, 0.5), (120, 1000, 123.4567), (7, 9, 1e9)] {
            let line = epoch_line(name, &stats(epoch, loss, Some((loss, 0.5))), epochs);
            assert!(width(&line) <= 80, "{} columns: {line}", width(&line));
            assert!(
                line.contains(" a_very_long_") && line.contains("… loss"),
                "{line}"
            );
            let plain = epoch_line(name, &stats(epoch, loss, None), epochs);
            assert!(width(&plain) <= 80, "{plain}");
        }
        let resumed = stage_line(
            name,
            &WorkerEvent::Resumed {
                epoch: 3,
                epochs: 15,
            },
        )
        .unwrap();
        assert!(width(&resumed) <= 80, "{resumed}");
    }

    #[test]
    fn resume_lines_name_the_epoch() {
        let line = stage_line(
            "pretrain",
            &WorkerEvent::Resumed {
                epoch: 3,
                epochs: 15,
            },
        );
        assert_eq!(
            line.as_deref(),
            Some("resuming pretrain from epoch 3 of 15")
        );
    }

    #[test]
    fn etas_read_as_durations() {
        assert_eq!(eta(None), "?");
        assert_eq!(eta(Some(f64::NAN)), "?");
        assert_eq!(eta(Some(0.4)), "0s");
        assert_eq!(eta(Some(45.0)), "45s");
        assert_eq!(eta(Some(62.0)), "1m02s");
        assert_eq!(eta(Some(3599.6)), "1h00m");
        assert_eq!(eta(Some(3.0 * 3600.0 + 5.0 * 60.0)), "3h05m");
        assert_eq!(eta(Some(1e9)), ">99h");
    }

    fn progress(phase: Phase, batch: u64, batches: u64, eta_s: Option<f64>) -> BatchProgress {
        BatchProgress {
            phase,
            epoch: 3,
            epochs: 15,
            batch,
            batches,
            eta_s,
        }
    }

    #[test]
    fn bar_lines_show_position_bar_and_eta_within_the_width() {
        let line = bar_line(
            "pretrain",
            &progress(Phase::Train, 120, 400, Some(62.0)),
            80,
        );
        assert_eq!(
            line,
            "pretrain       epoch   3/15  batch   120/400   [======>             ] ETA  1m02s"
        );
        assert!(width(&line) <= 80, "{} columns: {line}", width(&line));
        let val = bar_line("pretrain", &progress(Phase::Val, 12, 50, None), 80);
        assert!(val.contains("val      12/50"), "{val}");
        assert!(val.ends_with("ETA      ?"), "{val}");
        let extract = bar_line("emb", &progress(Phase::Extract, 5, 10, Some(3.0)), 80);
        assert!(!extract.contains("epoch"), "{extract}");
        let long = "a_very_long_stage_name_for_the_speaker_pretraining_run";
        for w in [80, 60, 40] {
            let line = bar_line(
                long,
                &progress(Phase::Train, 123_456, 999_999, Some(1e6)),
                w,
            );
            assert!(width(&line) <= w, "{} > {w}: {line}", width(&line));
        }
    }

    #[test]
    fn the_bar_fills_with_the_batch_position() {
        let bar = |batch| {
            let line = bar_line("s", &progress(Phase::Train, batch, 10, Some(1.0)), 80);
            let inner = &line[line.find('[').unwrap() + 1..line.find(']').unwrap()];
            (inner.matches('=').count(), inner.chars().count())
        };
        let (empty, w) = bar(0);
        assert_eq!(empty, 0);
        assert_eq!(bar(5).0, w / 2);
        assert_eq!(bar(10), (w, w));
    }
}
