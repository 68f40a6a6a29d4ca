//! Graceful shutdown: on SIGTERM or SIGINT the host stops accepting, lets
//! the requests in flight finish (for at most `--drain-timeout`) and exits
//! 0; `cargo xtask up` becomes the host, so a signal sent to it reaches the
//! host and its exit status is the host's.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::host_process::HostProcess;
use support::http_client::Connection;
use support::sse::{EventStream, Stop};

/// A request the simulator answers after `latency_ms`.
const SLOW_PATH: &str = "/api/simulator/data?type=slow";

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status().expect("kill");
    assert!(status.success(), "kill -{name} {pid}");
}

fn args(latency_ms: u64, drain_seconds: &str) -> Vec<String> {
    [
        "--state-dir",
        "",
        "--drain-timeout",
        drain_seconds,
        "--variable",
        &format!("external_service_latency_ms={latency_ms}"),
        "--variable",
        "external_service_failure_rate=0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Sends `signal` while a slow request is in flight; returns its response
/// status (if it got one), the time from the signal to the exit, and the
/// exit status.
async fn stop_during_a_slow_request(host: &mut HostProcess, name: &str) -> (Option<u16>, Duration, Option<std::process::ExitStatus>) {
    let address = host.address;
    let slow = tokio::spawn(async move {
        let mut connection = Connection::open(address).await.expect("connect");
        connection.get(SLOW_PATH).await.ok().map(|r| r.status)
    });
    // An idle keep-alive connection must not hold the shutdown up.
    let mut idle = Connection::open(address).await.expect("connect");
    assert_eq!(idle.get("/health").await.expect("health").status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    signal(host.pid(), name);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(Connection::open(address).await.is_err(), "new connections are refused once stopping");
    let status = tokio::task::block_in_place(|| host.wait_for_exit(Duration::from_secs(30)));
    let elapsed = signalled.elapsed();
    (slow.await.expect("slow request"), elapsed, status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sigint_let_requests_in_flight_finish_then_exit_0() {
    for name in ["TERM", "INT"] {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut host = HostProcess::start(&args(1_500, "10"), dir.path().join("host.log")).await;
        let (answered, elapsed, status) = stop_during_a_slow_request(&mut host, name).await;
        assert_eq!(answered, Some(200), "SIG{name}: the request in flight is answered:\n{}", host.log_text());
        assert!(status.is_some_and(|s| s.success()), "SIG{name}: exit status {status:?}:\n{}", host.log_text());
        assert!(elapsed < Duration::from_secs(5), "SIG{name}: took {elapsed:?} to stop");
        assert!(host.log_text().contains("Stopped."), "{}", host.log_text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_longer_than_the_drain_timeout_is_abandoned_and_the_host_still_exits_0() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut host = HostProcess::start(&args(20_000, "1"), dir.path().join("host.log")).await;
    let (answered, elapsed, status) = stop_during_a_slow_request(&mut host, "TERM").await;
    assert_eq!(answered, None, "abandoned, not answered");
    assert!(status.is_some_and(|s| s.success()), "exit status {status:?}:\n{}", host.log_text());
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}: the drain is bounded by --drain-timeout 1");
    assert!(host.log_text().contains("abandoned"), "{}", host.log_text());
}

/// An open event stream (`GET /api/metrics/stream`, a minute long) does not
/// hold a shutdown up: its body ends cleanly at once and the client, which
/// reconnects on its own, goes elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_event_streams_end_when_the_host_stops() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut host = HostProcess::start(&args(0, "10"), dir.path().join("host.log")).await;
    let mut stream = EventStream::open(host.address, "/api/metrics/stream?type=cpu", &[]).await.expect("stream");
    assert_eq!(stream.status, 200, "{}", host.log_text());
    assert!(stream.next_event(Duration::from_secs(30)).await.is_ok(), "the first summary");
    let signalled = Instant::now();
    signal(host.pid(), "TERM");
    let ended = loop {
        match stream.next(Duration::from_secs(30)).await {
            Ok(_) => continue,
            Err(stop) => break stop,
        }
    };
    assert_eq!(ended, Stop::Ended, "the stream's body is finished");
    let status = tokio::task::block_in_place(|| host.wait_for_exit(Duration::from_secs(30)));
    assert!(status.is_some_and(|s| s.success()), "exit status {status:?}:\n{}", host.log_text());
    assert!(signalled.elapsed() < Duration::from_secs(5), "took {:?}: the stream held the drain up", signalled.elapsed());
    assert!(host.log_text().contains("Stopped."), "{}", host.log_text());
}

/// `cargo xtask up` as a user's script or a container runtime starts it:
/// the signal goes to the process it started. Cargo itself is stood in for
/// by `true` (everything is built already), so only the xtask and the host run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xtask_up_hands_signals_to_the_host_and_exits_with_its_status() {
    let xtask = support::root().join("target/debug/xtask");
    let xtask = std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join("debug/xtask")).filter(|p| p.is_file()).unwrap_or(xtask);
    assert!(xtask.is_file(), "{} is missing: run the tests with `cargo xtask test`", xtask.display());
    let dir = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let log = std::fs::File::create(dir.path().join("xtask.log")).expect("log");
    let mut child: Child = Command::new(&xtask)
        .arg("up")
        .args(["--listen", &address.to_string(), "--quiet"])
        .args(args(1_500, "10"))
        .env("CARGO", "true")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("xtask");
    let deadline = Instant::now() + Duration::from_secs(120);
    let log_text = || std::fs::read_to_string(dir.path().join("xtask.log")).unwrap_or_default();
    loop {
        if let Ok(mut c) = Connection::open(address).await {
            if c.get("/health").await.is_ok_and(|r| r.status == 200) {
                break;
            }
        }
        assert!(child.try_wait().expect("wait").is_none(), "xtask up ended while starting:\n{}", log_text());
        assert!(Instant::now() < deadline, "xtask up did not serve:\n{}", log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let slow = tokio::spawn(async move {
        let mut connection = Connection::open(address).await.expect("connect");
        connection.get(SLOW_PATH).await.ok().map(|r| r.status)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(child.id(), "TERM");
    assert_eq!(slow.await.expect("slow"), Some(200), "{}", log_text());
    let status = tokio::task::block_in_place(|| child.wait()).expect("wait");
    assert!(status.success(), "xtask up exited with {status}:\n{}", log_text());
    // Nothing is left holding the port (or a store).
    assert!(Connection::open(address).await.is_err(), "the host is gone");
}
