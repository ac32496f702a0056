use clap::Parser;
use ppctl::{cli::Cli, commands, telemetry::logs};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(cli));
    // Not the runtime's drop, which waits for every blocking task: a trace collector's
    // name being looked up on a DNS server that never answers would hold the exit past
    // a container's stop grace period.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

async fn run(cli: Cli) -> ExitCode {
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
