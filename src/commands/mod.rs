//! Each subcommand, from parsed arguments to an exit code. Commands (with
//! the report renderers) are the only code that prints.
#![expect(clippy::print_stderr, reason = "errors are printed here")]

mod cache;
mod export;
mod graph;
mod metrics;
mod remote;
mod report;
mod report_data;
mod run;
mod runs;
mod status;
mod sweeps;

use crate::cli::{CacheCommand, Cli, Command};

/// Runs the parsed command line; returns the process exit code.
pub fn main(cli: Cli) -> i32 {
    let cache_dir = cli.cache_dir.clone();
    let flag = cache_dir.as_deref();
    let result = match cli.command {
        Command::Run(args) => run::run(&args, flag),
        Command::Status(args) => status::status(&args, flag),
        Command::Graph(args) => graph::graph(&args),
        Command::Cache(CacheCommand::Verify(a)) => cache::verify(&a, flag),
        Command::Cache(CacheCommand::Du(a)) => cache::du(&a, flag),
        Command::Cache(CacheCommand::Gc(a)) => cache::gc(&a, flag),
        Command::Cache(CacheCommand::Push(a)) => remote::push(&a, flag),
        Command::Cache(CacheCommand::Pull(a)) => remote::pull(&a, flag),
        Command::ExecStage(a) => crate::slurm::job::exec_stage(&a.spec),
        Command::WatchGroups { file } => {
            tuneflow_stages::process::watch_groups(&file);
            Ok(0)
        }
        Command::Export(a) => export::export(&a, flag),
        Command::Metrics(a) => metrics::metrics(&a, flag),
        Command::Runs(a) => runs::runs(&a, flag),
        Command::Report(a) => report::report(&a, flag),
        Command::Fixtures(a) => crate::fixtures::fixtures(&a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprint!("{}", e.render(terminal_width()));
            e.exit_code()
        }
    }
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100)
}
