//! GET /api/metrics/summary: the numbers, the windows, and the cache.

use serde_json::json;
use support::api::{metric, timestamp_seconds_ago, Api, Backend};

async fn reports_exact_statistics_and_close_percentiles(backend: Backend) {
    let api = Api::start(backend, &[]).await;
    let values: Vec<f64> = (1..=200).map(|i| (i * i) as f64 / 7.0).collect();
    for (i, v) in values.iter().enumerate() {
        // Older values are posted later: latest must follow the timestamp.
        assert_eq!(api.post_metric(&metric("lat", *v, 300 - i as i64)).await.status, 201);
    }
    assert_eq!(api.post_metric(&metric("lat", 1.0, 1000)).await.status, 201);
    let (s, _) = api.summary("type=lat&period=hourly").await;
    let mut all = values.clone();
    all.push(1.0);
    all.sort_by(f64::total_cmp);
    assert_eq!(s["count"], 201);
    let sum: f64 = all.iter().sum();
    assert!((s["sum"].as_f64().unwrap() - sum).abs() < 1e-6);
    assert!((s["average_value"].as_f64().unwrap() - sum / 201.0).abs() < 1e-9);
    assert_eq!(s["min_value"], 1.0 / 7.0);
    assert_eq!(s["max_value"], 200.0 * 200.0 / 7.0);
    assert_eq!(s["latest_value"], 200.0 * 200.0 / 7.0);
    for (field, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)] {
        let exact = all[analytics_core::sketch::nearest_rank(q, all.len() as u64) as usize];
        let got = s[field].as_f64().unwrap();
        assert!(((got - exact) / exact).abs() <= 0.01, "{field}: {got} vs {exact}");
    }
    assert!(s["latest_timestamp"].is_string() && s["computed_at"].is_string());
    assert_eq!(s["period"], "hourly");
}

async fn periods_and_ranges_select_by_timestamp(backend: Backend) {
    let api = Api::start(backend, &[]).await;
    for (value, seconds_ago) in [(1.0, 10), (2.0, 2 * 3600), (4.0, 2 * 86_400), (8.0, 10 * 86_400), (16.0, 40 * 86_400)] {
        assert_eq!(api.post_metric(&metric("w", value, seconds_ago)).await.status, 201);
    }
    let sum = |s: serde_json::Value| s["sum"].as_f64().unwrap();
    assert_eq!(sum(api.summary("type=w&period=hourly").await.0), 1.0);
    assert_eq!(sum(api.summary("type=w&period=daily").await.0), 3.0);
    assert_eq!(sum(api.summary("type=w&period=weekly").await.0), 7.0);
    assert_eq!(sum(api.summary("type=w&period=monthly").await.0), 15.0);
    assert_eq!(sum(api.summary("type=w&period=all").await.0), 31.0);
    let from = timestamp_seconds_ago(3 * 86_400);
    let to = timestamp_seconds_ago(3600);
    let (range, _) = api.summary(&format!("type=w&from={from}&to={to}")).await;
    assert_eq!((sum(range.clone()), range["period"].as_str()), (6.0, Some("range")));
    let (empty, _) = api.summary("type=nothing&period=daily").await;
    assert_eq!((empty["count"].as_u64(), empty["latest_timestamp"].is_null(), empty["p50"].as_f64()), (Some(0), true, Some(0.0)));
}

async fn bad_parameters_are_400s(backend: Backend) {
    let api = Api::start(backend, &[]).await;
    for query in ["", "type=", "type=a%20b", "type=cpu&period=yearly", "type=cpu&from=nope", "type=cpu&period=daily&from=2026-01-01T00:00:00Z", "type=cpu&type=mem"] {
        let r = api.get(&format!("/api/metrics/summary?{query}")).await;
        assert_eq!(r.status, 400, "{query}: {}", r.text());
        assert_eq!(r.json()["error"], "invalid_parameter");
    }
    let r = api.request("POST", "/api/metrics/summary?type=cpu", &[], "").await;
    assert_eq!((r.status, r.header("allow")), (405, Some("GET")));
}

