//! Tests of the RecordIO container: round trips, and hostile lengths and
//! offsets (issue #11, cases 7 and 8).

use super::*;

/// Writes `payloads` as `a.rec` + `a.idx` (keys 0..) in `dir`.
fn write_rec(dir: &Path, payloads: &[&[u8]]) -> (PathBuf, PathBuf) {
    let (rec, idx) = (dir.join("a.rec"), dir.join("a.idx"));
    let mut w = RecordWriter::create(&rec, &idx).unwrap();
    for (k, p) in payloads.iter().enumerate() {
        w.write(k as u64, p).unwrap();
    }
    w.finish().unwrap();
    (rec, idx)
}

/// Offsets from an `.idx` text.
fn offsets(idx: &Path) -> Vec<u64> {
    std::fs::read_to_string(idx)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').nth(1).unwrap().parse().unwrap())
        .collect()
}

#[test]
fn records_with_the_magic_inside_are_split_and_reassembled() {
    let dir = tempfile::tempdir().unwrap();
    let magic = MAGIC.to_le_bytes();
    let mut tricky = vec![1u8, 2, 3, 4];
    tricky.extend_from_slice(&magic);
    tricky.extend_from_slice(&[9, 9, 9, 9]);
    tricky.extend_from_slice(&magic);
    tricky.push(7);
    let payloads: Vec<&[u8]> = vec![b"hello", &tricky, &[], &magic];
    let (rec, idx) = write_rec(dir.path(), &payloads);
    let bytes = std::fs::read(&rec).unwrap();
    assert_eq!(&bytes[..8], &[0x0a, 0x23, 0xd7, 0xce, 5, 0, 0, 0]);
    let r = RecordReader::open(&rec, &idx).unwrap();
    for (k, p) in payloads.iter().enumerate() {
        assert_eq!(&r.read_key(k as u64).unwrap(), p, "record {k}");
    }
    // A scan finds the same records, split ones counted once.
    let scan = r.scan(false).unwrap();
    assert_eq!(scan.records, r.index);
}

#[test]
fn bad_magic_names_file_record_and_offset() {
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
        err.contains("a.rec` record 0 at byte 0: bad magic 0x00000000"),
        "{err}"
    );
}

/// Issue #11 (7): a length field of 0x7FFFFFFF in a small file allocated
/// 512 MB and then failed with "failed to fill whole buffer", naming
/// neither record nor offset.
#[test]
fn lengths_past_the_end_are_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let (rec, idx) = write_rec(dir.path(), &[b"first", b"second", b"third"]);
    let at = offsets(&idx)[1];
    for (lrec, expected) in [
        (
            0x1FFF_FFFFu32,
            "length 536870911 runs past the end of the file",
        ),
        (
            0x7FFF_FFFF,
            "length 536870911 runs past the end of the file",
        ),
        (0x6000_0006, "cflag 3 where a part starts a record"),
    ] {
        let mut bytes = std::fs::read(&rec).unwrap();
        bytes[at as usize + 4..at as usize + 8].copy_from_slice(&lrec.to_le_bytes());
        std::fs::write(&rec, &bytes).unwrap();
        let err = RecordReader::open(&rec, &idx)
            .unwrap()
            .read_key(1)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("a.rec` record 1 at byte {at}: {expected}")),
            "{err}"
        );
    }
}

/// Issue #11 (7): an `.idx` offset past the end of the `.rec` failed later
/// with "failed to fill whole buffer". It is now refused when the index is
/// read, naming the index line, the record and the offset.
#[test]
fn index_offsets_past_the_end_name_the_index_line() {
    let dir = tempfile::tempdir().unwrap();
    let (rec, idx) = write_rec(dir.path(), &[b"only"]);
    std::fs::write(&idx, "0\t0\n\n7\t99999\n").unwrap();
    let err = RecordReader::open(&rec, &idx).err().unwrap().to_string();
    assert!(
        err.contains("a.idx` line 3: record 7: offset 99999 is past the end of `")
            && err.contains("a.rec` (12 bytes)"),
        "{err}"
    );
    std::fs::write(&idx, "0\t0\n0\t0\n").unwrap();
    let err = RecordReader::open(&rec, &idx).err().unwrap().to_string();
    assert!(
        err.contains("line 2: key 0 is listed again (first on line 1)"),
        "{err}"
    );
    std::fs::write(&idx, "0\t2\n").unwrap();
    let err = RecordReader::open(&rec, &idx).err().unwrap().to_string();
    assert!(err.contains("not a multiple of 4"), "{err}");
}

