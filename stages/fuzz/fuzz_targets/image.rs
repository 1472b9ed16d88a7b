//! Encoded images (PNG, JPEG, BMP, PNM, TIFF, WebP) through the loader
//! ingest uses, with a 1-megapixel limit. Run with `-malloc_limit_mb=64`:
//! a decode may hold 8 bytes a pixel plus the decoder's state, no more.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tuneflow_stages::data::decode::{ImageLoader, ImageSpec};

fuzz_target!(|data: &[u8]| {
    static LOADER: OnceLock<ImageLoader> = OnceLock::new();
    let loader = LOADER.get_or_init(|| {
        let spec = ImageSpec {
            size: 16,
            channels: 3,
        };
        ImageLoader::new(spec, 1 << 20, 64 << 20)
    });
    let _ = loader.load(data);
});
