//! A loaded application: every component compiled once and pre-instantiated,
//! the router, and the services guests reach (key-value, Redis, variables).
//! Each request gets a fresh instance, as under Spin.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiBody, WasiHttpView};

use crate::allowed_hosts::AllowedHosts;
use crate::component::ComponentConfig;
use crate::key_value::{CrashPoint, SpinRedisDefects, Store, StoreMode};
use crate::spin_model::SpinCosts;
use crate::logging::{millis, LogFormat, RequestLine, TaggedStderr};
use crate::manifest::Manifest;
use crate::outbound_http::{BoxFuture, Dispatch};
use crate::redis::{RedisMode, RedisService};
use crate::router::{RouteMatch, Router};
use crate::runtime_config::{RuntimeConfig, StoreOptions};
use crate::services::Services;
use crate::state::{HostState, MAX_GUEST_MEMORY};
use crate::variables::{VariableError, Variables};

/// How to load and run an application.
#[derive(Debug, Clone)]
pub struct AppOptions {
    /// Path of `spin.toml`.
    pub manifest: PathBuf,
    /// Optional `runtime-config.toml`.
    pub runtime_config: Option<PathBuf>,
    /// Where the default key-value database lives; `None` means `<app>/.spin`,
    /// an empty path keeps it in memory (as Spin's `--state-dir ""`).
    pub state_dir: Option<PathBuf>,
    /// Variable values that win over the environment, like `spin up --variable`.
    pub variables: BTreeMap<String, String>,
    pub redis: RedisMode,
    /// Fast, or with Spin's costs.
    pub store_mode: StoreMode,
    /// Redis-backed key-value stores behave like this Spin's.
    pub redis_defects: SpinRedisDefects,
    /// Print one line per request.
    pub log_requests: bool,
    /// Text, or one JSON object per line (guests' stderr tagged too).
    pub log_format: LogFormat,
    /// Fault injection: end the process right after this many key-value writes.
    pub crash_after_kv_writes: Option<u64>,
    /// Spin's own costs, spent in `StoreMode::Spin` ([`crate::spin_model`]).
    pub spin_costs: SpinCosts,
}

impl AppOptions {
    pub fn new(manifest: impl Into<PathBuf>) -> Self {
        AppOptions {
            manifest: manifest.into(),
            runtime_config: None,
            state_dir: None,
            variables: BTreeMap::new(),
            redis: RedisMode::Auto,
            store_mode: StoreMode::Fast,
            redis_defects: SpinRedisDefects::None,
            log_requests: false,
            log_format: LogFormat::Text,
            crash_after_kv_writes: None,
            spin_costs: SpinCosts::CALIBRATED,
        }
    }
}

/// A component ready to serve.
struct Loaded {
    pre: ProxyPre<HostState>,
    config: Arc<ComponentConfig>,
}

/// State shared by every request of one application.
pub struct Shared {
    engine: Engine,
    router: Router,
    components: HashMap<String, Loaded>,
    /// Components named by some trigger, public or private: chaining can reach only these.
    chainable: std::collections::HashSet<String>,
    services: Arc<Services>,
    log_requests: bool,
    log_format: LogFormat,
    /// Spin's request-path cost, spent per component run in `StoreMode::Spin`.
    spin_request_cost: Option<std::time::Duration>,
    /// Spin's reset of an instance's memory, spent once its guest returns (`StoreMode::Spin`).
    spin_costs: Option<SpinCosts>,
    /// Turns true when the host starts stopping: event streams end ([`crate::event_stream`]).
    stopping: tokio::sync::watch::Sender<bool>,
}

/// A running application; cheap to clone.
#[derive(Clone)]
pub struct App {
    shared: Arc<Shared>,
}

/// The response given when a request cannot reach a guest.
fn status_only(status: StatusCode) -> Response<WasiBody> {
    let mut response = Response::new(Empty::new().map_err(|e| match e {}).boxed_unsync());
    *response.status_mut() = status;
    response
}

