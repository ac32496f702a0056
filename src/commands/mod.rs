//! One module per subcommand, each a plain `async fn run(args, ...)`.

mod api_client;
mod bulk;
pub mod consume;
pub mod db;
pub mod dead;
mod links;
pub mod produce;
mod progress;
pub mod raw_http;
pub mod schedule;
pub mod serve;
mod table;
pub mod up;
pub mod webhook;
pub mod work;
pub mod workers;

use crate::cli::{Cli, Command};
use crate::shutdown;

/// The one dispatch. Long-running commands get a shutdown fired by SIGINT/SIGTERM.
pub async fn dispatch(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    run_command(cli).await.map_err(settings_are_usage)
}

/// A setting that can never work (`config::SettingError`: a malformed database URL, an
/// unknown `sslmode`, an unreadable certificate) is a usage error, exit 2, whichever
/// command met it.
fn settings_are_usage(e: anyhow::Error) -> anyhow::Error {
    let setting = e.downcast_ref::<crate::config::SettingError>().is_some();
    if setting && e.downcast_ref::<Failure>().is_none() {
        Failure::Usage(format!("{e:#}")).into()
    } else {
        e
    }
}

async fn run_command(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let ok = std::process::ExitCode::SUCCESS;
    match cli.command {
        Command::Serve(args) => serve::run(args, shutdown::on_signals().1)
            .await
            .map(|()| ok),
        Command::Produce(args) => produce::run(args, shutdown::on_signals().1)
            .await
            .map(|()| ok),
        Command::Consume(args) => consume::run(args, shutdown::on_signals().1)
            .await
            .map(|()| ok),
        Command::Up(args) => up::run(args, shutdown::on_signals().1).await.map(|()| ok),
        Command::Work(args) => work::run(args).await.map(|()| ok),
        Command::RawHttp(args) => raw_http::run(args).await,
        Command::Db(args) => db::run(args).await.map(|()| ok),
        Command::Dead(args) => dead::run(args).await.map(|()| ok),
        Command::Workers(args) => workers::list(args).await.map(|()| ok),
        Command::Pipeline(args) => workers::pipeline(args).await.map(|()| ok),
        Command::Schedule(args) => schedule::run(args).await.map(|()| ok),
        Command::Webhook(args) => webhook::run(args).await.map(|()| ok),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "ppctl", &mut script);
            emit(&script).map(|()| ok)
        }
    }
}

/// Writes command output to stdout. A reader that went away (`ppctl ... | head`) is
/// not an error worth a panic or a message.
pub fn emit(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// `AMQP_URL` checked before anything starts: a malformed URL, a bad TLS parameter or
/// a TLS file that cannot be read is bad arguments (exit 2), not a reconnect loop.
pub fn check_amqp_url(url: &str) -> anyhow::Result<()> {
    crate::amqp::Nodes::parse(url)
        .map(|_| ())
        .map_err(|e| Failure::Usage(format!("{e:#}")).into())
}

/// Failures that scripts want to tell apart by exit code.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unreachable(String),
    /// Bad arguments that clap cannot see (a value checked after parsing).
    #[error("{0}")]
    Usage(String),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::NotFound(_) => 3,
            Failure::Unreachable(_) => 4,
            Failure::Usage(_) => 2,
        }
    }
}
