//! InsightFace's MS1M packaging over RecordIO: `train.rec`, `train.idx`
//! (optional: without it the `.rec` is scanned) and `property`. Lists the
//! image records with their classes; every record's header is read once.
//!
//! With a header record 0 (`flag > 0`), images are keys `1..label[0]`:
//! keys of that range missing from the index are an error, since a
//! truncated index would otherwise silently shrink the dataset. With
//! `skip`, unreadable records are left out and counted instead; the header
//! record itself can never be skipped, since it says which records are
//! images. Without an index, keys are positions found by a scan; a
//! skipped stretch could hide several records and shift the keys after
//! it, so a scan may skip records only in a plain file (no header record,
//! every record an image, keys used as ids only).

use std::path::Path;

use super::error::{DataError, Skipped};
use super::recordio::{unpack, IrHeader, RecordReader};

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

/// The images of a package, and what was skipped.
#[derive(Debug, Default)]
pub struct RecListing {
    /// Readable images, in index order.
    pub items: Vec<RecItem>,
    /// Records left out (with `skip`).
    pub skipped: Skipped,
}

/// The largest class id an f32 label holds exactly.
const MAX_CLASS: f32 = 16_777_216.0;

/// Lists the images of the package in `root` (see [`open_package`] and
/// [`list_images`]), with everything that was skipped.
pub fn list_package(root: &Path, skip: bool) -> Result<RecListing, DataError> {
    let (reader, scan_skipped) = open_package(root, skip)?;
    if scan_skipped.count > 0 {
        let first_lost = reader.index.first().is_none_or(|(k, _)| *k != 0);
        if first_lost || image_range(&reader)?.is_some() {
            return Err(DataError::file(
                reader.path(),
                format!(
                    "{} unreadable records while scanning without `train.idx` (first: {}); their keys cannot be trusted after a skip, and this package gives its images by key: restore `train.idx` to skip them",
                    scan_skipped.count, scan_skipped.examples[0]
                ),
            ));
        }
    }
    let mut listing = list_images(&reader, skip)?;
    listing.skipped.merge(scan_skipped);
    Ok(listing)
}

/// Opens `root/train.rec` through `root/train.idx`, or by scanning it when
/// there is no index (records are then keyed by position); checks
/// `root/property`. Returns what a scan skipped.
pub fn open_package(root: &Path, skip: bool) -> Result<(RecordReader, Skipped), DataError> {
    let (rec, idx) = (root.join("train.rec"), root.join("train.idx"));
    read_property(&root.join("property"))?;
    let (reader, skipped) = if std::fs::symlink_metadata(&idx).is_ok() {
        (RecordReader::open(&rec, &idx)?, Skipped::default())
    } else {
        let mut reader = RecordReader::open_data(&rec)?;
        let scan = reader.scan(skip)?;
        reader.index = scan.records;
        (reader, scan.skipped)
    };
    if reader.file_len() == 0 {
        return Err(DataError::file(
            &rec,
            "is empty: an InsightFace package has one record per image",
        ));
    }
    if reader.index.is_empty() {
        let listed = if idx.exists() { idx } else { rec };
        return Err(DataError::file(listed, "lists no records"));
    }
    Ok((reader, skipped))
}

fn record_error(reader: &RecordReader, key: u64, offset: u64, message: String) -> DataError {
    DataError::Record {
        path: reader.path().to_path_buf(),
        record: key,
        offset,
        message,
    }
}

/// Reads a record's IRHeader.
fn header(reader: &RecordReader, key: u64, offset: u64) -> Result<IrHeader, DataError> {
    let payload = reader.read_at(key, offset)?;
    let (h, _) = unpack(&payload)
        .map_err(|e| record_error(reader, key, offset, format!("IRHeader: {}", e.message)))?;
    Ok(h)
}

/// The image keys `1..end` that header record 0 gives, if there is one.
fn image_range(reader: &RecordReader) -> Result<Option<u64>, DataError> {
    let Some(&(0, offset)) = reader.index.first() else {
        return Ok(None);
    };
    let h = header(reader, 0, offset)?;
    if h.flag == 0 {
        return Ok(None);
    }
    let end = h.labels[0];
    if !(end >= 1.0 && end.fract() == 0.0 && end <= MAX_CLASS) {
        return Err(record_error(
            reader,
            0,
            offset,
            format!("header record gives image keys 1..{end}, which is not a key range"),
        ));
    }
    Ok(Some(end as u64))
}

