//! MNIST JSON digit files: errors name the file and, for JSON errors, the
//! line.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use tuneflow_stages::data::mnist;

fuzz_target!(|data: &[u8]| {
    let path = common::put("3.json", data);
    if let Err(e) = mnist::values(&path) {
        common::assert_located(
            &e,
            &[
                "has no images",
                "has no `data` field",
                "not a multiple of 784",
            ],
        );
    }
});
