//! A private PostgreSQL 15 for the tests that need a server configured otherwise than
//! the shared one on 5432 (TLS only, a standby, replication settings): its own data
//! directory (not under a mktemp -d folder of mode 700: the postgres user must reach
//! it), port, Unix socket and log; the superuser `postgres` logs in over the socket
//! (trust) and over TCP with `PASSWORD`. Killed and removed on drop, with any process
//! started beside it (a `pg_receivewal` standby), also when the test fails.

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
pub const PASSWORD: &str = "private-pg-pw";

pub struct PrivatePostgres {
    pub dir: PathBuf,
    pub port: u16,
    postmaster: Option<Child>,
    /// Processes that live as long as the server (`beside`).
    beside: Vec<Child>,
}

/// A fresh directory for a private server, reachable by the postgres user.
pub fn server_dir(kind: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ppctl-it-{kind}-{:012x}",
        rand::random::<u64>() & 0xffff_ffff_ffff
    ));
    fs::create_dir_all(&dir).expect("create the server directory");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

impl PrivatePostgres {
    /// initdb in `dir`, `conf` appended to postgresql.conf, `hba` as pg_hba.conf (after
    /// a line that lets the superuser in over the socket), started and ready.
    pub fn start(dir: PathBuf, conf: &str, hba: &str) -> Self {
        let (uid, gid) = postgres_ids();
        let mut server = Self {
            port: free_port(),
            dir,
            postmaster: None,
            beside: Vec::new(),
        };
        server.initdb(uid, gid, conf, hba);
        for attempt in 1.. {
            server.launch(uid, gid);
            match server.try_ready() {
                Ok(()) => break,
                Err(log) if log.contains("Address already in use") && attempt < 5 => {
                    server.postmaster = None;
                    server.port = free_port();
                    let path = server.dir.join("data").join("postgresql.conf");
                    let mut text = fs::read_to_string(&path).expect("postgresql.conf");
                    text.push_str(&format!("port = {}\n", server.port));
                    fs::write(&path, text).expect("write postgresql.conf");
                }
                Err(log) => panic!("the private PostgreSQL exited: {log}"),
            }
        }
        server.psql(
            "postgres",
            &format!("ALTER ROLE postgres PASSWORD '{PASSWORD}'"),
        );
        server
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.join("sock")
    }

