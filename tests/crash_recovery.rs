//! Crash recovery, as an at-least-once sender sees it: clients post metrics,
//! each with its own `id`, over many connections; the host dies mid-run
//! (aborted right after its n-th key-value write, or SIGKILLed at a moment
//! of the clock's choosing); it is started again on the same store and the
//! clients retry every id that got no 2xx until it does. Afterwards every
//! id is stored exactly once: the summary's count and sum are exact and the
//! listing holds each id once. Run on both host store modes (SQLite with a
//! shared transaction; SQLite as Spin keeps it), on Spin's key-value store
//! backed by Redis (with and without Spin v4.0.2's defects), on a Redis
//! the app talks to directly (`store_backend = "redis"`), and on PostgreSQL
//! (`store_backend = "postgres"`, a private server; the crash points count
//! the guests' PostgreSQL statements that write).
//!
//! `CRASH_POINTS=N` runs N crash points per store kind instead of the test
//! command's few (`cargo xtask bench --crash` runs many).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::api::timestamp_seconds_ago;
use support::host_process::HostProcess;
use support::http_client::Connection;
use support::postgres_server::{self, PostgresServer};
use support::redis_server::{self, RedisServer};

const CONNECTIONS: usize = 16;
/// Enough for every journal shard to fold at least once (64 items each).
const METRICS: usize = 1_200;
/// How long clients keep retrying after the restart.
const RETRY_FOR: Duration = Duration::from_secs(30);

/// Where the key-value store lives.
#[derive(Debug, Clone, Copy)]
enum StoreKind {
    Sqlite,
    SpinSqlite,
    Redis,
    RedisSpinV4_0_2,
    DirectRedis,
    Postgres,
}

/// The store a run's two host processes share.
struct Store {
    kind: StoreKind,
    dir: tempfile::TempDir,
    redis: Option<RedisServer>,
    postgres: Option<PostgresServer>,
}

impl Store {
    fn new(kind: StoreKind) -> Store {
        let dir = tempfile::tempdir().expect("temp dir");
        let redis = matches!(kind, StoreKind::Redis | StoreKind::RedisSpinV4_0_2 | StoreKind::DirectRedis).then(RedisServer::start);
        let postgres = matches!(kind, StoreKind::Postgres).then(PostgresServer::start);
        Store { kind, dir, redis, postgres }
    }

    fn host_args(&self) -> Vec<String> {
        // The cache stays embedded, except where the store is a Redis the guests
        // open themselves: then both are on the test's server (keys never collide).
        let guests_redis = if matches!(self.kind, StoreKind::DirectRedis) { "external" } else { "embedded" };
        let mut args: Vec<String> = vec!["--state-dir".into(), self.dir.path().join("state").to_string_lossy().into(), "--redis".into(), guests_redis.into()];
        for (name, value) in [("rate_limit_requests", "1000000"), ("external_service_latency_ms", "0")] {
            args.extend(["--variable".to_string(), format!("{name}={value}")]);
        }
        match self.kind {
            StoreKind::Sqlite => args.extend(["--store-mode".into(), "fast".into()]),
            StoreKind::SpinSqlite => args.extend(["--store-mode".into(), "spin".into()]),
            StoreKind::Redis | StoreKind::RedisSpinV4_0_2 => {
                let config = self.dir.path().join("runtime-config.toml");
                let url = self.redis.as_ref().map(RedisServer::url).unwrap_or_default();
                std::fs::write(&config, format!("[key_value_store.default]\ntype = \"redis\"\nurl = \"{url}\"\n")).expect("runtime config");
                args.extend(["--runtime-config-file".into(), config.to_string_lossy().into()]);
                if matches!(self.kind, StoreKind::RedisSpinV4_0_2) {
                    args.extend(["--kv-redis-defects".into(), "spin-v4.0.2".into()]);
                }
            }
            StoreKind::DirectRedis => {
                let url = self.redis.as_ref().map(RedisServer::url).unwrap_or_default();
                for (name, value) in [("store_backend", "redis".to_string()), ("store_redis_url", url.clone()), ("redis_url", url)] {
                    args.extend(["--variable".to_string(), format!("{name}={value}")]);
                }
            }
            StoreKind::Postgres => {
                let server = self.postgres.as_ref().expect("the run's PostgreSQL");
                let allowed = format!("postgres://127.0.0.1:{}", server.port());
                for (name, value) in [("store_backend", "postgres".to_string()), ("store_postgres_url", server.url("postgres")), ("store_postgres_allowed_host", allowed)] {
                    args.extend(["--variable".to_string(), format!("{name}={value}")]);
                }
            }
        }
        args
    }
}

