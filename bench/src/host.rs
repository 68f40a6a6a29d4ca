//! The processes the benchmark runs: `spin-host` and `redis-server`, each on a
//! free loopback port. None outlives the benchmark: a child is stopped when its
//! handle drops (also while unwinding from a panic), on Ctrl-C or SIGTERM by
//! [`stop_everything`], and by the kernel if the benchmark itself is killed
//! (`PR_SET_PDEATHSIG`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::load;

/// How long a child gets to exit after SIGTERM before it is killed.
const GRACE: Duration = Duration::from_secs(5);
/// How long a starting host may take to answer (it compiles every component).
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// Pids of running children and paths to remove, for the signal handler.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static TEMP_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Stops every child still running and removes the registered temporary
/// directories; for Ctrl-C and SIGTERM, after which the process exits.
pub fn stop_everything() {
    let pids: Vec<u32> = CHILDREN.lock().map(|mut c| std::mem::take(&mut *c)).unwrap_or_default();
    for &pid in &pids {
        // SAFETY: sending a signal to a pid we spawned has no memory effects.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
    let deadline = Instant::now() + GRACE;
    let mut left = pids;
    while !left.is_empty() && Instant::now() < deadline {
        left.retain(|&pid| !reaped(pid));
        std::thread::sleep(Duration::from_millis(20));
    }
    for pid in left {
        // SAFETY: as above.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is a valid out-pointer.
        unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
    }
    for dir in TEMP_DIRS.lock().map(|mut d| std::mem::take(&mut *d)).unwrap_or_default() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Whether child `pid` has exited (and reaps it).
fn reaped(pid: u32) -> bool {
    let mut status = 0;
    // SAFETY: WNOHANG wait on our own child; `status` is a valid out-pointer.
    let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
    r != 0
}

/// Registers a directory for removal by [`stop_everything`].
pub fn register_temp_dir(path: &Path) {
    if let Ok(mut dirs) = TEMP_DIRS.lock() {
        dirs.push(path.to_path_buf());
    }
}

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
struct Supervised {
    name: String,
    child: Option<Child>,
}

impl Supervised {
    fn spawn(name: &str, mut command: Command) -> anyhow::Result<Supervised> {
        // SAFETY: prctl is async-signal-safe; between fork and exec it only
        // asks the kernel to kill the child when the benchmark dies.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn().with_context(|| format!("cannot start {name} ({command:?})"))?;
        if let Ok(mut children) = CHILDREN.lock() {
            children.push(child.id());
        }
        Ok(Supervised { name: name.to_string(), child: Some(child) })
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGTERM, up to [`GRACE`] to exit, then SIGKILL. Returns how it ended.
    fn stop(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        let pid = child.id();
        if let Ok(mut children) = CHILDREN.lock() {
            children.retain(|&p| p != pid);
        }
        if let Some(status) = child.try_wait().with_context(|| format!("waiting for {}", self.name))? {
            return Ok(Some(status));
        }
        // SAFETY: signals our own, not yet reaped, child.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + GRACE;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().with_context(|| format!("waiting for {}", self.name))? {
                return Ok(Some(status));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("bench: {} (pid {pid}) ignored SIGTERM for {GRACE:?}; killing it", self.name);
        child.kill().with_context(|| format!("killing {}", self.name))?;
        Ok(Some(child.wait().with_context(|| format!("waiting for {}", self.name))?))
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("bench: stopping {}: {e:#}", self.name);
        }
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a free loopback port")?;
    Ok(listener.local_addr().context("reading the free port")?.port())
}

/// Which Redis the app's guests reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisKind {
    Embedded,
    External,
}

impl RedisKind {
    pub fn name(self) -> &'static str {
        match self {
            RedisKind::Embedded => "embedded",
            RedisKind::External => "external",
        }
    }
}

/// How to start one host.
pub struct HostConfig<'a> {
    pub binary: &'a Path,
    pub manifest: &'a Path,
    pub state_dir: &'a Path,
    pub redis: RedisKind,
    /// `--store-mode`: `fast` or `spin`.
    pub store_mode: &'a str,
    /// A runtime config (e.g. the key-value store on a redis-server).
    pub runtime_config: Option<&'a Path>,
    pub variables: &'a [(String, String)],
    /// Where the host's stdout and stderr go.
    pub log: &'a Path,
    /// `--spin-costs`, to try other costs than the calibrated ones.
    pub spin_costs: Option<&'a str>,
}

/// How to start the Spin CLI (`spin up`) on one app.
pub struct SpinConfig<'a> {
    pub binary: &'a Path,
    pub manifest: &'a Path,
    pub state_dir: &'a Path,
    pub runtime_config: Option<&'a Path>,
    pub variables: &'a [(String, String)],
    pub log: &'a Path,
}

