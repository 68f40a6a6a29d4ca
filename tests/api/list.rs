//! GET /api/metrics/list: newest first, paged by cursor.

use serde_json::{json, Value};
use support::api::{timestamp_seconds_ago, Api, Backend};

fn ids(page: &Value) -> Vec<String> {
    page.as_array().expect("an array").iter().map(|m| m["id"].as_str().unwrap_or_default().to_string()).collect()
}

async fn pages_through_everything_newest_first(backend: Backend) {
    let api = Api::start(backend, &[]).await;
    // Posted out of order; ids name the age so the expected order is clear.
    let ages: Vec<i64> = vec![5, 3_700, 1, 90_000, 60, 2, 7_200, 4, 86_000, 3];
    for age in &ages {
        let t = if age % 2 == 0 { "even" } else { "odd" };
        let body = json!({"id": format!("age-{age:06}"), "type": t, "value": *age as f64, "timestamp": timestamp_seconds_ago(*age)});
        assert_eq!(api.post_metric(&body).await.status, 201);
    }
    let mut sorted = ages.clone();
    sorted.sort();
    let expected: Vec<String> = sorted.iter().map(|a| format!("age-{a:06}")).collect();

    let mut seen = Vec::new();
    let mut path = "/api/metrics/list?limit=3".to_string();
    loop {
        let r = api.get(&path).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let page = r.json();
        assert!(page.as_array().unwrap().len() <= 3);
        let first = &page[0];
        assert!(first["type"].is_string() && first["value"].is_number() && first["timestamp"].is_string());
        seen.extend(ids(&page));
        match r.header("x-next-cursor") {
            Some(cursor) => path = format!("/api/metrics/list?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, expected);

    let odd = api.get("/api/metrics/list?type=odd").await.json();
    assert_eq!(ids(&odd), ["age-000001", "age-000003", "age-000005"]);
    let from = timestamp_seconds_ago(4_000);
    let to = timestamp_seconds_ago(59);
    let window = api.get(&format!("/api/metrics/list?from={from}&to={to}")).await;
    assert_eq!(ids(&window.json()), ["age-000060", "age-003700"]);
    assert_eq!(window.header("x-next-cursor"), None);
    assert_eq!(api.get("/api/metrics/list?type=none").await.json(), json!([]));
}

async fn bad_parameters_are_400s(backend: Backend) {
    let api = Api::start(backend, &[]).await;
    for query in ["limit=0", "limit=1001", "limit=ten", "type=a%20b", "from=nope", "cursor=garbage", "from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z"] {
        let r = api.get(&format!("/api/metrics/list?{query}")).await;
        assert_eq!(r.status, 400, "{query}: {}", r.text());
    }
}

/// Posts `count` metrics of type `t`, `days` old, with ids, in batches of 500.
async fn post_batches(api: &Api, t: &str, count: usize, days: i64) {
    for start in (0..count).step_by(500) {
        let items: Vec<Value> = (start..count.min(start + 500))
            .map(|i| json!({"id": format!("{t}-{days}-{i}"), "type": t, "value": 1.0, "timestamp": timestamp_seconds_ago(days * 86_400 + i as i64)}))
            .collect();
        let r = api.request("POST", "/api/metrics/batch", &[("content-type", "application/json")], Value::Array(items).to_string()).await;
        assert_eq!((r.status, r.json()["accepted"].as_u64()), (200, Some(items_len(start, count))), "{}", r.text());
    }
}

fn items_len(start: usize, count: usize) -> u64 {
    (count.min(start + 500) - start) as u64
}

/// Entry chunks of `kept` older than 31 days.
async fn old_chunks(api: &Api) -> usize {
    let horizon = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64) - 31 * 86_400;
    let second = |k: &str| k.split(':').nth(2).and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
    api.store_keys().await.iter().filter(|k| k.starts_with("ent:kept:") && second(k) < horizon).count()
}

/// Raw metrics older than `raw_retention_days` leave the store as ingest
/// goes on (no request sweeps on its own); aggregates keep counting them.
async fn raw_metrics_past_the_retention_period_are_deleted_as_ingest_goes_on(backend: Backend) {
    let api = Api::start(backend, &[]).await;
    post_batches(&api, "kept", 2_000, 100).await;
    assert!(old_chunks(&api).await > 500, "folds wrote the old metrics' chunks");
    let api = api.restart_with(&[("raw_retention_days", "30")]).await;
    let old = json!({"type": "kept", "value": 1.0, "timestamp": timestamp_seconds_ago(31 * 86_400)});
    let refused = api.post_metric(&old).await;
    assert_eq!(refused.status, 422, "{}", refused.text());
    assert!(refused.text().contains("raw_retention_days"), "{}", refused.text());
    post_batches(&api, "kept", 2_000, 0).await;

    assert_eq!(old_chunks(&api).await, 0, "every chunk of the old metrics is gone");
    // On PostgreSQL whole month partitions before the sweep's oldest chunk go at once.
    let partitions = "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'analytics_metrics' ORDER BY 1";
    if let Some(months) = api.postgres_column(partitions).await {
        let horizon = analytics_core::postgres::Partition::of((std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64) - 31 * 86_400_000);
        let old: Vec<&String> = months.iter().filter(|m| **m < analytics_core::postgres::Partition { year: horizon.year, month: horizon.month }.name()).collect();
        assert!(old.is_empty(), "month partitions older than the horizon's month: {old:?} of {months:?}");
        assert!(!months.is_empty(), "the kept metrics have their partition");
    }
    let claims = api.store_keys().await.iter().filter(|k| k.starts_with("claim:kept-100-")).count();
    // Old metrics still waiting in a journal shard keep their claim until folded.
    assert!(claims < 16 * 64, "{claims} claims of old metrics left");
    let mut listed = 0;
    let mut path = "/api/metrics/list?type=kept&limit=1000".to_string();
    loop {
        let r = api.get(&path).await;
        listed += r.json().as_array().map_or(0, Vec::len);
        match r.header("x-next-cursor") {
            Some(cursor) => path = format!("/api/metrics/list?type=kept&limit=1000&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(listed, 2_000, "only the metrics within the retention period are listed");
    let (summary, _) = api.summary("type=kept").await;
    assert_eq!(summary["count"], 4_000, "aggregates keep counting the deleted ones");
}

/// Every type's listing over many types, folded shards (batches fold the
/// shard they fill) and metrics waiting in journals alike: each metric
/// once, newest first, as the merge reads journal heads, the listing
/// index and the types' buckets.
async fn every_type_pages_through_folded_and_waiting_metrics(backend: Backend) {
    let api = Api::start(backend, &[]).await;
    let mut expected: Vec<(i64, String)> = Vec::new();
    // One base for every timestamp, so the expected order holds however long posting takes.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 - 60;
    for t in 0..12 {
        let name = format!("kind{t:02}");
        // Busy kinds come in batches (their ids spread them over the 16
        // shards, which fold at 64); quiet ones one by one.
        let (count, every) = if t < 2 { (1_500, 131 + t as i64) } else { (6, 40_000 + t as i64 * 997) };
        let items: Vec<Value> = (0..count)
            .map(|i| {
                let age = i as i64 * every + t as i64;
                expected.push((now - age, format!("{name}-{i:04}")));
                let timestamp = analytics_core::time::format_timestamp((now - age) * 1_000);
                json!({"id": format!("{name}-{i:04}"), "type": name, "value": i as f64, "timestamp": timestamp})
            })
            .collect();
        if t < 2 {
            for batch in items.chunks(500) {
                let r = api.request("POST", "/api/metrics/batch", &[("content-type", "application/json")], Value::Array(batch.to_vec()).to_string()).await;
                assert_eq!(r.status, 200, "{}", r.text());
            }
        } else {
            for item in &items {
                assert_eq!(api.post_metric(item).await.status, 201);
            }
        }
    }
    assert!(api.store_keys().await.iter().any(|k| k.starts_with("lst:d:")), "folds wrote the listing index");
    expected.sort_by(|a, b| b.cmp(a));
    let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();
    let mut seen = Vec::new();
    let mut path = "/api/metrics/list?limit=97".to_string();
    loop {
        let r = api.get(&path).await;
        assert_eq!(r.status, 200, "{}", r.text());
        seen.extend(ids(&r.json()));
        match r.header("x-next-cursor") {
            Some(cursor) => path = format!("/api/metrics/list?limit=97&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, expected);
}

on_both_redis!(
    pages_through_everything_newest_first,
    bad_parameters_are_400s,
    raw_metrics_past_the_retention_period_are_deleted_as_ingest_goes_on,
    every_type_pages_through_folded_and_waiting_metrics
);