/// One engine per process, so compiled components can be shared between apps
/// (tests load many apps from the same files).
fn engine() -> anyhow::Result<Engine> {
    static ENGINE: std::sync::OnceLock<Engine> = std::sync::OnceLock::new();
    if let Some(engine) = ENGINE.get() {
        return Ok(engine.clone());
    }
    let engine = new_engine()?;
    Ok(ENGINE.get_or_init(|| engine).clone())
}

/// Engine settings shared by both allocation strategies.
fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // Guests here are WASI 0.2 components: nothing needs the component-model
    // async machinery. Leaving it off spares every host call its task
    // bookkeeping, and every store the worker fiber that dropping it would
    // have to unwind (with an error, and a Rust backtrace when RUST_BACKTRACE
    // is set: a fifth of a request's instructions).
    config.concurrency_support(false);
    // `SPIN_HOST_PROFILER=perfmap` names guest functions for `perf`.
    if std::env::var("SPIN_HOST_PROFILER").is_ok_and(|p| p == "perfmap") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    config
}

/// Component instances the pool holds, for the whole process.
const POOLED_INSTANCES: u32 = 1_000;

/// Inbound requests running at once, process-wide. A request may chain to
/// one more component, so this keeps instances within the pool; requests
/// beyond it wait their turn instead of failing.
fn admission() -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| tokio::sync::Semaphore::new(POOLED_INSTANCES as usize * 2 / 5))
}

fn new_engine() -> anyhow::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(POOLED_INSTANCES)
        .total_core_instances(8_000)
        .total_memories(2_000)
        .total_tables(4_000)
        .total_stacks(1_000)
        .max_memory_size(MAX_GUEST_MEMORY);
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        // With PAGEMAP_SCAN (Linux 6.7+) a reused slot has only the pages its
        // guest wrote reset, by copying, and keeps them resident: no madvise,
        // no page faults on the next request.
        pool.pagemap_scan(Enabled::Yes)
            .linear_memory_keep_resident(512 << 10)
            .table_keep_resident(1 << 16);
    }
    // Without it, keeping memory resident means memsetting all of it on
    // every request, which costs more than the page faults it saves (for the
    // trivial component, 91 µs of CPU a request at 1 MiB against 70 µs at 0),
    // so slots are reset with madvise as by default.
    let mut config = base_config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match Engine::new(&config) {
        Ok(engine) => Ok(engine),
        Err(pooled) => {
            // Some sandboxes cap virtual memory below what the pool reserves.
            eprintln!("warning: pooling allocator unavailable ({pooled:#}); using on-demand allocation");
            Ok(Engine::new(&base_config())?)
        }
    }
}

fn linker(engine: &Engine) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    crate::bindings::Host_::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
    Ok(linker)
}

fn resolve_component(
    manifest: &Manifest,
    variables: &Variables,
    id: &str,
    known_stores: &HashMap<String, Arc<dyn Store>>,
) -> anyhow::Result<ComponentConfig> {
    let decl = &manifest.components[id];
    let key = |k: &str| format!("{}: component.{id}.{k}", manifest.path.display());
    let entries = decl
        .allowed_outbound_hosts
        .iter()
        .map(|entry| variables.expand(entry))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| key("allowed_outbound_hosts"))?;
    let allowed_hosts =
        AllowedHosts::parse(entries.iter().map(String::as_str)).with_context(|| key("allowed_outbound_hosts"))?;
    for label in &decl.key_value_stores {
        if !known_stores.contains_key(label) {
            bail!(
                "{}: unknown key_value_stores label `{label}`; define it in the runtime config",
                key("key_value_stores")
            );
        }
    }
    let component_variables = decl
        .variables
        .iter()
        .map(|(name, template)| {
            let value = match variables.expand(template) {
                Ok(value) => Ok(value),
                // A required variable without a value fails when read, as in Spin.
                Err(missing @ VariableError::Missing(_)) => Err(missing.to_string()),
                Err(error) => bail!("{}: {error}", key(&format!("variables.{name}"))),
            };
            Ok((name.clone(), value))
        })
        .collect::<anyhow::Result<HashMap<_, _>>>()?;
    let environment = decl
        .environment
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(ComponentConfig {
        id: id.to_string(),
        variables: component_variables,
        key_value_stores: decl.key_value_stores.clone(),
        allowed_hosts,
        environment,
    })
}

