//! The application contract, end to end through the project's host. Every
//! test runs four times: on the embedded Redis and on a real
//! `redis-server` with the metrics in the SQLite key-value store, with the
//! metrics on a second `redis-server` the app talks to directly, and with
//! the metrics in PostgreSQL (a database of its own on a private server).

/// Declares `async fn name(backend: Backend)` tests as one test per backend.
macro_rules! on_both_redis {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn embedded_redis() {
                    super::$name(support::api::Backend::Embedded).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn real_redis() {
                    super::$name(support::api::Backend::Real).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn redis_store() {
                    super::$name(support::api::Backend::RedisStore).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres_store() {
                    super::$name(support::api::Backend::PostgresStore).await
                }
            }
        )*
    };
}

#[path = "api/ingest.rs"]
mod ingest;
#[path = "api/batch.rs"]
mod batch;
#[path = "api/rate_limit.rs"]
mod rate_limit;
#[path = "api/summary.rs"]
mod summary;
#[path = "api/stream.rs"]
mod stream;
#[path = "api/breaker.rs"]
mod breaker;
#[path = "api/list.rs"]
mod list;
#[path = "api/resilience.rs"]
mod resilience;
#[path = "api/routes.rs"]
mod routes;
#[path = "api/stats.rs"]
mod stats;
#[path = "api/metrics.rs"]
mod metrics;
#[path = "api/auth.rs"]
mod auth;
#[path = "api/sql.rs"]
mod sql;