/// The image record `key` at `offset`, with its class.
fn image(reader: &RecordReader, key: u64, offset: u64) -> Result<RecItem, DataError> {
    let class = header(reader, key, offset)?.class();
    if !(class >= 0.0 && class.fract() == 0.0 && class < MAX_CLASS) {
        return Err(record_error(
            reader,
            key,
            offset,
            format!("label {class} is not a class id"),
        ));
    }
    Ok(RecItem {
        key,
        offset,
        class: class as u32,
    })
}

/// Lists the images of an InsightFace package: with a header record 0
/// (`flag > 0`), images are keys `1..label[0]`; otherwise every key is an
/// image. With `skip`, unreadable records are counted instead of failing.
pub fn list_images(reader: &RecordReader, skip: bool) -> Result<RecListing, DataError> {
    let mut listing = RecListing::default();
    let mut keys = reader.index.clone();
    if let Some(end) = image_range(reader)? {
        keys.retain(|(k, _)| (1..end).contains(k));
        let expected = end - 1;
        if (keys.len() as u64) < expected {
            let err = record_error(
                reader,
                0,
                reader.index[0].1,
                format!(
                    "the header record says keys 1..{end} are images ({expected}), but the index lists {} of them",
                    keys.len()
                ),
            );
            if !skip {
                return Err(err);
            }
            listing.skipped.add(expected - keys.len() as u64, &err);
        }
    }
    for (key, offset) in keys {
        match image(reader, key, offset) {
            Ok(item) => listing.items.push(item),
            Err(e) if skip => listing.skipped.add(1, &e),
            Err(e) => return Err(e),
        }
    }
    if listing.items.is_empty() {
        return Err(DataError::file(
            reader.path(),
            format!(
                "holds no readable image records ({} skipped)",
                listing.skipped.count
            ),
        ));
    }
    Ok(listing)
}

