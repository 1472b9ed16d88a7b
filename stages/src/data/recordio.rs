//! MXNet/dmlc RecordIO as InsightFace ships MS1M (`train.rec`, `train.idx`,
//! `property`): records read at random through the index, one at a time, so
//! a 5.8M-image file is never held in memory.
//!
//! Physical record: `u32 magic 0xCED7230A`, `u32 lrec = cflag << 29 | len`,
//! payload, zero padding to 4 bytes. A payload that contains the magic at a
//! 4-aligned offset is split there (cflag 1 start, 2 middle, 3 end) and the
//! magic dropped; the reader puts it back. Payload = IRHeader (`u32 flag,
//! f32 label, u64 id, u64 id2`), then `flag` f32 labels, then the image.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

const MAGIC: u32 = 0xCED7_230A;
const LEN_MASK: u32 = (1 << 29) - 1;

/// Why a RecordIO file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A read failed.
    #[error("failed to read `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The bytes are not what the format says.
    #[error("`{path}` at byte {offset}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// Where.
        offset: u64,
        /// What is wrong.
        message: String,
    },
}

/// The fixed header in front of every payload.
#[derive(Debug, Clone, PartialEq)]
pub struct IrHeader {
    /// 0: scalar label in `label`; N > 0: N labels in `labels`.
    pub flag: u32,
    /// The scalar label.
    pub label: f32,
    /// Record id.
    pub id: u64,
    /// Second id.
    pub id2: u64,
    /// The label array (`flag` entries).
    pub labels: Vec<f32>,
}

impl IrHeader {
    /// The class label: `labels[0]` when there is an array, else `label`.
    pub fn class(&self) -> f32 {
        self.labels.first().copied().unwrap_or(self.label)
    }
}

/// Packs a header and image bytes into a payload (like `mx.recordio.pack`).
pub fn pack(header: &IrHeader, image: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + header.labels.len() * 4 + image.len());
    let flag = header.labels.len() as u32;
    out.extend_from_slice(&flag.to_le_bytes());
    out.extend_from_slice(&(if flag > 0 { 0.0 } else { header.label }).to_le_bytes());
    out.extend_from_slice(&header.id.to_le_bytes());
    out.extend_from_slice(&header.id2.to_le_bytes());
    for l in &header.labels {
        out.extend_from_slice(&l.to_le_bytes());
    }
    out.extend_from_slice(image);
    out
}

/// Splits a payload into its header and image bytes.
pub fn unpack(payload: &[u8]) -> Result<(IrHeader, &[u8]), String> {
    if payload.len() < 24 {
        return Err(format!(
            "payload of {} bytes is shorter than the 24-byte IRHeader",
            payload.len()
        ));
    }
    let u32_at = |a: usize| u32::from_le_bytes(payload[a..a + 4].try_into().expect("4 bytes"));
    let u64_at = |a: usize| u64::from_le_bytes(payload[a..a + 8].try_into().expect("8 bytes"));
    let flag = u32_at(0);
    let end = 24 + flag as usize * 4;
    if payload.len() < end {
        return Err(format!(
            "IRHeader says {flag} labels but the payload is {} bytes",
            payload.len()
        ));
    }
    let labels = (0..flag as usize)
        .map(|i| f32::from_le_bytes(payload[24 + i * 4..28 + i * 4].try_into().expect("4 bytes")))
        .collect();
    let header = IrHeader {
        flag,
        label: f32::from_bits(u32_at(4)),
        id: u64_at(8),
        id2: u64_at(16),
        labels,
    };
    Ok((header, &payload[end..]))
}

/// Writes a `.rec` and its `.idx`.
pub struct RecordWriter {
    rec: std::io::BufWriter<File>,
    idx: std::io::BufWriter<File>,
    pos: u64,
}

impl RecordWriter {
    /// Creates `rec` and `idx`.
    pub fn create(rec: &Path, idx: &Path) -> std::io::Result<Self> {
        Ok(Self {
            rec: std::io::BufWriter::new(File::create(rec)?),
            idx: std::io::BufWriter::new(File::create(idx)?),
            pos: 0,
        })
    }

