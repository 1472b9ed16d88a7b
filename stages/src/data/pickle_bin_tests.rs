//! Tests of the `.bin` pickle reader: the three variants in the wild, and
//! the bounds on hostile files (issue #11, case 5).

use super::*;

fn sample() -> PairFile {
    PairFile {
        images: vec![vec![0xff, 0xd8, 1], vec![2; 300], vec![3], vec![]],
        same: vec![true, false],
    }
}

#[test]
fn python2_variant_round_trips() {
    assert_eq!(parse(&encode_py2(&sample())).unwrap(), sample());
}

// Bytes printed by CPython 3.11: pickle.dumps(([b'\xff\xd8', b'ab'], [True]), protocol=P).
const PY3_PROTOCOL2: &[u8] = b"\x80\x02]q\x00(c_codecs\nencode\nq\x01X\x04\x00\x00\x00\xc3\xbf\xc3\x98q\x02X\x06\x00\x00\x00latin1q\x03\x86q\x04Rq\x05h\x01X\x02\x00\x00\x00abq\x06h\x03\x86q\x07Rq\x08e]q\t\x88a\x86q\n.";
const PY3_PROTOCOL4: &[u8] = b"\x80\x04\x95\x15\x00\x00\x00\x00\x00\x00\x00]\x94(C\x02\xff\xd8\x94C\x02ab\x94e]\x94\x88a\x86\x94.";

#[test]
fn python3_variants_decode() {
    for data in [PY3_PROTOCOL2, PY3_PROTOCOL4] {
        let f = parse(data).unwrap();
        assert_eq!(f.images, vec![vec![0xff, 0xd8], b"ab".to_vec()]);
        assert_eq!(f.same, vec![true]);
    }
}

#[test]
fn rejects_mismatched_counts_and_foreign_objects() {
    let mut bad = sample();
    bad.same.push(true);
    let err = parse(&encode_py2(&bad)).unwrap_err().to_string();
    assert!(err.contains("4 images for 3 pairs"), "{err}");
    let numpy = b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nq\x00)R.";
    let err = parse(numpy).unwrap_err().to_string();
    assert!(err.contains("numpy.core.multiarray _reconstruct"), "{err}");
}

/// Issue #11 (5): 50,000 nested lists in a 100 KB file overflowed the
/// stack and aborted the runner. The lists alone now exhaust the file's
/// allowance long before they could nest; nesting built more cheaply
/// (one-item tuples) stops at the depth bound, naming the byte.
#[test]
fn deep_nesting_is_a_located_error_not_a_stack_overflow() {
    let n = 50_000;
    let mut data = vec![0x80, 2];
    data.extend(vec![b']'; n]);
    data.extend(vec![b'a'; n - 1]);
    data.push(b'.');
    let err = parse(&data).unwrap_err();
    assert!(err.offset.is_some_and(|o| o < n as u64), "{err}");
    assert!(err.message.contains("would build more than"), "{err}");

    let mut data = vec![0x80, 2, b']'];
    data.extend(vec![0x85; n]);
    data.push(b'.');
    let err = parse(&data).unwrap_err();
    // TUPLE1 k (1-based) makes a container k + 1 deep; the 32nd makes 33.
    assert_eq!(err.offset, Some(3 + 31), "{err}");
    assert!(err.message.contains("nested 33 deep"), "{err}");
}

/// Issue #11 (5): a memo that doubles an object at each step (638 bytes
/// grew past 3 GB). Memo reads now share, so the doubling builds nothing
/// until the depth bound stops it.
#[test]
fn memo_doubling_is_stopped_without_building_it() {
    let mut data = vec![0x80, 2, b'T'];
    data.extend_from_slice(&1024u32.to_le_bytes());
    data.extend([7u8; 1024]);
    data.extend_from_slice(b"q\x00");
    for k in 0..90u8 {
        data.extend_from_slice(&[b'h', k, b'h', k, 0x86, b'q', k + 1]);
    }
    data.push(b'.');
    let err = parse(&data).unwrap_err();
    assert!(err.message.contains("nested 33 deep"), "{err}");
    let at = err.offset.unwrap() as usize;
    assert_eq!(data[at], 0x86, "{err}");
}

/// Issue #11 (5): one large bytes object referenced many times from the
/// image list would be copied out once per reference. The copies are
/// charged against the file's allowance and refused before they are made.
#[test]
fn shared_images_that_would_multiply_the_file_are_refused() {
    let mut data = vec![0x80, 2, b']', b'(', b'T'];
    data.extend_from_slice(&(32u32 << 10).to_le_bytes());
    data.extend(vec![1u8; 32 << 10]);
    data.extend_from_slice(b"q\x00");
    for _ in 0..2047 {
        data.extend_from_slice(b"h\x00");
    }
    data.extend_from_slice(b"e](");
    data.extend([0x88; 1024]);
    data.extend_from_slice(&[b'e', 0x86, b'.']);
    let err = parse(&data).unwrap_err();
    assert!(err.message.contains("would build more than"), "{err}");
    assert_eq!(err.offset, Some(data.len() as u64 - 1), "{err}");
    // Referenced twice is within the allowance, and both copies are equal.
    let twice = [&data[..5 + 4 + (32 << 10) + 2], b"h\x00e](\x88e\x86."].concat();
    let f = parse(&twice).unwrap();
    assert_eq!((f.images.len(), f.images[0] == f.images[1]), (2, true));
}

#[test]
fn every_truncation_and_huge_length_is_a_located_error() {
    let full = encode_py2(&sample());
    for end in 0..full.len() {
        let err = parse(&full[..end]).unwrap_err();
        assert!(err.offset.is_some(), "prefix {end}: {err}");
    }
    // BINBYTES8 with a length near 2^64: no overflow, no allocation.
    let mut huge = vec![0x80, 4, 0x8e];
    huge.extend_from_slice(&u64::MAX.to_le_bytes());
    let err = parse(&huge).unwrap_err();
    assert_eq!(err.offset, Some(2), "{err}");
    assert!(err.message.contains("BINBYTES needs"), "{err}");
}

#[test]
fn read_names_the_file_and_the_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lfw.bin");
    let full = encode_py2(&sample());
    std::fs::write(&path, &full[..full.len() - 4]).unwrap();
    let err = read(&path).unwrap_err().to_string();
    assert!(
        err.contains("lfw.bin` at byte") && err.contains("not a verification .bin file"),
        "{err}"
    );
    std::fs::write(&path, &full).unwrap();
    assert_eq!(read(&path).unwrap(), sample());
}