/// Compiles a component, telling the user to build it when the file is missing.
/// A file compiled before in this process (same path, size and mtime) is reused.
fn compile(engine: &Engine, id: &str, path: &Path) -> anyhow::Result<Component> {
    type Cache = std::sync::Mutex<HashMap<PathBuf, (std::fs::Metadata, Component)>>;
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    let metadata = std::fs::metadata(path).map_err(|_| {
        anyhow::anyhow!(
            "component `{id}`: {} does not exist; build the app first (`spin-host build`, or `up --build`)",
            path.display()
        )
    })?;
    let cache = CACHE.get_or_init(Default::default);
    let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let same = |m: &std::fs::Metadata| m.len() == metadata.len() && m.modified().ok() == metadata.modified().ok();
    if let Some((_, component)) = cache.lock().ok().and_then(|c| c.get(&key).filter(|(m, _)| same(m)).cloned()) {
        return Ok(component);
    }
    let component = Component::from_file(engine, path)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("component `{id}`: cannot load {}", path.display()))?;
    if let Ok(mut cache) = cache.lock() {
        cache.insert(key, (metadata, component.clone()));
    }
    Ok(component)
}

impl App {
    /// Loads the manifest, opens stores, and compiles and links every component.
    pub async fn load(options: AppOptions) -> anyhow::Result<App> {
        let manifest = Manifest::load(&options.manifest)?;
        if manifest.http_base() != "/" {
            bail!(
                "{}: application.trigger.http.base: only `/` is supported; prefix each route instead",
                manifest.path.display()
            );
        }
        let router = Router::build(&manifest.http_triggers)
            .with_context(|| format!("{}: trigger.http", manifest.path.display()))?;
        let mut variables = Variables::from_process_env(&manifest);
        for (name, value) in &options.variables {
            variables.set(name, value);
        }
        let runtime_config = match &options.runtime_config {
            Some(path) => RuntimeConfig::load(path)?,
            None => RuntimeConfig::default(),
        };
        let state_dir = options.state_dir.clone().unwrap_or_else(|| manifest.root.join(".spin"));
        // Key-value writes and guests' Redis writes count toward one crash point.
        let crash_point = options.crash_after_kv_writes.map(CrashPoint::new);
        let store_options = StoreOptions {
            mode: options.store_mode,
            redis_defects: options.redis_defects,
            crash_point: crash_point.clone(),
            spin_costs: options.spin_costs,
        };
        let key_value = runtime_config.open_stores(&state_dir, &store_options)?;
        let spin_costs = (options.store_mode == StoreMode::Spin).then_some(options.spin_costs);
        let postgres = crate::postgres::PostgresService::new(spin_costs, crash_point.clone());
        let redis = RedisService::new(options.redis.resolve(&variables), spin_costs, crash_point);

        let engine = engine()?;
        let linker = linker(&engine)?;
        let mut components = HashMap::new();
        let mut problems = Vec::new();
        for id in manifest.components.keys() {
            let config = resolve_component(&manifest, &variables, id, &key_value)?;
            let path = manifest.component_source(id).unwrap_or_default();
            let component = compile(&engine, id, &path)?;
            let missing = crate::imports::unsatisfied(&linker, &component);
            if !missing.is_empty() {
                problems.push(format!("component `{id}` imports what this host does not provide:\n  {}", missing.join("\n  ")));
                continue;
            }
            let pre = ProxyPre::new(linker.instantiate_pre(&component)?)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("component `{id}` does not export wasi:http/incoming-handler"))?;
            components.insert(id.clone(), Loaded { pre, config: Arc::new(config) });
        }
        if !problems.is_empty() {
            bail!("{}", problems.join("\n"));
        }
        Ok(App {
            shared: Arc::new(Shared {
                engine,
                router,
                components,
                chainable: manifest.http_triggers.iter().map(|t| t.component.clone()).collect(),
                services: Arc::new(Services { key_value, redis, postgres }),
                log_requests: options.log_requests,
                log_format: options.log_format.resolve(),
                spin_request_cost: spin_costs.map(|c| c.request),
                spin_costs,
                stopping: tokio::sync::watch::Sender::new(false),
            }),
        })
    }

    /// Serves one inbound request, as the HTTP trigger does.
    pub async fn handle<B>(&self, request: Request<B>, client: SocketAddr) -> Response<WasiBody>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        // Never closed, so acquiring cannot fail.
        let _permit = admission().acquire().await.ok();
        self.shared.clone().handle(request, client).await
    }

    /// Ends every event stream, open or to come: the host is stopping.
    pub fn end_streams(&self) {
        self.shared.stopping.send_replace(true);
    }

    /// The embedded Redis, when the app uses it (tests stop and start it).
    pub fn redis(&self) -> &RedisService {
        &self.shared.services.redis
    }

    /// A key-value store by label, for tests and seeding.
    pub fn key_value(&self, label: &str) -> Option<Arc<dyn Store>> {
        self.shared.services.key_value.get(label).cloned()
    }
}

