//! The circuit breaker around the external service, through its whole cycle.

use std::sync::Arc;
use std::time::Duration;

use support::api::{metric, Api, Backend};

const SETTINGS: &[(&str, &str)] = &[
    ("cache_ttl_seconds", "0"),
    ("external_context_ttl_seconds", "0"),
    ("circuit_breaker_failure_threshold", "2"),
    ("circuit_breaker_reset_timeout_seconds", "1"),
    ("external_service_timeout_ms", "1000"),
];

async fn external(api: &Api) -> serde_json::Value {
    api.summary("type=cpu").await.0["external_data"].clone()
}

async fn status(api: &Api) -> serde_json::Value {
    let r = api.get("/api/circuit-breaker/status").await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

async fn opens_rejects_without_calling_then_one_probe_closes_it(backend: Backend) {
    let api = Arc::new(Api::start(backend, SETTINGS).await);
    api.post_metric(&metric("cpu", 50.0, 1)).await;
    let healthy = external(&api).await;
    assert_eq!(healthy["status"], "success", "{healthy}");
    assert_eq!(healthy["external_metric_context"]["type"], "cpu");
    let s = status(&api).await;
    assert_eq!((s["state"].as_str(), s["failure_count"].as_u64(), s["success_count"].as_u64()), (Some("closed"), Some(0), Some(1)));

    api.simulate(1.0, 0).await;
    for expected_failures in 1..=2 {
        let data = external(&api).await;
        assert_eq!((data["status"].as_str(), data["reason"].as_str()), (Some("fallback"), Some("error")));
        assert_eq!(status(&api).await["failure_count"], expected_failures);
    }
    let s = status(&api).await;
    assert_eq!(s["state"], "open");
    assert_eq!((s["failure_threshold"].as_u64(), s["reset_timeout_seconds"].as_f64()), (Some(2), Some(1.0)));
    assert!(s["opened_at"].is_string() && s["next_attempt_at"].is_string());

    // Open: fallback at once, and nothing reaches the upstream.
    let calls = api.simulator_calls().await;
    for _ in 0..3 {
        let data = external(&api).await;
        assert_eq!(data["reason"], "circuit_open");
    }
    assert_eq!(api.simulator_calls().await, calls);

    // After the reset timeout: half-open, and exactly one probe goes out
    // however many summaries arrive together.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(status(&api).await["state"], "half_open");
    api.simulate(0.0, 300).await;
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { external(&api).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        let data = t.await.unwrap();
        outcomes.push(if data["status"] == "success" { "success".to_string() } else { data["reason"].as_str().unwrap_or("?").to_string() });
    }
    assert_eq!(outcomes.iter().filter(|o| *o == "success").count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| *o == "circuit_open").count(), 5, "{outcomes:?}");
    assert_eq!(api.simulator_calls().await, calls + 1);
    let s = status(&api).await;
    assert_eq!((s["state"].as_str(), s["failure_count"].as_u64(), s["success_count"].as_u64()), (Some("closed"), Some(0), Some(0)));
    assert!(s["opened_at"].is_null());
    assert_eq!(external(&api).await["status"], "success");
}

async fn a_failed_probe_reopens_and_restarts_the_timer(backend: Backend) {
    let api = Api::start(backend, SETTINGS).await;
    api.simulate(1.0, 0).await;
    external(&api).await;
    external(&api).await;
    let first_opening = status(&api).await["opened_at"].clone();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let calls = api.simulator_calls().await;
    assert_eq!(external(&api).await["reason"], "error", "the probe went out and failed");
    assert_eq!(api.simulator_calls().await, calls + 1);
    let s = status(&api).await;
    assert_eq!(s["state"], "open");
    assert_ne!(s["opened_at"], first_opening, "the timer restarted");
    assert_eq!(external(&api).await["reason"], "circuit_open");
    assert_eq!(api.simulator_calls().await, calls + 1);
}

async fn a_slow_upstream_times_out_and_counts_as_a_failure(backend: Backend) {
    let api = Api::start(
        backend,
        &[("cache_ttl_seconds", "0"), ("external_context_ttl_seconds", "0"), ("external_service_timeout_ms", "200"), ("circuit_breaker_failure_threshold", "5")],
    )
    .await;
    api.simulate(0.0, 600).await;
    let started = std::time::Instant::now();
    let data = external(&api).await;
    assert!(started.elapsed() < Duration::from_millis(550), "waited {:?}", started.elapsed());
    assert_eq!((data["status"].as_str(), data["reason"].as_str()), (Some("fallback"), Some("timeout")));
    assert_eq!(status(&api).await["failure_count"], 1);
}

async fn the_simulator_is_configurable_and_guarded(backend: Backend) {
    let api = Api::start(backend, &[("admin_token", "s3cret")]).await;
    let body = r#"{"failure_rate": 0.5}"#;
    let json = ("content-type", "application/json");
    let denied = api.request("PUT", "/api/simulator/config", &[json], body).await;
    assert_eq!(denied.status, 401);
    let wrong = api.request("PUT", "/api/simulator/config", &[json, ("authorization", "Bearer nope")], body).await;
    assert_eq!(wrong.status, 401);
    let ok = api.request("PUT", "/api/simulator/config", &[json, ("authorization", "Bearer s3cret")], body).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let config = api.get("/api/simulator/config").await.json();
    assert_eq!((config["failure_rate"].as_f64(), config["latency_ms"].as_u64()), (Some(0.5), Some(0)));
    for bad in [r#"{"failure_rate": 2}"#, r#"{"latency_ms": -1}"#, r#"{}"#, "nope"] {
        let r = api.request("PUT", "/api/simulator/config", &[json, ("authorization", "Bearer s3cret")], bad).await;
        assert_eq!(r.status, 422, "{bad}");
    }
    let r = api.request("DELETE", "/api/simulator/config", &[], "").await;
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, PUT")));
}

on_both_redis!(
    opens_rejects_without_calling_then_one_probe_closes_it,
    a_failed_probe_reopens_and_restarts_the_timer,
    a_slow_upstream_times_out_and_counts_as_a_failure,
    the_simulator_is_configurable_and_guarded,
);
