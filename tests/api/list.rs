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

on_both_redis!(pages_through_everything_newest_first, bad_parameters_are_400s);
