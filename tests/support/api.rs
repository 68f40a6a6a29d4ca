//! The whole application (the root `spin.toml`) under test, on either the
//! embedded Redis or a real `redis-server`, with a fresh SQLite store, a
//! Redis store or a fresh PostgreSQL database.

use std::net::SocketAddr;

use bytes::Bytes;
use serde_json::Value;
use spin_host::RedisMode;

use crate::postgres_server::PostgresServer;
use crate::redis_server::RedisServer;
use crate::{root, TestApp, TestResponse};

/// Which Redis the app talks to, and where it keeps its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded Redis; metrics in the SQLite key-value store.
    Embedded,
    /// A real `redis-server`; metrics in the SQLite key-value store.
    Real,
    /// A real `redis-server` for the cache, and the metrics on a second one
    /// the app talks to directly (`store_backend = "redis"`).
    RedisStore,
    /// A real `redis-server` for the cache, and the metrics in a database of
    /// its own on a private PostgreSQL (`store_backend = "postgres"`).
    PostgresStore,
}

/// One PostgreSQL server for a whole test binary (each test gets its own
/// database on it): starting a cluster costs a second or two.
pub fn shared_postgres() -> &'static PostgresServer {
    static SERVER: std::sync::OnceLock<PostgresServer> = std::sync::OnceLock::new();
    SERVER.get_or_init(PostgresServer::start)
}

/// A running API.
pub struct Api {
    pub app: TestApp,
    pub backend: Backend,
    variables: Vec<(String, String)>,
    redis: Option<RedisServer>,
    /// The metrics' Redis, with [`Backend::RedisStore`].
    store: Option<RedisServer>,
    /// The metrics' database, with [`Backend::PostgresStore`].
    postgres: Option<String>,
}

/// Settings that keep tests fast and independent of the defaults they do not test.
const BASE_VARIABLES: &[(&str, &str)] = &[
    ("rate_limit_requests", "100000"),
    ("external_service_latency_ms", "0"),
    ("external_service_failure_rate", "0"),
];

impl Api {
    /// Starts the app with `variables` over a few test-friendly defaults.
    pub async fn start(backend: Backend, variables: &[(&str, &str)]) -> Api {
        let redis = match backend {
            Backend::Embedded => None,
            Backend::Real | Backend::RedisStore | Backend::PostgresStore => Some(RedisServer::start()),
        };
        let store = (backend == Backend::RedisStore).then(RedisServer::start);
        let postgres = match backend {
            Backend::PostgresStore => Some(shared_postgres().create_database().await),
            _ => None,
        };
        let mut all: Vec<(String, String)> = BASE_VARIABLES.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        if let Some(server) = &redis {
            all.push(("redis_url".into(), server.url()));
        }
        if let Some(server) = &store {
            all.push(("store_backend".into(), "redis".into()));
            all.push(("store_redis_url".into(), server.url()));
        }
        if let Some(url) = &postgres {
            all.push(("store_backend".into(), "postgres".into()));
            all.push(("store_postgres_url".into(), url.clone()));
            all.push(("store_postgres_allowed_host".into(), format!("postgres://127.0.0.1:{}", shared_postgres().port())));
        }
        for (k, v) in variables {
            all.retain(|(name, _)| name != k);
            all.push((k.to_string(), v.to_string()));
        }
        let app = Self::load(backend, &all, tempfile::tempdir().expect("temp dir")).await;
        Api { app, backend, variables: all, redis, store, postgres }
    }

    async fn load(backend: Backend, variables: &[(String, String)], state_dir: tempfile::TempDir) -> TestApp {
        let pairs: Vec<(&str, &str)> = variables.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mode = match backend {
            Backend::Embedded => RedisMode::Embedded,
            Backend::Real | Backend::RedisStore | Backend::PostgresStore => RedisMode::External,
        };
        TestApp::start_in(&root().join("spin.toml"), &pairs, state_dir, mode).await
    }

    /// Stops the app and starts it again on the same store and Redis.
    pub async fn restart(self) -> Api {
        self.restart_with(&[]).await
    }

    /// [`Api::restart`], with some variables changed.
    pub async fn restart_with(self, changes: &[(&str, &str)]) -> Api {
        let Api { app, backend, mut variables, redis, store, postgres } = self;
        for (k, v) in changes {
            variables.retain(|(name, _)| name != k);
            variables.push((k.to_string(), v.to_string()));
        }
        let TestApp { app: old, state_dir } = app;
        let embedded = old.redis().embedded().cloned();
        drop(old);
        let app = Self::load(backend, &variables, state_dir).await;
        if let (Some(before), Some(after)) = (embedded, app.app.redis().embedded()) {
            // An embedded Redis lives in the app's process; a restarted app starts with an empty one.
            assert!(!std::sync::Arc::ptr_eq(&before, after));
        }
        Api { app, backend, variables, redis, store, postgres }
    }

