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
    keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("info") | None => info(),
        Some("exec") if args.get(2).map(String::as_str) == Some("--spec") && args.len() == 4 => {
            if let Err(e) = exec(std::path::Path::new(&args[3])) {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
        Some("bench") if args.len() == 3 => {
            let spec = serde_json::from_str(&args[2])
                .map_err(|e| format!("bad bench spec: {e}"))
                .and_then(|s| tuneflow_torch::bench::bench(&s));
            match spec {
                Ok(v) => println!("{v}"),
                Err(e) => {
                    eprintln!("error: {e}");
                    std::process::exit(1);
                }
            }
        }
        Some(other) => {
            eprintln!(
                "error: unknown command `{other}` (expected `info`, `exec --spec FILE` or `bench JSON`)"
            );
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

/// glibc returns freed blocks above 128 KiB to the kernel at once and
/// shrinks the heap eagerly, so every training step maps and faults in its
/// activations again. Keeping blocks up to 32 MiB (glibc's maximum) in the
/// heap and trimming only past 1 GiB made training steps about 20 % faster
/// here (BENCHMARKS.md). `TUNEFLOW_KEEP_FREED_MEMORY=0` leaves glibc's
/// defaults.
#[expect(unsafe_code, reason = "mallopt(3) has no safe wrapper")]
fn keep_freed_memory() {
    if std::env::var_os("TUNEFLOW_KEEP_FREED_MEMORY").is_some_and(|v| v == "0") {
        return;
    }
    // SAFETY: mallopt only changes allocator tunables; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

use tuneflow_stages::worker::WorkerJob;

/// Runs one stage from a job the runner wrote.
fn exec(spec: &std::path::Path) -> Result<(), String> {
    let bytes =
        std::fs::read(spec).map_err(|e| format!("failed to read `{}`: {e}", spec.display()))?;
    let job: WorkerJob =
        serde_json::from_slice(&bytes).map_err(|e| format!("bad job `{}`: {e}", spec.display()))?;
    match &job {
        WorkerJob::Pretrain(j) | WorkerJob::FineTune(j) => tuneflow_torch::train::run(j),
        WorkerJob::Extract(j) => tuneflow_torch::extract::run(j),
        WorkerJob::Associate(j) => tuneflow_torch::associate::run(j),
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
