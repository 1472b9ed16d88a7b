//! `tuneflow-torch`: the libtorch side of tuneflow.
//!
//! The runner (`tuneflow`) does not link libtorch: loading it costs about
//! half a second per process, which would dominate a no-op rerun. Tensor
//! stages run in this separate binary instead. For now it reports what
//! libtorch sees, so `make test` proves the link and the rpath work.
#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool"
)]

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("info") | None => info(),
        Some(other) => {
            eprintln!("error: unknown command `{other}` (expected `info`)");
            std::process::exit(2);
        }
    }
}

fn info() {
    let cuda = tch::Cuda::is_available();
    let devices = if cuda { tch::Cuda::device_count() } else { 0 };
    let t = tch::Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
    let sum = t.sum(tch::Kind::Float).double_value(&[]);
    println!(
        "{}",
        serde_json::json!({
            "cuda": cuda,
            "cuda_devices": devices,
            "threads": tch::get_num_threads(),
            "check_sum": sum,
        })
    );
}
