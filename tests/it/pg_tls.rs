//! TLS to PostgreSQL with libpq's parameters, against a private server that takes TLS
//! only (`tls_server`). What is asserted is what the server saw: its `pg_stat_ssl`.

use crate::helpers::{outputs, ppctl};
use crate::tls_server::{TlsPostgres, PASSWORD};
use ppctl::storage::admin;
use std::time::{Duration, Instant};

/// A refused certificate must be reported within this (the brief's bound: the
/// connect timeouts of 5 s); measured here in milliseconds.
const FAIL_WITHIN: Duration = Duration::from_secs(5);

/// Connects through ppctl's own code and returns, from the server's side (the
/// superuser reading `pg_stat_ssl` for that backend), the session's TLS version or
/// `None` when unencrypted.
async fn connect(pg: &TlsPostgres, url: &str) -> Result<Option<String>, String> {
    let client = admin::connect(url).await.map_err(|e| format!("{e:#}"))?;
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    let sql = format!(
        "SELECT coalesce((SELECT version FROM pg_stat_ssl WHERE pid = {pid} AND ssl), 'none')"
    );
    let version = pg.psql("postgres", &sql);
    Ok((version != "none").then_some(version))
}

/// The error of a connection that must fail, checked for the password, with its time.
async fn refused(pg: &TlsPostgres, url: &str) -> (String, Duration) {
    let start = Instant::now();
    let err = connect(pg, url).await.expect_err(url);
    let took = start.elapsed();
    assert!(!err.contains(PASSWORD), "the password leaked: {err}");
    (err, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_prefer_and_require_mean_what_libpq_says() {
    let pg = TlsPostgres::start();
    pg.psql("postgres", "CREATE DATABASE appdb");
    let url = |host: &str, db: &str, params: &str| pg.url(host, db, params);

    // disable: plain, refused by a TLS-only database, accepted by a plain-only one.
    let (err, _) = refused(&pg, &url("localhost", "appdb", "sslmode=disable")).await;
    assert!(err.contains("no encryption"), "{err}");
    let plain = connect(&pg, &url("localhost", "plaindb", "sslmode=disable")).await;
    assert_eq!(plain, Ok(None));
    // prefer (also the default) and require encrypt without checking the certificate.
    for params in ["", "sslmode=prefer", "sslmode=require"] {
        let version = connect(&pg, &url("localhost", "appdb", params)).await;
        assert_eq!(version, Ok(Some("TLSv1.3".into())), "{params:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_ca_and_verify_full_check_what_libpq_says() {
    let pg = TlsPostgres::start();
    pg.psql("postgres", "CREATE DATABASE appdb");
    let ca = pg.certs.ca.display().to_string();
    let foreign = pg.certs.foreign_ca.display().to_string();
    let url = |host: &str, db: &str, params: &str| pg.url(host, db, params);
    // verify-ca: the chain, not the name (127.0.0.2 is not in the certificate).
    let verify_ca = format!("sslmode=verify-ca&sslrootcert={ca}");
    assert!(connect(&pg, &url("127.0.0.2", "appdb", &verify_ca))
        .await
        .is_ok());
    let (err, took) = refused(
        &pg,
        &url(
            "localhost",
            "appdb",
            &format!("sslmode=verify-ca&sslrootcert={foreign}"),
        ),
    )
    .await;
    assert!(
        err.contains("certificate of localhost") && err.contains("UnknownIssuer"),
        "{err}"
    );
    assert!(took < FAIL_WITHIN, "{took:?}");
    // libpq: require with a root certificate checks the chain as verify-ca does.
    let (err, _) = refused(
        &pg,
        &url(
            "localhost",
            "appdb",
            &format!("sslmode=require&sslrootcert={foreign}"),
        ),
    )
    .await;
    assert!(err.contains("certificate"), "{err}");
    // verify-full: the chain and the host name (DNS or IP SAN).
    let full = format!("sslmode=verify-full&sslrootcert={ca}");
    for host in ["localhost", "127.0.0.1"] {
        let version = connect(&pg, &url(host, "appdb", &full)).await;
        assert_eq!(version, Ok(Some("TLSv1.3".into())), "{host}");
    }
    let (err, took) = refused(&pg, &url("127.0.0.2", "appdb", &full)).await;
    assert!(
        err.contains("certificate of 127.0.0.2") && err.contains("not valid for name"),
        "{err}"
    );
    assert!(took < FAIL_WITHIN, "verify-full refusal took {took:?}");
    eprintln!("verify-full refusal of a wrong host name took {took:?}");
    // Each host of a multi-host URL is checked against its own name: the first is
    // refused, the second is used.
    let p = pg.port;
    let multi = format!("postgres://postgres:{PASSWORD}@127.0.0.2:{p},localhost:{p}/appdb?{full}");
    assert!(
        connect(&pg, &multi).await.is_ok(),
        "the second host is used"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_logs_in() {
    let pg = TlsPostgres::start();
    let (ca, cert, key) = (&pg.certs.ca, &pg.certs.client_cert, &pg.certs.client_key);
    let base = format!(
        "postgres://certuser@localhost:{}/certdb?sslmode=verify-full&sslrootcert={}",
        pg.port,
        ca.display()
    );
    let with_cert = format!("{base}&sslcert={}&sslkey={}", cert.display(), key.display());
    let client = admin::connect(&with_cert)
        .await
        .expect("a client certificate login");
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    let seen = pg.psql("postgres", &format!("SELECT a.usename || ' ' || s.client_dn FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE pid = {pid}"));
    assert_eq!(seen, "certuser /CN=certuser");
    let err = format!(
        "{:#}",
        admin::connect(&base)
            .await
            .expect_err("no certificate, no login")
    );
    assert!(err.contains("certificate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_status_says_encrypted_and_exits_4_on_a_bad_certificate() {
    let pg = TlsPostgres::start();
    let full = format!("sslmode=verify-full&sslrootcert={}", pg.certs.ca.display());
    let good = pg.url("localhost", "statusdb", &full);
    let setup = ppctl(&["db", "setup", "--database-url", &good]).await;
    assert!(setup.status.success(), "{:?}", outputs(&setup));
    let status = ppctl(&["db", "status", "--database-url", &good]).await;
    let (stdout, stderr) = outputs(&status);
    assert!(status.status.success(), "{stderr}");
    assert!(
        stdout.contains("connection: encrypted (TLSv1.3)"),
        "{stdout}"
    );

    let start = Instant::now();
    let bad = ppctl(&[
        "db",
        "status",
        "--database-url",
        &pg.url("127.0.0.2", "statusdb", &full),
    ])
    .await;
    let took = start.elapsed();
    let (_, stderr) = outputs(&bad);
    assert_eq!(bad.status.code(), Some(4), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("certificate of 127.0.0.2") && !stderr.contains(PASSWORD),
        "{stderr}"
    );
    assert!(took < FAIL_WITHIN, "{took:?}");
    eprintln!("db status refused the certificate in {took:?} (process start included)");

    let plain = pg.url("localhost", "plaindb", "sslmode=disable");
    assert!(ppctl(&["db", "setup", "--database-url", &plain])
        .await
        .status
        .success());
    let (stdout, _) = outputs(&ppctl(&["db", "status", "--database-url", &plain]).await);
    assert!(stdout.contains("connection: unencrypted"), "{stdout}");

    let missing = pg.url(
        "localhost",
        "statusdb",
        "sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem",
    );
    let unusable = ppctl(&["db", "status", "--database-url", &missing]).await;
    let (_, stderr) = outputs(&unusable);
    assert_eq!(unusable.status.code(), Some(2), "a setting error: {stderr}");
    assert!(
        stderr.contains("sslrootcert /nonexistent/ca.pem") && !stderr.contains(PASSWORD),
        "{stderr}"
    );
}

/// A statement cut off is cancelled over TLS: with `verify-full` a plain cancel request
/// could not even be sent, and the statement would run on after its caller gave up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_statement_is_cancelled_over_tls() {
    let pg = TlsPostgres::start();
    let full = format!("sslmode=verify-full&sslrootcert={}", pg.certs.ca.display());
    let url = pg.url("localhost", "canceldb", &full);
    admin::setup(&url).await.expect("setup over TLS");
    let pool = ppctl::storage::pool(&url, 1).expect("pool");
    let client = ppctl::storage::inflight::InFlight::checkout(&pool)
        .await
        .expect("a connection");
    let sleep = async move { client.simple_query("SELECT pg_sleep(30)").await.map(|_| ()) };
    let cut = tokio::time::timeout(Duration::from_millis(500), sleep).await;
    assert!(cut.is_err(), "the statement was to be cut off");
    let running = "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'";
    let start = Instant::now();
    while pg.psql("postgres", running) != "0" {
        assert!(
            start.elapsed() < FAIL_WITHIN,
            "the statement still runs: no cancel reached the server"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