    /// Appends a record under `key`, splitting it where it holds the magic.
    pub fn write(&mut self, key: u64, payload: &[u8]) -> std::io::Result<()> {
        writeln!(self.idx, "{key}\t{}", self.pos)?;
        let magic = MAGIC.to_le_bytes();
        let cuts: Vec<usize> = (0..payload.len().saturating_sub(3))
            .step_by(4)
            .filter(|&i| payload[i..i + 4] == magic)
            .collect();
        let mut start = 0;
        for (n, &cut) in cuts.iter().enumerate() {
            self.physical(if n == 0 { 1 } else { 2 }, &payload[start..cut])?;
            start = cut + 4;
        }
        self.physical(if cuts.is_empty() { 0 } else { 3 }, &payload[start..])
    }

    fn physical(&mut self, cflag: u32, part: &[u8]) -> std::io::Result<()> {
        self.rec.write_all(&MAGIC.to_le_bytes())?;
        self.rec
            .write_all(&((cflag << 29) | part.len() as u32).to_le_bytes())?;
        self.rec.write_all(part)?;
        let pad = (4 - part.len() % 4) % 4;
        self.rec.write_all(&[0u8; 3][..pad])?;
        self.pos += 8 + (part.len() + pad) as u64;
        Ok(())
    }

    /// Flushes both files.
    pub fn finish(mut self) -> std::io::Result<()> {
        self.rec.flush()?;
        self.idx.flush()
    }
}

/// Random access to a `.rec` through its `.idx`.
pub struct RecordReader {
    path: PathBuf,
    file: File,
    /// (key, offset), in index order.
    pub index: Vec<(u64, u64)>,
}

impl RecordReader {
    /// Opens `rec` with the index `idx`.
    pub fn open(rec: &Path, idx: &Path) -> Result<Self, RecordError> {
        fn io(path: &Path) -> impl Fn(std::io::Error) -> RecordError + '_ {
            move |source| RecordError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
        let file = File::open(rec).map_err(io(rec))?;
        let mut index = Vec::new();
        for (n, line) in BufReader::new(File::open(idx).map_err(io(idx))?)
            .lines()
            .enumerate()
        {
            let line = line.map_err(io(idx))?;
            if line.trim().is_empty() {
                continue;
            }
            let parsed = line
                .split_once('\t')
                .and_then(|(k, o)| Some((k.trim().parse().ok()?, o.trim().parse().ok()?)));
            let entry = parsed.ok_or_else(|| RecordError::Format {
                path: idx.to_path_buf(),
                offset: n as u64 + 1,
                message: format!("line {} is not `key<TAB>offset`: {line:?}", n + 1),
            })?;
            index.push(entry);
        }
        Ok(Self {
            path: rec.to_path_buf(),
            file,
            index,
        })
    }

    /// Opens `rec` for reads at known offsets, without an index.
    pub fn open_data(rec: &Path) -> Result<Self, RecordError> {
        let file = File::open(rec).map_err(|source| RecordError::Io {
            path: rec.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: rec.to_path_buf(),
            file,
            index: Vec::new(),
        })
    }

    /// Reads the logical record that starts at `offset`, with positioned
    /// reads: a shared reader serves many threads at once.
    pub fn read_at(&self, offset: u64) -> Result<Vec<u8>, RecordError> {
        use std::os::unix::fs::FileExt;
        let io = |source| RecordError::Io {
            path: self.path.clone(),
            source,
        };
        let mut out = Vec::new();
        let mut at = offset;
        loop {
            let mut head = [0u8; 8];
            self.file.read_exact_at(&mut head, at).map_err(io)?;
            let magic = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
            if magic != MAGIC {
                return Err(RecordError::Format {
                    path: self.path.clone(),
                    offset: at,
                    message: format!("bad magic {magic:#010x} (expected 0xced7230a)"),
                });
            }
            let lrec = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
            let (cflag, len) = (lrec >> 29, (lrec & LEN_MASK) as usize);
            let start = out.len();
            out.resize(start + len, 0);
            self.file
                .read_exact_at(&mut out[start..], at + 8)
                .map_err(io)?;
            at += 8 + ((len + 3) & !3) as u64;
            match cflag {
                0 | 3 => return Ok(out),
                1 | 2 => out.extend_from_slice(&MAGIC.to_le_bytes()),
                _ => {
                    return Err(RecordError::Format {
                        path: self.path.clone(),
                        offset: at,
                        message: format!("bad cflag {cflag}"),
                    })
                }
            }
        }
    }

