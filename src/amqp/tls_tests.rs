//! The TLS parameters of `AMQP_URL`: parsed and checked per node, files read at start.

use super::nodes::{Node, Nodes};
use super::tls::{TlsParams, Verify};
use std::path::PathBuf;

fn params(url: &str) -> Result<TlsParams, String> {
    TlsParams::from_url(&url::Url::parse(url).expect("a URL"))
}

#[test]
fn parameters_are_read_and_checked() {
    let p = params(
        "amqps://h/%2f?cacertfile=/ca%20dir/ca.pem&certfile=/c.pem&keyfile=/k.pem\
         &verify=verify_none&server_name_indication=broker.example&heartbeat=10",
    )
    .expect("valid");
    assert_eq!(p.cacertfile, Some(PathBuf::from("/ca dir/ca.pem")));
    assert_eq!(p.keyfile, Some(PathBuf::from("/k.pem")));
    assert_eq!(p.verify, Some(Verify::None));
    assert_eq!(p.server_name_indication.as_deref(), Some("broker.example"));
    assert_eq!(params("amqps://h/%2f").expect("none"), TlsParams::default());
    for (bad, says) in [
        (
            "amqps://h/%2f?verify=maybe",
            "verify=maybe is not verify_peer or verify_none",
        ),
        ("amqps://h/%2f?verify=", "verify= is not"),
        ("amqps://h/%2f?certfile=/c.pem", "certfile= needs keyfile="),
        ("amqps://h/%2f?keyfile=/k.pem", "keyfile= needs certfile="),
        (
            "amqps://h/%2f?server_name_indication=a%20b",
            "is not a host name",
        ),
        ("amqp://h/%2f?cacertfile=/ca.pem", "use amqps://"),
        ("amqp://h/%2f?verify=verify_peer", "use amqps://"),
    ] {
        let err = params(bad).expect_err(bad);
        assert!(err.contains(says), "{bad}: {err}");
    }
}

#[test]
fn files_that_cannot_be_used_are_named() {
    let dir = std::env::temp_dir().join(format!("ppctl-tls-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "hello").expect("write");
    let cases = [
        (
            "cacertfile=/nonexistent/ca.pem",
            "cannot read cacertfile=/nonexistent/ca.pem",
        ),
        (
            &format!("cacertfile={}", not_pem.display()),
            "holds no PEM certificate",
        ),
        (
            "cacertfile=/nonexistent/ca.pem&verify=verify_none",
            "cannot read cacertfile=/nonexistent/ca.pem",
        ),
    ];
    for (query, says) in cases {
        let built = params(&format!("amqps://h/%2f?{query}")).and_then(|p| p.build("h"));
        let err = built.expect_err(query);
        assert!(err.contains(says), "{query}: {err}");
    }
    let p = TlsParams {
        certfile: Some(not_pem.clone()),
        keyfile: Some(not_pem),
        ..TlsParams::default()
    };
    let err = p.build("h").expect_err("not a client identity");
    assert!(err.contains("certfile="), "{err}");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn without_cacertfile_the_system_store_is_trusted_and_the_host_verified() {
    let tls = params("amqps://broker.example/%2f")
        .and_then(|p| p.build("broker.example"))
        .expect("the system trust store");
    assert_eq!(tls.server_name, "broker.example");
    let tls = params("amqps://10.0.0.5/%2f?server_name_indication=mq.example")
        .and_then(|p| p.build("10.0.0.5"))
        .expect("another name");
    assert_eq!(tls.server_name, "mq.example");
}

#[test]
fn each_node_has_its_own_tls_and_its_host_as_written() {
    let nodes = Nodes::parse(
        "amqps://u:secret@127.0.0.1:5671/%2f?server_name_indication=rabbit.internal,\
         amqp://u:secret@h2:5672/%2f,amqps://u:secret@[::1]:5671/%2f?verify=verify_none",
    )
    .expect("three nodes");
    let [a, b, c] = &nodes.nodes[..] else {
        panic!("three nodes")
    };
    assert_eq!(a.uri.authority.host, "127.0.0.1");
    let server_name = |n: &Node| n.tls.as_ref().map(|t| t.server_name.clone());
    assert_eq!(server_name(a).as_deref(), Some("rabbit.internal"));
    assert!(b.tls.is_none());
    assert_eq!(c.uri.authority.host, "::1");
    assert_eq!(server_name(c).as_deref(), Some("::1"));
    // The start-up line says so: some nodes are not encrypted.
    assert!(nodes.encryption().starts_with("mixed"));
    let all = Nodes::parse("amqps://u:secret@h1/%2f,amqps://u:secret@h2/%2f").expect("two");
    assert_eq!(all.encryption(), "encrypted (amqps://)");
    let err = Nodes::parse("amqps://u:secret@h1/%2f,amqps://u:secret@h2/%2f?verify=no")
        .expect_err("a bad second node");
    let err = format!("{err:#}");
    assert!(
        err.contains("node 2 of 2") && err.contains("verify=no"),
        "{err}"
    );
    assert!(!err.contains("secret"), "{err}");
    let err = Nodes::parse("amqps://u:secret@h1/%2f?cacertfile=/nonexistent/ca.pem")
        .expect_err("a missing file");
    let err = format!("{err:#}");
    assert!(
        err.contains("/nonexistent/ca.pem") && !err.contains("secret"),
        "{err}"
    );
}

#[test]
fn a_url_that_is_not_amqp_is_refused_without_its_password() {
    assert!(Nodes::parse(crate::config::DEFAULT_AMQP_URL).is_ok());
    let err = Nodes::parse("http://guest:secret@h").expect_err("not amqp");
    assert!(!format!("{err:#}").contains("secret"), "{err:#}");
}
