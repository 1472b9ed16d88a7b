//! GPU permits: one per visible device, so two trainings never share a GPU.

use std::sync::Mutex;

/// The GPUs this run may hand out.
pub struct GpuPool {
    free: Mutex<Vec<u32>>,
    total: usize,
    notify: tokio::sync::Notify,
}

/// GPUs held by a stage; returned on drop.
pub struct GpuLease<'a> {
    pool: &'a GpuPool,
    ids: Vec<u32>,
}

impl GpuLease<'_> {
    /// The device ordinals held.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}

impl Drop for GpuLease<'_> {
    fn drop(&mut self) {
        if self.ids.is_empty() {
            return;
        }
        self.pool
            .free
            .lock()
            .expect("gpu lock")
            .extend(self.ids.drain(..));
        self.pool.notify.notify_waiters();
    }
}

/// A stage asked for more GPUs than exist.
#[derive(Debug, thiserror::Error)]
#[error("the stage asks for {wanted} GPU(s) but {visible} are visible")]
pub struct TooManyGpus {
    wanted: u32,
    visible: usize,
}

impl GpuPool {
    /// Visible devices: `CUDA_VISIBLE_DEVICES` when set, else `/dev/nvidiaN`.
    pub fn detect() -> Self {
        let count = match std::env::var("CUDA_VISIBLE_DEVICES") {
            Ok(v) => v
                .split(',')
                .filter(|s| !s.trim().is_empty() && s.trim() != "-1")
                .count(),
            Err(_) => (0..64)
                .filter(|n| std::path::Path::new(&format!("/dev/nvidia{n}")).exists())
                .count(),
        };
        Self::with_count(count)
    }

    /// A pool of `count` devices, numbered from 0.
    pub fn with_count(count: usize) -> Self {
        Self {
            free: Mutex::new((0..count as u32).rev().collect()),
            total: count,
            notify: tokio::sync::Notify::new(),
        }
    }

    /// Waits for `n` GPUs.
    pub async fn acquire(&self, n: u32) -> Result<GpuLease<'_>, TooManyGpus> {
        if n as usize > self.total {
            return Err(TooManyGpus {
                wanted: n,
                visible: self.total,
            });
        }
        loop {
            let notified = self.notify.notified();
            {
                let mut free = self.free.lock().expect("gpu lock");
                if free.len() >= n as usize {
                    let at = free.len() - n as usize;
                    let mut ids = free.split_off(at);
                    ids.sort_unstable();
                    return Ok(GpuLease { pool: self, ids });
                }
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn leases_are_exclusive_and_returned() {
        let pool = GpuPool::with_count(2);
        let a = pool.acquire(1).await.unwrap();
        let b = pool.acquire(1).await.unwrap();
        assert_ne!(a.ids(), b.ids());
        assert!(pool.acquire(3).await.is_err());
        drop(a);
        let c = pool.acquire(1).await.unwrap();
        assert_eq!(c.ids().len(), 1);
        assert!(pool.acquire(0).await.unwrap().ids().is_empty());
    }
}