    fn initdb(&self, uid: u32, gid: u32, conf: &str, hba: &str) {
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
        let ours = format!(
            "port = {}\nlisten_addresses = '127.0.0.1,127.0.0.2'\nunix_socket_directories = '{}'\n\
             fsync = off\n{conf}\n",
            self.port,
            self.socket_dir().display(),
        );
        let mut postgresql_conf =
            fs::read_to_string(data.join("postgresql.conf")).expect("postgresql.conf");
        postgresql_conf.push_str(&ours);
        fs::write(data.join("postgresql.conf"), postgresql_conf).expect("write postgresql.conf");
        let hba = format!("local all postgres trust\n{hba}");
        fs::write(data.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
    }

    fn launch(&mut self, uid: u32, gid: u32) {
        self.launch_with(uid, gid, &[]);
    }

    /// The postmaster, with `env` added to its environment (libfaketime's).
    fn launch_with(&mut self, uid: u32, gid: u32, env: &[(&str, &str)]) {
        let log = fs::File::create(self.dir.join("postgres.log")).expect("log file");
        let child = Command::new(format!("{PG_BIN}/postgres"))
            .args(["-D", &self.dir.join("data").to_string_lossy()])
            .envs(env.iter().copied())
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

    /// psql as the superuser `postgres` on `db`, over the Unix socket (trust), stopping
    /// at the first error.
    fn psql_on(&self, db: &str) -> Command {
        let mut psql = Command::new("psql");
        psql.args(["-h", &self.socket_dir().to_string_lossy()])
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .args(["-X", "-v", "ON_ERROR_STOP=1"]);
        psql
    }

    /// One statement's result, unaligned and without headers.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self
            .psql_on(db)
            .args(["-Atq", "-c", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A streaming standby of `primary` (whose pg_hba.conf must let `postgres` in for
    /// replication over the socket): `pg_basebackup -R`, `conf` appended, `env` given
    /// to its postmaster. Waits until it answers queries, or with `hot_standby = off`
    /// (it never does) until its log says it streams.
    pub fn standby_of(primary: &Self, kind: &str, conf: &str, env: &[(&str, &str)]) -> Self {
        let (uid, gid) = postgres_ids();
        let mut server = Self {
            port: free_port(),
            dir: server_dir(kind),
            postmaster: None,
            beside: Vec::new(),
        };
        let sock = server.socket_dir();
        fs::create_dir_all(&sock).expect("create the socket directory");
        chown(&sock, Some(uid), Some(gid)).expect("chown");
        chown(&server.dir, Some(uid), Some(gid)).expect("chown");
        let data = server.dir.join("data");
        let mut backup = Command::new(format!("{PG_BIN}/pg_basebackup"));
        backup
            .args(["-h", &primary.socket_dir().to_string_lossy()])
            .args(["-p", &primary.port.to_string(), "-U", "postgres"])
            .args([
                "-D",
                &data.to_string_lossy(),
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",
                "--no-sync",
            ]);
        run(
            "pg_basebackup",
            backup.current_dir(&server.dir).uid(uid).gid(gid),
        );
        let ours = format!(
            "\nport = {}\nunix_socket_directories = '{}'\n{conf}\n",
            server.port,
            sock.display()
        );
        let conf_path = data.join("postgresql.conf");
        let mut text = fs::read_to_string(&conf_path).expect("postgresql.conf");
        text.push_str(&ours);
        fs::write(&conf_path, text).expect("write postgresql.conf");
        server.launch_with(uid, gid, env);
        if conf.contains("hot_standby = off") {
            server.wait_log("started streaming WAL");
        } else {
            server.wait_ready();
        }
        server
    }

    /// Waits (60 s at most) until the server's log says `line`.
    pub fn wait_log(&self, line: &str) {
        let start = Instant::now();
        while !self.log().contains(line) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the private PostgreSQL did not log {line:?} in 60s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_ready(&mut self) {
        if let Err(log) = self.try_ready() {
            panic!("the private PostgreSQL exited: {log}");
        }
    }

    /// Waits until the server answers; Err with its log if it exited.
    fn try_ready(&mut self) -> Result<(), String> {
        let start = Instant::now();
        let socket = self.socket_dir().join(format!(".s.PGSQL.{}", self.port));
        while !socket.exists() || self.try_psql().is_none() {
            if let Some(status) = self
                .postmaster
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!("({status}) {}", self.log()));
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the private PostgreSQL did not start in 60s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn try_psql(&self) -> Option<()> {
        let out = self
            .psql_on("postgres")
            .args(["-Atqc", "SELECT 1"])
            .output()
            .ok()?;
        out.status.success().then_some(())
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }

    /// The environment of a ppctl process on database `app` of this server (plain TCP,
    /// as `postgres`) and on `queue`.
    pub fn app_env(&self, queue: &super::helpers::TestQueue) -> Vec<(&'static str, String)> {
        vec![
            (
                "DATABASE_URL",
                self.url("127.0.0.1", "app", "sslmode=disable"),
            ),
            ("AMQP_URL", super::helpers::AMQP_URL.to_string()),
            ("PP_QUEUE", queue.name().to_string()),
        ]
    }

    /// `postgres://postgres:<pw>@<host>:<port>/<db>?<params>`
    pub fn url(&self, host: &str, db: &str, params: &str) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@{host}:{}/{db}?{params}",
            self.port
        )
    }

    /// A psql script (`-f -`: each statement on its own, so `CREATE DATABASE` can run)
    /// as the superuser over the socket, stopping at the first error; its output.
    pub fn psql_script(&self, db: &str, script: &str) -> String {
        use std::io::Write;
        let mut child = self
            .psql_on(db)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run psql");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(script.as_bytes())
            .expect("write the script");
        drop(stdin);
        let out = child.wait_with_output().expect("psql output");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "psql on {db}:\n{script}\n{text}");
        text
    }

    /// Starts `program args` as the postgres user, in the server's directory, for as long
    /// as the server lives; its output goes to `<name>.log` there.
    pub fn beside(&mut self, name: &str, program: &str, args: &[&str]) -> PathBuf {
        let (uid, gid) = postgres_ids();
        let log = self.dir.join(format!("{name}.log"));
        let file = fs::File::create(&log).expect("log file");
        let child = Command::new(program)
            .args(args)
            .current_dir(&self.dir)
            .uid(uid)
            .gid(gid)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        self.beside.push(child);
        log
    }

    /// SIGKILLs the postmaster, as a primary that crashed; its backends end their
    /// sessions on their own when they see it gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.postmaster.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A directory under the server's, owned by the postgres user.
    pub fn owned_dir(&self, name: &str) -> PathBuf {
        let (uid, gid) = postgres_ids();
        let dir = self.dir.join(name);
        fs::create_dir_all(&dir).expect("create");
        chown(&dir, Some(uid), Some(gid)).expect("chown");
        dir
    }
}

/// A port free now, below Linux's ephemeral range (32768 and up): a port the kernel
/// handed out for `:0` was seen taken, before the server bound it, by one of the many
/// connections the other tests open (theirs come from that range). Two servers may
/// still draw the same one: `start` then draws again.
fn free_port() -> u16 {
    loop {
        let port = 20_000 + rand::random::<u16>() % 12_000;
        let both = ["127.0.0.1", "127.0.0.2"]
            .iter()
            .all(|ip| std::net::TcpListener::bind((*ip, port)).is_ok());
        if both {
            return port;
        }
    }
}

impl Drop for PrivatePostgres {
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
        for mut child in self.beside.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
