//! Scale-out: several `spin-host` processes share one `redis-server` for the
//! key-value store (runtime config `type = "redis"`) and another for the
//! losable state, as replicas do under docker compose or SpinKube. Run with
//! a correct Redis store and with Spin v4.0.2's defects reproduced, and with
//! the metrics in one PostgreSQL (`store_backend = "postgres"`) instead.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde_json::json;
use support::api::timestamp_seconds_ago;
use support::host_process::HostProcess;
use support::http_client::Connection;
use support::postgres_server::PostgresServer;
use support::redis_server::RedisServer;

const REPLICAS: usize = 3;
const CONNECTIONS: usize = 32;
const POSTS: usize = 1_000;
/// Posts 0..ID_POSTS carry client ids, each id posted twice (on different replicas).
const ID_POSTS: usize = 100;
const LIMIT: usize = 40;
/// Redis connections one replica may hold to each server: one per worker thread.
const MAX_CONNECTIONS_PER_REPLICA: usize = 2;

/// `defects` naming this runs the replicas on one PostgreSQL instead of a
/// Redis-backed key-value store.
const POSTGRES: &str = "postgres";

struct Cluster {
    replicas: Vec<HostProcess>,
    store: RedisServer,
    cache: RedisServer,
    postgres: Option<PostgresServer>,
    _dir: tempfile::TempDir,
}

async fn start(defects: &str) -> Cluster {
    start_with(defects, &[]).await
}

async fn start_with(defects: &str, extra: &[(&str, &str)]) -> Cluster {
    let (store, cache) = (RedisServer::start(), RedisServer::start());
    let postgres = (defects == POSTGRES).then(PostgresServer::start);
    let defects = if defects == POSTGRES { "none" } else { defects };
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("runtime-config.toml");
    std::fs::write(&config, format!("[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n", store.url())).expect("runtime config");
    let args = |i: usize| -> Vec<String> {
        let mut args: Vec<String> = [
            "--runtime-config-file",
            &config.to_string_lossy(),
            "--state-dir",
            &dir.path().join(format!("state-{i}")).to_string_lossy(),
            "--redis",
            "external",
            "--kv-redis-defects",
            defects,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (name, value) in [
            ("redis_url", cache.url()),
            ("rate_limit_requests", LIMIT.to_string()),
            ("trust_forwarded_for", "true".into()),
            ("external_service_latency_ms", "0".into()),
            ("external_service_failure_rate", "0".into()),
        ] {
            args.extend(["--variable".to_string(), format!("{name}={value}")]);
        }
        for (name, value) in extra {
            args.extend(["--variable".to_string(), format!("{name}={value}")]);
        }
        if let Some(server) = &postgres {
            let allowed = format!("postgres://127.0.0.1:{}", server.port());
            for (name, value) in [("store_backend", "postgres".to_string()), ("store_postgres_url", server.url("postgres")), ("store_postgres_allowed_host", allowed)] {
                args.extend(["--variable".to_string(), format!("{name}={value}")]);
            }
        }
        args
    };
    let starting: Vec<_> = (0..REPLICAS)
        .map(|i| {
            let (args, log) = (args(i), dir.path().join(format!("host-{i}.log")));
            tokio::spawn(async move { HostProcess::start(&args, log).await })
        })
        .collect();
    let mut replicas = Vec::new();
    for s in starting {
        replicas.push(s.await.expect("starting a replica"));
    }
    Cluster { replicas, store, cache, postgres, _dir: dir }
}

/// The body of post `i`, its id (if it has one), and its value; `now` is
/// fixed for the run, so both posts of an id say exactly the same.
fn post(i: usize, now: &[String]) -> (serde_json::Value, Option<String>, f64) {
    if i < ID_POSTS {
        let k = i / 2;
        let id = format!("rid-{k}");
        let body = json!({"id": id, "type": "rep", "value": k as f64, "timestamp": now[k]});
        (body, Some(id), k as f64)
    } else {
        (json!({"type": "rep", "value": i as f64, "timestamp": now[i % 300]}), None, i as f64)
    }
}

/// `CLIENT LIST` of `server`: connections per name.
async fn connections_by_name(server: &RedisServer) -> BTreeMap<String, usize> {
    let client = redis::Client::open(server.url()).expect("client");
    let mut connection = client.get_multiplexed_async_connection().await.expect("connection");
    let list: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut connection).await.expect("CLIENT LIST");
    let mut by_name = BTreeMap::new();
    for line in list.lines() {
        let name = line.split(' ').find_map(|f| f.strip_prefix("name=")).unwrap_or("").to_string();
        *by_name.entry(name).or_insert(0) += 1;
    }
    by_name
}