/// How the first host dies.
#[derive(Debug, Clone, Copy)]
enum Crash {
    /// It aborts right after its n-th key-value write.
    AfterWrites(u64),
    /// It is SIGKILLed once this many posts were acknowledged, wherever its
    /// requests are at that moment.
    KillAfterPosts(usize),
}

/// The run's metrics: body, id, value. Bodies are fixed up front, so a
/// retry says exactly what the first post said.
fn metrics(metric_type: &str) -> Vec<(String, String, f64)> {
    (0..METRICS)
        .map(|i| {
            let id = format!("{metric_type}-{i}");
            let value = (i % 97) as f64 + 0.5;
            let mut body = json!({"id": id, "type": metric_type, "value": value, "timestamp": timestamp_seconds_ago((i % 240) as i64)});
            if i % 5 == 0 {
                body["user_id"] = json!(format!("user-{}", i % 40));
            }
            (body.to_string(), id, value)
        })
        .collect()
}

/// Posts every metric once over [`CONNECTIONS`] connections until the host
/// stops answering; returns the ids acknowledged with a 2xx.
async fn post_until_down(address: SocketAddr, metrics: Arc<Vec<(String, String, f64)>>, progress: Arc<AtomicUsize>) -> HashSet<String> {
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let (metrics, progress) = (metrics.clone(), progress.clone());
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                let Ok(mut connection) = Connection::open(address).await else { return acknowledged };
                for (body, id, _) in metrics.iter().skip(c).step_by(CONNECTIONS) {
                    match connection.send("POST", "/api/metrics", &[("content-type", "application/json")], body.clone()).await {
                        Ok(r) if r.status == 201 || r.status == 200 => {
                            acknowledged.push(id.clone());
                            progress.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) if r.status == 503 => {} // A store failure: retried later.
                        Ok(r) => panic!("{id}: {} {}", r.status, r.text()),
                        Err(_) => break, // The host is gone.
                    }
                }
                acknowledged
            })
        })
        .collect();
    let mut acknowledged = HashSet::new();
    for task in tasks {
        acknowledged.extend(task.await.expect("client task"));
    }
    acknowledged
}

/// Re-posts `ids` until each gets a 2xx; panics after [`RETRY_FOR`].
async fn retry(host: &HostProcess, metrics: &[(String, String, f64)], ids: &HashSet<String>) {
    let deadline = Instant::now() + RETRY_FOR;
    let mut connection = Connection::open(host.address).await.expect("connect");
    for (body, id, _) in metrics.iter().filter(|(_, id, _)| ids.contains(id)) {
        loop {
            let r = connection.send("POST", "/api/metrics", &[("content-type", "application/json")], body.clone()).await.expect("post");
            match r.status {
                201 => break,
                200 => {
                    assert_eq!(r.json()["duplicate"], true, "{id}: {}", r.text());
                    break;
                }
                503 if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
                status => panic!("{id}: {status} {} — no retry may be refused", r.text()),
            }
        }
    }
}

/// Every id of the listing of `metric_type`, page by page.
async fn listed(connection: &mut Connection, metric_type: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut path = format!("/api/metrics/list?type={metric_type}&limit=1000");
    loop {
        let page = connection.get(&path).await.expect("list");
        assert_eq!(page.status, 200, "{}", page.text());
        ids.extend(page.json().as_array().expect("array").iter().map(|m| m["id"].as_str().unwrap_or_default().to_string()));
        match page.header("x-next-cursor") {
            Some(cursor) => path = format!("/api/metrics/list?type={metric_type}&limit=1000&cursor={cursor}"),
            None => return ids,
        }
    }
}

