//! The per-client sliding-window rate limit on ingest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::api::{metric, Api, Backend};

fn header(r: &support::TestResponse, name: &str) -> u64 {
    r.header(name).unwrap_or_else(|| panic!("missing {name}")).parse().expect("a number")
}

async fn the_limit_passes_and_the_next_request_gets_a_429(backend: Backend) {
    let api = Api::start(backend, &[("rate_limit_requests", "3"), ("rate_limit_window_seconds", "60")]).await;
    for remaining in [2, 1, 0] {
        let r = api.post_metric(&metric("t", 1.0, 0)).await;
        assert_eq!(r.status, 201);
        assert_eq!(header(&r, "ratelimit-limit"), 3);
        assert_eq!(header(&r, "ratelimit-remaining"), remaining);
        assert!((1..=60).contains(&header(&r, "ratelimit-reset")));
    }
    let refused = api.post_metric(&metric("t", 1.0, 0)).await;
    assert_eq!(refused.status, 429);
    let retry_after = header(&refused, "retry-after");
    assert!((59..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(header(&refused, "ratelimit-remaining"), 0);
    let body = refused.json();
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(body["retry_after_seconds"], retry_after);
    // Refused requests store nothing.
    assert_eq!(api.summary("type=t").await.0["count"], 3);
    // Invalid requests count against the limit too (they cost the server work).
    let limited_invalid = api.request("POST", "/api/metrics", &[("content-type", "application/json")], "{").await;
    assert_eq!(limited_invalid.status, 429);
}

async fn the_window_slides(backend: Backend) {
    let api = Api::start(backend, &[("rate_limit_requests", "2"), ("rate_limit_window_seconds", "2")]).await;
    let start = Instant::now();
    assert_eq!(api.post_metric(&metric("t", 1.0, 0)).await.status, 201);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(api.post_metric(&metric("t", 1.0, 0)).await.status, 201);
    // A fixed window starting at the first request would reset at 2 s; a
    // sliding one frees a slot only when the first request is 2 s old.
    let refused = api.post_metric(&metric("t", 1.0, 0)).await;
    assert_eq!(refused.status, 429);
    assert_eq!(header(&refused, "retry-after"), 1);
    tokio::time::sleep(Duration::from_millis(2_050).saturating_sub(start.elapsed())).await;
    assert_eq!(api.post_metric(&metric("t", 1.0, 0)).await.status, 201, "first request left the window");
    assert_eq!(api.post_metric(&metric("t", 1.0, 0)).await.status, 429, "second is still inside it");
}

async fn each_client_has_its_own_budget(backend: Backend) {
    let api = Api::start(backend, &[("rate_limit_requests", "1")]).await;
    assert_eq!(api.post_metric_from(&metric("t", 1.0, 0), "10.0.0.1:1111").await.status, 201);
    assert_eq!(api.post_metric_from(&metric("t", 1.0, 0), "10.0.0.1:2222").await.status, 429, "same IP, other port");
    assert_eq!(api.post_metric_from(&metric("t", 1.0, 0), "10.0.0.2:1111").await.status, 201);
}

async fn post(api: &Api, forwarded_for: &str) -> u16 {
    let headers = [("content-type", "application/json"), ("x-forwarded-for", forwarded_for)];
    api.request_from("POST", "/api/metrics", &headers, metric("t", 1.0, 0).to_string(), "10.9.9.9:5000")
        .await
        .status
}

async fn forwarded_for_is_ignored_unless_trusted(backend: Backend) {
    let untrusted = Api::start(backend, &[("rate_limit_requests", "1")]).await;
    assert_eq!(post(&untrusted, "1.1.1.1").await, 201);
    assert_eq!(post(&untrusted, "2.2.2.2").await, 429, "a client cannot pick its own bucket");

    let trusted = Api::start(backend, &[("rate_limit_requests", "1"), ("trust_forwarded_for", "true")]).await;
    assert_eq!(post(&trusted, "1.1.1.1").await, 201);
    assert_eq!(post(&trusted, "2.2.2.2, 10.0.0.1").await, 201);
    assert_eq!(post(&trusted, "1.1.1.1").await, 429);
}

async fn fifty_concurrent_requests_against_a_limit_of_twenty_admit_exactly_twenty(backend: Backend) {
    let api = Arc::new(Api::start(backend, &[("rate_limit_requests", "20")]).await);
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let api = api.clone();
            tokio::spawn(async move { api.post_metric(&metric("burst", i as f64, 0)).await.status })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        match t.await.unwrap() {
            201 => admitted += 1,
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(admitted, 20);
    assert_eq!(api.summary("type=burst").await.0["count"], 20);
}

on_both_redis!(
    the_limit_passes_and_the_next_request_gets_a_429,
    the_window_slides,
    each_client_has_its_own_budget,
    forwarded_for_is_ignored_unless_trusted,
    fifty_concurrent_requests_against_a_limit_of_twenty_admit_exactly_twenty,
);