/// A length that is wrong but stays inside the file used to return the
/// wrong bytes; the record after it must start where it ends.
#[test]
fn a_wrong_length_inside_the_file_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let (rec, idx) = write_rec(dir.path(), &[b"hello", b"world"]);
    let mut bytes = std::fs::read(&rec).unwrap();
    bytes[4] = 4;
    std::fs::write(&rec, &bytes).unwrap();
    let err = RecordReader::open(&rec, &idx)
        .unwrap()
        .read_key(0)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("record 0 at byte 0: the record ends at byte 12 but no record starts there"),
        "{err}"
    );
}

/// Issue #11 (8): a scan resumes at the next record after a bad magic and
/// after a bad length, and counts what it skipped; without skip it fails
/// on the first bad record.
#[test]
fn a_scan_resynchronises_on_the_next_magic() {
    let dir = tempfile::tempdir().unwrap();
    let magic = MAGIC.to_le_bytes();
    let split: Vec<u8> = [&b"ab"[..], &[0, 0], &magic, b"cd"].concat();
    let payloads: Vec<&[u8]> = vec![b"r0", b"r1", &split, b"r3", b"r4", b"r5"];
    let (rec, idx) = write_rec(dir.path(), &payloads);
    let at = offsets(&idx);
    let mut bytes = std::fs::read(&rec).unwrap();
    bytes[at[1] as usize] ^= 0xff;
    bytes[at[4] as usize + 4] = 200;
    std::fs::write(&rec, &bytes).unwrap();
    let r = RecordReader::open_data(&rec).unwrap();
    let err = r.scan(false).unwrap_err().to_string();
    assert!(
        err.contains(&format!("record 1 at byte {}: bad magic", at[1])),
        "{err}"
    );
    let scan = r.scan(true).unwrap();
    let found: Vec<u64> = scan.records.iter().map(|(_, o)| *o).collect();
    assert_eq!(found, [at[0], at[2], at[3], at[5]]);
    assert_eq!(
        scan.records.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        [0, 2, 3, 5]
    );
    assert_eq!(scan.skipped.count, 2);
    assert!(
        scan.skipped.examples[1].contains("record 4"),
        "{:?}",
        scan.skipped
    );
    assert_eq!(r.read_at(2, at[2]).unwrap(), split);
}

/// Every prefix of a valid file: the index is refused naming its line, or
/// each record reads back or fails naming the record and offset.
#[test]
fn every_truncation_is_a_located_error() {
    let dir = tempfile::tempdir().unwrap();
    let magic = MAGIC.to_le_bytes();
    let split: Vec<u8> = [&b"abcd"[..], &magic, b"ef"].concat();
    let (rec, idx) = write_rec(dir.path(), &[b"one", &split, b"three"]);
    let full = std::fs::read(&rec).unwrap();
    for end in 0..full.len() {
        std::fs::write(&rec, &full[..end]).unwrap();
        match RecordReader::open(&rec, &idx) {
            Err(e) => assert!(e.to_string().contains("a.idx` line "), "{end}: {e}"),
            Ok(r) => {
                for &(key, offset) in &r.index {
                    if let Err(e) = r.read_at(key, offset) {
                        let e = e.to_string();
                        assert!(
                            e.contains(&format!("a.rec` record {key} at byte ")),
                            "{end}: {e}"
                        );
                    }
                }
            }
        }
        if let Err(e) = RecordReader::open_data(&rec).unwrap().scan(false) {
            assert!(e.to_string().contains("a.rec` record "), "{end}: {e}");
        }
    }
}