async fn crash_and_recover(store: &Store, crash: Crash, run: usize) {
    let what = format!("{:?}, {crash:?}", store.kind);
    let metric_type = format!("crash{run}");
    let metrics = Arc::new(metrics(&metric_type));
    let mut args = store.host_args();
    if let Crash::AfterWrites(n) = crash {
        args.extend(["--crash-after-kv-writes".into(), n.to_string()]);
    }
    let log = store.dir.path().join(format!("host-{run}.log"));
    let mut host = HostProcess::start(&args, log.clone()).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let posting = tokio::spawn(post_until_down(host.address, metrics.clone(), progress.clone()));
    if let Crash::KillAfterPosts(posts) = crash {
        while progress.load(Ordering::Relaxed) < posts && !posting.is_finished() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        host.kill();
    }
    let acknowledged = posting.await.expect("posting");
    let status = tokio::task::block_in_place(|| host.wait_for_exit(Duration::from_secs(5)));
    assert!(status.is_some(), "{what}: the host outlived its crash point ({} of {METRICS} posts acknowledged)", acknowledged.len());
    drop(host);

    let restarted = HostProcess::start(&store.host_args(), store.dir.path().join(format!("host-{run}-restarted.log"))).await;
    let unacknowledged: HashSet<String> = metrics.iter().map(|(_, id, _)| id.clone()).filter(|id| !acknowledged.contains(id)).collect();
    // Every id without a 2xx, and some that had one (they must come back as duplicates).
    let mut again = unacknowledged.clone();
    again.extend(acknowledged.iter().take(25).cloned());
    retry(&restarted, &metrics, &again).await;

    let mut connection = Connection::open(restarted.address).await.expect("connect");
    let summary = connection.get(&format!("/api/metrics/summary?type={metric_type}")).await.expect("summary").json();
    let sum: f64 = metrics.iter().map(|(_, _, v)| v).sum();
    assert_eq!(
        (summary["count"].as_u64(), summary["sum"].as_f64()),
        (Some(METRICS as u64), Some(sum)),
        "{what}: {} acknowledged before the crash; summary {summary}",
        acknowledged.len()
    );
    let ids = listed(&mut connection, &metric_type).await;
    let mut times: BTreeMap<&str, usize> = BTreeMap::new();
    for id in &ids {
        *times.entry(id.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{what}: listed more than once: {twice:?}");
    assert_eq!(ids.len(), METRICS, "{what}: the listing");
    let log = restarted.log_text();
    assert!(!log.contains("panicked"), "{what}: restarted host log:\n{log}");
}

/// Crash points per store kind: the writes after which the host dies (a
/// run makes 4 000–6 000: the first post's claim, the middle of the run,
/// where the shards fold), and a SIGKILL half way; `CRASH_POINTS` asks for
/// more, chosen at random.
fn crashes() -> Vec<Crash> {
    let wanted: usize = std::env::var("CRASH_POINTS").ok().and_then(|n| n.parse().ok()).unwrap_or(4);
    let mut crashes = vec![Crash::AfterWrites(2), Crash::AfterWrites(1_700), Crash::AfterWrites(3_400), Crash::KillAfterPosts(METRICS / 2)];
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    while crashes.len() < wanted {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        crashes.push(if crashes.len() % 4 == 3 {
            Crash::KillAfterPosts(1 + seed as usize % (METRICS - 1))
        } else {
            Crash::AfterWrites(1 + seed % 4_000)
        });
    }
    crashes.truncate(wanted);
    crashes
}

async fn recovers_on(kind: StoreKind) {
    if matches!(kind, StoreKind::Redis | StoreKind::RedisSpinV4_0_2 | StoreKind::DirectRedis) {
        assert!(redis_server::available(), "redis-server is not installed (apt-get install redis-server)");
    }
    if matches!(kind, StoreKind::Postgres) {
        assert!(postgres_server::available(), "the PostgreSQL server is not installed (apt-get install postgresql)");
    }
    let store = Store::new(kind);
    for (run, crash) in crashes().into_iter().enumerate() {
        crash_and_recover(&store, crash, run).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_id_is_stored_once_after_crashes_on_sqlite() {
    recovers_on(StoreKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_id_is_stored_once_after_crashes_on_spins_sqlite() {
    recovers_on(StoreKind::SpinSqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_id_is_stored_once_after_crashes_on_a_redis_store() {
    recovers_on(StoreKind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_id_is_stored_once_after_crashes_on_spin_v4_0_2s_redis_store() {
    recovers_on(StoreKind::RedisSpinV4_0_2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_id_is_stored_once_after_crashes_on_a_redis_spoken_to_directly() {
    recovers_on(StoreKind::DirectRedis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_id_is_stored_once_after_crashes_on_postgres() {
    recovers_on(StoreKind::Postgres).await;
}
