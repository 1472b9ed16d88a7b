//! The data loader the training stages use: shuffles with a seeded RNG per
//! epoch, decodes and augments items on background threads, and hands out
//! batches in a fixed order, `prefetch` batches ahead, so training never
//! waits on data once warm.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use super::augment_ops::{augment_features, augment_image, Image, Op};
use super::dataset::DatasetReader;
use crate::rng::Rng;

/// How to batch one epoch.
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    /// Items per batch.
    pub batch: usize,
    /// Shuffle the order each epoch.
    pub shuffle: bool,
    /// Pipeline seed.
    pub seed: u64,
    /// Hash of the augment stage's name (part of every item's seed).
    pub stage: u64,
    /// Epoch number (from 1).
    pub epoch: u64,
    /// Augmentation applied on the fly.
    pub ops: Vec<Op>,
    /// Worker threads.
    pub workers: usize,
    /// Batches prepared ahead per worker.
    pub prefetch: usize,
    /// Drop a last, smaller batch.
    pub drop_last: bool,
    /// Class-balanced batches of `batch / per_class` classes with
    /// `per_class` items each (for triplet mining); `None` = plain order.
    pub per_class: Option<usize>,
}

/// One batch: values row-major with `shape` (`[N, C, H, W]` for images,
/// `[N, T, F]` for features) and a label per item.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The values.
    pub data: Vec<f32>,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Class labels.
    pub labels: Vec<i64>,
    /// Positions of the items in the split.
    pub items: Vec<u32>,
}

/// Iterates over the batches of one epoch.
pub struct Loader {
    receivers: Vec<Receiver<Result<Batch, String>>>,
    next: usize,
    total: usize,
}

impl Loader {
    /// Starts the workers for one epoch over `data`.
    pub fn new(data: Arc<DatasetReader>, cfg: LoaderConfig) -> Self {
        let mut rng = Rng::from_parts(&[cfg.seed, cfg.stage, cfg.epoch, 0x5348_5546]);
        let batches = match cfg.per_class {
            Some(k) => {
                let labels: Vec<u32> = (0..data.len()).map(|i| data.record(i).label).collect();
                balanced_batches(&labels, cfg.batch, k, &mut rng)
            }
            None => {
                let mut order: Vec<u32> = (0..data.len() as u32).collect();
                if cfg.shuffle {
                    rng.shuffle(&mut order);
                }
                let mut batches: Vec<Vec<u32>> = order
                    .chunks(cfg.batch.max(1))
                    .map(<[u32]>::to_vec)
                    .collect();
                if cfg.drop_last && batches.last().is_some_and(|b| b.len() < cfg.batch) {
                    batches.pop();
                }
                batches
            }
        };
        let total = batches.len();
        let workers = cfg.workers.clamp(1, total.max(1));
        let batches = Arc::new(batches);
        let cfg = Arc::new(cfg);
        let receivers = (0..workers)
            .map(|w| {
                let (tx, rx) = sync_channel(cfg.prefetch.max(1));
                let (data, batches, cfg) = (data.clone(), batches.clone(), cfg.clone());
                std::thread::spawn(move || {
                    for k in (w..batches.len()).step_by(workers) {
                        if tx.send(make_batch(&data, &batches[k], &cfg)).is_err() {
                            return; // The consumer stopped early.
                        }
                    }
                });
                rx
            })
            .collect();
        Self {
            receivers,
            next: 0,
            total,
        }
    }

    /// Batches in the epoch.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether the epoch has no batches.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

impl Iterator for Loader {
    type Item = Result<Batch, String>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.total {
            return None;
        }
        let rx = &self.receivers[self.next % self.receivers.len()];
        self.next += 1;
        Some(
            rx.recv()
                .unwrap_or_else(|_| Err("a loader worker stopped".into())),
        )
    }
}

/// Class-balanced batches (the "P x K" sampler of person re-identification
/// and speaker recipes): each class's items are shuffled, repeated up to a
/// multiple of `k` and cut into groups of `k`; each batch takes groups from
/// `batch / k` distinct classes chosen at random. About one epoch's worth
/// of items; classes run out unevenly, so batches stop when fewer than
/// `batch / k` classes have groups left.
pub fn balanced_batches(labels: &[u32], batch: usize, k: usize, rng: &mut Rng) -> Vec<Vec<u32>> {
    let k = k.max(1);
    let p = (batch / k).max(2);
    let mut by_class: std::collections::BTreeMap<u32, Vec<u32>> = Default::default();
    for (i, &l) in labels.iter().enumerate() {
        by_class.entry(l).or_default().push(i as u32);
    }
    let mut groups: Vec<Vec<Vec<u32>>> = by_class
        .into_values()
        .map(|mut items| {
            rng.shuffle(&mut items);
            let n = items.len().div_ceil(k) * k;
            let padded: Vec<u32> = items.iter().copied().cycle().take(n).collect();
            padded.chunks(k).map(<[u32]>::to_vec).collect()
        })
        .collect();
    let mut batches = Vec::new();
    loop {
        let mut open: Vec<usize> = (0..groups.len())
            .filter(|&c| !groups[c].is_empty())
            .collect();
        if open.len() < p {
            return batches;
        }
        rng.shuffle(&mut open);
        let mut b = Vec::with_capacity(p * k);
        for &c in &open[..p] {
            b.extend(groups[c].pop().expect("open classes have groups"));
        }
        batches.push(b);
    }
}

