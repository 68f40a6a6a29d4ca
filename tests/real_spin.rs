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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_streams_under_real_spin() {
    let Some(binary) = std::env::var_os("SPIN_BIN") else {
        eprintln!("SKIPPED: the stream under real Spin (set SPIN_BIN to a `spin` binary to run it)");
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let redis = RedisServer::start();
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
    for (name, value) in [
        ("redis_url", redis.url()),
        ("rate_limit_requests", "100000".into()),
        ("external_service_latency_ms", "0".into()),
        ("external_service_failure_rate", "0".into()),
        ("stream_lifetime_seconds", "6".into()),
    ] {
        command.args(["--variable", &format!("{name}={value}")]);
    }
    // Only what is passed here configures the app; a backtrace on every dropped instance is not wanted.
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if text.starts_with("SPIN_") || text == "RUST_BACKTRACE" || text == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    let _spin = Spin(command.stdin(Stdio::null()).stdout(log.try_clone().expect("log")).stderr(log).spawn().expect("spin up"));
    let log_text = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(mut c) = Connection::open(address).await {
            if c.get("/").await.is_ok_and(|r| r.status == 200) {
                break;
            }
        }
        assert!(Instant::now() < deadline, "spin up did not answer:\n{}", log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