impl Shared {
    async fn handle<B>(self: Arc<Self>, request: Request<B>, client: SocketAddr) -> Response<WasiBody>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let started = Instant::now();
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let request_id = crate::logging::request_id();
        let trace_id = request.headers().get("traceparent").and_then(|v| v.to_str().ok()).and_then(crate::logging::trace_id);
        let entry = |route: &str, component: &str, status: StatusCode| Entry {
            request_id: &request_id,
            trace_id: trace_id.as_deref(),
            method: &method,
            path: &path,
            route: route.to_string(),
            component: component.to_string(),
            status,
            client,
            started,
        };
        // Every answer names its request, as the log line does.
        let with_id = |mut response: Response<WasiBody>| {
            if let Ok(value) = http::HeaderValue::from_str(&request_id) {
                response.headers_mut().insert("x-request-id", value);
            }
            response
        };
        let Some(route) = self.router.route(&path) else {
            self.log(entry("-", "-", StatusCode::NOT_FOUND));
            return with_id(status_only(StatusCode::NOT_FOUND));
        };
        let (component, raw_route) = (route.component.clone(), route.raw_route.clone());
        let response = match self.clone().serve(route, request, client, request_id.clone()).await {
            Ok(response) => response,
            Err(error) => {
                eprintln!("error: component `{component}` failed on {method} {path}: {error:#}");
                status_only(StatusCode::INTERNAL_SERVER_ERROR)
            }
        };
        self.log(entry(&raw_route, &component, response.status()));
        with_id(response)
    }

    fn log(&self, entry: Entry<'_>) {
        let elapsed = entry.started.elapsed();
        crate::telemetry::metrics().request(&entry.route, &entry.component, entry.status.as_u16(), elapsed);
        if self.log_requests {
            RequestLine {
                request_id: entry.request_id,
                trace_id: entry.trace_id,
                method: entry.method.as_str(),
                path: entry.path,
                component: &entry.component,
                status: entry.status.as_u16(),
                duration_ms: millis(elapsed),
                client: entry.client,
            }
            .write(self.log_format);
        }
    }

    /// Runs `route.component` on `request` with Spin's `spin-*` headers added.
    async fn serve<B>(
        self: Arc<Self>,
        route: RouteMatch,
        request: Request<B>,
        client: SocketAddr,
        request_id: String,
    ) -> anyhow::Result<Response<WasiBody>>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let loaded = self
            .components
            .get(&route.component)
            .with_context(|| format!("unknown routing destination `{}`", route.component))?;
        if let Some(cost) = self.spin_request_cost {
            crate::spin_model::burn(cost);
        }
        let (mut parts, body) = request.into_parts();
        // As Spin does: a client must not make its request look chained.
        let chaining_host = parts.headers.get(http::header::HOST).and_then(|h| h.to_str().ok());
        if chaining_host.and_then(crate::outbound_http::chaining_target).is_some() {
            parts.headers.remove(http::header::HOST);
        }
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost")
            .to_string();
        let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        parts.uri = http::Uri::builder()
            .scheme("http")
            .authority(host.as_str())
            .path_and_query(path_and_query.as_str())
            .build()
            .context("cannot rebuild the request URI")?;
        // A client must not be able to pass its own values for these.
        let spoofed: Vec<HeaderName> = parts
            .headers
            .keys()
            .filter(|name| name.as_str().starts_with("spin-"))
            .cloned()
            .collect();
        for name in spoofed {
            parts.headers.remove(name);
        }
        let spin_headers = [
            ("spin-full-url", format!("http://{host}{path_and_query}")),
            ("spin-path-info", route.path_info),
            ("spin-matched-route", route.matched_route),
            ("spin-raw-component-route", route.raw_route),
            ("spin-component-route", route.component_route),
            ("spin-base-path", "/".to_string()),
            ("spin-client-addr", client.to_string()),
        ];
        for (name, value) in spin_headers {
            parts
                .headers
                .insert(HeaderName::from_static(name), HeaderValue::try_from(value)?);
        }
        let request = Request::from_parts(parts, body);

        let dispatch: Arc<dyn Dispatch> = self.clone();
        let stderr = (self.log_format == LogFormat::Json).then(|| TaggedStderr::new(&request_id, &route.component));
        let state = HostState::new(self.services.clone(), dispatch, loaded.config.clone(), stderr);
        let mut store = wasmtime::Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let incoming = store.data_mut().http().new_incoming_request(Scheme::Http, request)?;
        let outparam = store.data_mut().http().new_response_outparam(sender)?;
        let pre = loaded.pre.clone();
        let id = route.component.clone();
        let kv_session = store.data().kv_session.clone();
        let spin_costs = self.spin_costs;
        let task = tokio::spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            let result = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, incoming, outparam)
                .await;
            if let Err(error) = &result {
                eprintln!("error: component `{id}` trapped: {error:#}");
            }
            // Writes made after the response was handed over (a streaming guest).
            if let Err(error) = store.data().kv_session.commit() {
                eprintln!("error: component `{id}`: {error}");
            }
            if let Some(costs) = spin_costs {
                crate::spin_model::burn(costs.memory_reset(store.data().limits.memory_bytes));
            }
            result
        });
        match receiver.await {
            Ok(Ok(response)) => {
                if let Err(error) = kv_session.commit() {
                    eprintln!("error: component `{}`: {error}; answering 503 instead", route.component);
                    return Ok(status_only(StatusCode::SERVICE_UNAVAILABLE));
                }
                // The request is logged and timed at its head (as
                // `http_request_duration_seconds` says), so a stream open for
                // a minute does not count as a slow request.
                match crate::event_stream::is_event_stream(&response) {
                    true => Ok(crate::event_stream::until_stopping(response, &self.stopping)),
                    false => Ok(response),
                }
            }
            Ok(Err(code)) => bail!("the component answered with error code {code:?}"),
            Err(_) => match task.await {
                Ok(Ok(())) => bail!("the component returned without setting a response"),
                Ok(Err(error)) => Err(error.into()),
                Err(join) => Err(join.into()),
            },
        }
    }

}

/// What the request log records of one request.
struct Entry<'a> {
    request_id: &'a str,
    /// From the request's W3C `traceparent`, if it carried one.
    trace_id: Option<&'a str>,
    method: &'a http::Method,
    path: &'a str,
    route: String,
    component: String,
    status: StatusCode,
    client: SocketAddr,
    started: Instant,
}

impl Dispatch for Shared {
    fn handle(self: Arc<Self>, request: Request<WasiBody>, client: SocketAddr) -> BoxFuture<Response<WasiBody>> {
        Box::pin(Shared::handle(self, request, client))
    }

    fn serve(
        self: Arc<Self>,
        route: RouteMatch,
        request: Request<WasiBody>,
        client: SocketAddr,
    ) -> BoxFuture<anyhow::Result<Response<WasiBody>>> {
        Box::pin(Shared::serve(self, route, request, client, crate::logging::request_id()))
    }

    fn is_chainable(&self, id: &str) -> bool {
        self.chainable.contains(id)
    }
}
