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
    die_with_parent();
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("info") | None => info(),
        Some("exec") if args.get(2).map(String::as_str) == Some("--spec") && args.len() == 4 => {
            if let Err(e) = exec(std::path::Path::new(&args[3])) {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
        Some(other) => {
            eprintln!("error: unknown command `{other}` (expected `info` or `exec --spec FILE`)");
            std::process::exit(2);
        }
    }
}

/// The worker runs in its own process group (so Ctrl-C reaches the runner
/// first), but must not outlive a runner killed with SIGKILL: an orphan
/// would keep writing checkpoints that the rerun's worker is reading.
#[expect(unsafe_code, reason = "prctl(2) has no safe wrapper")]
fn die_with_parent() {
    // SAFETY: PR_SET_PDEATHSIG only sets a signal for this process.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    // The parent may have died before the prctl: then we are adopted.
    // SAFETY: getppid cannot fail.
    if unsafe { libc::getppid() } == 1 {
        std::process::exit(1);
    }
}

/// Runs one stage from a spec the runner wrote.
fn exec(spec: &std::path::Path) -> Result<(), String> {
    let bytes =
        std::fs::read(spec).map_err(|e| format!("failed to read `{}`: {e}", spec.display()))?;
    let spec: tuneflow_stages::worker::WorkerSpec = serde_json::from_slice(&bytes)
        .map_err(|e| format!("bad spec `{}`: {e}", spec.display()))?;
    match spec.kind.as_str() {
        "pretrain" | "fine-tune" => tuneflow_torch::train::run(&spec),
        other => Err(format!("the worker cannot run stage kind `{other}`")),
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
