//! `store_backend = "postgres"` keeps the metrics in tables a person can
//! query: the README's queries run, and what they say agrees with the API.

use serde_json::{json, Value};
use support::api::{timestamp_seconds_ago, Api, Backend};

/// One text column of a query on the store's database.
async fn one(api: &Api, sql: &str) -> String {
    let rows = api.postgres_column(sql).await.expect("a PostgreSQL store");
    rows.into_iter().next().unwrap_or_else(|| panic!("{sql}: no row"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folded_metrics_and_rollups_are_sql_rows_that_agree_with_the_api() {
    let api = Api::start(Backend::PostgresStore, &[]).await;
    // Enough for every journal shard to fold several times (64 items each).
    let items: Vec<Value> = (0..3_000)
        .map(|i| {
            let plan = if i % 3 == 0 { "pro" } else { "free" };
            json!({"id": format!("sql-{i}"), "type": "checkout", "value": (i % 50) as f64 + 0.5,
                   "timestamp": timestamp_seconds_ago((i % 600) as i64), "user_id": format!("u{}", i % 40),
                   "properties": {"plan": plan, "cart": i % 7}})
        })
        .collect();
    for part in items.chunks(1_000) {
        let r = api.request("POST", "/api/metrics/batch", &[("content-type", "application/json")], Value::Array(part.to_vec()).to_string()).await;
        assert_eq!(r.json()["accepted"], 1_000, "{}", r.text());
    }
    // Raw rows: every folded metric once, with its user and properties as jsonb.
    let rows: i64 = one(&api, "SELECT count(*)::text FROM analytics_metrics WHERE type = 'checkout'").await.parse().unwrap();
    assert!(rows > 2_000, "most metrics are folded into rows: {rows}");
    let distinct: i64 = one(&api, "SELECT count(DISTINCT id)::text FROM analytics_metrics WHERE type = 'checkout'").await.parse().unwrap();
    assert_eq!(distinct, rows, "no metric is a row twice");
    let pro: i64 = one(&api, "SELECT count(*)::text FROM analytics_metrics WHERE type = 'checkout' AND properties->>'plan' = 'pro'").await.parse().unwrap();
    assert!(pro > 0 && pro < rows, "{pro} of {rows}");
    // The all-time rollup holds exactly the folded rows: same count and sum.
    let rollup = one(&api, "SELECT count || ' ' || sum FROM analytics_rollups WHERE type = 'checkout' AND level = 'all'").await;
    let sum = one(&api, "SELECT sum(value)::text FROM analytics_metrics WHERE type = 'checkout'").await;
    assert_eq!(rollup, format!("{rows} {sum}"), "the all-time rollup agrees with the raw rows");
    // The README's chart query: per minute, from the minute rollups.
    let chart = "SELECT coalesce(sum(count), 0)::text FROM analytics_rollups \
                 WHERE project = 'default' AND type = 'checkout' AND level = 'm' AND bucket_start > now() - interval '1 day'";
    assert_eq!(one(&api, chart).await, rows.to_string(), "the minute rollups add up to the folded rows");
    // Every acknowledged metric is in the API's answer, folded or not.
    let summary = api.get("/api/metrics/summary?type=checkout").await.json();
    assert_eq!(summary["count"], 3_000, "{summary}");
    // The tables have their versions recorded.
    assert_eq!(one(&api, "SELECT max(version)::text FROM analytics_schema_version").await, analytics_core::postgres::MIGRATIONS.len().to_string());
}
