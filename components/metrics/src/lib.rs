//! GET /metrics: the application's counters and gauges in the
//! Prometheus/OpenMetrics text format. Counters come from Redis (see
//! `analytics_core::app_metrics`), the breaker's state from its shared
//! record, and the up gauges from this request's own checks.

use analytics_platform::core::app_metrics::{parse, Family, COUNTERS_KEY};
use analytics_platform::core::breaker::{Breaker, State, STATE_KEY};
use analytics_platform::core::kv::Reader;
use analytics_platform::store::Store;
use analytics_platform::redis::{Redis, ReplyItem};
use analytics_platform::respond;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family as MetricFamily;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use spin_sdk::http::{IncomingRequest, Request, Response};
use spin_sdk::http_component;

const ALLOW: &[&str] = &["GET"];

type Labels = Vec<(String, String)>;

#[http_component]
async fn handle(incoming: IncomingRequest) -> anyhow::Result<Response> {
    analytics_platform::handler::serve(incoming, handle_request).await
}

fn handle_request(request: Request) -> anyhow::Result<Response> {
    if let Err(e) = respond::require_method(request.method(), ALLOW) {
        return Ok(respond::error(&e, ALLOW));
    }
    let redis = Redis::connect().ok();
    let fields = redis.as_ref().and_then(|r| match r.execute_items("HGETALL", &[COUNTERS_KEY.as_bytes()]) {
        Ok(items) => Some(pairs(items)),
        Err(e) => {
            eprintln!("metrics: counters unavailable: {e}");
            None
        }
    });
    let breaker = redis.as_ref().and_then(|r| r.get(STATE_KEY).ok()).map(|raw| Breaker::decode(raw.as_deref()));
    let key_value_up = Store::open().and_then(|mut kv| kv.get("health:probe").map(drop).map_err(|e| e.to_string())).is_ok();

    let mut registry = Registry::default();
    let counters = parse(&fields.clone().unwrap_or_default());
    for family in Family::ALL {
        let (name, label, help) = family.describe();
        let metric = MetricFamily::<Labels, Counter>::default();
        for (value, count) in counters.get(&family).into_iter().flatten() {
            metric.get_or_create(&vec![(label.to_string(), value.clone())]).inc_by(*count);
        }
        registry.register(name, help, metric);
    }
    let up = |name: &str, help: &str, value: bool, registry: &mut Registry| {
        let gauge = Gauge::<i64>::default();
        gauge.set(value as i64);
        registry.register(name, help, gauge);
    };
    up("analytics_redis_up", "Whether this scrape reached Redis", fields.is_some(), &mut registry);
    up("analytics_key_value_up", "Whether this scrape reached the key-value store", key_value_up, &mut registry);
    let state = MetricFamily::<Labels, Gauge<i64>>::default();
    if let Some(breaker) = breaker {
        for s in [State::Closed, State::Open, State::HalfOpen] {
            state.get_or_create(&vec![("state".to_string(), s.name().to_string())]).set((breaker.state == s) as i64);
        }
    }
    registry.register("analytics_circuit_breaker_state", "1 for the circuit breaker's current state", state);
    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(Response::builder()
        .status(200)
        .header("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(text)
        .build())
}

/// `HGETALL`'s flat reply as field/value pairs.
fn pairs(items: Vec<ReplyItem>) -> Vec<(String, String)> {
    let text = |item: &ReplyItem| match item {
        ReplyItem::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        ReplyItem::Int(n) => n.to_string(),
        ReplyItem::Nil => String::new(),
    };
    items.chunks_exact(2).map(|pair| (text(&pair[0]), text(&pair[1]))).collect()
}
