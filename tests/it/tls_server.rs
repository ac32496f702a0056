//! A private PostgreSQL 15 that takes TLS only, for the TLS tests (`private_pg` with
//! certificates made at run time: a CA, a foreign one, a server certificate for
//! `localhost` and 127.0.0.1, a client certificate for user `certuser`).
//!
//! pg_hba.conf, so that each sslmode shows what it means:
//! - `plaindb`: plain connections only (`hostnossl`), password; `postgres` takes them
//!   too (`db setup` creates databases through it);
//! - `certdb`: TLS with a client certificate (`cert`), no password;
//! - every other database: TLS only (`hostssl`), password (scram-sha-256).

use crate::private_pg::{postgres_ids, server_dir, PrivatePostgres};
use crate::tls_certs::Certs;
use std::fs;

pub use crate::private_pg::PASSWORD;

pub struct TlsPostgres {
    pub certs: Certs,
    pub server: PrivatePostgres,
}

impl std::ops::Deref for TlsPostgres {
    type Target = PrivatePostgres;

    fn deref(&self) -> &PrivatePostgres {
        &self.server
    }
}

impl TlsPostgres {
    pub fn start() -> Self {
        let (uid, gid) = postgres_ids();
        let dir = server_dir("pgtls");
        fs::create_dir_all(dir.join("certs")).expect("certs directory");
        let certs = Certs::generate(&dir.join("certs")).expect("the test certificates");
        certs
            .give_server_key(uid, gid)
            .expect("server.key to postgres, 0600");
        let conf = format!(
            "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nssl_ca_file = '{}'",
            certs.server_cert.display(),
            certs.server_key.display(),
            certs.ca.display(),
        );
        let hba = "hostnossl plaindb,postgres all 127.0.0.0/8 scram-sha-256\n\
                   hostssl certdb all 127.0.0.0/8 cert\n\
                   hostssl all all 127.0.0.0/8 scram-sha-256\n";
        let server = PrivatePostgres::start(dir, &conf, hba);
        server.psql("postgres", "CREATE ROLE certuser LOGIN");
        server.psql("postgres", "CREATE DATABASE certdb OWNER certuser");
        server.psql("postgres", "CREATE DATABASE plaindb");
        Self { certs, server }
    }
}
