//! The summary stream under a real Spin (`spin up`), when `SPIN_BIN` names
//! its binary: a streaming response body (the guest keeps writing after the
//! head), sleeping between checks, and a new metric reaching an open stream.
//! Without `SPIN_BIN` the test says it was skipped and passes.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::api::timestamp_seconds_ago;
use support::http_client::Connection;
use support::redis_server::RedisServer;
use support::sse::{Block, EventStream};

/// `spin up` killed when the test ends.
struct Spin(Child);

impl Drop for Spin {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `spin up` of the app on a free loopback port with `variables`, once it
/// answers; `None` (the test is skipped) without `SPIN_BIN`.
struct RealSpin {
    address: SocketAddr,
    log_path: std::path::PathBuf,
    _spin: Spin,
    _dir: tempfile::TempDir,
}

impl RealSpin {
    async fn start(what: &str, variables: &[(&str, String)]) -> Option<RealSpin> {
        let Some(binary) = std::env::var_os("SPIN_BIN") else {
            eprintln!("SKIPPED: {what} under real Spin (set SPIN_BIN to a `spin` binary to run it)");
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let log_path = dir.path().join("spin.log");
        let log = std::fs::File::create(&log_path).expect("log");
        let mut command = Command::new(&binary);
        command
            .arg("up")
            .arg("--from")
            .arg(support::root().join("spin.toml"))
            .args(["--listen", &address.to_string()])
            .arg("--state-dir")
            .arg(dir.path().join("state"));
        let defaults = [("rate_limit_requests", "100000"), ("external_service_latency_ms", "0"), ("external_service_failure_rate", "0")];
        for (name, value) in defaults.iter().filter(|(name, _)| !variables.iter().any(|(n, _)| n == name)) {
            command.args(["--variable", &format!("{name}={value}")]);
        }
        for (name, value) in variables {
            command.args(["--variable", &format!("{name}={value}")]);
        }
        // Only what is passed here configures the app; a backtrace on every dropped instance is not wanted.
        for (name, _) in std::env::vars_os() {
            let text = name.to_string_lossy();
            if text.starts_with("SPIN_") || text == "RUST_BACKTRACE" || text == "RUST_LOG" {
                command.env_remove(name);
            }
        }
        let spin = Spin(command.stdin(Stdio::null()).stdout(log.try_clone().expect("log")).stderr(log).spawn().expect("spin up"));
        let running = RealSpin { address, log_path, _spin: spin, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(mut c) = Connection::open(address).await {
                if c.get("/").await.is_ok_and(|r| r.status == 200) {
                    return Some(running);
                }
            }
            assert!(Instant::now() < deadline, "spin up did not answer:\n{}", running.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// One request, which must be answered within 10 s.
    async fn send(&self, method: &str, path: &str, body: String) -> support::TestResponse {
        let request = async {
            let mut c = Connection::open(self.address).await?;
            c.send(method, path, &[("content-type", "application/json")], body).await
        };
        match tokio::time::timeout(Duration::from_secs(10), request).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => panic!("{method} {path}: {e}\n{}", self.log()),
            Err(_) => panic!("{method} {path}: no answer within 10 s\n{}", self.log()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_streams_under_real_spin() {
    let redis = RedisServer::start();
    let variables = [("redis_url", redis.url()), ("stream_lifetime_seconds", "6".to_string())];
    let Some(spin) = RealSpin::start("the stream", &variables).await else { return };
    let (address, log_text) = (spin.address, || spin.log());
    let post = |value: f64| async move {
        let mut c = Connection::open(address).await.expect("connect");
        let body = json!({"type": "spin_cpu", "value": value, "timestamp": timestamp_seconds_ago(1)}).to_string();
        c.send("POST", "/api/metrics", &[("content-type", "application/json")], body).await.expect("post").status
    };
    assert_eq!(post(1.0).await, 201);

    let mut stream = EventStream::open(address, "/api/metrics/stream?type=spin_cpu", &[]).await.expect("stream");
    assert_eq!(stream.status, 200, "{}", log_text());
    assert_eq!(stream.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("text/event-stream"));
    let first = stream.next_event(Duration::from_secs(15)).await.expect("the first summary");
    assert_eq!(first.json()["count"], 1);
    // The head and the first event came before the guest finished: the body streams.
    assert!(!stream.ended, "the stream is still open after its first event");
    assert_eq!(post(2.0).await, 201);
    let update = stream.next_event(Duration::from_secs(15)).await.expect("the new summary, on the same stream");
    assert_eq!((update.json()["count"].as_u64(), update.json()["sum"].as_f64()), (Some(2), Some(3.0)));
    let beat = stream.next(Duration::from_secs(15)).await;
    assert!(matches!(beat, Ok(Block::Comment(_))), "a heartbeat while idle: {beat:?}");
    // Its lifetime (6 s) ends it.
    let ended = loop {
        match stream.next(Duration::from_secs(20)).await {
            Ok(_) => continue,
            Err(stop) => break stop,
        }
    };
    assert_eq!(ended, support::sse::Stop::Ended, "{}", log_text());
}

/// `store_backend = "postgres"` under real Spin: every statement the store
/// sends is answered (Spin 4.0.2 never answers a query that returns no row,
/// which a first read on an empty database is), and what is posted is read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_answers_under_real_spin() {
    if std::env::var_os("SPIN_BIN").is_none() {
        eprintln!("SKIPPED: the PostgreSQL store under real Spin (set SPIN_BIN to a `spin` binary to run it)");
        return;
    }
    let redis = RedisServer::start();
    let postgres = support::postgres_server::PostgresServer::start();
    let variables = [
        ("redis_url", redis.url()),
        ("store_backend", "postgres".to_string()),
        ("store_postgres_url", postgres.create_database().await),
        ("store_postgres_allowed_host", format!("postgres://127.0.0.1:{}", postgres.port())),
    ];
    let Some(spin) = RealSpin::start("the PostgreSQL store", &variables).await else { return };
    let one = json!({"id": "pg-0", "type": "spin_pg", "value": 1.0, "timestamp": timestamp_seconds_ago(5)});
    assert_eq!(spin.send("POST", "/api/metrics", one.to_string()).await.status, 201);
    assert_eq!(spin.send("POST", "/api/metrics", one.to_string()).await.status, 200, "a repeated id is a duplicate");
    // Enough for every journal shard to fold: rows of analytics_metrics and rollups are written and read.
    let batch: Vec<_> = (1..300).map(|i| json!({"id": format!("pg-{i}"), "type": "spin_pg", "value": 1.0, "timestamp": timestamp_seconds_ago(i % 60)})).collect();
    let accepted = spin.send("POST", "/api/metrics/batch", json!(batch).to_string()).await;
    assert_eq!(accepted.json()["accepted"], 299, "{}", accepted.text());
    let summary = spin.send("GET", "/api/metrics/summary?type=spin_pg", String::new()).await;
    assert_eq!((summary.json()["count"].as_u64(), summary.json()["sum"].as_f64()), (Some(300), Some(300.0)), "{}", summary.text());
    let page = spin.send("GET", "/api/metrics/list?type=spin_pg&limit=1000", String::new()).await;
    assert_eq!(page.json().as_array().map(Vec::len), Some(300), "{}", page.text());
    assert_eq!(spin.send("GET", "/health", String::new()).await.status, 200);
}
