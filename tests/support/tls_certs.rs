//! Certificates made at run time with the openssl CLI (nothing is checked in): a CA,
//! a server certificate it signs for `localhost` and `127.0.0.1`, a client certificate
//! it signs (CN `certuser`: PostgreSQL's `cert` login takes the role from the CN), and a
//! foreign CA that signed neither. EC P-256 keys (fast to make), valid two days. Shared
//! by both test crates (`#[path = "../support/tls_certs.rs"] mod tls_certs;`): the
//! integration tests' private TLS servers (`tls_server`, `tls_broker`) and the chaos
//! suite's TLS scenario. Errors are returned, not panicked: a chaos scenario records a
//! failed set-up in its row and the other scenarios still run.

use std::os::unix::fs::{chown, PermissionsExt};
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

type Made = Result<(), String>;

/// Runs `openssl` with `args` (split on whitespace: every name here is one word).
fn openssl(dir: &Path, args: &str) -> Made {
    let out = Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .output()
        .map_err(|e| format!("run the openssl CLI (apt-get install openssl): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

const EC_KEY: &str = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

/// An EC P-256 key and a self-signed CA certificate for it.
fn ca(dir: &Path, name: &str) -> Made {
    openssl(
        dir,
        &format!(
            "req -x509 {EC_KEY} -keyout {name}.key -out {name}.pem -days 2 -subj /CN={name} \
             -addext basicConstraints=critical,CA:TRUE \
             -addext keyUsage=critical,keyCertSign,cRLSign"
        ),
    )
}

/// A key and a certificate for `name` signed by `ca`, with the given extensions.
fn leaf(dir: &Path, name: &str, cn: &str, ca: &str, extensions: &str) -> Made {
    openssl(
        dir,
        &format!("req {EC_KEY} -keyout {name}.key -out {name}.csr -subj /CN={cn}"),
    )?;
    std::fs::write(dir.join(format!("{name}.ext")), extensions)
        .map_err(|e| format!("write {name}.ext: {e}"))?;
    openssl(
        dir,
        &format!(
            "x509 -req -in {name}.csr -CA {ca}.pem -CAkey {ca}.key -CAcreateserial \
             -out {name}.pem -days 2 -extfile {name}.ext"
        ),
    )
}

impl Certs {
    /// Writes every file into `dir` (about a second of openssl).
    pub fn generate(dir: &Path) -> Result<Self, String> {
        ca(dir, "ca")?;
        ca(dir, "foreign-ca")?;
        leaf(
            dir,
            "server",
            "localhost",
            "ca",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )?;
        leaf(
            dir,
            "client",
            "certuser",
            "ca",
            "extendedKeyUsage=clientAuth\n",
        )?;
        let path = |name: &str| dir.join(name);
        Ok(Self {
            ca: path("ca.pem"),
            foreign_ca: path("foreign-ca.pem"),
            server_cert: path("server.pem"),
            server_key: path("server.key"),
            client_cert: path("client.pem"),
            client_key: path("client.key"),
        })
    }

    /// Hands the server's key to the postgres user (`uid`, `gid`), mode 0600: PostgreSQL
    /// refuses to start with a key another user owns or others can read.
    pub fn give_server_key(&self, uid: u32, gid: u32) -> std::io::Result<()> {
        chown(&self.server_key, Some(uid), Some(gid))?;
        std::fs::set_permissions(&self.server_key, std::fs::Permissions::from_mode(0o600))
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
