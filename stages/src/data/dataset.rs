//! The dataset artifact the data stages write: a folder with
//!
//! - `dataset.json`: kind, dtype, item shape, class names, split sizes and
//!   what was skipped;
//! - `items.bin`: one 24-byte record per item (label u32, shard u32,
//!   offset u64, length u32, frames u32), little-endian;
//! - `ids.txt`: one item id per line (the source path or record key);
//! - `split.bin`: the u32 indices of the items in this output's split
//!   (absent for the whole dataset);
//! - `shards/shard-NNNNN.bin`: item bytes back to back, about 64 MB each.
//!
//! Items stream into shards as they are decoded, so memory stays bounded
//! whatever the dataset's size. Each split output is the same folder plus
//! its `split.bin`; identical blobs are stored once by the object store.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Target shard size.
pub const SHARD_BYTES: u64 = 64 << 20;

/// What the artifact holds, as in `dataset.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DatasetInfo {
    /// Layout version.
    pub format_version: u32,
    /// `image` (C x H x W u8) or `fbank` (frames x bins f32).
    pub kind: String,
    /// `u8` or `f32`.
    pub dtype: String,
    /// Images: `[C, H, W]`; fbank: `[bins]` (frames vary per item).
    pub shape: Vec<u32>,
    /// Class names; labels index into this.
    pub classes: Vec<String>,
    /// Items in the whole dataset.
    pub items: u64,
    /// Name and size of each split.
    pub splits: std::collections::BTreeMap<String, u64>,
    /// This output's split, when it is one.
    pub split: Option<String>,
    /// Files skipped with `on-error = "skip"`.
    pub skipped: u64,
    /// The first few skipped files and why.
    pub skipped_examples: Vec<String>,
    /// Verification trials in `trials.txt` (`label i j` per line, item
    /// indices in the whole dataset).
    #[serde(default)]
    pub trials: u64,
}

impl DatasetInfo {
    /// A fresh description: `image` items are u8, the other kinds f32;
    /// counts, splits and skips are filled in by the writer and the stage.
    pub fn new(kind: &str, shape: Vec<u32>, classes: Vec<String>) -> Self {
        Self {
            format_version: 1,
            kind: kind.into(),
            dtype: if kind == "image" { "u8" } else { "f32" }.into(),
            shape,
            classes,
            items: 0,
            splits: Default::default(),
            split: None,
            skipped: 0,
            skipped_examples: vec![],
            trials: 0,
        }
    }
}

/// One item's place in the shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemRecord {
    /// Class index.
    pub label: u32,
    /// Shard number.
    pub shard: u32,
    /// Byte offset in the shard.
    pub offset: u64,
    /// Byte length.
    pub len: u32,
    /// Frames (fbank), or 1.
    pub frames: u32,
}

const RECORD: usize = 24;

impl ItemRecord {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.label.to_le_bytes());
        out.extend_from_slice(&self.shard.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(&self.frames.to_le_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        let u32_at = |a: usize| u32::from_le_bytes(b[a..a + 4].try_into().expect("4 bytes"));
        Self {
            label: u32_at(0),
            shard: u32_at(4),
            offset: u64::from_le_bytes(b[8..16].try_into().expect("8 bytes")),
            len: u32_at(16),
            frames: u32_at(20),
        }
    }
}

/// Streams items into shards.
pub struct DatasetWriter {
    dir: PathBuf,
    shard: Option<BufWriter<std::fs::File>>,
    shard_no: u32,
    shard_len: u64,
    records: Vec<u8>,
    ids: BufWriter<std::fs::File>,
    count: u64,
}

