//! MXNet/dmlc RecordIO as InsightFace ships MS1M (`train.rec`, `train.idx`,
//! `property`): records read at random through the index, one at a time, so
//! a 5.8M-image file is never held in memory.
//!
//! Physical record: `u32 magic 0xCED7230A`, `u32 lrec = cflag << 29 | len`,
//! payload, zero padding to 4 bytes. A payload that contains the magic at a
//! 4-aligned offset is split there (cflag 1 start, 2 middle, 3 end) and the
//! magic dropped; the reader puts it back. Payload = IRHeader (`u32 flag,
//! f32 label, u64 id, u64 id2`), then `flag` f32 labels, then the image.
//!
//! The files are untrusted (issue #11): every length is checked against
//! the file's size before anything is allocated, every index offset is
//! checked when the index is read, a record must be followed by another
//! record or the end of the file (which catches a wrong length that stays
//! inside the file), and every error names the file, the record and the
//! byte offset. Since a payload never holds the magic at a 4-aligned
//! offset, a 4-aligned magic always starts a record: a scan resumes there
//! after a bad record.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::error::{DataError, FormatError, Skipped};

const MAGIC: u32 = 0xCED7_230A;
const LEN_MASK: u32 = (1 << 29) - 1;

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

/// Splits a payload into its header and image bytes; offsets in errors
/// are relative to the payload.
pub fn unpack(payload: &[u8]) -> Result<(IrHeader, &[u8]), FormatError> {
    if payload.len() < 24 {
        return Err(FormatError::at(
            0,
            format!(
                "payload of {} bytes is shorter than the 24-byte IRHeader",
                payload.len()
            ),
        ));
    }
    let u32_at = |a: usize| u32::from_le_bytes(payload[a..a + 4].try_into().expect("4 bytes"));
    let u64_at = |a: usize| u64::from_le_bytes(payload[a..a + 8].try_into().expect("8 bytes"));
    let flag = u32_at(0);
    let end = 24 + flag as usize * 4;
    if payload.len() < end {
        return Err(FormatError::at(
            0,
            format!(
                "IRHeader says {flag} labels but the payload is {} bytes",
                payload.len()
            ),
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

/// Where a physical record's header says its payload is.
struct Part {
    cflag: u32,
    /// Where the payload starts.
    body: u64,
    len: u64,
}

/// Reads `.rec` records at known offsets (through a `.idx`, or a scan).
pub struct RecordReader {
    path: PathBuf,
    file: File,
    /// The `.rec` file's size: no read may go past it.
    len: u64,
    /// (key, offset), in index order.
    pub index: Vec<(u64, u64)>,
}

/// The records a scan found, and those it skipped.
#[derive(Debug, Default)]
pub struct Scan {
    /// (position, offset) of each readable record.
    pub records: Vec<(u64, u64)>,
    /// Unreadable records, with `skip`.
    pub skipped: Skipped,
}

impl RecordReader {
    /// Opens `rec` with the index `idx`, checking every line: `key<TAB>
    /// offset`, an offset inside the `.rec` where a record can start, and
    /// no key listed twice.
    pub fn open(rec: &Path, idx: &Path) -> Result<Self, DataError> {
        let mut reader = Self::open_data(rec)?;
        let text = std::fs::read(idx).map_err(|e| DataError::io("read", idx, e))?;
        let mut lines = Vec::new();
        for (n, line) in text.split(|&b| b == b'\n').enumerate() {
            let line_no = n as u64 + 1;
            let line = String::from_utf8_lossy(line);
            if line.trim().is_empty() {
                continue;
            }
            let parsed = line
                .split_once('\t')
                .and_then(|(k, o)| Some((k.trim().parse().ok()?, o.trim().parse().ok()?)));
            let Some((key, offset)) = parsed else {
                return Err(DataError::line(
                    idx,
                    line_no,
                    format!("expected `key<TAB>offset`, found {:?}", truncate(&line)),
                ));
            };
            reader
                .check_offset(offset)
                .map_err(|m| DataError::line(idx, line_no, format!("record {key}: {m}")))?;
            reader.index.push((key, offset));
            lines.push((key, line_no));
        }
        lines.sort_unstable();
        if let Some(w) = lines.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(DataError::line(
                idx,
                w[1].1,
                format!("key {} is listed again (first on line {})", w[0].0, w[0].1),
            ));
        }
        Ok(reader)
    }

    /// Opens `rec` for reads at known offsets, without an index.
    pub fn open_data(rec: &Path) -> Result<Self, DataError> {
        let file = File::open(rec).map_err(|e| DataError::io("open", rec, e))?;
        let len = file
            .metadata()
            .map_err(|e| DataError::io("stat", rec, e))?
            .len();
        Ok(Self {
            path: rec.to_path_buf(),
            file,
            len,
            index: Vec::new(),
        })
    }

    /// The `.rec` file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `.rec` file's size in bytes.
    pub fn file_len(&self) -> u64 {
        self.len
    }

    fn check_offset(&self, offset: u64) -> Result<(), String> {
        if offset.saturating_add(8) > self.len {
            return Err(format!(
                "offset {offset} is past the end of `{}` ({} bytes)",
                self.path.display(),
                self.len
            ));
        }
        if !offset.is_multiple_of(4) {
            return Err(format!(
                "offset {offset} is not a multiple of 4, where records start"
            ));
        }
        Ok(())
    }

    fn record_error(&self, record: u64, offset: u64, message: String) -> DataError {
        DataError::Record {
            path: self.path.clone(),
            record,
            offset,
            message,
        }
    }

    /// The physical record header at `at`, checked against the file.
    fn part_at(&self, at: u64) -> Result<Part, String> {
        if at.saturating_add(8) > self.len {
            return Err(format!(
                "a record header needs 8 bytes but the file ends at byte {}",
                self.len
            ));
        }
        let mut head = [0u8; 8];
        self.file
            .read_exact_at(&mut head, at)
            .map_err(|e| format!("read failed: {e}"))?;
        let magic = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
        if magic != MAGIC {
            return Err(format!("bad magic {magic:#010x} (expected 0xced7230a)"));
        }
        let lrec = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
        let part = Part {
            cflag: lrec >> 29,
            body: at + 8,
            len: u64::from(lrec & LEN_MASK),
        };
        if part.body + part.len > self.len {
            return Err(format!(
                "length {} runs past the end of the file: the payload would end at byte {}, the file has {} bytes",
                part.len,
                part.body + part.len,
                self.len
            ));
        }
        Ok(part)
    }

    /// Walks the parts of the logical record at `offset`, handing each to
    /// `part`; returns where the next record starts.
    fn walk(
        &self,
        record: u64,
        offset: u64,
        mut part: impl FnMut(&Part, bool) -> Result<(), String>,
    ) -> Result<u64, DataError> {
        let mut at = offset;
        let mut first = true;
        loop {
            let p = self
                .part_at(at)
                .map_err(|m| self.record_error(record, at, m))?;
            let expected: &[u32] = if first { &[0, 1] } else { &[2, 3] };
            if !expected.contains(&p.cflag) {
                let role = if first {
                    "starts a record"
                } else {
                    "continues one"
                };
                let message = format!(
                    "cflag {} where a part {role} (expected {expected:?})",
                    p.cflag
                );
                return Err(self.record_error(record, at, message));
            }
            let last = p.cflag == 0 || p.cflag == 3;
            part(&p, last).map_err(|m| self.record_error(record, at, m))?;
            at = p.body + ((p.len + 3) & !3);
            if last {
                self.check_next(at)
                    .map_err(|m| self.record_error(record, offset, m))?;
                return Ok(at);
            }
            first = false;
        }
    }

    /// A record must be followed by the end of the file or another record;
    /// anything else means its length is wrong. A following header whose
    /// magic is damaged but whose length leads to the end of the file or to
    /// a magic still counts as a record: that record is the bad one.
    fn check_next(&self, at: u64) -> Result<(), String> {
        if at >= self.len {
            return Ok(());
        }
        let wrong = "its length is wrong or the file is corrupt";
        if at + 8 > self.len {
            return Err(format!(
                "the record ends at byte {at}, {} bytes before the end of the file, too few for another record: {wrong}",
                self.len - at
            ));
        }
        let mut next = [0u8; 8];
        self.file
            .read_exact_at(&mut next, at)
            .map_err(|e| format!("read failed: {e}"))?;
        if next[..4] == MAGIC.to_le_bytes() || self.damaged_header_at(at, &next)? {
            return Ok(());
        }
        Err(format!(
            "the record ends at byte {at} but no record starts there (found {:#010x}): {wrong}",
            u32::from_le_bytes(next[..4].try_into().expect("4 bytes"))
        ))
    }

    /// Whether `head`, read at `at`, is a record header with only its
    /// magic damaged: its length leads exactly to the end of the file or
    /// to another magic.
    fn damaged_header_at(&self, at: u64, head: &[u8; 8]) -> Result<bool, String> {
        let lrec = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
        let after = at + 8 + ((u64::from(lrec & LEN_MASK) + 3) & !3);
        if after == self.len {
            return Ok(true);
        }
        if after + 4 > self.len {
            return Ok(false);
        }
        let mut magic = [0u8; 4];
        self.file
            .read_exact_at(&mut magic, after)
            .map_err(|e| format!("read failed: {e}"))?;
        Ok(magic == MAGIC.to_le_bytes())
    }

    /// Reads the logical record `record` (its key, for errors) that starts
    /// at `offset`, with positioned reads: a shared reader serves many
    /// threads at once. Lengths are checked before anything is allocated.
    pub fn read_at(&self, record: u64, offset: u64) -> Result<Vec<u8>, DataError> {
        let mut out = Vec::new();
        self.walk(record, offset, |p, last| {
            let start = out.len();
            out.resize(start + p.len as usize, 0);
            self.file
                .read_exact_at(&mut out[start..], p.body)
                .map_err(|e| format!("read failed: {e}"))?;
            if !last {
                out.extend_from_slice(&MAGIC.to_le_bytes());
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Reads the record with `key`.
    pub fn read_key(&self, key: u64) -> Result<Vec<u8>, DataError> {
        let offset = self
            .index
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, o)| *o)
            .ok_or_else(|| DataError::file(&self.path, format!("key {key} is not in the index")))?;
        self.read_at(key, offset)
    }

    /// Lists the records by walking the file from its start; records are
    /// numbered by position. A bad record fails the scan, or with `skip`
    /// is counted and the scan resumes at the next record start.
    pub fn scan(&self, skip: bool) -> Result<Scan, DataError> {
        let mut scan = Scan::default();
        let (mut at, mut n) = (0u64, 0u64);
        while at < self.len {
            match self.walk(n, at, |_, _| Ok(())) {
                Ok(next) => {
                    scan.records.push((n, at));
                    at = next;
                }
                Err(e) if skip => {
                    scan.skipped.add(1, &e);
                    at = self.next_start(at + 4)?;
                }
                Err(e) => return Err(e),
            }
            n += 1;
        }
        Ok(scan)
    }

    /// The first 4-aligned offset at or after `from` where a record (not
    /// the continuation of one) starts, or the end of the file.
    fn next_start(&self, from: u64) -> Result<u64, DataError> {
        const CHUNK: u64 = 1 << 16;
        let mut at = (from + 3) & !3;
        let mut buf = vec![0u8; CHUNK as usize];
        while at + 8 <= self.len {
            let n = CHUNK.min(self.len - at) as usize;
            self.file
                .read_exact_at(&mut buf[..n], at)
                .map_err(|e| DataError::io("read", &self.path, e))?;
            for (i, w) in buf[..n].chunks_exact(4).enumerate() {
                let here = at + 4 * i as u64;
                if w == MAGIC.to_le_bytes() && self.part_at(here).is_ok_and(|p| p.cflag <= 1) {
                    return Ok(here);
                }
            }
            at += (n as u64) & !3;
        }
        Ok(self.len)
    }
}

/// A line of a text file as shown in a message: at most 80 characters.
fn truncate(line: &str) -> String {
    line.chars().take(80).collect()
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
#[path = "recordio_tests.rs"]
mod tests;
