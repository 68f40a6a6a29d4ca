//! The host's own metrics, in the Prometheus/OpenMetrics text format, on a
//! separate address (`--metrics-listen`), as Spin exports its telemetry
//! beside the app: requests per route, component and status with a latency
//! histogram, the Redis commands and connections the host makes (the
//! key-value store's and the guests') and the connections that failed, and
//! its memory against its limit ([`crate::memory`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    component: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    component: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RedisLabels {
    /// `kv` (Redis-backed key-value stores) or `guests` (outbound Redis).
    role: String,
}

/// Every metric the host keeps, process-wide.
pub struct HostMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram>,
    redis_commands: Family<RedisLabels, Counter>,
    redis_connections: Family<RedisLabels, Counter>,
    redis_connection_failures: Family<RedisLabels, Counter>,
    memory: Arc<crate::memory::MemoryCollector>,
}

/// Latency buckets (seconds): 0.25 ms to about 8 s.
fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.000_25, 2.0, 16))
}

/// The process's metrics.
pub fn metrics() -> &'static HostMetrics {
    static METRICS: OnceLock<HostMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        // Unprefixed at the root for the memory collector's standard
        // `process_resident_memory_bytes`; the rest under `spin_host_`.
        let mut registry = Registry::default();
        let memory = Arc::new(crate::memory::MemoryCollector::default());
        registry.register_collector(Box::new(memory.clone()));
        let host = registry.sub_registry_with_prefix("spin_host");
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Family::<RouteLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let redis_commands = Family::<RedisLabels, Counter>::default();
        let redis_connections = Family::<RedisLabels, Counter>::default();
        let redis_connection_failures = Family::<RedisLabels, Counter>::default();
        host.register("http_requests", "HTTP requests served, by route, component and status", requests.clone());
        host.register("http_request_duration_seconds", "Time from a request's arrival to its response head", durations.clone());
        host.register("redis_commands", "Redis commands the host sent (one round trip each)", redis_commands.clone());
        host.register("redis_connections_opened", "Redis connections the host opened", redis_connections.clone());
        host.register(
            "redis_connection_failures",
            "Redis connections the host could not open, or lost in the middle of a command",
            redis_connection_failures.clone(),
        );
        HostMetrics { registry, requests, durations, redis_commands, redis_connections, redis_connection_failures, memory }
    })
}

impl HostMetrics {
    /// One answered request; `route` is the manifest route (or `-` when none matched).
    pub fn request(&self, route: &str, component: &str, status: u16, elapsed: Duration) {
        let labels = RouteLabels { route: route.to_string(), component: component.to_string() };
        self.durations.get_or_create(&labels).observe(elapsed.as_secs_f64());
        self.requests.get_or_create(&RequestLabels { route: labels.route, component: labels.component, status }).inc();
    }

    pub fn redis_command(&self, role: &str) {
        self.redis_commands.get_or_create(&RedisLabels { role: role.to_string() }).inc();
    }

    pub fn redis_connection(&self, role: &str) {
        self.redis_connections.get_or_create(&RedisLabels { role: role.to_string() }).inc();
    }

    pub fn redis_connection_failure(&self, role: &str) {
        self.redis_connection_failures.get_or_create(&RedisLabels { role: role.to_string() }).inc();
    }

    /// `--memory-limit`, which takes the place of the cgroup's limit.
    pub fn set_memory_limit(&self, bytes: Option<u64>) {
        self.memory.set_configured_limit(bytes);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Serves `GET /metrics` (any path, in fact) on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            let service = service_fn(|_request| async {
                let body = Full::new(bytes::Bytes::from(metrics().render()));
                let response = hyper::Response::builder()
                    .header("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")
                    .body(body);
                Ok::<_, Infallible>(response.unwrap_or_default())
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// Binds `address` for the metrics endpoint.
pub async fn bind(address: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await.map_err(|e| anyhow::anyhow!("cannot listen on {address} for metrics: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = metrics();
        m.request("/api/metrics", "ingest", 201, Duration::from_millis(3));
        m.redis_command("kv");
        m.redis_connection("kv");
        m.redis_connection_failure("guests");
        let text = m.render();
        assert!(text.contains(r#"spin_host_http_requests_total{route="/api/metrics",component="ingest",status="201"}"#), "{text}");
        assert!(text.contains("spin_host_http_request_duration_seconds_bucket"), "{text}");
        assert!(text.contains(r#"spin_host_redis_commands_total{role="kv"}"#), "{text}");
        assert!(text.contains(r#"spin_host_redis_connection_failures_total{role="guests"} 1"#), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn renders_memory_and_the_configured_limit() {
        let m = metrics();
        m.set_memory_limit(Some(512 << 20));
        let text = m.render();
        assert!(text.contains("# TYPE spin_host_memory_limit_bytes gauge\nspin_host_memory_limit_bytes 536870912\n"), "{text}");
        #[cfg(target_os = "linux")]
        assert!(text.contains("# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes "), "{text}");
    }
}