    /// Reads the record with `key`.
    pub fn read_key(&self, key: u64) -> Result<Vec<u8>, RecordError> {
        let offset = self
            .index
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, o)| *o)
            .ok_or_else(|| RecordError::Format {
                path: self.path.clone(),
                offset: 0,
                message: format!("key {key} is not in the index"),
            })?;
        self.read_at(offset)
    }
}

/// One image of an InsightFace `.rec`: its key and class.
#[derive(Debug, Clone, PartialEq)]
pub struct RecItem {
    /// Record key.
    pub key: u64,
    /// Byte offset of the record.
    pub offset: u64,
    /// Class id.
    pub class: u32,
}

/// Lists the images of an InsightFace package: with a header record 0
/// (`flag > 0`), images are keys `1..label[0]`; otherwise every key is an
/// image. Reads every header once (payload bytes are skipped by seeking
/// only when the whole record must be read).
pub fn list_images(reader: &RecordReader) -> Result<Vec<RecItem>, RecordError> {
    let path = reader.path.clone();
    let fmt = |offset, message| RecordError::Format {
        path: path.clone(),
        offset,
        message,
    };
    let first = reader.index.first().copied();
    let mut keys: Vec<(u64, u64)> = reader.index.clone();
    if let Some((0, off)) = first {
        let payload = reader.read_at(off)?;
        let (h, _) = unpack(&payload).map_err(|m| fmt(off, m))?;
        if h.flag > 0 {
            let end = h.labels[0] as u64;
            keys.retain(|(k, _)| *k >= 1 && *k < end);
        }
    }
    let mut items = Vec::with_capacity(keys.len());
    for (key, offset) in keys {
        let payload = reader.read_at(offset)?;
        let (h, _) = unpack(&payload).map_err(|m| fmt(offset, m))?;
        let class = h.class();
        if class < 0.0 || class.fract() != 0.0 {
            return Err(fmt(
                offset,
                format!("record {key} has label {class}, not a class id"),
            ));
        }
        items.push(RecItem {
            key,
            offset,
            class: class as u32,
        });
    }
    Ok(items)
}

