//! POST /api/metrics: what is accepted, what is refused, and that refused
//! input stores nothing.

use serde_json::json;
use support::api::{metric, timestamp_seconds_ago, Api, Backend};

async fn count(api: &Api, t: &str) -> u64 {
    api.summary(&format!("type={t}")).await.0["count"].as_u64().expect("count")
}

async fn accepts_and_normalises_a_metric(backend: Backend) {
    let api = Api::start(backend, &[]).await;
    let response = api
        .post_metric(&json!({"timestamp": "2026-02-18T13:00:00+01:00", "value": 85.5, "type": "cpu_usage"}))
        .await;
    assert_eq!(response.status, 201, "{}", response.text());
    let body = response.json();
    assert_eq!(body["message"], "Metric received");
    assert_eq!(body["timestamp"], "2026-02-18T12:00:00Z");
    assert_eq!((body["type"].as_str(), body["value"].as_f64()), (Some("cpu_usage"), Some(85.5)));
    let id = body["id"].as_str().expect("server-assigned id");
    assert_eq!(id.len(), 26, "a ULID: {id}");
    let second = api.post_metric(&metric("cpu_usage", 1.0, 0)).await.json();
    assert_ne!(second["id"], body["id"]);
    // A ULID's first 10 characters are its millisecond; within one
    // millisecond the order is random.
    let millisecond = |id: &str| id[..10].to_string();
    let second_id = second["id"].as_str().expect("server-assigned id");
    assert!(millisecond(second_id) >= millisecond(id), "ids are time-ordered: {id} then {second_id}");
    assert_eq!(count(&api, "cpu_usage").await, 2);
}

async fn the_same_id_is_stored_and_counted_once(backend: Backend) {
    let api = Api::start(backend, &[]).await;
    let body = json!({"id": "order:42", "timestamp": timestamp_seconds_ago(5), "value": 3.0, "type": "orders"});
    let first = api.post_metric(&body).await;
    assert_eq!(first.status, 201);
    let again = api.post_metric(&body).await;
    assert_eq!(again.status, 200, "{}", again.text());
    let again = again.json();
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["id"], "order:42");
    assert_eq!(count(&api, "orders").await, 1);
    let list = api.get("/api/metrics/list?type=orders").await.json();
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    // The same id with different content is a client error, not a silent overwrite.
    let mut changed = body.clone();
    changed["value"] = json!(4.0);
    let conflict = api.post_metric(&changed).await;
    assert_eq!(conflict.status, 409, "{}", conflict.text());
    assert_eq!(conflict.json()["error"], "id_conflict");
    assert_eq!(api.summary("type=orders").await.0["sum"], 3.0);
}

async fn concurrent_posts_of_one_id_store_it_once(backend: Backend) {
    let api = std::sync::Arc::new(Api::start(backend, &[]).await);
    let body = json!({"id": "retry-storm", "timestamp": timestamp_seconds_ago(1), "value": 1.0, "type": "retries"});
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (api, body) = (api.clone(), body.clone());
            tokio::spawn(async move { api.post_metric(&body).await.status })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 201 || *s == 200), "{statuses:?}");
    assert_eq!(count(&api, "retries").await, 1);
}

