//! Makes the worker binary and this package's tests find libtorch with no
//! environment.
//!
//! torch-sys links libtorch dynamically but puts no rpath in the binary, so
//! without this every `cargo run` and `cargo test` would need
//! `LD_LIBRARY_PATH`. torch-sys exports the library folder through its
//! `links = "tch"` key as `DEP_TCH_LIBTORCH_LIB`.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return; // Built without the `torch` feature.
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    // The linker drops libraries no symbol refers to; libtorch_cuda registers
    // the CUDA backend from static constructors only, so without
    // `--no-as-needed` CUDA would never be available at run time.
    if std::path::Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