async fn cache_misses_then_hits_then_adds_only_new_metrics(backend: Backend) {
    let api = Api::start(backend, &[]).await;
    api.post_metric(&metric("c", 1.0, 5)).await;
    let (first, cache) = api.summary("type=c").await;
    assert_eq!((cache.as_str(), first["count"].as_u64()), ("MISS", Some(1)));
    let (second, cache) = api.summary("type=c").await;
    assert_eq!(cache, "HIT");
    assert_eq!(second, first, "a hit returns the cached answer");
    // A new metric: the cached aggregates are reused and only the journal is added.
    api.post_metric(&metric("c", 2.0, 5)).await;
    let (third, cache) = api.summary("type=c").await;
    assert_eq!((cache.as_str(), third["count"].as_u64(), third["sum"].as_f64()), ("PARTIAL", Some(2), Some(3.0)));
    // An answer made from the folded part is kept (a store write) once the
    // entry it replaces has lived STABLE_MS, or at once where writes are
    // cheap: metrics arriving faster are added without a write each.
    tokio::time::sleep(std::time::Duration::from_millis(analytics_core::summary_cache::STABLE_MS as u64 + 50)).await;
    let (fourth, cache) = api.summary("type=c").await;
    assert!(["PARTIAL", "HIT"].contains(&cache.as_str()) && fourth["count"] == 2, "{cache} {fourth}");
    assert_eq!(api.summary("type=c").await.1, "HIT");
    // Another type's ingest does not touch this type's entry.
    api.post_metric(&metric("other", 2.0, 5)).await;
    assert_eq!(api.summary("type=c").await.1, "HIT");
    // A fixed range is cached the same way.
    let range = format!("type=c&from={}&to={}", timestamp_seconds_ago(60), timestamp_seconds_ago(-60));
    assert_eq!(api.summary(&range).await.1, "MISS");
    let (cached, cache) = api.summary(&range).await;
    assert_eq!((cache.as_str(), cached["count"].as_u64()), ("HIT", Some(2)));
}

async fn upstream_calls_are_bounded_by_the_context_ttl(backend: Backend) {
    let api = std::sync::Arc::new(Api::start(backend, &[("external_context_ttl_seconds", "60")]).await);
    let before = api.simulator_calls().await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            assert_eq!(api.post_metric(&metric("ctx", i as f64, 1)).await.status, 201);
            for _ in 0..5 {
                let (s, _) = api.summary("type=ctx&period=hourly").await;
                assert_eq!(s["external_data"]["status"], "success", "{s}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(api.simulator_calls().await, before + 1, "one call per type per TTL, whatever the load");
    let (s, _) = api.summary("type=ctx&period=hourly").await;
    assert_eq!(s["count"], 20);
}

async fn a_zero_ttl_turns_the_cache_off(backend: Backend) {
    let api = Api::start(backend, &[("cache_ttl_seconds", "0")]).await;
    api.post_metric(&metric("c", 1.0, 5)).await;
    assert_eq!(api.summary("type=c").await.1, "BYPASS");
    assert_eq!(api.summary("type=c").await.1, "BYPASS");
}

async fn a_summary_started_after_an_ack_always_includes_it(backend: Backend) {
    // Interleave ingests and summaries; each summary must count every metric
    // acknowledged before it was sent, whether it hits the cache or not.
    let api = std::sync::Arc::new(Api::start(backend, &[]).await);
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move {
                for _ in 0..30 {
                    api.summary("type=race").await;
                }
            })
        })
        .collect();
    for acked in 1..=60u64 {
        assert_eq!(api.post_metric(&json!({"type": "race", "value": 1.0, "timestamp": timestamp_seconds_ago(1)})).await.status, 201);
        let (s, cache) = api.summary("type=race").await;
        assert_eq!(s["count"].as_u64().unwrap(), acked, "after {acked} acks a {cache} summary said {}", s["count"]);
    }
    for r in readers {
        r.await.unwrap();
    }
}

/// Imported history from decades ago answers like yesterday's: windows of
/// any length, yearly series steps.
async fn windows_of_decades_and_yearly_series_answer(backend: Backend) {
    let api = Api::start(backend, &[]).await;
    for (value, year) in [(1.0, 1995), (2.0, 2003), (4.0, 2010), (8.0, 2021)] {
        let body = json!({"type": "history", "value": value, "timestamp": format!("{year}-06-15T12:00:00Z")});
        assert_eq!(api.post_metric(&body).await.status, 201);
    }
    let (s, _) = api.summary("type=history&from=1990-01-01T00:00:00Z&to=2012-01-01T00:00:00Z").await;
    assert_eq!((s["count"].as_u64(), s["sum"].as_f64()), (Some(3), Some(7.0)), "{s}");
    let r = api.get("/api/metrics/series?type=history&from=1995-01-01T00:00:00Z&to=2025-01-01T00:00:00Z&step=1y").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let points = r.json()["points"].as_array().cloned().unwrap_or_default();
    assert_eq!(points.len(), 31);
    let counted: Vec<(String, u64)> = points
        .iter()
        .filter(|p| p["count"].as_u64() > Some(0))
        .map(|p| (p["start"].as_str().unwrap_or_default()[..4].to_string(), p["count"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(counted.len(), 4, "one point per year with data: {counted:?}");
    let r = api.get("/api/stats/top-types?from=1970-01-01T00:00:00Z").await;
    assert_eq!(r.json()["types"][0]["count"], 4, "{}", r.text());
}

on_both_redis!(
    windows_of_decades_and_yearly_series_answer,
    reports_exact_statistics_and_close_percentiles,
    periods_and_ranges_select_by_timestamp,
    bad_parameters_are_400s,
    cache_misses_then_hits_then_adds_only_new_metrics,
    upstream_calls_are_bounded_by_the_context_ttl,
    a_zero_ttl_turns_the_cache_off,
    a_summary_started_after_an_ack_always_includes_it,
);
