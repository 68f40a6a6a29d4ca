//! Event analytics end to end: distinct users per interval (checked against
//! an exact count), retention cohorts under concurrent ingest of one user,
//! top types, and time series.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{json, Value};
use support::api::{timestamp_seconds_ago, Api, Backend};

async fn batch(api: &Api, items: &[Value]) {
    let r = api.request("POST", "/api/metrics/batch", &[("content-type", "application/json")], json!(items).to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

fn today_start() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    analytics_core::time::format_timestamp(now - now % 86_400_000)
}

async fn active_users_are_within_two_percent_of_exact(backend: Backend) {
    let api = Api::start(backend, &[]).await;
    // 100 000 distinct users today (plus repeats), in batches of 1 000.
    let ts = timestamp_seconds_ago(1);
    let mut exact = HashSet::new();
    for b in 0..110 {
        let items: Vec<Value> = (0..1_000)
            .map(|i| {
                let user = (b * 1_000 + i) % 100_000;
                exact.insert(user);
                json!({"type": "visit", "value": 1.0, "timestamp": ts, "user_id": format!("user-{user}")})
            })
            .collect();
        batch(&api, &items).await;
    }
    let r = api.get(&format!("/api/stats/active-users?type=visit&interval=day&from={}", today_start())).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let estimate = r.json()["data"][0]["active_users"].as_f64().expect("a count");
    let error = (estimate - exact.len() as f64).abs() / exact.len() as f64;
    assert!(error <= 0.02, "{estimate} for {} users", exact.len());
    let (s, _) = api.summary("type=visit&period=daily").await;
    assert_eq!(s["unique_users"].as_f64(), Some(estimate), "the summary's unique users agree");
    // All types at once, week and month.
    for interval in ["week", "month"] {
        let r = api.get(&format!("/api/stats/active-users?interval={interval}")).await.json();
        let last = r["data"].as_array().and_then(|d| d.last()).expect("an interval")["active_users"].as_f64().unwrap();
        assert!((last - exact.len() as f64).abs() / exact.len() as f64 <= 0.02, "{interval}: {last}");
    }
    for q in ["interval=year", "from=nope", "type=a%20b", "from=2000-01-01T00:00:00Z"] {
        assert_eq!(api.get(&format!("/api/stats/active-users?{q}")).await.status, 400, "{q}");
    }
}

async fn retention_counts_one_user_once_under_concurrent_ingest(backend: Backend) {
    let api = Arc::new(Api::start(backend, &[]).await);
    // The same user, three days, from many concurrent requests; another user on day 0 only.
    let days = [2 * 86_400 + 60, 86_400 + 60, 60];
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let api = api.clone();
            let ts = timestamp_seconds_ago(days[i % 3]);
            tokio::spawn(async move {
                let body = json!({"type": "login", "value": 1.0, "timestamp": ts, "user_id": "same-user"});
                assert_eq!(api.post_metric(&body).await.status, 201);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    api.post_metric(&json!({"type": "login", "value": 1.0, "timestamp": timestamp_seconds_ago(days[0]), "user_id": "other"})).await;
    let r = api.get(&format!("/api/stats/retention?interval=day&periods=2&from={}", timestamp_seconds_ago(3 * 86_400))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let cohorts = r.json()["cohorts"].as_array().cloned().unwrap_or_default();
    let first = cohorts.iter().find(|c| c["size"].as_i64().unwrap_or(0) > 0).expect("a cohort with users");
    assert_eq!(first["retained"], json!([2, 1, 1]), "{cohorts:?}");
    assert_eq!(first["rates"][1], 0.5);
    assert_eq!(api.get("/api/stats/retention?interval=month").await.status, 400);
}

async fn top_types_and_series_read_buckets(backend: Backend) {
    let api = Api::start(backend, &[]).await;
    let mut items = Vec::new();
    for (t, n) in [("alpha", 5), ("beta", 12), ("gamma", 1)] {
        for i in 0..n {
            items.push(json!({"type": t, "value": i as f64, "timestamp": timestamp_seconds_ago(60 * (i % 3) + 5)}));
        }
    }
    batch(&api, &items).await;
    let top = api.get("/api/stats/top-types?limit=2").await.json();
    assert_eq!(top["types"], json!([{"type": "beta", "count": 12, "unique_users": 0}, {"type": "alpha", "count": 5, "unique_users": 0}]));
    assert_eq!(api.get("/api/stats/top-types?limit=0").await.status, 400);

    let from = timestamp_seconds_ago(600);
    let r = api.get(&format!("/api/metrics/series?type=beta&from={from}&step=1m")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let points = r.json()["points"].as_array().cloned().unwrap_or_default();
    assert!((10..=11).contains(&points.len()), "{}", points.len());
    assert_eq!(points.iter().map(|p| p["count"].as_u64().unwrap()).sum::<u64>(), 12);
    assert!(points.iter().filter(|p| p["count"] == 0).count() >= 6, "empty steps are present");
    for q in ["type=beta&step=1m", "type=beta&from=2026-01-01T00:00:00Z&step=1s", "type=beta&from=2026-01-01T00:00:00Z&step=0", "from=1&step=1m"] {
        assert_eq!(api.get(&format!("/api/metrics/series?{q}")).await.status, 400, "{q}");
    }
}

on_both_redis!(
    active_users_are_within_two_percent_of_exact,
    retention_counts_one_user_once_under_concurrent_ingest,
    top_types_and_series_read_buckets,
);
