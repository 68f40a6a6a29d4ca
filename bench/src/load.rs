//! The load generator: a fixed number of HTTP/1.1 keep-alive connections over
//! loopback, each sending one request after another (closed loop) until the
//! deadline or its share of the request cap, with every latency in an HDR
//! histogram.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Longest a single request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Histogram range: 1 µs to 60 s, three significant digits.
const MAX_LATENCY_US: u64 = 60_000_000;

/// What each request of a scenario looks like.
#[derive(Debug, Clone)]
pub enum Body {
    None,
    /// A fresh metric for POST /api/metrics: timestamp now, the connection's
    /// type out of `types`, a varying value.
    Metric { types: Vec<String> },
    /// `size` fresh metrics of the connection's type, as one batch (JSON array).
    Batch { types: Vec<String>, size: usize },
    /// Every `writes_every`-th request of a connection posts a metric of
    /// `metric_type` (to `/api/metrics`); the others send the plan's GET.
    Mixed { metric_type: String, writes_every: u64 },
}

/// What makes an answer the expected one.
#[derive(Debug, Clone)]
pub struct Expect {
    pub status: u16,
    /// A response header that must have this value (e.g. `x-cache: HIT`).
    pub header: Option<(&'static str, &'static str)>,
    /// Text the body must contain.
    pub body_contains: Option<&'static str>,
}

impl Expect {
    pub fn status(status: u16) -> Expect {
        Expect { status, header: None, body_contains: None }
    }

    /// Any 2xx (for mixed scenarios).
    pub fn success() -> Expect {
        Expect::status(0)
    }

    fn check(&self, response: &Response) -> Result<(), String> {
        let status_ok = match self.status {
            0 => (200..300).contains(&response.status),
            expected => response.status == expected,
        };
        if !status_ok {
            return Err(format!("status {}", response.status));
        }
        if let Some((name, value)) = self.header {
            let got = response.header(name).unwrap_or("(none)");
            if !got.eq_ignore_ascii_case(value) {
                return Err(format!("{name}: {got}"));
            }
        }
        if let Some(text) = self.body_contains {
            if !String::from_utf8_lossy(&response.body).contains(text) {
                return Err(format!("body without {text}"));
            }
        }
        Ok(())
    }
}

/// One scenario's load.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Connection `i` goes to `addresses[i % len]`.
    pub addresses: Vec<SocketAddr>,
    pub method: &'static str,
    pub path: String,
    pub body: Body,
    pub expect: Expect,
    pub connections: usize,
    pub duration: Duration,
    /// Upper bound on requests, whatever the duration.
    pub max_requests: u64,
    /// An API key every request carries (`X-API-Key`).
    pub api_key: Option<String>,
}

/// What a run measured.
pub struct Outcome {
    /// Latency of every answered request (expected or not), microseconds.
    pub latency: Histogram<u64>,
    /// Answers that met the expectation.
    pub ok: u64,
    /// Everything else, by kind (`status 429`, `x-cache: MISS`, `transport: …`).
    pub errors: BTreeMap<String, u64>,
    /// `X-Cache` values of the answers that had one.
    pub cache: BTreeMap<String, u64>,
    /// POSTs answered 2xx in a mixed plan.
    pub writes: u64,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Runs `plan` and merges what every connection saw.
pub async fn run(plan: &Plan) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let deadline = started + plan.duration;
    let per_connection = plan.max_requests.div_ceil(plan.connections as u64);
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..plan.connections {
        let plan = plan.clone();
        tasks.spawn(async move { connection(&plan, index, deadline, per_connection).await });
    }
    let mut outcome = Outcome::empty()?;
    while let Some(joined) = tasks.join_next().await {
        let part = joined.context("a load connection panicked")??;
        outcome.latency.add(&part.latency).context("merging histograms")?;
        outcome.ok += part.ok;
        outcome.writes += part.writes;
        for (kind, n) in part.errors {
            *outcome.errors.entry(kind).or_default() += n;
        }
        for (value, n) in part.cache {
            *outcome.cache.entry(value).or_default() += n;
        }
    }
    outcome.elapsed = started.elapsed();
    Ok(outcome)
}

impl Outcome {
    fn empty() -> anyhow::Result<Outcome> {
        let latency = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).context("creating a latency histogram")?;
        Ok(Outcome { latency, ok: 0, errors: BTreeMap::new(), cache: BTreeMap::new(), writes: 0, elapsed: Duration::ZERO })
    }
}

