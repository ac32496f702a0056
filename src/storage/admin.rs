//! Whole-database operations: connect, create, drop, wait. Used by `ppctl db` and by
//! the tests, which give every test its own database.

use super::connect::ConnectError;
use super::PgTarget;
use anyhow::{bail, Context};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// One connection outside any pool, its driver task spawned.
pub async fn connect(database_url: &str) -> anyhow::Result<Client> {
    open(&PgTarget::parse(database_url)?).await
}

/// Connects to the server's `postgres` database with the same credentials, to create
/// or drop the target database. Returns the target's name too.
async fn connect_maintenance(database_url: &str) -> anyhow::Result<(Client, String)> {
    let target = PgTarget::parse(database_url)?;
    let name = target
        .config()
        .get_dbname()
        .context("DATABASE_URL names no database")?
        .to_string();
    Ok((open(&target.with_dbname("postgres")).await?, name))
}

/// The database could not be reached or refused the login (down, frozen, a wrong
/// password, a missing database): `ppctl db` exits 4 on it, as `work --via db` does.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CannotConnect(String);

/// Each host is bounded by its `connect_timeout`, start-up and login included
/// (`storage::connect`), so the error names every host's failure.
pub async fn open(target: &PgTarget) -> anyhow::Result<Client> {
    let shown = target.shown();
    let (client, connection) = target.connect().await.map_err(|e| {
        anyhow::Error::new(e).context(CannotConnect(format!(
            "cannot connect to PostgreSQL at {shown}"
        )))
    })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "database connection closed");
        }
    });
    Ok(client)
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Creates the database unless it exists; returns whether it was created.
pub async fn create_database(database_url: &str) -> anyhow::Result<bool> {
    let (client, name) = connect_maintenance(database_url).await?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if exists {
        return Ok(false);
    }
    match client
        .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
        .await
    {
        Ok(()) => Ok(true),
        // Another process created it between our check and our CREATE.
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {
            Ok(false)
        }
        Err(e) => Err(e).with_context(|| format!("cannot create database {name}")),
    }
}

/// Drops the database, disconnecting its sessions first.
pub async fn drop_database(database_url: &str) -> anyhow::Result<()> {
    let (client, name) = connect_maintenance(database_url).await?;
    client
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&name)
        ))
        .await
        .with_context(|| format!("cannot drop database {name}"))
}

/// Waits until the server accepts connections to the database, at most `timeout`.
/// `Ok(false)`: the server is up but the database does not exist yet.
pub async fn wait(database_url: &str, timeout: Duration) -> anyhow::Result<bool> {
    let start = Instant::now();
    loop {
        // Each attempt within what is left of `timeout`: a frozen server must not
        // hold one attempt past it.
        let left = timeout
            .saturating_sub(start.elapsed())
            .max(Duration::from_millis(100));
        let attempt = async {
            let client = connect(database_url).await?;
            client.simple_query("SELECT 1").await?;
            anyhow::Ok(())
        };
        let error = match tokio::time::timeout(left, attempt).await {
            Ok(Ok(())) => return Ok(true),
            Err(_) => anyhow::anyhow!("no answer within {}s", timeout.as_secs()),
            // The server answered: it is up, only the database is missing (`db wait &&
            // db setup` on a fresh server must go on to create it).
            Ok(Err(e)) if is_missing_database(&e) => return Ok(false),
            Ok(Err(e)) => e,
        };
        if start.elapsed() >= timeout {
            bail!(
                "database not reachable after {}s: {error:#}",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn is_missing_database(e: &anyhow::Error) -> bool {
    let driver = |c: &(dyn std::error::Error + 'static)| {
        c.downcast_ref::<ConnectError>()
            .and_then(|all| all.driver.as_ref())
            .or_else(|| c.downcast_ref::<tokio_postgres::Error>())
            .and_then(|pg| pg.code().cloned())
    };
    e.chain()
        .filter_map(driver)
        .any(|code| code == tokio_postgres::error::SqlState::INVALID_CATALOG_NAME)
}

/// Creates the database if missing and applies migrations; returns how many ran.
pub async fn setup(database_url: &str) -> anyhow::Result<usize> {
    create_database(database_url).await?;
    let mut client = connect(database_url).await?;
    super::migrate::run(&mut client, super::migrate::all()).await
}