    /// Every key of the metrics' store, wherever it is.
    pub async fn store_keys(&self) -> Vec<String> {
        if self.postgres.is_some() {
            // Entry chunks are rows of analytics_metrics, aggregates rows of analytics_rollups.
            let sql = "SELECT key FROM analytics_kv UNION ALL SELECT key FROM analytics_rollups UNION ALL SELECT DISTINCT chunk FROM analytics_metrics";
            return self.postgres_column(sql).await.expect("a PostgreSQL store");
        }
        match &self.store {
            Some(server) => {
                let client = redis::Client::open(server.url()).expect("client");
                let mut connection = client.get_multiplexed_async_connection().await.expect("connection");
                redis::cmd("KEYS").arg("*").query_async(&mut connection).await.expect("KEYS")
            }
            None => {
                let store = self.app.app.key_value("default").expect("the default store");
                store.keys(&spin_host::key_value::Session::default()).await.expect("keys")
            }
        }
    }

    /// The first column of `sql`'s rows as text, run on the metrics'
    /// database; `None` unless the store is PostgreSQL.
    pub async fn postgres_column(&self, sql: &str) -> Option<Vec<String>> {
        let name = self.postgres.as_ref()?.rsplit('/').next().expect("a database name");
        let client = shared_postgres().client(name).await;
        let rows = client.query(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        Some(rows.iter().map(|row| row.get::<_, String>(0)).collect())
    }

    /// Makes Redis unreachable.
    pub fn stop_redis(&mut self) {
        match &mut self.redis {
            Some(server) => server.stop(),
            None => self.app.app.redis().embedded().expect("embedded Redis").set_available(false),
        }
    }

    /// Brings Redis back (on the same port), keeping the app running.
    pub fn start_redis(&mut self) {
        match &mut self.redis {
            Some(server) => server.restart(),
            None => self.app.app.redis().embedded().expect("embedded Redis").set_available(true),
        }
    }

    pub async fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> TestResponse {
        self.request_from(method, path, headers, body, "10.1.1.1:40000").await
    }

    pub async fn request_from(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
        client: &str,
    ) -> TestResponse {
        let mut builder = http::Request::builder().method(method).uri(path).header("host", "localhost:3000");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(body.into()).expect("valid request");
        let client: SocketAddr = client.parse().expect("client address");
        self.app.send_from(request, client).await
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.request("GET", path, &[], Bytes::new()).await
    }

    /// Serves the app on a loopback port too, for clients that read a
    /// response as it streams; its address. Served until the test ends.
    pub async fn listen(&self) -> SocketAddr {
        let listener = spin_host::server::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("a loopback port");
        let address = listener.local_addr().expect("its address");
        let app = self.app.app.clone();
        tokio::spawn(spin_host::server::serve(app, listener, std::future::pending(), std::time::Duration::from_secs(1)));
        address
    }

    /// POST /api/metrics with a JSON body.
    pub async fn post_metric(&self, body: &Value) -> TestResponse {
        self.post_metric_from(body, "10.1.1.1:40000").await
    }

    pub async fn post_metric_from(&self, body: &Value, client: &str) -> TestResponse {
        self.request_from("POST", "/api/metrics", &[("content-type", "application/json")], body.to_string(), client)
            .await
    }

    /// GET a summary and return it with its `X-Cache` header.
    pub async fn summary(&self, query: &str) -> (Value, String) {
        let response = self.get(&format!("/api/metrics/summary?{query}")).await;
        assert_eq!(response.status, 200, "summary failed: {}", response.text());
        let cache = response.header("x-cache").unwrap_or_default().to_string();
        (response.json(), cache)
    }

    /// Changes the simulator's settings.
    pub async fn simulate(&self, failure_rate: f64, latency_ms: u64) {
        let body = serde_json::json!({"failure_rate": failure_rate, "latency_ms": latency_ms});
        let response = self
            .request("PUT", "/api/simulator/config", &[("content-type", "application/json")], body.to_string())
            .await;
        assert_eq!(response.status, 200, "{}", response.text());
    }

    /// How many calls the simulator has served.
    pub async fn simulator_calls(&self) -> i64 {
        self.get("/api/simulator/config").await.json()["calls"].as_i64().expect("calls")
    }
}

/// A metric body for type `t`, `seconds_ago` before now.
pub fn metric(t: &str, value: f64, seconds_ago: i64) -> Value {
    serde_json::json!({"type": t, "value": value, "timestamp": timestamp_seconds_ago(seconds_ago)})
}

/// RFC 3339 for now minus `seconds`.
pub fn timestamp_seconds_ago(seconds: i64) -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    analytics_core::time::format_timestamp(now_ms - seconds * 1000)
}
