//! `.bin` pair pickles, in memory: every error carries a byte offset. Run
//! with `-malloc_limit_mb=64` to catch what the build budget should stop.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tuneflow_stages::data::pickle_bin;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = pickle_bin::parse(data) {
        assert!(e.offset.is_some(), "error without an offset: {e}");
    }
});
