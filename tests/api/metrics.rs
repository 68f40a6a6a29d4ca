//! GET /metrics: Prometheus text that parses, and counters that move with the requests.

use std::collections::HashMap;

use serde_json::json;
use support::api::{metric, timestamp_seconds_ago, Api, Backend};

/// Every sample, as `name{label="value"}` (one label at most here) to value.
async fn scrape(api: &Api) -> HashMap<String, f64> {
    let r = api.get("/metrics").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("content-type").unwrap_or_default().starts_with("application/openmetrics-text"));
    let lines = r.text().lines().map(|l| Ok(l.to_string())).collect::<Vec<std::io::Result<String>>>();
    let scrape = prometheus_parse::Scrape::parse(lines.into_iter()).expect("the exposition parses");
    scrape
        .samples
        .into_iter()
        .map(|s| {
            let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            let value = match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            };
            let name = if labels.is_empty() { s.metric } else { format!("{}{{{}}}", s.metric, labels.join(",")) };
            (name, value)
        })
        .collect()
}

async fn counters_move_with_requests(backend: Backend) {
    let api = Api::start(backend, &[("rate_limit_requests", "4"), ("external_context_ttl_seconds", "0")]).await;
    let get = |m: &HashMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
    let before = scrape(&api).await;
    assert_eq!(get(&before, "analytics_redis_up"), 1.0);
    assert_eq!(get(&before, "analytics_key_value_up"), 1.0);
    assert_eq!(api.post_metric(&metric("m", 1.0, 1)).await.status, 201);
    let id = json!({"id": "same", "type": "m", "value": 2.0, "timestamp": timestamp_seconds_ago(1)});
    assert_eq!(api.post_metric(&id).await.status, 201);
    assert_eq!(api.post_metric(&id).await.status, 200);
    assert_eq!(api.post_metric(&json!({"type": "m"})).await.status, 422);
    assert_eq!(api.post_metric(&metric("m", 1.0, 1)).await.status, 429);
    api.summary("type=m").await;
    api.post_metric(&metric("m", 1.0, 1)).await; // limited too
    api.summary("type=m").await;
    let after = scrape(&api).await;
    let moved = |k: &str| get(&after, k) - get(&before, k);
    assert_eq!(moved(r#"analytics_metrics_total{outcome="accepted"}"#), 2.0, "{after:?}");
    assert_eq!(moved(r#"analytics_metrics_total{outcome="duplicate"}"#), 1.0);
    assert_eq!(moved(r#"analytics_metrics_rejected_total{reason="validation_failed"}"#), 1.0);
    assert_eq!(moved(r#"analytics_metrics_rejected_total{reason="rate_limited"}"#), 2.0);
    assert_eq!(moved(r#"analytics_summaries_total{cache="miss"}"#), 1.0);
    assert_eq!(moved(r#"analytics_upstream_calls_total{outcome="success"}"#), 1.0, "the second summary is a hit");
    assert_eq!(get(&after, r#"analytics_circuit_breaker_state{state="closed"}"#), 1.0);
    assert_eq!(api.request("POST", "/metrics", &[], "").await.status, 405);
}

on_both_redis!(counters_move_with_requests);