/// Decodes and augments one item; the RNG depends only on (seed, stage,
/// epoch, item), never on which thread or batch the item lands in.
pub fn load_item(
    data: &DatasetReader,
    i: u32,
    cfg: &LoaderConfig,
) -> Result<(Vec<f32>, Vec<usize>), String> {
    let bytes = data.read(i as usize).map_err(|e| e.to_string())?;
    let mut rng = Rng::from_parts(&[
        cfg.seed,
        cfg.stage,
        cfg.epoch,
        u64::from(data.indices[i as usize]),
    ]);
    if data.info.kind == "image" {
        let s = &data.info.shape;
        let (c, h, w) = (s[0] as usize, s[1] as usize, s[2] as usize);
        if data.info.dtype == "f32" {
            // Materialised by `augment copies = N`: already augmented.
            let values = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect();
            return Ok((values, vec![c, h, w]));
        }
        let mut img = Image {
            c,
            h,
            w,
            data: bytes.iter().map(|&b| f32::from(b)).collect(),
        };
        augment_image(&cfg.ops, &mut img, &mut rng);
        Ok((img.data, vec![c, h, w]))
    } else {
        let bins = data.info.shape[0] as usize;
        let mut feats: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        let frames = augment_features(&cfg.ops, &mut feats, bins, &mut rng);
        Ok((feats, vec![frames, bins]))
    }
}

fn make_batch(data: &DatasetReader, items: &[u32], cfg: &LoaderConfig) -> Result<Batch, String> {
    let loaded: Vec<(Vec<f32>, Vec<usize>)> = items
        .iter()
        .map(|&i| load_item(data, i, cfg))
        .collect::<Result<_, _>>()?;
    // Features of different lengths are cut to the shortest (a
    // `segment-crop` op makes them all equal).
    let min_frames = loaded.iter().map(|(_, s)| s[0]).min().unwrap_or(0);
    let item_shape: Vec<usize> = match loaded.first() {
        Some((_, s)) if s.len() == 2 => vec![min_frames, s[1]],
        Some((_, s)) => s.clone(),
        None => vec![],
    };
    let per_item: usize = item_shape.iter().product();
    let mut out = Vec::with_capacity(per_item * items.len());
    for (v, _) in &loaded {
        out.extend_from_slice(&v[..per_item]);
    }
    let mut shape = vec![items.len()];
    shape.extend(item_shape);
    let labels = items
        .iter()
        .map(|&i| i64::from(data.record(i as usize).label))
        .collect();
    Ok(Batch {
        data: out,
        shape,
        labels,
        items: items.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dataset::{DatasetInfo, DatasetWriter};

    fn dataset(dir: &std::path::Path, n: u32) -> Arc<DatasetReader> {
        let mut w = DatasetWriter::create(&dir.join("d")).unwrap();
        for i in 0..n {
            w.push(&i.to_string(), i % 4, 1, &[(i * 7 % 256) as u8; 3 * 8 * 8])
                .unwrap();
        }
        let info = DatasetInfo::new("image", vec![3, 8, 8], vec!["a".into(); 4]);
        w.finish(info, &[]).unwrap();
        Arc::new(DatasetReader::open_dir(&dir.join("d")).unwrap())
    }

    fn cfg(epoch: u64, workers: usize) -> LoaderConfig {
        LoaderConfig {
            batch: 8,
            shuffle: true,
            seed: 7,
            stage: 11,
            epoch,
            ops: vec![
                Op::Flip { p: 0.5 },
                Op::RandomCrop { padding: 2 },
                Op::ColorJitter {
                    brightness: 0.2,
                    contrast: 0.2,
                },
            ],
            workers,
            prefetch: 2,
            drop_last: false,
            per_class: None,
        }
    }

    #[test]
    fn batches_are_deterministic_per_epoch_and_independent_of_workers() {
        let dir = tempfile::tempdir().unwrap();
        let data = dataset(dir.path(), 37);
        let run = |epoch, workers| {
            Loader::new(data.clone(), cfg(epoch, workers))
                .collect::<Result<Vec<_>, _>>()
                .unwrap()
        };
        let a = run(1, 1);
        assert_eq!(a.len(), 5);
        assert_eq!(a[0].shape, vec![8, 3, 8, 8]);
        assert_eq!(a[4].shape[0], 5);
        assert_eq!(a, run(1, 3), "same epoch, other worker count: same bytes");
        let b = run(2, 2);
        assert_ne!(a[0].items, b[0].items, "another epoch shuffles differently");
        let mut seen: Vec<u32> = b.iter().flat_map(|x| x.items.clone()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..37).collect::<Vec<_>>());
    }

    #[test]
    fn balanced_batches_hold_k_items_of_each_of_p_classes() {
        let labels: Vec<u32> = (0..60).map(|i| i % 5).collect();
        let batches = balanced_batches(&labels, 12, 4, &mut Rng::from_parts(&[1]));
        assert!(batches.len() >= 4, "{}", batches.len());
        for b in &batches {
            assert_eq!(b.len(), 12);
            let mut classes: Vec<u32> = b.iter().map(|&i| labels[i as usize]).collect();
            for chunk in classes.chunks(4) {
                assert!(chunk.iter().all(|&c| c == chunk[0]), "{classes:?}");
            }
            classes.dedup();
            classes.sort_unstable();
            classes.dedup();
            assert_eq!(classes.len(), 3, "three distinct classes");
        }
        let again = balanced_batches(&labels, 12, 4, &mut Rng::from_parts(&[1]));
        assert_eq!(batches, again, "seeded");
    }
}
