//! A private PostgreSQL 15 that takes TLS only, for the TLS tests: its own data
//! directory and port, a CA made at run time (plus a foreign one), a server certificate
//! for `localhost` and 127.0.0.1, a client certificate for user `certuser`. Killed and
//! removed on drop, also when the test fails. The shared server on 5432 is not touched.
//!
//! pg_hba.conf, so that each sslmode shows what it means:
//! - `plaindb`: plain connections only (`hostnossl`), password; `postgres` takes them
//!   too (`db setup` creates databases through it);
//! - `certdb`: TLS with a client certificate (`cert`), no password;
//! - every other database: TLS only (`hostssl`), password (scram-sha-256).

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::tls_certs::Certs;

fn run(what: &str, command: &mut Command) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The postgres user's uid and gid, from /etc/passwd.
fn postgres_ids() -> (u32, u32) {
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

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
pub const PASSWORD: &str = "tls-test-pw";

pub struct TlsPostgres {
    pub dir: PathBuf,
    pub port: u16,
    pub certs: Certs,
    postmaster: Option<Child>,
}

impl TlsPostgres {
    pub fn start() -> Self {
        let (uid, gid) = postgres_ids();
        // Not under a mktemp -d folder (mode 700): the postgres user must reach it.
        let dir = std::env::temp_dir().join(format!(
            "ppctl-it-pgtls-{:012x}",
            rand::random::<u64>() & 0xffff_ffff_ffff
        ));
        fs::create_dir_all(dir.join("certs")).expect("create the server directory");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        let certs = Certs::generate(&dir.join("certs")).expect("the test certificates");
        certs
            .give_server_key(uid, gid)
            .expect("server.key to postgres, 0600");
        let mut server = Self {
            port: free_port(),
            dir,
            certs,
            postmaster: None,
        };
        server.initdb(uid, gid);
        server.launch(uid, gid);
        server.wait_ready();
        server.provision();
        server
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.join("sock")
    }

    fn initdb(&self, uid: u32, gid: u32) {
        let data = self.dir.join("data");
        for (dir, mode) in [(&data, 0o700), (&self.socket_dir(), 0o755)] {
            fs::create_dir_all(dir).expect("create a server directory");
            chown(dir, Some(uid), Some(gid)).expect("chown");
            fs::set_permissions(dir, fs::Permissions::from_mode(mode)).expect("chmod");
        }
        let mut initdb = Command::new(format!("{PG_BIN}/initdb"));
        initdb.args([
            "-D",
            &data.to_string_lossy(),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
        ]);
        run("initdb", initdb.current_dir(&self.dir).uid(uid).gid(gid));
        let certs = &self.certs;
        let conf = format!(
            "port = {}\nlisten_addresses = '127.0.0.1,127.0.0.2'\nunix_socket_directories = '{}'\n\
             ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nssl_ca_file = '{}'\nfsync = off\n",
            self.port,
            self.socket_dir().display(),
            certs.server_cert.display(),
            certs.server_key.display(),
            certs.ca.display(),
        );
        let mut postgresql_conf =
            fs::read_to_string(data.join("postgresql.conf")).expect("postgresql.conf");
        postgresql_conf.push_str(&conf);
        fs::write(data.join("postgresql.conf"), postgresql_conf).expect("write postgresql.conf");
        let hba = "local all postgres trust\n\
                   hostnossl plaindb,postgres all 127.0.0.0/8 scram-sha-256\n\
                   hostssl certdb all 127.0.0.0/8 cert\n\
                   hostssl all all 127.0.0.0/8 scram-sha-256\n";
        fs::write(data.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
    }

    fn launch(&mut self, uid: u32, gid: u32) {
        let log = fs::File::create(self.dir.join("postgres.log")).expect("log file");
        let child = Command::new(format!("{PG_BIN}/postgres"))
            .args(["-D", &self.dir.join("data").to_string_lossy()])
            .current_dir(&self.dir)
            .uid(uid)
            .gid(gid)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start postgres");
        self.postmaster = Some(child);
    }

    /// psql as the superuser over the Unix socket (trust).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-h",
                &self.socket_dir().to_string_lossy(),
                "-p",
                &self.port.to_string(),
            ])
            .args([
                "-U",
                "postgres",
                "-d",
                db,
                "-XAtq",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        let socket = self.socket_dir().join(format!(".s.PGSQL.{}", self.port));
        while !socket.exists() || self.try_psql().is_none() {
            if let Some(status) = self
                .postmaster
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("the private PostgreSQL exited ({status}): {}", self.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the private PostgreSQL did not start in 60s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn try_psql(&self) -> Option<()> {
        let out = Command::new("psql")
            .args([
                "-h",
                &self.socket_dir().to_string_lossy(),
                "-p",
                &self.port.to_string(),
            ])
            .args(["-U", "postgres", "-d", "postgres", "-XAtqc", "SELECT 1"])
            .output()
            .ok()?;
        out.status.success().then_some(())
    }

    fn provision(&self) {
        self.psql(
            "postgres",
            &format!("ALTER ROLE postgres PASSWORD '{PASSWORD}'"),
        );
        self.psql("postgres", "CREATE ROLE certuser LOGIN");
        self.psql("postgres", "CREATE DATABASE certdb OWNER certuser");
        self.psql("postgres", "CREATE DATABASE plaindb");
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }

    /// `postgres://postgres:<pw>@<host>:<port>/<db>?<params>`
    pub fn url(&self, host: &str, db: &str, params: &str) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@{host}:{}/{db}?{params}",
            self.port
        )
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.postmaster.take() {
            // SIGQUIT: immediate shutdown, the backends with it.
            let _ = Command::new("kill")
                .args(["-QUIT", &child.id().to_string()])
                .stderr(Stdio::null())
                .status();
            let start = Instant::now();
            while child.try_wait().ok().flatten().is_none()
                && start.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
