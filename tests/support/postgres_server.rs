//! A private PostgreSQL for tests, from Debian's `postgresql` package:
//! `initdb` into a temporary folder owned by the `postgres` system user
//! (the server refuses to run as root, and the tests run as root), started
//! on a free loopback port, stopped and removed when dropped. A watchdog
//! process stops it too if the test process dies first, so a killed test
//! run leaves no server behind.
//!
//! Binaries are looked for on PATH, then in `/usr/lib/postgresql/*/bin`
//! (newest version first), as `cargo xtask test`'s prerequisites do.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a starting server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The folder holding `initdb` and `postgres`, if any.
pub fn bin_dir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>());
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.filter_map(|e| Some(e.ok()?.path().join("bin"))).collect())
        .unwrap_or_default();
    // Newest first: "9" would sort after "15" as text, so compare numbers.
    versions.sort_by_key(|p| std::cmp::Reverse(p.parent().and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok()).unwrap_or(0)));
    on_path.chain(versions).find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
}

/// Whether a PostgreSQL server can be started here.
pub fn available() -> bool {
    bin_dir().is_some()
}

/// The uid and gid of the `postgres` system user (from /etc/passwd).
fn postgres_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&"postgres")).then(|| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))?
    })
}

/// A running server, stopped and deleted when dropped.
pub struct PostgresServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    databases: AtomicU64,
}

impl PostgresServer {
    /// Starts a fresh cluster on a free loopback port. `fsync` is off: the
    /// tests crash the app, never the database server, and share 2 cores.
    pub fn start() -> PostgresServer {
        Self::start_with(false)
    }

    /// [`PostgresServer::start`]; `durable`: fsync and full-page writes on,
    /// as a deployment runs (the benchmark measures commits).
    pub fn start_with(durable: bool) -> PostgresServer {
        let bin = bin_dir().expect("PostgreSQL server binaries (initdb, postgres): apt-get install postgresql");
        let dir = std::env::temp_dir().join(format!("analytics-pg-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir).expect("a folder for the cluster");
        let user = if is_root() { Some(postgres_user().expect("a `postgres` system user to run the server as")) } else { None };
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown the cluster folder");
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb.args(["-D"]).arg(&dir).args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"]);
        let output = as_user(&mut initdb, user).stdin(Stdio::null()).output().expect("running initdb");
        assert!(output.status.success(), "initdb failed: {}", String::from_utf8_lossy(&output.stderr));
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            match spawn(&bin, &dir, port, user, durable) {
                Ok(child) => {
                    watchdog(child.id(), &dir);
                    return PostgresServer { port, dir, child: Some(child), databases: AtomicU64::new(0) };
                }
                Err(e) => last_error = e,
            }
        }
        panic!("could not start postgres: {last_error}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` as the superuser.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates an empty database and answers its URL (each test gets its own).
    pub async fn create_database(&self) -> String {
        let name = format!("t{}", self.databases.fetch_add(1, Ordering::SeqCst));
        self.execute("postgres", &format!("CREATE DATABASE {name}")).await;
        self.url(&name)
    }

    /// Runs `sql` on database `name` (test setup and inspection).
    pub async fn execute(&self, name: &str, sql: &str) {
        let client = self.client(name).await;
        client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// A client of database `name`, its connection driven in the background.
    pub async fn client(&self, name: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url(name), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.url(name)));
        tokio::spawn(connection);
        client
    }

    /// Stops the server (fast shutdown) and removes its files.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGINT: the server's "fast" shutdown.
            let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

fn is_root() -> bool {
    // The owner of /proc/self is this process's effective user.
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

fn as_user(command: &mut Command, user: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid).env("HOME", "/tmp").env_remove("PGDATA");
    }
    command
}

fn spawn(bin: &Path, dir: &Path, port: u16, user: Option<(u32, u32)>, durable: bool) -> Result<Child, String> {
    let mut command = Command::new(bin.join("postgres"));
    let sync = if durable { "on" } else { "off" };
    command
        .arg("-D")
        .arg(dir)
        .args(["-p", &port.to_string(), "-h", "127.0.0.1", "-k"])
        .arg(dir)
        .args(["-c", &format!("fsync={sync}"), "-c", &format!("full_page_writes={sync}"), "-c", "max_connections=400"])
        .args(["-c", "shared_buffers=32MB", "-c", "log_min_messages=fatal"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = as_user(&mut command, user).spawn().map_err(|e| format!("spawning postgres: {e}"))?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("postgres exited with {status} (port {port} taken?)"));
        }
        // The 8th line of postmaster.pid is the server's status.
        let ready = std::fs::read_to_string(dir.join("postmaster.pid"))
            .map(|pid| pid.lines().nth(7).is_some_and(|s| s.trim() == "ready"))
            .unwrap_or(false);
        if ready {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("postgres was not ready on port {port} within {START_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A shell that stops the server and removes its folder once this test
/// process is gone (a test killed or aborted never runs `Drop`).
fn watchdog(server: u32, dir: &Path) {
    let script = r#"while kill -0 "$0" 2>/dev/null && kill -0 "$1" 2>/dev/null; do sleep 1; done
kill -INT "$1" 2>/dev/null; sleep 3; kill -KILL "$1" 2>/dev/null; rm -rf "$2""#;
    let _ = Command::new("sh")
        .args(["-c", script, &std::process::id().to_string(), &server.to_string()])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}