/// Reads `property` (`num_classes,H,W`).
pub fn read_property(path: &Path) -> Result<(u32, u32, u32), RecordError> {
    let text = std::fs::read_to_string(path).map_err(|source| RecordError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let parts: Vec<u32> = text
        .trim()
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    match parts[..] {
        [c, h, w] => Ok((c, h, w)),
        _ => Err(RecordError::Format {
            path: path.to_path_buf(),
            offset: 0,
            message: format!("expected `num_classes,H,W`, found {:?}", text.trim()),
        }),
    }
}

/// Writes an InsightFace-style package: header record 0, images grouped by
/// class (keys 1..=N), one identity record per class, and `property`.
pub fn write_insightface(
    dir: &Path,
    images: &[(u32, Vec<u8>)],
    size: (u32, u32),
    scalar_labels: bool,
) -> std::io::Result<()> {
    let mut sorted: Vec<&(u32, Vec<u8>)> = images.iter().collect();
    sorted.sort_by_key(|(c, _)| *c);
    let n = sorted.len() as u64;
    let classes: Vec<u32> = {
        let mut c: Vec<u32> = sorted.iter().map(|(c, _)| *c).collect();
        c.dedup();
        c
    };
    let mut w = RecordWriter::create(&dir.join("train.rec"), &dir.join("train.idx"))?;
    let header = |labels: Vec<f32>| IrHeader {
        flag: labels.len() as u32,
        label: 0.0,
        id: 0,
        id2: 0,
        labels,
    };
    w.write(
        0,
        &pack(
            &header(vec![(n + 1) as f32, (n + 1 + classes.len() as u64) as f32]),
            &[],
        ),
    )?;
    for (i, (class, jpeg)) in sorted.iter().enumerate() {
        let h = if scalar_labels {
            IrHeader {
                flag: 0,
                label: *class as f32,
                id: i as u64 + 1,
                id2: 0,
                labels: vec![],
            }
        } else {
            IrHeader {
                id: i as u64 + 1,
                ..header(vec![*class as f32, 0.0])
            }
        };
        w.write(i as u64 + 1, &pack(&h, jpeg))?;
    }
    for (j, class) in classes.iter().enumerate() {
        let first = sorted
            .iter()
            .position(|(c, _)| c == class)
            .expect("class present") as u64
            + 1;
        let last = sorted
            .iter()
            .rposition(|(c, _)| c == class)
            .expect("class present") as u64
            + 2;
        w.write(
            n + 1 + j as u64,
            &pack(&header(vec![first as f32, last as f32]), &[]),
        )?;
    }
    w.finish()?;
    std::fs::write(
        dir.join("property"),
        format!("{},{},{}\n", classes.len(), size.0, size.1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_with_the_magic_inside_are_split_and_reassembled() {
        let dir = tempfile::tempdir().unwrap();
        let (rec, idx) = (dir.path().join("a.rec"), dir.path().join("a.idx"));
        let magic = MAGIC.to_le_bytes();
        let mut tricky = vec![1u8, 2, 3, 4];
        tricky.extend_from_slice(&magic);
        tricky.extend_from_slice(&[9, 9, 9, 9]);
        tricky.extend_from_slice(&magic);
        tricky.push(7);
        let payloads: Vec<Vec<u8>> = vec![b"hello".to_vec(), tricky, vec![], magic.to_vec()];
        let mut w = RecordWriter::create(&rec, &idx).unwrap();
        for (k, p) in payloads.iter().enumerate() {
            w.write(k as u64, p).unwrap();
        }
        w.finish().unwrap();
        let bytes = std::fs::read(&rec).unwrap();
        assert_eq!(&bytes[..8], &[0x0a, 0x23, 0xd7, 0xce, 5, 0, 0, 0]);
        let r = RecordReader::open(&rec, &idx).unwrap();
        for (k, p) in payloads.iter().enumerate() {
            assert_eq!(&r.read_key(k as u64).unwrap(), p, "record {k}");
        }
    }

    #[test]
    fn bad_magic_names_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (rec, idx) = (dir.path().join("a.rec"), dir.path().join("a.idx"));
        std::fs::write(&rec, [0u8; 16]).unwrap();
        std::fs::write(&idx, "0\t0\n").unwrap();
        let err = RecordReader::open(&rec, &idx)
            .unwrap()
            .read_key(0)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a.rec` at byte 0: bad magic 0x00000000"),
            "{err}"
        );
    }

    #[test]
    fn insightface_layout_round_trips_with_both_label_styles() {
        for scalar in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let images: Vec<(u32, Vec<u8>)> = vec![
                (1, vec![1]),
                (0, vec![2, 2]),
                (1, vec![3; 3]),
                (2, vec![4; 4]),
            ];
            write_insightface(dir.path(), &images, (28, 28), scalar).unwrap();
            let r =
                RecordReader::open(&dir.path().join("train.rec"), &dir.path().join("train.idx"))
                    .unwrap();
            let items = list_images(&r).unwrap();
            let classes: Vec<u32> = items.iter().map(|i| i.class).collect();
            assert_eq!(classes, [0, 1, 1, 2]);
            let (h, img) = {
                let p = r.read_at(items[0].offset).unwrap();
                let (h, img) = unpack(&p).unwrap();
                (h, img.to_vec())
            };
            assert_eq!((h.class(), img), (0.0, vec![2, 2]));
            assert_eq!(
                read_property(&dir.path().join("property")).unwrap(),
                (3, 28, 28)
            );
        }
    }
}
