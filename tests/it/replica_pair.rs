//! A private primary with a streaming standby, and the API reading from it.

use super::helpers::{eventually, TestApp};
use super::private_pg::{server_dir, PrivatePostgres};
use ppctl::http::ServerConfig;
use ppctl::storage::{self, admin};
use serde_json::Value;
use std::time::Duration;

/// A primary with the `app` database migrated, and a streaming standby of it.
pub async fn pair(
    kind: &str,
    standby_conf: &str,
    env: &[(&str, &str)],
) -> (PrivatePostgres, PrivatePostgres) {
    let hba = "local replication postgres trust\nhost all all 127.0.0.0/8 scram-sha-256\n";
    let primary = PrivatePostgres::start(server_dir(kind), "", hba);
    admin::setup(&url(&primary))
        .await
        .expect("db setup on the primary");
    let standby = PrivatePostgres::standby_of(&primary, kind, standby_conf, env);
    (primary, standby)
}

pub fn url(pg: &PrivatePostgres) -> String {
    pg.url("127.0.0.1", "app", "connect_timeout=5")
}

/// The API in this process, reading from `standby` within `max_lag`.
pub async fn app(
    primary: &PrivatePostgres,
    standby: &PrivatePostgres,
    max_lag: Duration,
) -> TestApp {
    let replica = storage::replica_pool(&url(standby), 4).expect("replica pool");
    let config = ServerConfig {
        read_replica: Some((replica, max_lag)),
        ..Default::default()
    };
    TestApp::spawn_config(storage::pool(&url(primary), 4).expect("pool"), config).await
}

pub async fn replica_in_use(app: &TestApp, wanted: bool) -> Value {
    eventually(
        "the replica's state in /health",
        Duration::from_secs(30),
        || async {
            let (_, health) = app.call("GET", "/health", None).await;
            (health["replica"]["in_use"] == wanted).then_some(health)
        },
    )
    .await
}