impl DatasetWriter {
    /// Starts a dataset in the empty folder `dir`.
    pub fn create(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir.join("shards"))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            shard: None,
            shard_no: 0,
            shard_len: 0,
            records: Vec::new(),
            ids: BufWriter::new(std::fs::File::create(dir.join("ids.txt"))?),
            count: 0,
        })
    }

    /// Appends one item.
    pub fn push(&mut self, id: &str, label: u32, frames: u32, bytes: &[u8]) -> std::io::Result<()> {
        if self.shard.is_none() || self.shard_len >= SHARD_BYTES {
            if self.shard.is_some() {
                self.shard_no += 1;
            }
            let path = self
                .dir
                .join(format!("shards/shard-{:05}.bin", self.shard_no));
            if let Some(mut old) = self.shard.replace(BufWriter::with_capacity(
                1 << 20,
                std::fs::File::create(path)?,
            )) {
                old.flush()?;
            }
            self.shard_len = 0;
        }
        self.shard
            .as_mut()
            .expect("opened above")
            .write_all(bytes)?;
        ItemRecord {
            label,
            shard: self.shard_no,
            offset: self.shard_len,
            len: bytes.len() as u32,
            frames,
        }
        .encode(&mut self.records);
        self.shard_len += bytes.len() as u64;
        writeln!(self.ids, "{}", id.replace('\n', " "))?;
        self.count += 1;
        Ok(())
    }

    /// Items so far.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Writes the index files and one folder per split beside `dir` (hard
    /// links to the same shards). Returns the split folders.
    pub fn finish(
        mut self,
        mut info: DatasetInfo,
        splits: &[(String, Vec<u32>)],
    ) -> std::io::Result<Vec<(String, PathBuf)>> {
        if let Some(mut s) = self.shard.take() {
            s.flush()?;
        }
        self.ids.flush()?;
        std::fs::write(self.dir.join("items.bin"), &self.records)?;
        info.items = self.count;
        info.splits = splits
            .iter()
            .map(|(n, v)| (n.clone(), v.len() as u64))
            .collect();
        write_json(&self.dir.join("dataset.json"), &info)?;
        let mut out = Vec::new();
        for (name, indices) in splits {
            let dir = self.dir.with_file_name(format!(
                "{}-{name}",
                self.dir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("dataset")
            ));
            link_tree(&self.dir, &dir)?;
            std::fs::remove_file(dir.join("dataset.json"))?;
            write_json(
                &dir.join("dataset.json"),
                &DatasetInfo {
                    split: Some(name.clone()),
                    ..info.clone()
                },
            )?;
            let bytes: Vec<u8> = indices.iter().flat_map(|i| i.to_le_bytes()).collect();
            std::fs::write(dir.join("split.bin"), bytes)?;
            out.push((name.clone(), dir));
        }
        Ok(out)
    }
}

fn write_json(path: &Path, info: &DatasetInfo) -> std::io::Result<()> {
    std::fs::write(
        path,
        serde_json::to_vec_pretty(info).expect("dataset info serializes"),
    )
}

fn link_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            link_tree(&entry.path(), &dest)?;
        } else {
            std::fs::hard_link(entry.path(), &dest)
                .or_else(|_| std::fs::copy(entry.path(), &dest).map(|_| ()))?;
        }
    }
    Ok(())
}

/// Reads a dataset artifact: a folder on disk, or a stored tree whose files
/// live in the object store (`file(rel)` maps a relative path to a file).
pub struct DatasetReader {
    /// What the artifact holds.
    pub info: DatasetInfo,
    records: Vec<ItemRecord>,
    /// Item indices of this split (all items when it is the whole dataset).
    pub indices: Vec<u32>,
    shards: Vec<PathBuf>,
}

