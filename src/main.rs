//! `tuneflow`: argv -> [`tuneflow::commands::main`] -> exit code.

fn main() {
    let cli = <tuneflow::cli::Cli as clap::Parser>::parse();
    let level = match cli.verbose {
        0 => "warn",
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
