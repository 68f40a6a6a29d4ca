//! `spin-host up` as a separate process on a free loopback port, for tests
//! that need several hosts (replicas) or a host that can be killed outright.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::http_client::Connection;

/// How long a starting host may take to answer (it compiles every component).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The `spin-host` binary `cargo test --release` built next to the tests.
pub fn binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| crate::root().join("target"));
    let path = target.join("release").join("spin-host");
    assert!(path.is_file(), "{} is missing: run the tests with `cargo xtask test`", path.display());
    path
}

/// A running host, killed when dropped.
pub struct HostProcess {
    child: Child,
    pub address: SocketAddr,
    log: PathBuf,
}

impl HostProcess {
    /// `spin-host up -f <root>/spin.toml --listen <free port> --quiet` plus `args`;
    /// waits until `GET /` answers.
    pub async fn start(args: &[String], log: PathBuf) -> HostProcess {
        let mut all = vec!["--quiet".to_string()];
        all.extend_from_slice(args);
        Self::start_logging(&all, log).await
    }

    /// As [`HostProcess::start`], with the request log on.
    pub async fn start_logging(args: &[String], log: PathBuf) -> HostProcess {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let file = std::fs::File::create(&log).expect("host log");
        let mut command = Command::new(binary());
        command
            .arg("up")
            .arg("-f")
            .arg(crate::root().join("spin.toml"))
            .args(["--listen", &address.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SPIN_") {
                command.env_remove(name);
            }
        }
        let mut host = HostProcess { child: command.spawn().expect("spawning spin-host"), address, log };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = host.child.try_wait() {
                panic!("spin-host exited with {status} while starting:\n{}", host.log_text());
            }
            if let Ok(mut c) = Connection::open(address).await {
                if c.send("GET", "/", &[], "").await.map(|r| r.status == 200).unwrap_or(false) {
                    return host;
                }
            }
            assert!(Instant::now() < deadline, "spin-host did not answer in {START_TIMEOUT:?}:\n{}", host.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `timeout` for the process to end by itself; its status if it did.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