/// One keep-alive connection's loop; reconnects after a transport error.
async fn connection(plan: &Plan, index: usize, deadline: Instant, max_requests: u64) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::empty()?;
    let address = plan.addresses[index % plan.addresses.len()];
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let mut sent = 0u64;
    while sent < max_requests && Instant::now() < deadline {
        let ready = match sender.take() {
            Some(s) if !s.is_closed() => Ok(s),
            _ => connect(address).await,
        };
        let mut s = match ready {
            Ok(s) => s,
            Err(e) => {
                *outcome.errors.entry(format!("connect: {e}")).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let request = build(plan, address, index, sent)?;
        let write = request.method() == hyper::Method::POST;
        sent += 1;
        let start = Instant::now();
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange(&mut s, request)).await {
            Ok(Ok(response)) => {
                let micros = start.elapsed().as_micros().clamp(1, MAX_LATENCY_US as u128) as u64;
                outcome.latency.record(micros).context("recording a latency")?;
                match plan.expect.check(&response) {
                    Ok(()) => {
                        outcome.ok += 1;
                        outcome.writes += u64::from(write);
                    }
                    Err(kind) => *outcome.errors.entry(kind).or_default() += 1,
                }
                if let Some(cache) = response.header("x-cache") {
                    *outcome.cache.entry(cache.to_string()).or_default() += 1;
                }
                sender = Some(s);
            }
            Ok(Err(e)) => *outcome.errors.entry(format!("transport: {e}")).or_default() += 1,
            Err(_) => *outcome.errors.entry(format!("timeout after {REQUEST_TIMEOUT:?}")).or_default() += 1,
        }
    }
    Ok(outcome)
}

async fn connect(address: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(address).await.with_context(|| format!("connecting to {address}"))?;
    stream.set_nodelay(true).context("setting TCP_NODELAY")?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.context("HTTP/1.1 handshake")?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes the connection.
        let _ = connection.await;
    });
    Ok(sender)
}

/// A fresh metric of `metric_type`, timestamped now.
fn metric_body(metric_type: &str, index: usize, sequence: u64) -> Bytes {
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let metric = serde_json::json!({
        "timestamp": analytics_core::time::format_timestamp(now_ms),
        "value": ((index as u64 * 7_919 + sequence * 104_729) % 10_000) as f64 / 100.0,
        "type": metric_type,
    });
    Bytes::from(metric.to_string())
}

fn build(plan: &Plan, address: SocketAddr, index: usize, sequence: u64) -> anyhow::Result<Request<Full<Bytes>>> {
    let mut builder = Request::builder().header("host", address.to_string());
    if let Some(key) = &plan.api_key {
        builder = builder.header("x-api-key", key.as_str());
    }
    let post = |builder: hyper::http::request::Builder, body| {
        builder.method("POST").uri("/api/metrics").header("content-type", "application/json").body(Full::new(body))
    };
    let request = match &plan.body {
        Body::None => builder.method(plan.method).uri(&plan.path).body(Full::new(Bytes::new())),
        Body::Metric { types } => post(builder, metric_body(&types[index % types.len()], index, sequence)),
        Body::Batch { types, size } => {
            let items: Vec<String> = (0..*size)
                .map(|i| String::from_utf8_lossy(&metric_body(&types[index % types.len()], index, sequence * *size as u64 + i as u64)).into_owned())
                .collect();
            let body = Bytes::from(format!("[{}]", items.join(",")));
            builder.method("POST").uri("/api/metrics/batch").header("content-type", "application/json").body(Full::new(body))
        }
        Body::Mixed { metric_type, writes_every } if sequence % writes_every == 0 => {
            post(builder, metric_body(metric_type, index, sequence))
        }
        Body::Mixed { .. } => builder.method("GET").uri(&plan.path).body(Full::new(Bytes::new())),
    };
    request.context("building a request")
}

/// An answer, read whole.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("response body is not JSON: {}", String::from_utf8_lossy(&self.body)))
    }
}

async fn exchange(sender: &mut SendRequest<Full<Bytes>>, request: Request<Full<Bytes>>) -> anyhow::Result<Response> {
    sender.ready().await.context("connection not ready")?;
    let response = sender.send_request(request).await.context("sending the request")?;
    let status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.context("reading the response body")?.to_bytes();
    Ok(Response { status, headers: parts.headers, body })
}

/// One request on a new connection, for setup and checks.
pub async fn request_once(address: SocketAddr, method: &str, path: &str, json: Option<&str>) -> anyhow::Result<Response> {
    request_with(address, method, path, json, &[]).await
}

/// [`request_once`] with extra headers.
pub async fn request_with(address: SocketAddr, method: &str, path: &str, json: Option<&str>, headers: &[(&str, &str)]) -> anyhow::Result<Response> {
    let mut sender = connect(address).await?;
    let mut builder = Request::builder().method(method).uri(path).header("host", address.to_string());
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = match json {
        Some(text) => {
            builder = builder.header("content-type", "application/json");
            Bytes::from(text.to_string())
        }
        None => Bytes::new(),
    };
    let request = builder.body(Full::new(body)).context("building a request")?;
    tokio::time::timeout(REQUEST_TIMEOUT, exchange(&mut sender, request))
        .await
        .with_context(|| format!("{method} {path}: no answer within {REQUEST_TIMEOUT:?}"))?
        .with_context(|| format!("{method} {path}"))
}

/// `request_once`, insisting on `status`; gives the parsed JSON body.
pub async fn expect_json(address: SocketAddr, method: &str, path: &str, json: Option<&str>, status: u16) -> anyhow::Result<(Response, serde_json::Value)> {
    let response = request_once(address, method, path, json).await?;
    if response.status != status {
        anyhow::bail!(
            "{method} {path}: expected status {status}, got {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
    }
    let value = response.json()?;
    Ok((response, value))
}