impl DatasetReader {
    /// Opens an artifact through `file`, which resolves relative paths.
    pub fn open(file: &dyn Fn(&str) -> Option<PathBuf>) -> Result<Self, String> {
        let read = |rel: &str| -> Result<Vec<u8>, String> {
            let p = file(rel).ok_or_else(|| format!("the dataset has no `{rel}`"))?;
            std::fs::read(&p).map_err(|e| format!("failed to read `{}`: {e}", p.display()))
        };
        let info: DatasetInfo = serde_json::from_slice(&read("dataset.json")?)
            .map_err(|e| format!("bad dataset.json: {e}"))?;
        let items = read("items.bin")?;
        if items.len() % RECORD != 0 {
            return Err(format!(
                "items.bin has {} bytes, not a whole number of {RECORD}-byte records",
                items.len()
            ));
        }
        let records: Vec<ItemRecord> = items.chunks_exact(RECORD).map(ItemRecord::decode).collect();
        let indices: Vec<u32> = match file("split.bin") {
            Some(_) => {
                let split = read("split.bin")?;
                if split.len() % 4 != 0 {
                    return Err("split.bin is not a list of u32 item indices".into());
                }
                split
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect()
            }
            None => (0..records.len() as u32).collect(),
        };
        if let Some(i) = indices.iter().find(|&&i| i as usize >= records.len()) {
            return Err(format!(
                "split.bin names item {i}, but the dataset has {} items",
                records.len()
            ));
        }
        let n_shards = records.iter().map(|r| r.shard + 1).max().unwrap_or(0);
        let shards = (0..n_shards)
            .map(|s| {
                file(&format!("shards/shard-{s:05}.bin"))
                    .ok_or_else(|| format!("the dataset has no shard {s}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            info,
            records,
            indices,
            shards,
        })
    }

    /// Opens an artifact folder on disk.
    pub fn open_dir(dir: &Path) -> Result<Self, String> {
        Self::open(&|rel| Some(dir.join(rel)).filter(|p| p.exists()))
    }

    /// Items in this split.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether the split is empty.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The record of the split's `i`-th item.
    pub fn record(&self, i: usize) -> ItemRecord {
        self.records[self.indices[i] as usize]
    }

    /// The bytes of the split's `i`-th item (one positioned read).
    pub fn read(&self, i: usize) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let r = self.record(i);
        let f = std::fs::File::open(&self.shards[r.shard as usize])?;
        let mut buf = vec![0u8; r.len as usize];
        f.read_exact_at(&mut buf, r.offset)?;
        Ok(buf)
    }
}

/// Checks a dataset folder as a typed output: `dataset.json` of a known
/// format version and kind, `items.bin` whole 24-byte records (as many as
/// `items`) whose labels index `classes` and whose bytes lie inside their
/// shard with the size the item shape needs, one id per item, a
/// `split.bin` of item indices, and `trials` lines of `label i j`.
pub fn check_dir(dir: &Path) -> Result<(), String> {
    let read = |rel: &str| std::fs::read(dir.join(rel)).map_err(|e| format!("`{rel}`: {e}"));
    let info: DatasetInfo =
        serde_json::from_slice(&read("dataset.json")?).map_err(|e| format!("dataset.json: {e}"))?;
    if info.format_version != 1 {
        return Err(format!(
            "dataset.json: format-version {} is not 1",
            info.format_version
        ));
    }
    let item_bytes: u64 = match (info.kind.as_str(), info.dtype.as_str(), &info.shape[..]) {
        ("image", "u8", [c, h, w]) => u64::from(*c) * u64::from(*h) * u64::from(*w),
        ("fbank", "f32", [bins]) => u64::from(*bins) * 4,
        (k, d, s) => {
            return Err(format!(
                "dataset.json: kind `{k}` with dtype `{d}` and shape {s:?} is not `image` u8 [C, H, W] or `fbank` f32 [bins]"
            ))
        }
    };
    if item_bytes == 0 {
        return Err("dataset.json: the item shape has a 0".into());
    }
    let items = read("items.bin")?;
    if items.len() % RECORD != 0 || (items.len() / RECORD) as u64 != info.items {
        return Err(format!(
            "items.bin has {} bytes: not {} records of {RECORD} bytes (`items` in dataset.json)",
            items.len(),
            info.items
        ));
    }
    let mut shard_len = Vec::new();
    for (i, rec) in items
        .chunks_exact(RECORD)
        .map(ItemRecord::decode)
        .enumerate()
    {
        if rec.label as usize >= info.classes.len() {
            return Err(format!(
                "item {i}: label {} is not an index into `classes`",
                rec.label
            ));
        }
        while shard_len.len() <= rec.shard as usize {
            let rel = format!("shards/shard-{:05}.bin", shard_len.len());
            let len = std::fs::metadata(dir.join(&rel)).map_err(|e| format!("`{rel}`: {e}"))?;
            shard_len.push(len.len());
        }
        let per_frame = if info.kind == "image" {
            1
        } else {
            u64::from(rec.frames)
        };
        if u64::from(rec.len) != item_bytes * per_frame || rec.frames == 0 {
            return Err(format!(
                "item {i}: {} bytes and {} frames do not fit the item shape {:?}",
                rec.len, rec.frames, info.shape
            ));
        }
        if rec.offset + u64::from(rec.len) > shard_len[rec.shard as usize] {
            return Err(format!(
                "item {i}: its bytes lie past the end of shard {}",
                rec.shard
            ));
        }
    }
    let ids = String::from_utf8(read("ids.txt")?).map_err(|_| "ids.txt is not UTF-8")?;
    if ids.lines().count() as u64 != info.items {
        return Err(format!(
            "ids.txt has {} lines, not {}",
            ids.lines().count(),
            info.items
        ));
    }
    if dir.join("split.bin").exists() {
        let split = read("split.bin")?;
        let bad = split.len() % 4 != 0
            || split.chunks_exact(4).any(|c| {
                u64::from(u32::from_le_bytes(c.try_into().expect("4 bytes"))) >= info.items
            });
        if bad {
            return Err("split.bin is not a list of u32 item indices".into());
        }
    }
    if info.trials > 0 {
        let text = String::from_utf8(read("trials.txt")?).map_err(|_| "trials.txt is not UTF-8")?;
        for (no, line) in text.lines().enumerate() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let ok = matches!(f[..], [_, i, j]
                if [i, j].iter().all(|x| x.parse::<u64>().is_ok_and(|x| x < info.items)));
            if !ok {
                return Err(format!(
                    "trials.txt line {}: `{line}` is not `LABEL I J`",
                    no + 1
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_dir_names_what_is_wrong_in_a_dataset() {
        let dir = tempfile::tempdir().unwrap();
        let ds = dir.path().join("d");
        let mut w = DatasetWriter::create(&ds).unwrap();
        w.push("a", 0, 1, &[1, 2, 3, 4]).unwrap();
        w.push("b", 1, 1, &[5, 6, 7, 8]).unwrap();
        let info = DatasetInfo::new("image", vec![1, 2, 2], vec!["x".into(), "y".into()]);
        w.finish(info, &[]).unwrap();
        check_dir(&ds).unwrap();
        let items = std::fs::read(ds.join("items.bin")).unwrap();
        std::fs::write(ds.join("items.bin"), &items[..30]).unwrap();
        assert!(check_dir(&ds)
            .unwrap_err()
            .contains("items.bin has 30 bytes"));
        let mut bad = items.clone();
        bad[0] = 7; // label 7 of 2 classes
        std::fs::write(ds.join("items.bin"), &bad).unwrap();
        assert!(check_dir(&ds).unwrap_err().contains("item 0: label 7"));
        let mut bad = items.clone();
        bad[8] = 200; // offset past the shard
        std::fs::write(ds.join("items.bin"), &bad).unwrap();
        assert!(check_dir(&ds)
            .unwrap_err()
            .contains("past the end of shard 0"));
        std::fs::write(ds.join("items.bin"), &items).unwrap();
        std::fs::write(ds.join("split.bin"), 9u32.to_le_bytes()).unwrap();
        assert!(check_dir(&ds).unwrap_err().contains("split.bin"));
    }

    #[test]
    fn the_reader_refuses_a_torn_item_table_and_a_split_index_out_of_range() {
        let dir = tempfile::tempdir().unwrap();
        let ds = dir.path().join("d");
        let mut w = DatasetWriter::create(&ds).unwrap();
        w.push("a", 0, 1, &[1, 2, 3, 4]).unwrap();
        let info = DatasetInfo::new("image", vec![1, 2, 2], vec!["x".into()]);
        w.finish(info, &[]).unwrap();
        std::fs::write(ds.join("split.bin"), 5u32.to_le_bytes()).unwrap();
        let e = DatasetReader::open_dir(&ds).err().unwrap();
        assert!(
            e.contains("split.bin names item 5, but the dataset has 1 items"),
            "{e}"
        );
        std::fs::remove_file(ds.join("split.bin")).unwrap();
        let mut items = std::fs::read(ds.join("items.bin")).unwrap();
        items.push(0);
        std::fs::write(ds.join("items.bin"), &items).unwrap();
        let e = DatasetReader::open_dir(&ds).err().unwrap();
        assert!(e.contains("items.bin has 25 bytes"), "{e}");
    }

    #[test]
    fn writes_and_reads_back_with_splits() {
        let dir = tempfile::tempdir().unwrap();
        let ds = dir.path().join("dataset");
        let mut w = DatasetWriter::create(&ds).unwrap();
        for i in 0..10u32 {
            w.push(&format!("item{i}"), i % 3, 1, &[i as u8; 5])
                .unwrap();
        }
        let info = DatasetInfo::new(
            "image",
            vec![1, 1, 5],
            vec!["a".into(), "b".into(), "c".into()],
        );
        let splits = w
            .finish(
                info,
                &[("train".into(), vec![0, 2, 4]), ("test".into(), vec![9])],
            )
            .unwrap();
        let all = DatasetReader::open_dir(&ds).unwrap();
        assert_eq!((all.len(), all.info.items), (10, 10));
        assert_eq!(all.read(7).unwrap(), vec![7u8; 5]);
        let train = DatasetReader::open_dir(&splits[0].1).unwrap();
        assert_eq!(train.info.split.as_deref(), Some("train"));
        assert_eq!(train.len(), 3);
        assert_eq!(
            (train.read(2).unwrap(), train.record(2).label),
            (vec![4u8; 5], 1)
        );
    }
}
