//! The `ensemble` binary: logging set-up over [`ensemble_cli::main_on`].

use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ENSEMBLE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let term = ensemble_cli::Terminal::detect();
    // stderr stays unlocked: the live bars' ticker thread and agents' log
    // lines (tokio workers) write to it while the command runs.
    let code = ensemble_cli::main_on(
        std::env::args_os(),
        term,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr(),
    );
    ExitCode::from(code)
}
