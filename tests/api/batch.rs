//! POST /api/metrics/batch: independent items, ids idempotent across batches
//! and single posts, one rate-limit slot per batch.

use serde_json::{json, Value};
use support::api::{timestamp_seconds_ago, Api, Backend};

async fn post_batch(api: &Api, content_type: &str, body: String) -> support::TestResponse {
    api.request("POST", "/api/metrics/batch", &[("content-type", content_type)], body).await
}

fn item(t: &str, value: f64) -> Value {
    json!({"type": t, "value": value, "timestamp": timestamp_seconds_ago(5)})
}

async fn items_are_independent_and_reported_by_index(backend: Backend) {
    let api = Api::start(backend, &[]).await;
    let batch = json!([
        item("b", 1.0),
        {"type": "b", "value": "high", "timestamp": "yesterday"},
        {"type": "b", "value": 2.0, "timestamp": timestamp_seconds_ago(5), "user_id": "u1", "properties": {"plan": "pro", "seats": 3}},
        {"type": "b", "value": 3.0, "timestamp": timestamp_seconds_ago(5), "properties": {"nested": {"no": 1}}},
        7,
    ]);
    let r = post_batch(&api, "application/json", batch.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!((body["accepted"].as_u64(), body["duplicates"].as_u64()), (Some(2), Some(0)));
    let rejected = body["rejected"].as_array().expect("rejected");
    let indexes: Vec<u64> = rejected.iter().map(|r| r["index"].as_u64().unwrap()).collect();
    assert_eq!(indexes, [1, 3, 4]);
    let fields: Vec<&str> = rejected[0]["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["timestamp", "value"]);
    assert_eq!(rejected[1]["details"][0]["field"], "properties.nested");
    assert_eq!(rejected[2]["error"], "invalid_json");
    let (s, _) = api.summary("type=b").await;
    assert_eq!((s["count"].as_u64(), s["sum"].as_f64(), s["unique_users"].as_u64()), (Some(2), Some(3.0), Some(1)));
    let listed = api.get("/api/metrics/list?type=b").await.json();
    let with_user = listed.as_array().unwrap().iter().find(|m| m["user_id"] == "u1").expect("the user's metric");
    assert_eq!(with_user["properties"], json!({"plan": "pro", "seats": 3}));

    // NDJSON, blank lines skipped.
    let lines = format!("{}\n\n{}\n", item("n", 1.0), item("n", 2.0));
    let r = post_batch(&api, "application/x-ndjson", lines).await;
    assert_eq!((r.status, r.json()["accepted"].as_u64()), (200, Some(2)));
}

async fn bad_batches_are_refused_whole(backend: Backend) {
    let api = Api::start(backend, &[]).await;
    let all_bad = json!([{"value": 1}, "x"]);
    let r = post_batch(&api, "application/json", all_bad.to_string()).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!((r.json()["error"].as_str(), r.json()["rejected"].as_array().map(Vec::len)), (Some("nothing_accepted"), Some(2)));
    let too_many: Vec<Value> = (0..1_001).map(|i| item("big", i as f64)).collect();
    assert_eq!(post_batch(&api, "application/json", json!(too_many).to_string()).await.status, 413);
    assert_eq!(post_batch(&api, "application/json", " ".repeat(1_100_000)).await.status, 413);
    assert_eq!(post_batch(&api, "text/csv", "a,b".into()).await.status, 415);
    for body in ["{}", "[", "[]"] {
        assert_eq!(post_batch(&api, "application/json", body.into()).await.status, 422, "{body}");
    }
    assert_eq!(api.summary("type=big").await.0["count"], 0);
}

async fn ids_hold_across_batches_and_single_posts(backend: Backend) {
    let api = std::sync::Arc::new(Api::start(backend, &[]).await);
    let ts = timestamp_seconds_ago(30);
    let with_id = |id: &str, v: f64| json!({"id": id, "type": "ids", "value": v, "timestamp": ts});
    assert_eq!(api.post_metric(&with_id("single", 1.0)).await.status, 201);
    let batch = json!([with_id("single", 1.0), with_id("twice", 2.0), with_id("twice", 2.0), with_id("clash", 3.0), with_id("clash", 4.0)]);
    let body = post_batch(&api, "application/json", batch.to_string()).await.json();
    assert_eq!((body["accepted"].as_u64(), body["duplicates"].as_u64()), (Some(2), Some(2)), "{body}");
    assert_eq!(body["rejected"][0]["error"], "id_conflict");
    // The same batch again stores nothing.
    let again = post_batch(&api, "application/json", batch.to_string()).await.json();
    assert_eq!((again["accepted"].as_u64(), again["duplicates"].as_u64()), (Some(0), Some(4)), "{again}");
    // One id in many concurrent batches: stored once.
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let api = api.clone();
            let batch = json!([with_id("race", 5.0), {"type": "ids", "value": 0.5, "timestamp": ts, "id": format!("own-{i}")}]);
            tokio::spawn(async move { post_batch(&api, "application/json", batch.to_string()).await })
        })
        .collect();
    for t in tasks {
        let r = t.await.unwrap();
        assert!(r.status == 200, "{}", r.text());
    }
    let (s, _) = api.summary("type=ids").await;
    assert_eq!((s["count"].as_u64(), s["sum"].as_f64()), (Some(14), Some(1.0 + 2.0 + 3.0 + 5.0 + 10.0 * 0.5)));
}

async fn a_batch_counts_once_against_the_rate_limit(backend: Backend) {
    let api = Api::start(backend, &[("rate_limit_requests", "2")]).await;
    let batch: Vec<Value> = (0..100).map(|i| item("limited", i as f64)).collect();
    for _ in 0..2 {
        assert_eq!(post_batch(&api, "application/json", json!(batch).to_string()).await.status, 200);
    }
    let refused = post_batch(&api, "application/json", json!(batch).to_string()).await;
    assert_eq!(refused.status, 429);
    assert!(refused.header("retry-after").is_some());
    assert_eq!(api.summary("type=limited").await.0["count"], 200);
}

on_both_redis!(
    items_are_independent_and_reported_by_index,
    bad_batches_are_refused_whole,
    ids_hold_across_batches_and_single_posts,
    a_batch_counts_once_against_the_rate_limit,
);
