//! The host's Redis-backed key-value store against a real `redis-server`:
//! Spin's semantics, an atomic compare-and-swap that reports failure only
//! when it failed, bounded connections, and the Spin v4.0.2 defects on demand.

use std::sync::Arc;

use spin_host::key_value::{RedisStore, Session, SpinRedisDefects, Store};
use spin_host::redis::ExternalRedis;
use support::redis_server::RedisServer;

fn store(server: &RedisServer, defects: SpinRedisDefects) -> Arc<RedisStore> {
    let pool = Arc::new(ExternalRedis::new("kv-test"));
    Arc::new(RedisStore::new(&server.url(), pool, defects).expect("store"))
}

/// Connections `CLIENT LIST` shows under `name`.
async fn connections_named(server: &RedisServer, name: &str) -> usize {
    let client = redis::Client::open(server.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let list: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut connection).await.unwrap();
    list.lines().filter(|l| l.contains(&format!(" name={name} "))).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_operations_behave_like_spins_redis_store() {
    let server = RedisServer::start();
    let kv = store(&server, SpinRedisDefects::None);
    let s = Session::default();
    assert_eq!(kv.get(&s, "a").await.unwrap(), None);
    kv.set(&s, "a", b"1").await.unwrap();
    assert!(kv.exists(&s, "a").await.unwrap());
    assert_eq!(kv.increment(&s, "n", 5).await.unwrap(), 5);
    assert_eq!(kv.increment(&s, "n", -2).await.unwrap(), 3);
    // Redis keeps counters as decimal text, so Spin's Redis store hands that back.
    assert_eq!(kv.get(&s, "n").await.unwrap().as_deref(), Some(&b"3"[..]));
    kv.set_many(&s, &[("b".into(), b"2".to_vec()), ("c".into(), vec![0, 255])]).await.unwrap();
    let found = kv.get_many(&s, &["a".into(), "missing".into(), "c".into()]).await.unwrap();
    assert_eq!(found, vec![("a".into(), b"1".to_vec()), ("c".into(), vec![0, 255])]);
    let mut keys = kv.keys(&s).await.unwrap();
    keys.sort();
    assert_eq!(keys, ["a", "b", "c", "n"]);
    kv.delete_many(&s, &["a".into(), "b".into()]).await.unwrap();
    kv.delete(&s, "c").await.unwrap();
    assert_eq!(kv.keys(&s).await.unwrap(), ["n"]);
    assert!(kv.increment(&s, "text", 1).await.is_ok());
    kv.set(&s, "text", b"abc").await.unwrap();
    assert!(kv.increment(&s, "text", 1).await.is_err(), "INCRBY on text is an error, not a trap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_swap_is_atomic_and_reports_failure_only_when_it_failed() {
    let server = RedisServer::start();
    let kv = store(&server, SpinRedisDefects::None);
    let s = Session::default();
    // Creating a missing key: only one of many concurrent creators wins.
    let creators: Vec<_> = (0..20u8)
        .map(|i| {
            let kv = kv.clone();
            tokio::spawn(async move { kv.swap(&Session::default(), "k", None, &[i]).await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for c in creators {
        winners += c.await.unwrap() as usize;
    }
    assert_eq!(winners, 1);
    // A read-modify-write loop from many tasks loses no update.
    kv.set(&s, "count", b"0").await.unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let kv = kv.clone();
            tokio::spawn(async move {
                let s = Session::default();
                loop {
                    let current = kv.get(&s, "count").await.unwrap().unwrap();
                    let n: u64 = std::str::from_utf8(&current).unwrap().parse().unwrap();
                    if kv.swap(&s, "count", Some(&current), (n + 1).to_string().as_bytes()).await.unwrap() {
                        return;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(kv.get(&s, "count").await.unwrap().as_deref(), Some(&b"50"[..]));
    assert!(!kv.swap(&s, "count", Some(b"49"), b"x").await.unwrap());
    assert_eq!(kv.get(&s, "count").await.unwrap().as_deref(), Some(&b"50"[..]), "a failed swap writes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_v4_0_2_defects_are_reproduced_on_demand() {
    let server = RedisServer::start();
    let kv = store(&server, SpinRedisDefects::V4_0_2);
    let s = Session::default();
    // The swap is performed, then reported as failed.
    assert!(!kv.swap(&s, "k", None, b"v1").await.unwrap());
    assert_eq!(kv.get(&s, "k").await.unwrap().as_deref(), Some(&b"v1"[..]));
    assert!(!kv.swap(&s, "k", Some(b"v1"), b"v2").await.unwrap());
    assert_eq!(kv.get(&s, "k").await.unwrap().as_deref(), Some(&b"v2"[..]));
    // A swap that really conflicts still writes nothing.
    assert!(!kv.swap(&s, "k", Some(b"v1"), b"v3").await.unwrap());
    assert_eq!(kv.get(&s, "k").await.unwrap().as_deref(), Some(&b"v2"[..]));
    // `get-many` sends KEYS: one key finds nothing, more keys are an error.
    assert_eq!(kv.get_many(&s, &["k".into()]).await.unwrap(), vec![]);
    let error = kv.get_many(&s, &["k".into(), "other".into()]).await.unwrap_err().to_string();
    assert!(error.contains("wrong number of arguments"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_pooled_not_opened_per_operation() {
    let server = RedisServer::start();
    let kv = store(&server, SpinRedisDefects::None);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let kv = kv.clone();
            tokio::spawn(async move {
                let s = Session::default();
                for j in 0..10 {
                    let key = format!("k{}", (i + j) % 7);
                    kv.increment(&s, &key, 1).await.unwrap();
                    kv.get(&s, &key).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let name = format!("spin-host:{}:kv-test", std::process::id());
    let open = connections_named(&server, &name).await;
    assert!((1..=2).contains(&open), "{open} connections for 4 000 operations on 2 threads");
}
