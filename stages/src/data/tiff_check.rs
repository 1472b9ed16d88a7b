//! A structural check of a TIFF file's first directory, run before the
//! `tiff` decoder sees it. That decoder sizes a tag's value array from
//! the count in the file, up to 256 MB, before reading a byte of it (the
//! reader fuzz suite found a 349-byte file that made it allocate 172 MB,
//! issue #11); its limits can only be set after the first directory is
//! read. Here every entry's values must lie inside the file, so what the
//! decoder allocates is bounded by the file's size.

use super::error::FormatError;

/// Bytes per value of each TIFF field type; `None` for unknown types
/// (the decoder refuses those when it reads them).
fn type_size(kind: u16) -> Option<u64> {
    Some(match kind {
        1 | 2 | 6 | 7 => 1,
        3 | 8 => 2,
        4 | 9 | 11 | 13 => 4,
        5 | 10 | 12 | 16 | 17 | 18 => 8,
        _ => return None,
    })
}

/// Whether `head` starts like a TIFF file (classic or BigTIFF).
pub fn is_tiff(head: &[u8]) -> bool {
    matches!(
        head.get(..4),
        Some(b"II*\0" | b"MM\0*" | b"II+\0" | b"MM\0+")
    )
}

/// Checks `bytes` if they are a TIFF file; other formats pass unchecked.
pub fn check(bytes: &[u8]) -> Result<(), FormatError> {
    let little = match bytes.get(..4) {
        Some(b"II*\0") => true,
        Some(b"MM\0*") => false,
        Some(b"II+\0" | b"MM\0+") => {
            return Err(FormatError::at(0, "BigTIFF is not supported"));
        }
        _ => return Ok(()),
    };
    let len = bytes.len() as u64;
    let u16_at = |at: u64| -> Option<u16> {
        let b: [u8; 2] = bytes.get(at as usize..at as usize + 2)?.try_into().ok()?;
        Some(if little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    };
    let u32_at = |at: u64| -> Option<u32> {
        let b: [u8; 4] = bytes.get(at as usize..at as usize + 4)?.try_into().ok()?;
        Some(if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    let truncated = |at: u64, what: &str| {
        FormatError::at(
            at,
            format!("TIFF {what} runs past the end of the file ({len} bytes)"),
        )
    };
    let ifd = u64::from(u32_at(4).ok_or_else(|| truncated(4, "header"))?);
    let entries = u64::from(u16_at(ifd).ok_or_else(|| truncated(ifd, "directory"))?);
    if ifd + 2 + 12 * entries > len {
        return Err(truncated(ifd, "directory"));
    }
    for i in 0..entries {
        let at = ifd + 2 + 12 * i;
        let tag = u16_at(at).expect("inside the directory");
        let Some(size) = type_size(u16_at(at + 2).expect("inside the directory")) else {
            continue;
        };
        let count = u64::from(u32_at(at + 4).expect("inside the directory"));
        let total = count * size;
        if total <= 4 {
            continue;
        }
        let offset = u64::from(u32_at(at + 8).expect("inside the directory"));
        if offset + total > len {
            return Err(FormatError::at(
                at,
                format!(
                    "TIFF tag {tag} has {count} values ({total} bytes) at byte {offset}, past the end of the file ({len} bytes)"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_past_the_end_are_refused_and_other_formats_pass() {
        let mut tiff = b"II*\x00\x08\x00\x00\x00\x01\x00".to_vec();
        // Tag 273 (StripOffsets), LONG, 40 million values at byte 26.
        tiff.extend_from_slice(&273u16.to_le_bytes());
        tiff.extend_from_slice(&4u16.to_le_bytes());
        tiff.extend_from_slice(&40_000_000u32.to_le_bytes());
        tiff.extend_from_slice(&26u32.to_le_bytes());
        tiff.extend_from_slice(&[0; 4]);
        let err = check(&tiff).unwrap_err();
        assert_eq!(err.offset, Some(10), "{err}");
        assert!(err.message.contains("tag 273 has 40000000 values"), "{err}");
        tiff[14..18].copy_from_slice(&1u32.to_le_bytes());
        check(&tiff).unwrap();
        check(b"\x89PNG\r\n\x1a\n").unwrap();
        assert!(check(b"II*\x00\xff\xff\x00\x00").is_err());
    }
}
