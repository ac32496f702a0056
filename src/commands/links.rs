//! One line at start that says whether each link is encrypted: the first thing an
//! operator checks after turning TLS on, and the default local setup (plain TCP on
//! loopback) says so too.

use crate::amqp::Nodes;
use crate::storage::{role, DbError, PgPool};
use std::time::Duration;

/// Logs `links: database …, rabbitmq …` once the database first answers (within 30 s;
/// a database out of reach is said by the processes' own retries).
pub fn log_at_start(pool: PgPool, nodes: Option<&Nodes>) {
    let rabbitmq = nodes.map_or("not used", Nodes::encryption);
    tokio::spawn(async move {
        let found = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let checked = async {
                    let client = pool.get().await?;
                    role::server_role(&client).await.map_err(DbError::from)
                };
                if let Ok(server) = checked.await {
                    return server;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        if let Ok(server) = found.await {
            let database = format!("{} to {}", server.connection(), server.host);
            tracing::info!(%database, rabbitmq, "links");
        }
    });
}
