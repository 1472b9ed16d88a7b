//! Batches from the data loader to the device. On CPU a batch becomes a
//! tensor where it is. On CUDA a feeder thread copies each batch into
//! page-locked (pinned) host memory while the GPU works on the previous
//! one, and the training loop only queues an asynchronous host-to-device
//! copy, so the CPU never waits for a transfer and the GPU never waits for
//! the CPU to convert a batch.

use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use tch::{Device, Kind, Tensor};
use tuneflow_stages::data::loader::{Batch, Loader};

use crate::layout::Layout;

/// Loader worker threads for a training stage on `device`: two on CPU
/// (libtorch's own threads need the cores), and on CUDA every core but the
/// one driving the GPU, up to 16. The batches do not depend on it.
pub fn loader_workers(device: Device) -> usize {
    if device.is_cuda() {
        std::thread::available_parallelism().map_or(2, |n| (n.get() - 1).clamp(2, 16))
    } else {
        2
    }
}

/// A batch on the device: inputs, labels, and how many items.
pub struct OnDevice {
    /// Inputs, in the layout the network uses.
    pub x: Tensor,
    /// Labels (int64).
    pub y: Tensor,
    /// Items in the batch.
    pub len: usize,
}

/// A batch as tensors on `device`, copied there at once (extraction;
/// training uses a [`Feed`]).
pub fn to_tensors(b: &Batch, device: Device) -> (Tensor, Tensor) {
    let (x, y) = host_tensors(b);
    (x.to(device), y.to(device))
}

/// A batch as tensors on the host (inputs f32 in the batch's shape).
fn host_tensors(b: &Batch) -> (Tensor, Tensor) {
    let shape: Vec<i64> = b.shape.iter().map(|&d| d as i64).collect();
    (
        Tensor::from_slice(&b.data).reshape(shape),
        Tensor::from_slice(&b.labels),
    )
}

enum Source {
    Direct(Loader),
    Pinned {
        rx: Option<Receiver<Result<(Tensor, Tensor), String>>>,
        feeder: Option<JoinHandle<()>>,
    },
}

/// The batches of one epoch, on the device.
pub struct Feed {
    source: Source,
    device: Device,
    layout: Layout,
}

impl Feed {
    /// Feeds `loader`'s batches to `device` in `layout`.
    pub fn new(loader: Loader, device: Device, layout: Layout) -> Self {
        let source = if device.is_cuda() {
            let (tx, rx) = sync_channel(2);
            let feeder = std::thread::spawn(move || {
                for batch in loader {
                    let pinned = batch.map(|b| {
                        let (x, y) = host_tensors(&b);
                        (pin(x, device), pin(y, device))
                    });
                    if tx.send(pinned).is_err() {
                        return; // The loop stopped early.
                    }
                }
            });
            Source::Pinned {
                rx: Some(rx),
                feeder: Some(feeder),
            }
        } else {
            Source::Direct(loader)
        };
        Self {
            source,
            device,
            layout,
        }
    }
}

/// `t` in pinned memory; as it is if pinning fails (then the copy to the
/// device waits for the transfer, which is only slower). `_pin_memory` is
/// what `pin_memory` calls, without its warning that passing a device is
/// deprecated (tch has no way to pass none).
fn pin(t: Tensor, device: Device) -> Tensor {
    t.f_internal_pin_memory(device).unwrap_or(t)
}

impl Iterator for Feed {
    type Item = Result<OnDevice, String>;

    fn next(&mut self) -> Option<Self::Item> {
        let (x, y) = match &mut self.source {
            Source::Direct(loader) => match loader.next()? {
                Ok(b) => host_tensors(&b),
                Err(e) => return Some(Err(e)),
            },
            Source::Pinned { rx, feeder } => match rx.as_ref()?.recv() {
                Ok(Ok(xy)) => xy,
                Ok(Err(e)) => return Some(Err(e)),
                // The feeder is done: at the end of the epoch, or because
                // it panicked, which must not pass for a short epoch.
                Err(_) => {
                    *rx = None;
                    let joined = feeder.take().map_or(Ok(()), JoinHandle::join);
                    return joined
                        .err()
                        .map(|_| Err("the thread feeding batches to the GPU failed".to_owned()));
                }
            },
        };
        let len = y.size()[0] as usize;
        let (x, y) = if self.device.is_cuda() {
            // Asynchronous from pinned memory: ordered on the stream before
            // the kernels that read them, and libtorch keeps the host
            // block until the copy is done.
            (
                x.to_device_(self.device, Kind::Float, true, false),
                y.to_device_(self.device, Kind::Int64, true, false),
            )
        } else {
            (x, y)
        };
        Some(Ok(OnDevice {
            x: self.layout.input(x),
            y,
            len,
        }))
    }
}

impl Drop for Feed {
    /// Stops the feeder (its next send fails) and waits for it, so no
    /// thread is inside libtorch when the process exits.
    fn drop(&mut self) {
        if let Source::Pinned { rx, feeder } = &mut self.source {
            drop(rx.take());
            if let Some(f) = feeder.take() {
                let _ = f.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpu_feed_gives_the_loader_batches_as_tensors() {
        let b = Batch {
            data: (0..24).map(|v| v as f32).collect(),
            shape: vec![2, 3, 2, 2],
            labels: vec![4, 7],
            items: vec![0, 1],
        };
        let (x, y) = host_tensors(&b);
        assert_eq!(x.size(), [2, 3, 2, 2]);
        assert_eq!(x.double_value(&[1, 2, 1, 0]), 22.0);
        assert_eq!(Vec::<i64>::try_from(&y).unwrap(), [4, 7]);
        assert_eq!(loader_workers(Device::Cpu), 2);
        // Without CUDA, pinning fails and the tensor passes unchanged.
        if !tch::Cuda::is_available() {
            assert!(pin(x.shallow_clone(), Device::Cuda(0)).equal(&x));
        }
    }
}
