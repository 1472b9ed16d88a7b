//! Learning-rate schedules for the training stages, as pure functions of
//! the step: the position is a single integer, so a checkpoint that stores
//! the step resumes the schedule exactly. Each schedule can start with a
//! linear warmup from `lr * warmup_start` to `lr`.

use std::f64::consts::PI;

/// A schedule's shape after warmup.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case",
    deny_unknown_fields
)]
pub enum Shape {
    /// Constant.
    Constant,
    /// Multiply by `gamma` every `step_size` epochs.
    Step {
        /// Epochs between decays.
        step_size: u64,
        /// Decay factor.
        gamma: f64,
    },
    /// Cosine from `lr` down to `min_lr`.
    Cosine {
        /// Final learning rate.
        #[serde(default)]
        min_lr: f64,
    },
    /// PyTorch's OneCycleLR with cosine annealing: from `lr / div_factor` up
    /// to `lr` over `pct_start` of training, then down to
    /// `lr / (div_factor * final_div_factor)`.
    OneCycle {
        /// Share of steps spent rising.
        #[serde(default = "default_pct_start")]
        pct_start: f64,
        /// Initial division.
        #[serde(default = "default_div_factor")]
        div_factor: f64,
        /// Final division.
        #[serde(default = "default_final_div")]
        final_div_factor: f64,
    },
    /// `lr * (1 - t/T)^power`.
    Polynomial {
        /// The exponent.
        #[serde(default = "one")]
        power: f64,
    },
}

fn default_pct_start() -> f64 {
    0.3
}
fn default_div_factor() -> f64 {
    25.0
}
fn default_final_div() -> f64 {
    1e4
}
fn one() -> f64 {
    1.0
}

/// A full schedule: shape, warmup, and the run's length.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Peak learning rate.
    pub lr: f64,
    /// Shape after warmup.
    pub shape: Shape,
    /// Warmup steps.
    pub warmup_steps: u64,
    /// Warmup starts at `lr * warmup_start`.
    pub warmup_start: f64,
    /// Total steps of the run.
    pub total_steps: u64,
    /// Steps per epoch (for `Step`).
    pub steps_per_epoch: u64,
}

impl Schedule {
    /// The learning rate at `step` (0-based).
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            let f = step as f64 / self.warmup_steps as f64;
            return self.lr * (self.warmup_start + (1.0 - self.warmup_start) * f);
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let t = (step - self.warmup_steps).min(span);
        let frac = t as f64 / span as f64;
        match &self.shape {
            Shape::Constant => self.lr,
            Shape::Step { step_size, gamma } => {
                let epoch = t / self.steps_per_epoch.max(1);
                self.lr * gamma.powi((epoch / step_size.max(&1)) as i32)
            }
            Shape::Cosine { min_lr } => {
                min_lr + 0.5 * (self.lr - min_lr) * (1.0 + (PI * frac).cos())
            }
            Shape::OneCycle {
                pct_start,
                div_factor,
                final_div_factor,
            } => {
                let initial = self.lr / div_factor;
                let last = initial / final_div_factor;
                let up = (pct_start * span as f64 - 1.0).max(1.0);
                let cos = |start: f64, end: f64, p: f64| {
                    end + (start - end) / 2.0 * (1.0 + (PI * p).cos())
                };
                let tf = t as f64;
                if tf <= up {
                    cos(initial, self.lr, tf / up)
                } else {
                    cos(
                        self.lr,
                        last,
                        ((tf - up) / (span as f64 - 1.0 - up).max(1.0)).min(1.0),
                    )
                }
            }
            Shape::Polynomial { power } => self.lr * (1.0 - frac).max(0.0).powf(*power),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(shape: Shape, warmup: u64) -> Schedule {
        Schedule {
            lr: 0.1,
            shape,
            warmup_steps: warmup,
            warmup_start: 0.0,
            total_steps: 100,
            steps_per_epoch: 10,
        }
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn shapes_follow_their_formulas() {
        let s = schedule(
            Shape::Step {
                step_size: 3,
                gamma: 0.5,
            },
            0,
        );
        close(s.lr_at(29), 0.1);
        close(s.lr_at(30), 0.05);
        close(s.lr_at(65), 0.025);
        let c = schedule(Shape::Cosine { min_lr: 0.0 }, 0);
        close(c.lr_at(0), 0.1);
        close(c.lr_at(50), 0.05);
        close(c.lr_at(100), 0.0);
        let p = schedule(Shape::Polynomial { power: 2.0 }, 0);
        close(p.lr_at(50), 0.1 * 0.25);
        let w = schedule(Shape::Constant, 10);
        close(w.lr_at(0), 0.0);
        close(w.lr_at(5), 0.05);
        close(w.lr_at(10), 0.1);
    }

    #[test]
    fn one_cycle_matches_pytorch_endpoints() {
        // torch.optim.lr_scheduler.OneCycleLR(max_lr=0.1, total_steps=100):
        // starts at 0.004, peaks at 0.1 on step 29, ends at 4e-7.
        let s = schedule(
            Shape::OneCycle {
                pct_start: 0.3,
                div_factor: 25.0,
                final_div_factor: 1e4,
            },
            0,
        );
        close(s.lr_at(0), 0.004);
        close(s.lr_at(29), 0.1);
        assert!((s.lr_at(99) - 4e-7).abs() < 1e-12, "{}", s.lr_at(99));
        // Values printed by torch 2.11 for the same scheduler.
        for (step, want) in [
            (10, 0.029516394846410082),
            (30, 0.09994965352845243),
            (60, 0.05892800902855288),
        ] {
            assert!(
                (s.lr_at(step) - want).abs() < 1e-12,
                "step {step}: {} != {want}",
                s.lr_at(step)
            );
        }
    }
}
