//! `tuneflow`: argv -> [`tuneflow::commands::main`] -> exit code.

fn main() {
    let cli = tuneflow::cli::parse();
    if !matches!(
        cli.command,
        tuneflow::cli::Command::Run(_) | tuneflow::cli::Command::ExecStage(_)
    ) {
        die_on_broken_pipe();
    }
    // What moved to and from the remote cache is shown by default.
    let level = match cli.verbose {
        0 => "warn,tuneflow::remote=info",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    std::process::exit(tuneflow::commands::main(cli));
}

/// Reports end quietly when their reader goes away (`tuneflow metrics | head`),
/// as Unix tools do. A run keeps ignoring SIGPIPE: losing its reader must
/// not kill stages halfway.
#[expect(unsafe_code, reason = "signal(2) has no safe wrapper in std")]
fn die_on_broken_pipe() {
    // SAFETY: resetting a signal to its default disposition is always sound.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