/// A running `spin-host up`, `spin up` or the peer.
pub struct Host {
    process: Supervised,
    /// The process that serves, when it is not `process` itself: `spin up`
    /// runs the app in a child (`spin trigger http`), whose CPU and memory count.
    server_pid: Option<u32>,
    address: SocketAddr,
    /// Where the host serves its own metrics (the peer serves none).
    metrics: Option<SocketAddr>,
    log: PathBuf,
}

/// The peer: the FastAPI + Redis implementation of the same API, from a
/// checkout and a Python that has its requirements installed.
pub struct PeerConfig<'a> {
    pub python: &'a Path,
    pub dir: &'a Path,
    pub redis_port: u16,
    pub log: &'a Path,
}

impl Host {
    /// Starts the host on a free port and waits until it answers `GET /`.
    pub async fn start(config: &HostConfig<'_>) -> anyhow::Result<Host> {
        // A port found free can be taken before the host binds it: try again then.
        let mut last_error = None;
        for _ in 0..3 {
            match Host::try_start(config).await {
                Ok(host) => return Ok(host),
                Err(e) => {
                    eprintln!("bench: host did not start, retrying: {e:#}");
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("host did not start")))
    }

    async fn try_start(config: &HostConfig<'_>) -> anyhow::Result<Host> {
        let address = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        std::fs::create_dir_all(config.state_dir)
            .with_context(|| format!("creating state directory {}", config.state_dir.display()))?;
        let log = File::create(config.log).with_context(|| format!("creating {}", config.log.display()))?;
        let mut command = Command::new(config.binary);
        command
            .arg("up")
            .args(["--listen", &address.to_string()])
            .arg("--state-dir")
            .arg(config.state_dir)
            .arg("--quiet")
            .args(["--redis", config.redis.name()])
            .args(["--store-mode", config.store_mode])
            .args(["--metrics-listen", &metrics.to_string()]);
        if let Some(path) = config.runtime_config {
            command.arg("--runtime-config-file").arg(path);
        }
        if let Some(costs) = config.spin_costs {
            command.args(["--spin-costs", costs]);
        }
        for (name, value) in config.variables {
            command.args(["--variable", &format!("{name}={value}")]);
        }
        command.arg("-f").arg(config.manifest);
        // Only what we pass may configure the host, not the caller's environment.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SPIN_") {
                command.env_remove(name);
            }
        }
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicating the log file")?)
            .stderr(log);
        let mut process = Supervised::spawn("spin-host", command)?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = process.exited() {
                bail!("spin-host exited with {status} while starting:\n{}", log_tail(config.log, 2_000));
            }
            // Any answer but a server error: the host serves (the probe app has no `/`).
            if let Ok(response) = load::request_once(address, "GET", "/", None).await {
                if response.status < 500 {
                    return Ok(Host { process, server_pid: None, address, metrics: Some(metrics), log: config.log.to_path_buf() });
                }
            }
            if Instant::now() >= deadline {
                bail!("spin-host did not answer within {START_TIMEOUT:?}:\n{}", log_tail(config.log, 2_000));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts the peer (uvicorn, one worker, as it ships) on a free port,
    /// its rate limit out of the way, and waits until `/health` answers.
    pub async fn start_peer(config: &PeerConfig<'_>) -> anyhow::Result<Host> {
        let address = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let log = File::create(config.log).with_context(|| format!("creating {}", config.log.display()))?;
        let mut command = Command::new(config.python);
        command
            .args(["-m", "uvicorn", "src.main:app", "--host", "127.0.0.1", "--port", &address.port().to_string()])
            .current_dir(config.dir)
            .env("REDIS_HOST", "127.0.0.1")
            .env("REDIS_PORT", config.redis_port.to_string())
            .env("RATE_LIMIT_REQUESTS", u32::MAX.to_string())
            .env("EXTERNAL_SERVICE_FAILURE_RATE", "0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicating the log file")?)
            .stderr(log);
        let mut process = Supervised::spawn("peer", command)?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = process.exited() {
                bail!("the peer exited with {status} while starting:\n{}", log_tail(config.log, 2_000));
            }
            if load::request_once(address, "GET", "/health", None).await.is_ok_and(|r| r.status == 200) {
                return Ok(Host { process, server_pid: None, address, metrics: None, log: config.log.to_path_buf() });
            }
            if Instant::now() >= deadline {
                bail!("the peer did not answer within {START_TIMEOUT:?}:\n{}", log_tail(config.log, 2_000));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts `spin up` on a free port and waits until it answers `GET /`
    /// with anything but a server error.
    pub async fn start_spin(config: &SpinConfig<'_>) -> anyhow::Result<Host> {
        let mut last_error = None;
        for _ in 0..3 {
            match Host::try_start_spin(config).await {
                Ok(host) => return Ok(host),
                Err(e) => {
                    eprintln!("bench: spin did not start, retrying: {e:#}");
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("spin did not start")))
    }

    async fn try_start_spin(config: &SpinConfig<'_>) -> anyhow::Result<Host> {
        let address = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        std::fs::create_dir_all(config.state_dir)
            .with_context(|| format!("creating state directory {}", config.state_dir.display()))?;
        let log = File::create(config.log).with_context(|| format!("creating {}", config.log.display()))?;
        let mut command = Command::new(config.binary);
        command
            .arg("up")
            .arg("-f")
            .arg(config.manifest)
            .args(["--listen", &address.to_string()])
            .arg("--state-dir")
            .arg(config.state_dir)
            .arg("--quiet");
        if let Some(path) = config.runtime_config {
            command.arg("--runtime-config-file").arg(path);
        }
        for (name, value) in config.variables {
            command.args(["--variable", &format!("{name}={value}")]);
        }
        // Only what we pass may configure the app. RUST_BACKTRACE makes Spin
        // capture a backtrace each time it drops an instance (5-10 % of a
        // request): users do not run with it, so neither does the benchmark.
        for (name, _) in std::env::vars_os() {
            let name_text = name.to_string_lossy();
            if name_text.starts_with("SPIN_") || name_text == "RUST_BACKTRACE" || name_text == "RUST_LOG" {
                command.env_remove(name);
            }
        }
        command.stdin(Stdio::null()).stdout(log.try_clone().context("duplicating the log file")?).stderr(log);
        let mut process = Supervised::spawn("spin", command)?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = process.exited() {
                bail!("spin exited with {status} while starting:\n{}", log_tail(config.log, 2_000));
            }
            if let Ok(response) = load::request_once(address, "GET", "/", None).await {
                if response.status < 500 {
                    let server_pid = children(process.pid()).into_iter().next();
                    if let (Some(pid), Ok(mut registered)) = (server_pid, CHILDREN.lock()) {
                        registered.push(pid);
                    }
                    return Ok(Host { process, server_pid, address, metrics: None, log: config.log.to_path_buf() });
                }
            }
            if Instant::now() >= deadline {
                bail!("spin did not answer within {START_TIMEOUT:?}:\n{}", log_tail(config.log, 2_000));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The process serving the requests (whose CPU and memory are the host's).
    pub fn pid(&self) -> u32 {
        self.server_pid.unwrap_or_else(|| self.process.pid())
    }

    /// The host's counters (`name{labels}` to value) from its metrics endpoint.
    pub async fn counters(&self) -> anyhow::Result<HashMap<String, f64>> {
        let Some(metrics) = self.metrics else { return Ok(HashMap::new()) };
        let response = load::request_once(metrics, "GET", "/metrics", None).await.context("reading the host's metrics")?;
        Ok(parse_counters(&String::from_utf8_lossy(&response.body)))
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Whether the host is still running (it may have crashed under load).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.process.exited() {
            Some(status) => bail!("spin-host exited with {status}:\n{}", log_tail(&self.log, 2_000)),
            None => Ok(()),
        }
    }

    /// SIGTERM, then SIGKILL after the grace period.
    pub fn stop(mut self) -> anyhow::Result<Option<ExitStatus>> {
        let status = self.process.stop();
        if let Some(pid) = self.server_pid {
            // `spin up` stops its child on SIGTERM; make sure of it.
            if let Ok(mut registered) = CHILDREN.lock() {
                registered.retain(|&p| p != pid);
            }
            if std::path::Path::new(&format!("/proc/{pid}")).exists() {
                // SAFETY: signals a process this benchmark started (through `spin up`).
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        }
        status
    }
}

/// The children of `pid`, from `/proc` (empty if it has none or is gone).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| text.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<u32>>())
        .collect()
}

/// `name{labels} value` lines of a Prometheus text exposition (comments skipped).
fn parse_counters(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(name, value)| Some((name.to_string(), value.parse().ok()?)))
        .collect()
}

/// The last `max` bytes of a log file, for error messages.
pub fn log_tail(path: &Path, max: u64) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(max)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        // The cut may fall inside a character.
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    read().unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()))
}

/// A real `redis-server` on a free loopback port, without persistence.
pub struct RedisServer {
    process: Supervised,
    port: u16,
}

impl RedisServer {
    pub fn start(binary: &Path, dir: &Path) -> anyhow::Result<RedisServer> {
        let mut last_error = None;
        for _ in 0..3 {
            match RedisServer::try_start(binary, dir) {
                Ok(server) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("redis-server did not start")))
    }

    /// A server that keeps what it is told, as a store's must: append-only
    /// file, fsync every second (what `docker-compose.yml` and `deploy/` run).
    pub fn start_durable(binary: &Path, dir: &Path) -> anyhow::Result<RedisServer> {
        let dir = dir.join(format!("redis-store-{}", free_port()?));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        RedisServer::try_start_with(binary, &dir, &["--save", "", "--appendonly", "yes", "--appendfsync", "everysec"])
    }

    fn try_start(binary: &Path, dir: &Path) -> anyhow::Result<RedisServer> {
        RedisServer::try_start_with(binary, dir, &["--save", "", "--appendonly", "no"])
    }

    fn try_start_with(binary: &Path, dir: &Path, persistence: &[&str]) -> anyhow::Result<RedisServer> {
        let port = free_port()?;
        let mut command = Command::new(binary);
        command
            .args(persistence)
            .args(["--bind", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut process = Supervised::spawn("redis-server", command)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = process.exited() {
                bail!("redis-server exited with {status} (port {port} taken?)");
            }
            if answers_ping(port) {
                return Ok(RedisServer { process, port });
            }
            if Instant::now() >= deadline {
                bail!("redis-server did not answer PING on port {port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `INFO` as name/value pairs (counters such as `total_commands_processed`).
    pub fn info(&self) -> anyhow::Result<HashMap<String, String>> {
        use std::io::Write;
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).context("connecting to redis-server")?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"*1\r\n$4\r\nINFO\r\n")?;
        // A bulk reply: `$<len>\r\n<text>\r\n`.
        let mut reply = Vec::new();
        let mut chunk = [0u8; 16_384];
        loop {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&reply);
            if let Some((header, body)) = text.split_once("\r\n") {
                let len: usize = header.trim_start_matches('$').parse().context("INFO reply length")?;
                if body.len() >= len {
                    return Ok(body[..len]
                        .lines()
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
                        .collect());
                }
            }
        }
        bail!("redis-server closed the connection during INFO")
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn stop(mut self) -> anyhow::Result<()> {
        self.process.stop().map(drop)
    }
}

fn answers_ping(port: u16) -> bool {
    use std::io::Write;
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 7];
    stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_ok() && stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

/// Memory and CPU figures of a process, from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStatus {
    /// Resident set size now, bytes.
    pub rss: u64,
    /// Peak resident set size since the process started, bytes.
    pub hwm: u64,
}

/// Reads `VmRSS` and `VmHWM` of `pid`.
pub fn proc_status(pid: u32) -> anyhow::Result<ProcStatus> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    Ok(parse_status(&text))
}

fn parse_status(text: &str) -> ProcStatus {
    let kib = |field: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |k| k * 1024)
    };
    ProcStatus { rss: kib("VmRSS:"), hwm: kib("VmHWM:") }
}

/// CPU time (user + system) used so far by `pid` (`"self"` for this process).
pub fn cpu_time(pid: &str) -> anyhow::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_cpu(&text).with_context(|| format!("unexpected format of {path}"))
}

