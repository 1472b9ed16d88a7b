//! A memory budget shared by decoding threads. Ingest decodes a chunk of
//! items on every core at once; without a budget the peak is the largest
//! allowed image times the thread count (six 13000 x 13000 PNGs peaked at
//! 3 GB, issue #11). Each decode first takes its estimated bytes from the
//! budget and waits while the budget is spent; small items keep every core
//! busy, large ones take turns.

use std::sync::{Condvar, Mutex};

/// Bytes that decodes in flight may hold together.
#[derive(Debug)]
pub struct MemoryBudget {
    total: u64,
    used: Mutex<u64>,
    freed: Condvar,
}

/// Bytes taken from a [`MemoryBudget`], given back when dropped.
#[derive(Debug)]
pub struct Permit<'a> {
    budget: &'a MemoryBudget,
    bytes: u64,
}

impl MemoryBudget {
    /// A budget of `total` bytes.
    pub fn new(total: u64) -> Self {
        Self {
            total: total.max(1),
            used: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// The budget's size.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Takes `bytes`, waiting until they are free. A request larger than
    /// the whole budget waits for all of it, so it runs alone.
    pub fn acquire(&self, bytes: u64) -> Permit<'_> {
        let bytes = bytes.min(self.total);
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        while *used + bytes > self.total {
            used = self.freed.wait(used).unwrap_or_else(|p| p.into_inner());
        }
        *used += bytes;
        Permit {
            budget: self,
            bytes,
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut used = self.budget.used.lock().unwrap_or_else(|p| p.into_inner());
        *used -= self.bytes;
        self.budget.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn holders_never_exceed_the_budget_and_oversized_requests_run_alone() {
        let budget = MemoryBudget::new(100);
        let held = AtomicU64::new(0);
        let peak = AtomicU64::new(0);
        std::thread::scope(|s| {
            for i in 0..8u64 {
                let (budget, held, peak) = (&budget, &held, &peak);
                s.spawn(move || {
                    let want = if i == 3 { 500 } else { 30 + i };
                    let _p = budget.acquire(want);
                    let now = held.fetch_add(want.min(100), Ordering::SeqCst) + want.min(100);
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    held.fetch_sub(want.min(100), Ordering::SeqCst);
                });
            }
        });
        assert!(peak.load(Ordering::SeqCst) <= 100);
        assert_eq!(*budget.used.lock().unwrap(), 0);
    }
}
