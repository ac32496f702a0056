//! Certificates made at run time with the openssl CLI (nothing is checked in): a CA,
//! a server certificate it signs for `localhost` and `127.0.0.1`, a client certificate
//! it signs (CN `certuser`: PostgreSQL's `cert` login takes the role from the CN), and a
//! foreign CA that signed neither. EC P-256 keys (fast to make), valid two days. Shared
//! by the PostgreSQL (`tls_server`) and RabbitMQ (`tls_broker`) TLS tests.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Certs {
    pub ca: PathBuf,
    pub foreign_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// Runs `openssl` with `args` (split on whitespace: every name here is one word).
fn openssl(dir: &Path, args: &str) {
    let out = Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .output()
        .expect("the openssl CLI (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const EC_KEY: &str = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

/// An EC P-256 key and a self-signed CA certificate for it.
fn ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &format!(
            "req -x509 {EC_KEY} -keyout {name}.key -out {name}.pem -days 2 -subj /CN={name} \
             -addext basicConstraints=critical,CA:TRUE \
             -addext keyUsage=critical,keyCertSign,cRLSign"
        ),
    );
}

/// A key and a certificate for `name` signed by `ca`, with the given extensions.
fn leaf(dir: &Path, name: &str, cn: &str, ca: &str, extensions: &str) {
    openssl(
        dir,
        &format!("req {EC_KEY} -keyout {name}.key -out {name}.csr -subj /CN={cn}"),
    );
    std::fs::write(dir.join(format!("{name}.ext")), extensions).expect("write the extensions");
    openssl(
        dir,
        &format!(
            "x509 -req -in {name}.csr -CA {ca}.pem -CAkey {ca}.key -CAcreateserial \
             -out {name}.pem -days 2 -extfile {name}.ext"
        ),
    );
}

impl Certs {
    /// Writes every file into `dir` (about a second of openssl).
    pub fn generate(dir: &Path) -> Self {
        ca(dir, "ca");
        ca(dir, "foreign-ca");
        leaf(
            dir,
            "server",
            "localhost",
            "ca",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        );
        leaf(
            dir,
            "client",
            "certuser",
            "ca",
            "extendedKeyUsage=clientAuth\n",
        );
        let path = |name: &str| dir.join(name);
        Self {
            ca: path("ca.pem"),
            foreign_ca: path("foreign-ca.pem"),
            server_cert: path("server.pem"),
            server_key: path("server.key"),
            client_cert: path("client.pem"),
            client_key: path("client.key"),
        }
    }

    /// `cacertfile=…&certfile=…&keyfile=…`: what every client of a node that requires
    /// a client certificate needs.
    pub fn client_query(&self) -> String {
        format!(
            "cacertfile={}&certfile={}&keyfile={}",
            self.ca.display(),
            self.client_cert.display(),
            self.client_key.display()
        )
    }
}