/// Reads `property` (`num_classes,H,W`).
pub fn read_property(path: &Path) -> Result<(u32, u32, u32), DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io("read", path, e))?;
    let fields: Vec<Option<u32>> = text
        .trim()
        .split(',')
        .map(|p| p.trim().parse().ok())
        .collect();
    match fields[..] {
        [Some(c), Some(h), Some(w)] => Ok((c, h, w)),
        _ => Err(DataError::line(
            path,
            1,
            format!(
                "expected `num_classes,H,W`, found {:?}",
                text.trim().chars().take(80).collect::<String>()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::recordio::write_insightface;

    fn package(dir: &Path, n: u32) {
        let images: Vec<(u32, Vec<u8>)> = (0..n).map(|i| (i % 3, vec![i as u8; 5])).collect();
        write_insightface(dir, &images, (28, 28), false).unwrap();
    }

    fn offsets(dir: &Path) -> Vec<u64> {
        offsets_of(&dir.join("train.idx"))
    }

    fn offsets_of(idx: &Path) -> Vec<u64> {
        std::fs::read_to_string(idx)
            .unwrap()
            .lines()
            .map(|l| l.split('\t').nth(1).unwrap().parse().unwrap())
            .collect()
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
            let (r, _) = open_package(dir.path(), false).unwrap();
            let items = list_images(&r, false).unwrap().items;
            let classes: Vec<u32> = items.iter().map(|i| i.class).collect();
            assert_eq!(classes, [0, 1, 1, 2]);
            let p = r.read_at(items[0].key, items[0].offset).unwrap();
            let (h, img) = unpack(&p).unwrap();
            assert_eq!((h.class(), img.to_vec()), (0.0, vec![2, 2]));
            assert_eq!(
                read_property(&dir.path().join("property")).unwrap(),
                (3, 28, 28)
            );
            // Without the index, a scan finds the same images.
            std::fs::remove_file(dir.path().join("train.idx")).unwrap();
            assert_eq!(list_package(dir.path(), false).unwrap().items, items);
        }
    }

    /// Issue #11 (8): `on-error = "skip"` now skips a record with a bad
    /// magic or a bad length, through the index or by a scan, and counts it.
    #[test]
    fn skip_leaves_out_bad_records_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        package(dir.path(), 6);
        let at = offsets(dir.path());
        let rec = dir.path().join("train.rec");
        let mut bytes = std::fs::read(&rec).unwrap();
        bytes[at[2] as usize] = 0;
        bytes[at[4] as usize + 4] = 0xF0;
        std::fs::write(&rec, &bytes).unwrap();
        let (r, _) = open_package(dir.path(), false).unwrap();
        let err = list_images(&r, false).unwrap_err().to_string();
        assert!(
            err.contains(&format!("record 2 at byte {}: bad magic", at[2])),
            "{err}"
        );
        let listing = list_images(&r, true).unwrap();
        let keys: Vec<u64> = listing.items.iter().map(|i| i.key).collect();
        assert_eq!((keys, listing.skipped.count), (vec![1, 3, 5, 6], 2));
        // Without the index the keys come from a scan and cannot be
        // trusted after a skip: a package with a header refuses.
        std::fs::remove_file(dir.path().join("train.idx")).unwrap();
        let err = list_package(dir.path(), true).unwrap_err().to_string();
        assert!(
            err.contains("2 unreadable records") && err.contains("restore `train.idx`"),
            "{err}"
        );
    }

    /// A plain file (no header record, every record an image) scanned
    /// without an index skips a bad record and keeps the rest.
    #[test]
    fn a_plain_file_without_index_skips_by_resynchronising() {
        let dir = tempfile::tempdir().unwrap();
        let rec = dir.path().join("train.rec");
        let mut w =
            crate::data::recordio::RecordWriter::create(&rec, &dir.path().join("x.idx")).unwrap();
        for k in 0..5u64 {
            let h = IrHeader {
                flag: 0,
                label: (k % 2) as f32,
                id: k,
                id2: 0,
                labels: vec![],
            };
            w.write(k, &crate::data::recordio::pack(&h, &[7; 9]))
                .unwrap();
        }
        w.finish().unwrap();
        std::fs::write(dir.path().join("property"), "2,28,28\n").unwrap();
        let at = offsets_of(&dir.path().join("x.idx"));
        let mut bytes = std::fs::read(&rec).unwrap();
        bytes[at[3] as usize + 1] = 0;
        std::fs::write(&rec, &bytes).unwrap();
        let err = list_package(dir.path(), false).unwrap_err().to_string();
        assert!(
            err.contains(&format!("record 3 at byte {}: bad magic", at[3])),
            "{err}"
        );
        let listing = list_package(dir.path(), true).unwrap();
        let keys: Vec<u64> = listing.items.iter().map(|i| i.key).collect();
        assert_eq!((keys, listing.skipped.count), (vec![0, 1, 2, 4], 1));
    }

    /// Issue #11 (17): an empty `.rec` listed nothing and succeeded; a
    /// truncated index silently shrank the dataset.
    #[test]
    fn empty_packages_and_missing_image_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        package(dir.path(), 4);
        let idx = std::fs::read_to_string(dir.path().join("train.idx")).unwrap();
        let short: String = idx
            .lines()
            .filter(|l| !l.starts_with("2\t"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(dir.path().join("train.idx"), short).unwrap();
        let (r, _) = open_package(dir.path(), false).unwrap();
        let err = list_images(&r, false).unwrap_err().to_string();
        assert!(
            err.contains("record 0 at byte 0: the header record says keys 1..5 are images (4), but the index lists 3"),
            "{err}"
        );
        assert_eq!(list_images(&r, true).unwrap().skipped.count, 1);
        std::fs::write(dir.path().join("train.idx"), "").unwrap();
        let err = open_package(dir.path(), false).err().unwrap().to_string();
        assert!(err.contains("train.idx`: lists no records"), "{err}");
        std::fs::write(dir.path().join("train.rec"), "").unwrap();
        let err = open_package(dir.path(), false).err().unwrap().to_string();
        assert!(err.contains("train.rec`: is empty"), "{err}");
        std::fs::write(dir.path().join("property"), "1,2,x,3\n").unwrap();
        let err = open_package(dir.path(), false).err().unwrap().to_string();
        assert!(
            err.contains("property` line 1: expected `num_classes,H,W`"),
            "{err}"
        );
    }
}