async fn replicas_share_one_store(defects: &str) {
    let cluster = Arc::new(start(defects).await);
    let addresses: Vec<_> = cluster.replicas.iter().map(|r| r.address).collect();
    let now: Arc<Vec<String>> = Arc::new((0..300).map(timestamp_seconds_ago).collect());
    // 32 connections spread over the replicas, each its own client (X-Forwarded-For).
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let (address, now) = (addresses[c % REPLICAS], now.clone());
            tokio::spawn(async move {
                let mut connection = Connection::open(address).await.expect("connect");
                let client = format!("10.0.{c}.1");
                let mut stored = Vec::new();
                for i in (c..POSTS).step_by(CONNECTIONS) {
                    let (body, id, value) = post(i, &now);
                    let headers = [("content-type", "application/json"), ("x-forwarded-for", client.as_str())];
                    let r = connection.send("POST", "/api/metrics", &headers, body.to_string()).await.expect("post");
                    // Both posts of an id may say 201 when they overlap (either may store it).
                    match r.status {
                        201 => stored.push((id.clone().unwrap_or_else(|| r.json()["id"].as_str().unwrap_or_default().to_string()), value)),
                        200 => assert_eq!(r.json()["duplicate"], true),
                        other => panic!("post {i}: {other} {}", r.text()),
                    }
                }
                stored
            })
        })
        .collect();
    let mut stored = BTreeMap::new();
    for t in tasks {
        for (id, value) in t.await.expect("client task") {
            let again = stored.insert(id.clone(), value);
            assert!(again.is_none() || id.starts_with("rid-"), "{defects}: server id {id} given twice");
        }
    }
    let ids: HashSet<&str> = stored.keys().map(String::as_str).collect();
    let expected = POSTS - ID_POSTS / 2;
    assert_eq!(ids.len(), expected, "{defects}: every metric stored");
    let sum: f64 = stored.values().sum();

    // Every replica reports every metric once.
    for replica in &cluster.replicas {
        let mut c = Connection::open(replica.address).await.expect("connect");
        for query in ["type=rep", "type=rep&period=hourly"] {
            let s = c.get(&format!("/api/metrics/summary?{query}")).await.expect("summary").json();
            assert_eq!((s["count"].as_u64(), s["sum"].as_f64()), (Some(expected as u64), Some(sum)), "{defects}, {query}: {s}");
        }
    }
    // The listing has each of them once.
    let mut c = Connection::open(addresses[1]).await.expect("connect");
    let mut listed = Vec::new();
    let mut path = "/api/metrics/list?type=rep&limit=333".to_string();
    loop {
        let page = c.get(&path).await.expect("list");
        assert_eq!(page.status, 200, "{}", page.text());
        listed.extend(page.json().as_array().expect("array").iter().map(|m| m["id"].as_str().unwrap_or_default().to_string()));
        match page.header("x-next-cursor") {
            Some(cursor) => path = format!("/api/metrics/list?type=rep&limit=333&cursor={cursor}"),
            None => break,
        }
    }
    let listed_set: HashSet<&str> = listed.iter().map(String::as_str).collect();
    assert_eq!((listed.len(), listed_set), (expected, ids.clone()), "{defects}: the listing");

    // One client's limit holds across replicas: 40 of 60 get through.
    let mut admitted = 0;
    for i in 0..60 {
        let mut c = Connection::open(addresses[i % REPLICAS]).await.expect("connect");
        let body = json!({"type": "limited", "value": 1.0, "timestamp": timestamp_seconds_ago(0)});
        let headers = [("content-type", "application/json"), ("x-forwarded-for", "10.99.0.1")];
        match c.send("POST", "/api/metrics", &headers, body.to_string()).await.expect("post").status {
            201 => admitted += 1,
            429 => {}
            other => panic!("{other}"),
        }
    }
    assert_eq!(admitted, LIMIT, "{defects}: the rate limit is shared by every replica");

    // Connections stay pooled: at most one per worker thread and server.
    let (store, cache) = (connections_by_name(&cluster.store).await, connections_by_name(&cluster.cache).await);
    if let Some(server) = &cluster.postgres {
        // Each replica's pool holds at most Spin's 64 connections.
        let client = server.client("postgres").await;
        let row = client.query_one("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'", &[]).await.expect("connections");
        let open: i64 = row.get(0);
        assert!(open >= REPLICAS as i64 && open <= (REPLICAS * 64 + 1) as i64, "{defects}: {open} PostgreSQL connections");
    }
    for replica in &cluster.replicas {
        let kv = store.get(&format!("spin-host:{}:kv", replica.pid())).copied().unwrap_or(0);
        let guests = cache.get(&format!("spin-host:{}:guests", replica.pid())).copied().unwrap_or(0);
        if cluster.postgres.is_some() {
            assert_eq!(kv, 0, "{defects}: the metrics are in PostgreSQL, not the Redis store: {store:?}");
        } else {
            assert!((1..=MAX_CONNECTIONS_PER_REPLICA).contains(&kv), "{defects}: {kv} store connections: {store:?}");
        }
        assert!((1..=MAX_CONNECTIONS_PER_REPLICA).contains(&guests), "{defects}: {guests} cache connections: {cache:?}");
        let log = replica.log_text();
        assert!(!log.contains("error"), "{defects}: replica log:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_store_on_a_correct_redis_store() {
    replicas_share_one_store("none").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_store_on_spin_v4_0_2s_redis_store() {
    replicas_share_one_store("spin-v4.0.2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_store_on_postgres() {
    replicas_share_one_store(POSTGRES).await;
}

/// Erasing a user on one replica erases them for every replica: the next
/// listing and export anywhere holds nothing of theirs, while counts stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_erased_on_one_replica_is_gone_on_every_replica() {
    erased_everywhere("none").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_erased_on_one_replica_is_gone_on_every_replica_on_postgres() {
    erased_everywhere(POSTGRES).await;
}

async fn erased_everywhere(store: &str) {
    let headers = [("content-type", "application/json"), ("x-forwarded-for", "10.77.0.1")];
    let cluster = start_with(store, &[("admin_token", "replica-admin")]).await;
    let (a, b) = (cluster.replicas[0].address, cluster.replicas[1].address);
    let mut on_a = Connection::open(a).await.expect("connect");
    let mut on_b = Connection::open(b).await.expect("connect");
    let admin = [("authorization", "Bearer replica-admin")];
    let events: Vec<serde_json::Value> = (0..300)
        .map(|i| {
            let user = if i % 3 == 0 { "gone-user" } else { "kept-user" };
            json!({"type": "visit", "value": 1.0, "timestamp": timestamp_seconds_ago((i % 200) as i64), "user_id": user})
        })
        .collect();
    let r = on_a.send("POST", "/api/metrics/batch", &headers, serde_json::Value::Array(events).to_string()).await.expect("batch");
    assert_eq!(r.json()["accepted"], 300, "{}", r.text());
    let before = on_b.send("GET", "/api/users/gone-user/export", &admin, "").await.expect("export").json();
    assert_eq!(before["metrics"].as_array().map(Vec::len), Some(100), "{before}");
    let erased = on_b.send("DELETE", "/api/users/gone-user", &admin, "").await.expect("erase");
    assert_eq!((erased.status, erased.json()["metrics_removed"].as_u64()), (200, Some(100)), "{}", erased.text());
    for connection in [&mut on_a, &mut on_b] {
        let after = connection.send("GET", "/api/users/gone-user/export", &admin, "").await.expect("export").json();
        assert_eq!(after["metrics"].as_array().map(Vec::len), Some(0), "{after}");
        let listed = connection.get("/api/metrics/list?type=visit&limit=1000").await.expect("list").json();
        let users: std::collections::HashSet<&str> = listed.as_array().unwrap().iter().filter_map(|m| m["user_id"].as_str()).collect();
        assert_eq!(users, ["kept-user"].into_iter().collect(), "every replica lists only the kept user");
        let summary = connection.get("/api/metrics/summary?type=visit").await.expect("summary").json();
        assert_eq!(summary["count"], 300, "aggregates keep counting: {summary}");
    }
    let again = on_a.send("DELETE", "/api/users/gone-user", &admin, "").await.expect("erase again");
    assert_eq!((again.status, again.json()["metrics_removed"].as_u64()), (200, Some(0)), "idempotent");
}
