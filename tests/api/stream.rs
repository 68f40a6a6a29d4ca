//! GET /api/metrics/stream: the summary as Server-Sent Events, read as it
//! arrives by a plain HTTP client over loopback TCP.
//!
//! Waits are generous (the machine may be shared or paused): a test fails
//! on what arrives, not on how fast, except where the contract is about
//! time (a stream ends after its lifetime).

use std::time::{Duration, Instant};

use serde_json::json;
use support::api::{metric, Api, Backend};
use support::sse::{Block, EventStream, Stop};

/// Longer than any check interval on a busy machine.
const PATIENCE: Duration = Duration::from_secs(15);

async fn open(address: std::net::SocketAddr, query: &str, headers: &[(&str, &str)]) -> EventStream {
    EventStream::open(address, &format!("/api/metrics/stream?{query}"), headers).await.expect("stream")
}

async fn the_first_event_is_the_summary_and_each_change_sends_another(backend: Backend) {
    let api = Api::start(backend, &[]).await;
    let address = api.listen().await;
    api.post_metric(&metric("cpu", 1.0, 5)).await;
    let mut stream = open(address, "type=cpu&period=hourly", &[]).await;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("text/event-stream"));
    assert_eq!(stream.headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-cache"));
    assert_eq!(stream.next(PATIENCE).await, Ok(Block::Retry(analytics_core::stream::RETRY_MS)), "the reconnection hint first");
    let first = stream.next(PATIENCE).await.expect("the first summary");
    let (summary, _) = api.summary("type=cpu&period=hourly").await;
    assert_eq!((first.json()["count"].as_u64(), first.json()["type"].as_str()), (Some(1), Some("cpu")));
    for field in ["sum", "min_value", "max_value", "p50", "period", "external_data"] {
        assert_eq!(first.json()[field], summary[field], "{field}: the summary endpoint's body");
    }
    let first_id = first.id().expect("an id").to_string();

    api.post_metric(&metric("cpu", 3.0, 1)).await;
    let posted = Instant::now();
    let second = stream.next_event(PATIENCE).await.expect("a new summary");
    assert_eq!((second.json()["count"].as_u64(), second.json()["sum"].as_f64()), (Some(2), Some(4.0)));
    assert_ne!(second.id(), Some(first_id.as_str()));
    eprintln!("a new metric reached the stream in {:?}", posted.elapsed());

    // Nothing changes: heartbeats only. (An all-time window: a trailing one
    // is also sent again every 30 s, which a slow run could cross.)
    let mut all_time = open(address, "type=cpu", &[]).await;
    assert_eq!(all_time.next_event(PATIENCE).await.expect("the summary").json()["count"], 2);
    for _ in 0..2 {
        let block = all_time.next(PATIENCE).await;
        assert!(matches!(block, Ok(Block::Comment(_))), "a heartbeat while idle: {block:?}");
    }
}

async fn a_client_resuming_at_the_current_summary_gets_no_repeat_and_an_old_one_gets_it_at_once(backend: Backend) {
    let api = Api::start(backend, &[]).await;
    let address = api.listen().await;
    api.post_metric(&metric("mem", 2.0, 5)).await;
    let mut stream = open(address, "type=mem", &[]).await;
    let held = stream.next_event(PATIENCE).await.expect("the first summary");
    drop(stream);

    let id = held.id().expect("an id");
    let mut resumed = open(address, "type=mem", &[("last-event-id", id)]).await;
    assert_eq!(resumed.status, 200);
    assert_eq!(resumed.next(PATIENCE).await, Ok(Block::Retry(analytics_core::stream::RETRY_MS)));
    // The first two checks (the opening one and a second later) find nothing new.
    for _ in 0..2 {
        let block = resumed.next(PATIENCE).await.expect("a block");
        assert!(matches!(block, Block::Comment(_)), "no repeated summary: {block:?}");
    }
    api.post_metric(&metric("mem", 4.0, 1)).await;
    let update = resumed.next_event(PATIENCE).await.expect("the change");
    assert_eq!(update.json()["count"], 2);

    let mut behind = open(address, "type=mem", &[("last-event-id", id)]).await;
    let at_once = behind.next_event(PATIENCE).await.expect("the current summary at once");
    assert_eq!((at_once.json()["count"].as_u64(), at_once.id()), (Some(2), update.id()));
}