fn parse_cpu(text: &str) -> Option<Duration> {
    // Fields after the parenthesised command name, which may contain spaces.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after `)`.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_secs_f64(ticks as f64 / hz as f64))
}

/// CPU time all processes on the machine have used so far (every core, user
/// and system, without idle and I/O wait), from `/proc/stat`.
pub fn machine_busy() -> anyhow::Result<Duration> {
    let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    parse_machine_busy(&text).context("unexpected format of /proc/stat")
}

fn parse_machine_busy(text: &str) -> Option<Duration> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line.split_whitespace().skip(1).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy: u64 = ticks.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, t)| t).sum();
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_secs_f64(busy as f64 / hz as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_counters_from_the_metrics_text() {
        let c = parse_counters("# TYPE x counter\nspin_host_redis_commands_total{role=\"kv\"} 12\nbad\n# EOF\n");
        assert_eq!(c.get(r#"spin_host_redis_commands_total{role="kv"}"#), Some(&12.0));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn reads_memory_from_proc_status() {
        let text = "Name:\tspin-host\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n";
        let s = parse_status(text);
        assert_eq!((s.rss, s.hwm), (100 * 1024 * 1024, 200 * 1024 * 1024));
        let own = proc_status(std::process::id()).unwrap();
        assert!(own.rss > 0 && own.hwm >= own.rss);
    }

    #[test]
    fn reads_cpu_time_even_with_spaces_in_the_name() {
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let text = "42 (a b) S 1 1 1 0 -1 0 0 0 0 0 150 50 0 0 20 0 1 0";
        assert_eq!(parse_cpu(text), Some(Duration::from_secs_f64(200.0 / hz)));
        assert!(cpu_time("self").is_ok());
    }

    #[test]
    fn machine_busy_leaves_out_idle_and_io_wait() {
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let text = "cpu  100 1 20 5000 300 2 3 4 0 0\ncpu0 50 0 10 2500 150 1 1 2 0 0\n";
        assert_eq!(parse_machine_busy(text), Some(Duration::from_secs_f64(130.0 / hz)));
        assert!(machine_busy().is_ok());
    }
}
