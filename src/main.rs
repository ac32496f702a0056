use clap::Parser;
use ppctl::{cli::Cli, commands};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // lapin logs, at error level, the same failures ppctl reports (and
                // retries) with their context: one line per fault is enough.
                .unwrap_or_else(|_| "info,lapin=off".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(colour_logs())
        .init();
    match commands::dispatch(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            match e.downcast_ref::<commands::Failure>() {
                Some(failure) => ExitCode::from(failure.exit_code()),
                None => ExitCode::FAILURE,
            }
        }
    }
}

/// Colour only for a person at a terminal: not in a file, a pipe or a container's log,
/// and never when NO_COLOR is set to anything (https://no-color.org).
fn colour_logs() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}
