//! The worker's batch position reports ([`BatchProgress`]): how many
//! batches a job has left ([`RunShape`]) and when the next report is due
//! ([`Pace`], a few per second at most, whatever the batch rate), with an
//! ETA from the batch rate of this attempt. No libtorch here, so the
//! arithmetic is tested without it.

use std::time::{Duration, Instant};

use super::{BatchProgress, Phase};

/// The least time between two progress reports of one job.
pub const SPACING: Duration = Duration::from_millis(300);

/// The batches of a job: `epochs` epochs of `train` training batches and
/// `val` validation batches each (an extract job: one epoch, no `val`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunShape {
    /// Epochs in the run.
    pub epochs: u64,
    /// Training (or extract) batches per epoch.
    pub train: u64,
    /// Validation batches per epoch.
    pub val: u64,
}

impl RunShape {
    /// Batches left after batch `batch` of `phase` in epoch `epoch`.
    pub fn remaining(&self, phase: Phase, epoch: u64, batch: u64) -> u64 {
        let later = self.epochs.saturating_sub(epoch) * (self.train + self.val);
        let this = match phase {
            Phase::Train | Phase::Extract => self.train.saturating_sub(batch) + self.val,
            Phase::Val => self.val.saturating_sub(batch),
        };
        later + this
    }

    /// Batches in `phase` of an epoch.
    pub fn batches(&self, phase: Phase) -> u64 {
        match phase {
            Phase::Train | Phase::Extract => self.train,
            Phase::Val => self.val,
        }
    }
}

/// Counts a job's batches and says when a report is due.
#[derive(Debug, Clone)]
pub struct Pace {
    shape: RunShape,
    started: Instant,
    next: Instant,
    done: u64,
}

impl Pace {
    /// Starts counting now; the first report is due after [`SPACING`].
    pub fn start(shape: RunShape) -> Self {
        Self::start_at(shape, Instant::now())
    }

    /// [`Pace::start`] at a given time.
    pub fn start_at(shape: RunShape, now: Instant) -> Self {
        Self {
            shape,
            started: now,
            next: now + SPACING,
            done: 0,
        }
    }

    /// The job's shape (training batches may be known only once the first
    /// epoch's loader exists: see [`Pace::set_train_batches`]).
    pub fn shape(&self) -> RunShape {
        self.shape
    }

    /// Sets the training batches per epoch.
    pub fn set_train_batches(&mut self, train: u64) {
        self.shape.train = train;
    }

    /// Batch `batch` of `phase` in epoch `epoch` is done: the report to
    /// send, when one is due.
    pub fn batch_done(&mut self, phase: Phase, epoch: u64, batch: u64) -> Option<BatchProgress> {
        self.batch_done_at(phase, epoch, batch, Instant::now())
    }

    /// [`Pace::batch_done`] at a given time.
    pub fn batch_done_at(
        &mut self,
        phase: Phase,
        epoch: u64,
        batch: u64,
        now: Instant,
    ) -> Option<BatchProgress> {
        self.done += 1;
        if now < self.next {
            return None;
        }
        self.next = now + SPACING;
        let per_batch = now.duration_since(self.started).as_secs_f64() / self.done as f64;
        let left = self.shape.remaining(phase, epoch, batch);
        Some(BatchProgress {
            phase,
            epoch,
            epochs: self.shape.epochs,
            batch,
            batches: self.shape.batches(phase),
            eta_s: Some(per_batch * left as f64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: RunShape = RunShape {
        epochs: 3,
        train: 10,
        val: 2,
    };

    #[test]
    fn remaining_counts_every_batch_of_every_later_epoch() {
        assert_eq!(SHAPE.remaining(Phase::Train, 1, 0), 36);
        assert_eq!(SHAPE.remaining(Phase::Train, 1, 4), 32);
        assert_eq!(SHAPE.remaining(Phase::Val, 1, 2), 24);
        assert_eq!(SHAPE.remaining(Phase::Val, 3, 2), 0);
        let extract = RunShape {
            epochs: 1,
            train: 7,
            val: 0,
        };
        assert_eq!(extract.remaining(Phase::Extract, 1, 3), 4);
    }

    #[test]
    fn reports_are_spaced_whatever_the_batch_rate() {
        let t0 = Instant::now();
        let mut pace = Pace::start_at(SHAPE, t0);
        // 1,000 batches in 1 ms each: one report per SPACING, not per batch.
        let mut reports = Vec::new();
        for i in 1..=1000u64 {
            let now = t0 + Duration::from_millis(i);
            let (epoch, batch) = ((i - 1) / 10 + 1, (i - 1) % 10 + 1);
            if let Some(r) = pace.batch_done_at(Phase::Train, epoch, batch, now) {
                reports.push(r);
            }
        }
        assert_eq!(reports.len(), 1000 / SPACING.as_millis() as usize);
    }

    #[test]
    fn the_eta_is_the_rate_so_far_times_the_batches_left() {
        let t0 = Instant::now();
        let mut pace = Pace::start_at(SHAPE, t0);
        // Training batches at 100 ms each: the report at 300 ms, after
        // batch 3, with 33 batches left at 0.1 s each.
        let mut reports = Vec::new();
        for b in 1..=4 {
            let now = t0 + Duration::from_millis(100 * b);
            reports.extend(pace.batch_done_at(Phase::Train, 1, b, now));
        }
        assert_eq!(reports.len(), 1, "{reports:?}");
        let r = &reports[0];
        assert_eq!((r.epoch, r.epochs, r.batch, r.batches), (1, 3, 3, 10));
        assert!((r.eta_s.unwrap() - 3.3).abs() < 1e-9, "{r:?}");
        let val = pace
            .batch_done_at(Phase::Val, 1, 1, t0 + Duration::from_secs(1))
            .unwrap();
        assert_eq!((val.phase, val.batches), (Phase::Val, 2));
    }

    /// A batch costs one clock read and a compare: far below a batch of
    /// even the tiniest model (about 50 ns in a debug build).
    #[test]
    fn counting_a_batch_costs_next_to_nothing() {
        let mut pace = Pace::start(SHAPE);
        let n = 1_000_000u64;
        let t = Instant::now();
        let mut reports = 0;
        for i in 0..n {
            reports += usize::from(pace.batch_done(Phase::Train, 1, i % 10).is_some());
        }
        let per = t.elapsed() / n as u32;
        assert!(
            per < Duration::from_micros(5),
            "{per:?} per batch ({reports} reports)"
        );
    }
}
