//! WAV files and fbank features, in memory: every parse error carries the
//! offset of the chunk at fault.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tuneflow_stages::data::decode;
use tuneflow_stages::data::fbank::{Fbank, FbankOptions};
use tuneflow_stages::data::wav;

fuzz_target!(|data: &[u8]| {
    static FBANK: OnceLock<Fbank> = OnceLock::new();
    let fbank = FBANK.get_or_init(|| {
        Fbank::new(FbankOptions {
            num_bins: 24,
            ..Default::default()
        })
    });
    match wav::parse(data, 16000) {
        Err(e) => assert!(e.offset.is_some(), "error without an offset: {e}"),
        Ok(_) => {
            let _ = decode::audio(data, 16000, fbank, true, true);
        }
    }
});
