//! RecordIO and its `.idx`: the input is a mode byte (bit 0: skip bad
//! records; bit 1: no index, so the `.rec` is scanned), a u16 length of
//! the `.idx` text, the text, then the `.rec` bytes.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use tuneflow_stages::data::error::DataError;
use tuneflow_stages::data::insightface::list_package;
use tuneflow_stages::data::recordio::{unpack, RecordReader};

const WHOLE_FILE: &[&str] = &[
    "is empty",
    "lists no records",
    "holds no readable image records",
    "unreadable records while scanning",
];

fn read(skip: bool) -> Result<(), DataError> {
    let listing = list_package(common::dir(), skip)?;
    let rec = common::dir().join("train.rec");
    let reader = RecordReader::open_data(&rec)?;
    for item in listing.items.iter().take(64) {
        let payload = reader.read_at(item.key, item.offset)?;
        unpack(&payload).map_err(|e| e.in_item(&rec, item.key))?;
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Some((len, rest)) = rest.split_first_chunk::<2>() else {
        return;
    };
    let n = usize::from(u16::from_le_bytes(*len)).min(rest.len());
    let (idx, rec) = rest.split_at(n);
    common::put("property", b"3,8,8\n");
    common::put("train.rec", rec);
    let idx_path = common::dir().join("train.idx");
    if mode & 2 == 0 {
        common::put("train.idx", idx);
    } else {
        let _ = std::fs::remove_file(&idx_path);
    }
    if let Err(e) = read(mode & 1 == 1) {
        common::assert_located(&e, WHOLE_FILE);
    }
});
