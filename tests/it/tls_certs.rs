//! Certificates for the TLS tests, made at run time with the openssl CLI: nothing is
//! checked in. EC P-256 keys (fast to make), valid two days.

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::Path;
use std::process::Command;

pub fn run(what: &str, command: &mut Command) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn postgres_ids() -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    let line = passwd.lines().find(|l| l.starts_with("postgres:"));
    let fields: Vec<&str> = line
        .expect("a postgres user (Debian's PostgreSQL 15 package)")
        .split(':')
        .collect();
    (
        fields[2].parse().expect("uid"),
        fields[3].parse().expect("gid"),
    )
}

/// `openssl` in `dir`, with `args`.
fn openssl(dir: &Path, args: &str) {
    run(
        &format!("openssl {args}"),
        Command::new("openssl")
            .current_dir(dir)
            .args(args.split(' ')),
    );
}

/// A CA (`<name>.crt`, `<name>.key`).
fn make_ca(dir: &Path, name: &str) {
    openssl(dir, &format!("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout {name}.key -out {name}.crt -days 2 -subj /CN=ppctl-test-{name}"));
}

/// A certificate for `cn` signed by `ca.crt`, with `ext` (an openssl extension line).
fn make_leaf(dir: &Path, name: &str, cn: &str, ext: &str) {
    fs::write(
        dir.join(format!("{name}.ext")),
        format!("basicConstraints=CA:FALSE\n{ext}\n"),
    )
    .expect("ext file");
    openssl(dir, &format!("req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout {name}.key -out {name}.csr -subj /CN={cn}"));
    openssl(dir, &format!("x509 -req -in {name}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out {name}.crt -days 2 -extfile {name}.ext"));
}

/// The CAs, the server's certificate (its key the postgres user's) and the client's.
pub fn make_all(certs: &Path, uid: u32, gid: u32) {
    make_ca(certs, "ca");
    make_ca(certs, "foreign");
    make_leaf(
        certs,
        "server",
        "localhost",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
    );
    make_leaf(certs, "client", "certuser", "extendedKeyUsage=clientAuth");
    // The server's key: the postgres user's, 0600, or PostgreSQL refuses to start.
    chown(certs.join("server.key"), Some(uid), Some(gid)).expect("chown server.key");
    fs::set_permissions(certs.join("server.key"), fs::Permissions::from_mode(0o600))
        .expect("chmod");
}
