//! The text index files: a `label enroll test` trial list, VoxCeleb's
//! `iden_split.txt` and LFW's `pairs.txt`, all from the same bytes.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use tuneflow_stages::data::lists;

const WHOLE_FILE: &[&str] = &["has no trials", "has no entries", "is empty", "announces"];

fuzz_target!(|data: &[u8]| {
    let path = common::put("list.txt", data);
    for result in [
        lists::trial_list(&path).map(drop),
        lists::iden_split(&path).map(drop),
        lists::lfw_pairs(&path).map(drop),
    ] {
        if let Err(e) = result {
            common::assert_located(&e, WHOLE_FILE);
        }
    }
});
