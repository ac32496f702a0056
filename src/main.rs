use clap::Parser;
use ppctl::{cli::Cli, commands, telemetry::logs};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let service = format!("ppctl-{}", cli.command.name());
    let tracing = match logs::init(cli.log_format, &service) {
        Ok(tracing) => tracing,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let code = match commands::dispatch(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            match e.downcast_ref::<commands::Failure>() {
                Some(failure) => ExitCode::from(failure.exit_code()),
                None => ExitCode::FAILURE,
            }
        }
    };
    if let Some(tracing) = tracing {
        tracing.finish().await;
    }
    code
}