async fn invalid_bodies_are_refused_and_store_nothing(backend: Backend) {
    let api = Api::start(backend, &[]).await;
    let now = timestamp_seconds_ago(0);
    let cases: Vec<(String, &str, u16, &[&str])> = vec![
        ("{".into(), "application/json", 422, &[]),
        ("[1, 2]".into(), "application/json", 422, &[]),
        ("{}".into(), "application/json", 422, &["timestamp", "value", "type"]),
        (json!({"timestamp": now, "value": "85.5", "type": "t"}).to_string(), "application/json", 422, &["value"]),
        (json!({"timestamp": now, "value": null, "type": "t"}).to_string(), "application/json", 422, &["value"]),
        (json!({"timestamp": now, "value": "NaN", "type": "t"}).to_string(), "application/json", 422, &["value"]),
        (json!({"timestamp": now, "value": 1e300, "type": "t"}).to_string(), "application/json", 422, &["value"]),
        (format!(r#"{{"timestamp": "{now}", "value": 1e999, "type": "t"}}"#), "application/json", 422, &[]),
        (json!({"timestamp": now, "value": 1, "type": "x".repeat(101)}).to_string(), "application/json", 422, &["type"]),
        (json!({"timestamp": now, "value": 1, "type": "tab\there"}).to_string(), "application/json", 422, &["type"]),
        (json!({"timestamp": now, "value": 1, "type": "nul\u{0}"}).to_string(), "application/json", 422, &["type"]),
        (json!({"timestamp": "soon", "value": 1, "type": "t"}).to_string(), "application/json", 422, &["timestamp"]),
        (json!({"timestamp": timestamp_seconds_ago(-3600), "value": 1, "type": "t"}).to_string(), "application/json", 422, &["timestamp"]),
        (json!({"timestamp": now, "value": 1, "type": "t", "id": ""}).to_string(), "application/json", 422, &["id"]),
        (json!({"timestamp": now, "value": true, "type": ["t"]}).to_string(), "application/json", 422, &["value", "type"]),
        ("[".repeat(60_000), "application/json", 422, &[]),
        (json!({"timestamp": now, "value": 1, "type": "t"}).to_string(), "text/plain", 415, &[]),
        (json!({"timestamp": now, "value": 1, "type": "t"}).to_string(), "", 415, &[]),
        (format!(r#"{{"timestamp": "{now}", "value": 1, "type": "t", "pad": "{}"}}"#, "x".repeat(70_000)), "application/json", 413, &[]),
    ];
    for (body, content_type, status, fields) in cases {
        let headers: Vec<(&str, &str)> = if content_type.is_empty() { vec![] } else { vec![("content-type", content_type)] };
        let response = api.request("POST", "/api/metrics", &headers, body.clone()).await;
        let shown: String = body.chars().take(80).collect();
        assert_eq!(response.status, status, "{shown}: {}", response.text());
        let error = response.json();
        assert!(error["error"].is_string() && error["message"].is_string(), "{error}");
        let named: Vec<&str> = error["details"].as_array().into_iter().flatten().filter_map(|d| d["field"].as_str()).collect();
        assert_eq!(named, fields, "{shown}");
    }
    // Non-UTF-8 bytes and a 10 MB body.
    let binary = api.request("POST", "/api/metrics", &[("content-type", "application/json")], vec![0xff, 0xfe, 0x7b]).await;
    assert_eq!(binary.status, 422);
    let huge = api.request("POST", "/api/metrics", &[("content-type", "application/json")], vec![b' '; 10 << 20]).await;
    assert_eq!(huge.status, 413);
    assert_eq!(count(&api, "t").await, 0);
    assert_eq!(api.get("/api/metrics/list").await.json(), json!([]));
}

async fn only_post_is_allowed(backend: Backend) {
    let api = Api::start(backend, &[]).await;
    let response = api.get("/api/metrics").await;
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("POST"));
    assert_eq!(response.json()["error"], "method_not_allowed");
}

async fn a_thousand_concurrent_ingests_are_all_counted(backend: Backend) {
    let api = std::sync::Arc::new(Api::start(backend, &[]).await);
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let api = api.clone();
            tokio::spawn(async move {
                let r = api.post_metric(&metric("load", i as f64, i % 120)).await;
                (r.status, r.text())
            })
        })
        .collect();
    for t in tasks {
        let (status, text) = t.await.unwrap();
        assert_eq!(status, 201, "{text}");
    }
    let (summary, _) = api.summary("type=load").await;
    assert_eq!(summary["count"], 1000);
    assert_eq!(summary["sum"], (0..1000).sum::<i64>() as f64);
    assert_eq!(api.summary("type=load&period=hourly").await.0["count"], 1000);
}

async fn a_bad_variable_is_a_500_naming_it(backend: Backend) {
    let api = Api::start(backend, &[("rate_limit_requests", "plenty")]).await;
    let response = api.post_metric(&metric("t", 1.0, 0)).await;
    assert_eq!(response.status, 500);
    let message = response.json()["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("rate_limit_requests") && message.contains("plenty"), "{message}");
}

on_both_redis!(
    accepts_and_normalises_a_metric,
    the_same_id_is_stored_and_counted_once,
    concurrent_posts_of_one_id_store_it_once,
    invalid_bodies_are_refused_and_store_nothing,
    only_post_is_allowed,
    a_thousand_concurrent_ingests_are_all_counted,
    a_bad_variable_is_a_500_naming_it,
);