async fn a_stream_ends_after_its_lifetime(backend: Backend) {
    let api = Api::start(backend, &[("stream_lifetime_seconds", "2")]).await;
    let address = api.listen().await;
    let mut stream = open(address, "type=disk", &[]).await;
    let opened = Instant::now();
    let first = stream.next_event(PATIENCE).await.expect("the first summary");
    assert_eq!(first.json()["count"], 0, "an empty type still has a summary");
    let ended = loop {
        match stream.next(PATIENCE).await {
            Ok(Block::Event { .. }) => panic!("nothing changed"),
            Ok(_) => continue,
            Err(stop) => break stop,
        }
    };
    assert_eq!(ended, Stop::Ended);
    let lasted = opened.elapsed();
    assert!(lasted >= Duration::from_millis(1_900), "ended after {lasted:?}, before its lifetime");

    // A lifetime of 0: one summary, then the end.
    let api = api.restart_with(&[("stream_lifetime_seconds", "0")]).await;
    let address = api.listen().await;
    let mut once = open(address, "type=disk", &[]).await;
    assert!(once.next_event(PATIENCE).await.is_ok());
    assert_eq!(once.next(PATIENCE).await, Err(Stop::Ended));
}

async fn bad_queries_are_the_summary_errors_before_any_stream(backend: Backend) {
    let api = Api::start(backend, &[]).await;
    for query in ["", "type=a%20b", "type=cpu&period=yearly", "type=cpu&from=nope", "type=cpu&period=daily&from=2026-01-01T00:00:00Z"] {
        let r = api.get(&format!("/api/metrics/stream?{query}")).await;
        assert_eq!(r.status, 400, "{query}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.json()["error"], "invalid_parameter", "{query}: the one error body");
        assert!(r.json()["message"].is_string());
    }
    let r = api.request("POST", "/api/metrics/stream?type=cpu", &[], "").await;
    assert_eq!((r.status, r.header("allow")), (405, Some("GET")));
}

async fn a_stream_needs_the_read_scope_when_keys_are_required(backend: Backend) {
    const ADMIN: &str = "stream-admin-token";
    let api = Api::start(backend, &[("auth", "required"), ("admin_token", ADMIN)]).await;
    let address = api.listen().await;
    let admin = format!("Bearer {ADMIN}");
    let mut keys = Vec::new();
    for scopes in [json!(["ingest"]), json!(["read"])] {
        let body = json!({"name": "stream test", "scopes": scopes}).to_string();
        let r = api.request("POST", "/api/keys", &[("content-type", "application/json"), ("authorization", &admin)], body).await;
        assert_eq!(r.status, 201, "{}", r.text());
        keys.push(r.json()["key"].as_str().expect("a key").to_string());
    }
    let (ingest, read) = (&keys[0], &keys[1]);
    let r = api.get("/api/metrics/stream?type=cpu").await;
    assert_eq!((r.status, r.json()["error"].as_str()), (401, Some("unauthorized")), "{}", r.text());
    let r = api.request("GET", "/api/metrics/stream?type=cpu", &[("x-api-key", ingest.as_str())], "").await;
    assert_eq!((r.status, r.json()["error"].as_str()), (403, Some("forbidden")), "{}", r.text());
    let mut stream = open(address, "type=cpu", &[("x-api-key", read.as_str())]).await;
    assert_eq!(stream.status, 200);
    assert!(stream.next_event(PATIENCE).await.is_ok());
}

on_both_redis!(the_first_event_is_the_summary_and_each_change_sends_another);

mod embedded {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resume() {
        a_client_resuming_at_the_current_summary_gets_no_repeat_and_an_old_one_gets_it_at_once(Backend::Embedded).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lifetime() {
        a_stream_ends_after_its_lifetime(Backend::Embedded).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_queries() {
        bad_queries_are_the_summary_errors_before_any_stream(Backend::Embedded).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn read_scope() {
        a_stream_needs_the_read_scope_when_keys_are_required(Backend::Embedded).await
    }
}
