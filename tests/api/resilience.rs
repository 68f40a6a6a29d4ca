//! Dependencies failing and coming back: Redis outages, app restarts.

use serde_json::json;
use support::api::{metric, Api, Backend};

async fn redis_going_away_degrades_and_coming_back_recovers(backend: Backend) {
    let mut api = Api::start(backend, &[("rate_limit_requests", "1000")]).await;
    let health = api.get("/health").await;
    assert_eq!(health.status, 200);
    let parts = |h: serde_json::Value| (h["status"].clone(), h["redis"].clone(), h["key_value"].clone());
    assert_eq!(parts(health.json()), (json!("healthy"), json!("healthy"), json!("healthy")));
    assert_eq!(api.post_metric(&metric("r", 1.0, 1)).await.status, 201);
    assert_eq!(api.summary("type=r").await.1, "MISS");

    api.stop_redis();
    let health = api.get("/health").await;
    assert_eq!(health.status, 503);
    assert_eq!(parts(health.json()), (json!("degraded"), json!("unhealthy"), json!("healthy")));
    // Ingest fails open on the rate limiter and still stores.
    let r = api.post_metric(&metric("r", 2.0, 1)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("ratelimit-limit"), Some("1000"));
    // The cache lives in the key-value store: the new metric is added to the
    // folded part kept there, the context inside the last answer is reused,
    // and once kept the answer is served as is.
    let (s, cache) = api.summary("type=r").await;
    assert_eq!((cache.as_str(), s["count"].as_u64()), ("PARTIAL", Some(2)));
    assert_eq!(s["external_data"]["status"], "success");
    tokio::time::sleep(std::time::Duration::from_millis(analytics_core::summary_cache::STABLE_MS as u64 + 50)).await;
    assert_eq!(api.summary("type=r").await.0["count"], 2);
    let (again, cache) = api.summary("type=r").await;
    assert_eq!((cache.as_str(), again["count"].as_u64()), ("HIT", Some(2)));
    // A window without an entry is computed without Redis, and the upstream
    // called without the shared breaker.
    let (s, cache) = api.summary("type=r&period=daily").await;
    assert_eq!((cache.as_str(), s["count"].as_u64()), ("MISS", Some(2)));
    assert_eq!(s["external_data"]["status"], "success", "the upstream is called without the shared breaker");
    assert_eq!(api.get("/api/circuit-breaker/status").await.status, 503);

    api.start_redis();
    assert_eq!(api.get("/health").await.status, 200);
    let (s, cache) = api.summary("type=r").await;
    assert_eq!(s["count"], 2);
    assert!(["MISS", "PARTIAL", "HIT"].contains(&cache.as_str()), "{cache}");
    assert_eq!(api.summary("type=r").await.1, "HIT");
}

async fn metrics_survive_an_app_restart(backend: Backend) {
    let api = Api::start(backend, &[]).await;
    for i in 0..5 {
        api.post_metric(&metric("durable", i as f64, 10)).await;
    }
    let api = api.restart().await;
    let (s, _) = api.summary("type=durable").await;
    assert_eq!(s["count"], 5);
    assert_eq!(api.get("/api/metrics/list?type=durable").await.json().as_array().map(Vec::len), Some(5));
    // Still idempotent after the restart.
    assert_eq!(api.post_metric(&metric("durable", 1.0, 10)).await.status, 201);
}

on_both_redis!(redis_going_away_degrades_and_coming_back_recovers, metrics_survive_an_app_restart);
