//! GET /dashboard in a real browser. A `spin-host` process serves the app
//! with seeded metrics; headless Chromium (`chromium --headless --dump-dom`,
//! with a virtual-time budget so the page's timers and requests run) loads the
//! page, and the DOM it rendered must show the API's numbers, one chart mark
//! per series point, and no page error. Also saves `docs/dashboard.png`.
//!
//! Chromium is required: without it this test fails (`.ci/run` installs it;
//! `CHROMIUM=/path/to/chromium` picks another binary).

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::api::timestamp_seconds_ago;
use support::host_process::HostProcess;
use support::http_client::Connection;

/// How long one Chromium run may take before the test gives up on it.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(30);
/// Virtual time for one page load: the first refresh, not the second (at 5 s).
const ONE_REFRESH_MS: u32 = 3_000;
/// Virtual time for three refreshes (at 0, 5 and 10 s).
const THREE_REFRESHES_MS: u32 = 11_000;

// ---- the browser ----

fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "Chromium is not installed, and the dashboard test drives it: \
                 `apt-get install -y chromium` (.ci/run does), or set CHROMIUM to its path"
            )
        })
}

/// Where each run's DOM and Chromium log are kept.
fn saved_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard")
}

/// What one headless run left behind.
struct Run {
    /// The DOM after the virtual-time budget (`--dump-dom`).
    dom: String,
    /// Chromium's log, including the page's console (`INFO:CONSOLE`).
    log: String,
}

/// Loads `url` in a fresh headless Chromium for `budget_ms` of virtual time
/// (timers fire early, real requests are waited for), then dumps the DOM and,
/// with `screenshot`, saves a 1280x720 PNG there.
fn browse(url: &str, budget_ms: u32, screenshot: Option<&std::path::Path>) -> Run {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut command = Command::new(chromium());
    command.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1280,720",
    ]);
    command.arg(format!("--user-data-dir={}", profile.path().display()));
    command.arg(format!("--virtual-time-budget={budget_ms}"));
    command.arg("--dump-dom");
    if let Some(path) = screenshot {
        command.arg(format!("--screenshot={}", path.display()));
    }
    let out = profile.path().join("out");
    let err = profile.path().join("err");
    command.arg(url).stdin(Stdio::null()).stdout(std::fs::File::create(&out).expect("stdout file")).stderr(std::fs::File::create(&err).expect("stderr file"));
    let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {:?}: {e}", chromium()));
    let deadline = Instant::now() + CHROMIUM_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium took over {CHROMIUM_TIMEOUT:?} on {url}:\n{}", std::fs::read_to_string(&err).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let run = Run { dom: std::fs::read_to_string(&out).unwrap_or_default(), log: std::fs::read_to_string(&err).unwrap_or_default() };
    // Kept for a look after a failure: target/tmp/dashboard/<view>.html and .log.
    let name: String = url.rsplit('/').next().unwrap_or("page").chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    std::fs::create_dir_all(saved_dir()).expect("target/tmp/dashboard");
    let _ = std::fs::write(saved_dir().join(format!("{name}.html")), &run.dom);
    let _ = std::fs::write(saved_dir().join(format!("{name}.log")), &run.log);
    assert!(status.success(), "chromium failed ({status}) on {url}:\n{}", run.log);
    run
}

impl Run {
    /// The page finished a refresh, reported no error, and logged nothing alarming.
    fn assert_clean(&self, url: &str) {
        let console: Vec<&str> = self.log.lines().filter(|l| l.contains(":CONSOLE")).collect();
        let bad: Vec<&&str> = console.iter().filter(|l| ["uncaught", "error", "refused", "violat"].iter().any(|w| l.to_lowercase().contains(w))).collect();
        assert!(bad.is_empty(), "{url}: the page's console reported errors:\n{bad:#?}");
        let errors = Dom(&self.dom).element(r#"id="page-errors""#);
        assert_eq!(errors.attr("data-count").as_deref(), Some("0"), "{url}: page errors: {}", errors.inner());
        assert_eq!(
            Dom(&self.dom).element("<body").attr("data-state").as_deref(),
            Some("ready"),
            "{url}: the page never finished a refresh; console:\n{console:#?}"
        );
    }
}

// ---- reading Chromium's serialised DOM ----
//
// `--dump-dom` prints Chromium's own serialisation, which is regular: every
// attribute double-quoted, `&`, `<`, `>` and `"` escaped. These helpers read
// elements the page marks with ids and data attributes; they are no HTML parser.

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&nbsp;", "\u{a0}").replace("&amp;", "&")
}

#[derive(Clone, Copy)]
struct Dom<'a>(&'a str);

/// One element: its start tag and what follows it.
#[derive(Clone, Copy)]
struct Element<'a> {
    tag: &'a str,
    rest: &'a str,
}

impl<'a> Dom<'a> {
    /// The first element whose start tag contains `needle`.
    fn element(self, needle: &str) -> Element<'a> {
        self.find(needle).unwrap_or_else(|| panic!("no element with `{needle}` in the page (saved in {})", saved_dir().display()))
    }

    fn find(self, needle: &str) -> Option<Element<'a>> {
        self.all(needle).into_iter().next()
    }

    /// Every element whose start tag contains `needle`, in order.
    fn all(self, needle: &str) -> Vec<Element<'a>> {
        let mut found = Vec::new();
        let mut from = 0;
        while let Some(i) = self.0[from..].find(needle) {
            let at = from + i;
            let start = self.0[..=at].rfind('<').expect("inside a tag");
            let end = at + self.0[at..].find('>').expect("tag ends");
            found.push(Element { tag: &self.0[start..=end], rest: &self.0[end + 1..] });
            from = end + 1;
        }
        found
    }

    /// The part of the page between the element with `needle` and its closing `</name>`.
    fn inside(self, needle: &str, name: &str) -> Dom<'a> {
        let rest = self.element(needle).rest;
        Dom(&rest[..rest.find(&format!("</{name}>")).expect("closing tag")])
    }

    /// The text of the `data-field` element `name`.
    fn field(self, name: &str) -> String {
        self.element(&format!(r#"data-field="{name}""#)).inner()
    }

    /// The `data-value` of the `data-field` element `name`.
    fn value(self, name: &str) -> String {
        self.element(&format!(r#"data-field="{name}""#)).attr("data-value").unwrap_or_else(|| panic!("data-field={name} has no data-value"))
    }
}

impl Element<'_> {
    fn attr(&self, name: &str) -> Option<String> {
        let key = format!(" {name}=\"");
        let i = self.tag.find(&key)? + key.len();
        let end = self.tag[i..].find('"')?;
        Some(unescape(&self.tag[i..i + end]))
    }

    /// Text up to the next tag (the elements read here hold plain text).
    fn inner(&self) -> String {
        unescape(&self.rest[..self.rest.find('<').unwrap_or(self.rest.len())]).trim().to_string()
    }
}

// ---- the API ----

/// GET `path`: status and JSON body.
async fn get(address: SocketAddr, path: &str) -> (u16, Value) {
    let mut c = Connection::open(address).await.expect("connect");
    let r = c.get(path).await.expect("GET");
    (r.status, r.json())
}

/// A few types, a few hundred metrics over the last 55 minutes, the same
/// shape every run (only the clock moves).
fn seed() -> Vec<Value> {
    let mut metrics = Vec::new();
    for minute in 0..55i64 {
        let wave = (minute as f64 / 7.0).sin();
        let ago = |j: i64| 20 + minute * 60 + j * 7;
        for j in 0..(3 + (2.0 * wave).round() as i64) {
            let value = ((55.0 + 20.0 * wave + (j * 3) as f64) * 100.0).round() / 100.0;
            metrics.push(json!({"type": "cpu_usage", "value": value, "timestamp": timestamp_seconds_ago(ago(j))}));
        }
        for j in 0..(2 + (minute % 3)) {
            let value = 1.0 + ((minute * 7 + j * 5) % 23) as f64 / 10.0;
            let user = format!("u{}", (minute * 3 + j * 11) % 29);
            metrics.push(json!({"type": "page_view", "value": value, "timestamp": timestamp_seconds_ago(ago(j)), "user_id": user}));
        }
        metrics.push(json!({"type": "latency_ms", "value": 80.0 + ((minute * 37) % 90) as f64, "timestamp": timestamp_seconds_ago(ago(5))}));
        if minute % 4 == 0 {
            metrics.push(json!({"type": "signup", "value": 1.0, "timestamp": timestamp_seconds_ago(ago(6)), "user_id": format!("u{minute}")}));
        }
    }
    metrics
}

/// Starts a host in `dir` with `variables` and `extra` arguments and seeds it; returns the metrics per type.
async fn start_seeded(variables: &[(&str, String)], extra: &[&str], dir: &std::path::Path) -> (HostProcess, BTreeMap<String, usize>) {
    start_seeded_logging(variables, extra, dir, false).await
}

/// [`start_seeded`], with the host's request log on when `logged`.
async fn start_seeded_logging(variables: &[(&str, String)], extra: &[&str], dir: &std::path::Path, logged: bool) -> (HostProcess, BTreeMap<String, usize>) {
    let mut args: Vec<String> = vec!["--state-dir".into(), dir.join("state").to_string_lossy().into_owned()];
    args.extend(extra.iter().map(|s| s.to_string()));
    // The page follows the summary's event stream, and Chromium's virtual
    // time stands still while a request is open: short streams keep each run
    // short (the page reconnects after each, as after any stream's end).
    if !variables.iter().any(|(name, _)| *name == "stream_lifetime_seconds") {
        args.extend(["--variable".to_string(), "stream_lifetime_seconds=1".to_string()]);
    }
    for (name, value) in variables {
        args.extend(["--variable".to_string(), format!("{name}={value}")]);
    }
    let host = match logged {
        true => HostProcess::start_logging(&args, dir.join("host.log")).await,
        false => HostProcess::start(&args, dir.join("host.log")).await,
    };
    let metrics = seed();
    let mut c = Connection::open(host.address).await.expect("connect");
    let body = Value::Array(metrics.clone()).to_string();
    let r = c.send("POST", "/api/metrics/batch", &[("content-type", "application/json")], body).await.expect("seed");
    assert_eq!((r.status, r.json()["accepted"].as_u64()), (200, Some(metrics.len() as u64)), "seeding: {}", r.text());
    let mut per_type = BTreeMap::new();
    for m in &metrics {
        *per_type.entry(m["type"].as_str().unwrap().to_string()).or_insert(0) += 1;
    }
    (host, per_type)
}

fn quiet_upstream() -> Vec<(&'static str, String)> {
    vec![("rate_limit_requests", "100000".into()), ("external_service_latency_ms", "0".into()), ("external_service_failure_rate", "0".into())]
}

/// A shown number (`5,617.66`) is the API's value rounded to two decimals.
fn assert_shown(name: &str, shown: &str, api: f64) {
    let parsed: f64 = shown.replace(',', "").parse().unwrap_or_else(|_| panic!("{name}: `{shown}` is not a number"));
    assert!((parsed - api).abs() <= 0.005 + 1e-9 * api.abs(), "{name}: shows {shown}, the API says {api}");
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Loads one view (taking a screenshot when asked) and checks every panel against the API.
async fn check_view(
    address: SocketAddr,
    view: &str,
    expected_type: &str,
    period: &str,
    metric: &str,
    budget_ms: u32,
    screenshot: Option<&std::path::Path>,
) -> Run {
    let url = format!("http://{address}/dashboard{view}");
    let run = browse(&url, budget_ms, screenshot);
    run.assert_clean(&url);
    let dom = Dom(&run.dom);

    // Types and their counts, in the API's order.
    let (_, top) = get(address, "/api/stats/top-types?from=2020-01-01T00:00:00Z&limit=100").await;
    let expected: Vec<(String, String)> =
        top["types"].as_array().unwrap().iter().map(|t| (t["type"].as_str().unwrap().to_string(), t["count"].to_string())).collect();
    let shown: Vec<(String, String)> =
        dom.inside(r#"id="types""#, "ul").all("data-type=").iter().map(|b| (b.attr("data-type").unwrap(), b.attr("data-count").unwrap())).collect();
    assert_eq!(shown, expected, "{url}: types");
    let names: Vec<String> = dom.inside(r#"id="types""#, "ul").all(r#"class="name""#).iter().map(|e| e.inner()).collect();
    let counts: Vec<String> = dom.inside(r#"id="types""#, "ul").all(r#"class="count""#).iter().map(|e| e.inner()).collect();
    assert_eq!(names, expected.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>(), "{url}: type names shown");
    assert_eq!(counts, expected.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>(), "{url}: type counts shown");
    let pressed: Vec<String> = dom.all(r#"aria-pressed="true""#).iter().filter_map(|b| b.attr("data-type")).collect();
    assert_eq!(pressed, vec![expected_type.to_string()], "{url}: the chosen type");
    assert_eq!(dom.field("type"), expected_type);

    // The summary.
    let (status, summary) = get(address, &format!("/api/metrics/summary?type={expected_type}&period={period}")).await;
    assert_eq!(status, 200);
    assert!(summary["count"].as_u64().unwrap() > 0, "{url}: the seeded data is in the window: {summary}");
    for name in ["count", "sum", "average_value", "min_value", "max_value", "latest_value", "p50", "p95", "p99", "unique_users"] {
        let api = summary[name].as_f64().unwrap_or_else(|| panic!("summary.{name}: {summary}"));
        let value: f64 = dom.value(name).parse().unwrap();
        assert!(close(value, api), "{url}: {name} is {value} on the page, {api} from the API");
        assert_shown(name, &dom.field(name), api);
    }
    assert_eq!(dom.value("latest_timestamp"), summary["latest_timestamp"].as_str().unwrap());
    let cache = dom.field("x-cache");
    assert!(["HIT", "MISS", "PARTIAL", "stream"].contains(&cache.as_str()), "{url}: X-Cache shown (or the stream): {cache}");
    assert_eq!(dom.field("external"), "success");

    // The chart: one mark per point the API returns for the page's own query.
    let chart = dom.element(r#"id="chart""#);
    let (from, to, step) = (chart.attr("data-from").unwrap(), chart.attr("data-to").unwrap(), chart.attr("data-step").unwrap());
    assert_eq!((chart.attr("data-type").unwrap(), chart.attr("data-metric").unwrap()), (expected_type.to_string(), metric.to_string()));
    let (status, series) = get(address, &format!("/api/metrics/series?type={expected_type}&from={from}&to={to}&step={step}")).await;
    assert_eq!(status, 200, "{series}");
    let points = series["points"].as_array().unwrap();
    assert!(points.len() > 10, "{url}: {} points", points.len());
    let mark = if metric == "count" { "<rect " } else { "<circle " };
    let marks: Vec<Element> = dom.inside(r#"id="chart""#, "svg").all("data-start=");
    assert_eq!(marks.len(), points.len(), "{url}: chart marks vs the API's points");
    assert_eq!(chart.attr("data-points").unwrap(), points.len().to_string());
    for (m, p) in marks.iter().zip(points) {
        assert!(m.tag.starts_with(mark), "{url}: a point drawn as {}", m.tag);
        assert_eq!(m.attr("data-start").as_deref(), p["start"].as_str(), "{url}: point starts");
        assert_eq!(m.attr("data-count").unwrap(), p["count"].to_string(), "{url}: count at {}", p["start"]);
        let drawn: f64 = m.attr("data-value").unwrap().parse().unwrap();
        let key = if metric == "count" { "count" } else { "avg" };
        assert!(close(drawn, p[key].as_f64().unwrap()), "{url}: {key} at {}: {drawn} vs {}", p["start"], p[key]);
    }
    let total: u64 = points.iter().map(|p| p["count"].as_u64().unwrap()).sum();
    if period != "all" {
        assert_eq!(total, summary["count"].as_u64().unwrap(), "{url}: the chart covers the summary's window");
    }
    run
}

#[tokio::test]
async fn the_dashboard_shows_the_api_in_a_browser() {
    let started = Instant::now();
    chromium(); // fail at once, with the reason, when it is missing
    let dir = tempfile::tempdir().expect("temp dir");
    let (host, seeded) = start_seeded(&quiet_upstream(), &[], dir.path()).await;
    let address = host.address;

    // The component: the page, its assets with their types, 404 and 405.
    let mut c = Connection::open(address).await.expect("connect");
    for (path, content_type) in [
        ("/dashboard", "text/html; charset=utf-8"),
        ("/dashboard/", "text/html; charset=utf-8"),
        ("/dashboard/dashboard.js", "text/javascript; charset=utf-8"),
        ("/dashboard/guard.js", "text/javascript; charset=utf-8"),
        ("/dashboard/dashboard.css", "text/css; charset=utf-8"),
    ] {
        let r = c.get(path).await.expect("GET");
        assert_eq!((r.status, r.header("content-type")), (200, Some(content_type)), "{path}");
        assert!(r.header("content-security-policy").unwrap_or_default().contains("default-src 'none'"), "{path}");
    }
    let r = c.get("/dashboard/nope.js").await.expect("GET");
    assert_eq!((r.status, r.json()["error"].as_str()), (404, Some("not_found")));
    let r = c.send("POST", "/dashboard", &[], "").await.expect("POST");
    assert_eq!((r.status, r.header("allow"), r.json()["error"].as_str()), (405, Some("GET"), Some("method_not_allowed")));
    let (_, index) = get(address, "/").await;
    assert!(index["endpoints"].as_array().unwrap().iter().any(|e| e["path"] == "/dashboard"), "{index}");

    // Every period, both drawings; without ?type= the busiest type is chosen.
    // The first view (one refresh, so its clock is the real one) is the screenshot.
    let shot = dir.path().join("dashboard.png");
    let run = check_view(address, "?type=cpu_usage&period=hourly&metric=count", "cpu_usage", "hourly", "count", ONE_REFRESH_MS, Some(&shot)).await;
    let dom = Dom(&run.dom);
    let (_, health) = get(address, "/health").await;
    assert_eq!((dom.field("health-status"), dom.field("health-http")), (health["status"].as_str().unwrap().to_string(), "200".to_string()));
    assert_eq!(dom.field("health-redis"), "healthy");
    let (_, breaker) = get(address, "/api/circuit-breaker/status").await;
    assert_eq!(dom.field("breaker-state"), breaker["state"].as_str().unwrap());
    assert_eq!(dom.value("breaker-failure_threshold"), breaker["failure_threshold"].to_string());
    let refreshed = dom.element(r#"id="refreshed""#);
    assert!(refreshed.attr("datetime").is_some() && refreshed.inner().ends_with(" UTC"), "last refreshed: {}", refreshed.inner());

    // 11 s of (virtual) time: the page refreshes itself, in place, every 5 s.
    let run = check_view(address, "?type=page_view&period=daily&metric=avg", "page_view", "daily", "avg", THREE_REFRESHES_MS, None).await;
    let refreshes: u32 = Dom(&run.dom).element("<body").attr("data-refreshes").unwrap().parse().unwrap();
    assert!(refreshes >= 3, "the page refreshed itself {refreshes} times in 11 s");
    check_view(address, "?type=latency_ms&period=weekly&metric=count", "latency_ms", "weekly", "count", ONE_REFRESH_MS, None).await;
    check_view(address, "?type=signup&period=monthly&metric=avg", "signup", "monthly", "avg", ONE_REFRESH_MS, None).await;
    let run = check_view(address, "?period=all", "cpu_usage", "all", "count", ONE_REFRESH_MS, None).await;
    assert_eq!(Dom(&run.dom).value("count"), seeded["cpu_usage"].to_string());

    // The picture of the first view, for the docs.
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "the screenshot is {} bytes", png.len());
    let docs = support::root().join("docs");
    std::fs::create_dir_all(&docs).expect("docs/");
    std::fs::write(docs.join("dashboard.png"), png).expect("docs/dashboard.png");
    eprintln!("dashboard test: {:.1} s", started.elapsed().as_secs_f64());
}

#[tokio::test]
async fn the_dashboard_shows_a_degraded_api_without_failing() {
    chromium();
    let dir = tempfile::tempdir().expect("temp dir");
    // Redis on a port where nothing listens: health is degraded (503), the
    // breaker's state is unreadable (503), summaries still work.
    let closed = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let mut variables = quiet_upstream();
    variables.push(("redis_url", format!("redis://127.0.0.1:{closed}")));
    let (host, _) = start_seeded(&variables, &["--redis", "external"], dir.path()).await;
    let url = format!("http://{}/dashboard?type=cpu_usage", host.address);
    let run = browse(&url, THREE_REFRESHES_MS, None);
    run.assert_clean(&url);
    let dom = Dom(&run.dom);
    assert_eq!(dom.field("health-status"), "degraded");
    assert_eq!(dom.field("health-http"), "503");
    assert_eq!(dom.field("health-redis"), "unhealthy");
    assert_eq!(dom.field("health-key_value"), "healthy");
    let breaker_error = dom.element(r#"data-error="breaker""#);
    assert!(breaker_error.attr("hidden").is_none() && breaker_error.inner().contains("HTTP 503"), "breaker error: {}", breaker_error.inner());
    assert_eq!(dom.field("breaker-state"), "–");
    assert!(dom.element(r#"data-error="health""#).attr("hidden").is_some(), "a degraded health answer is shown, not reported as an error");
    let (_, summary) = get(host.address, "/api/metrics/summary?type=cpu_usage&period=hourly").await;
    assert_eq!(dom.value("count"), summary["count"].to_string());
    assert!(["HIT", "MISS", "PARTIAL", "BYPASS", "stream"].contains(&dom.field("x-cache").as_str()), "X-Cache: {}", dom.field("x-cache"));
    let refreshes: u32 = dom.element("<body").attr("data-refreshes").unwrap().parse().unwrap();
    assert!(refreshes >= 3, "the page kept refreshing: {refreshes}");
}

// ---- the live summary ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_follows_its_event_stream_in_a_browser() {
    chromium();
    let dir = tempfile::tempdir().expect("temp dir");
    // A stream long enough for a metric posted after it opened to arrive on it.
    let mut variables = quiet_upstream();
    variables.push(("stream_lifetime_seconds", "8".into()));
    let (host, seeded) = start_seeded_logging(&variables, &[], dir.path(), true).await;
    let url = format!("http://{}/dashboard?type=signup&period=hourly", host.address);
    let browsing = tokio::task::spawn_blocking({
        let url = url.clone();
        move || browse(&url, ONE_REFRESH_MS, None)
    });
    // Once the page's stream is open (its head is logged), a new metric.
    let deadline = Instant::now() + CHROMIUM_TIMEOUT;
    while !host.log_text().contains("/api/metrics/stream") {
        assert!(Instant::now() < deadline, "the page opened no stream:\n{}", host.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut c = Connection::open(host.address).await.expect("connect");
    let metric = json!({"type": "signup", "value": 1.0, "timestamp": timestamp_seconds_ago(1)}).to_string();
    assert_eq!(c.send("POST", "/api/metrics", &[("content-type", "application/json")], metric).await.expect("post").status, 201);
    let run = browsing.await.expect("chromium");
    run.assert_clean(&url);
    let dom = Dom(&run.dom);
    let body = dom.element("<body");
    let events: u32 = body.attr("data-live-events").unwrap_or_default().parse().unwrap_or(0);
    assert!(events >= 2, "the first summary and the update arrived by EventSource: {events} events");
    assert_eq!(body.attr("data-summary-source").as_deref(), Some("stream"));
    assert_eq!(dom.field("x-cache"), "stream");
    assert_eq!(dom.value("count"), (seeded["signup"] + 1).to_string(), "the summary shown holds the new metric");
}

#[tokio::test]
async fn the_summary_is_polled_when_its_stream_fails() {
    chromium();
    let dir = tempfile::tempdir().expect("temp dir");
    // A setting the stream refuses (a 500 before any event), the summary does not read.
    let mut variables = quiet_upstream();
    variables.push(("stream_lifetime_seconds", "forever".into()));
    let (host, seeded) = start_seeded(&variables, &[], dir.path()).await;
    let url = format!("http://{}/dashboard?type=signup&period=all", host.address);
    let run = browse(&url, THREE_REFRESHES_MS, None);
    let dom = Dom(&run.dom);
    let body = dom.element("<body");
    assert_eq!(body.attr("data-summary-source").as_deref(), Some("polling"), "{}", run.log);
    assert!(body.attr("data-live-events").is_none(), "no event arrived");
    assert_eq!(dom.value("count"), seeded["signup"].to_string());
    assert!(["HIT", "MISS", "PARTIAL"].contains(&dom.field("x-cache").as_str()), "X-Cache: {}", dom.field("x-cache"));
    let refreshes: u32 = body.attr("data-refreshes").unwrap().parse().unwrap();
    assert!(refreshes >= 3, "the page kept polling: {refreshes}");
    assert!(dom.element(r#"data-error="summary""#).attr("hidden").is_some(), "the polled summary shows no error");
}

// ---- keys and origins, from a browser ----

const ADMIN: &str = "browser-test-admin-token";

/// Serves `html` to every request on loopback port `port`, on its own
/// thread, until the test ends: a page on another origin than the API's.
fn serve_page_on(port: u16, html: String) -> u16 {
    use std::io::{Read, Write};
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("the page's port");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{html}",
                html.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    port
}

/// Creates a key with the admin token; returns its secret.
async fn admin_key(address: SocketAddr, request: Value) -> String {
    let mut c = Connection::open(address).await.expect("connect");
    let bearer = format!("Bearer {ADMIN}");
    let r = c.send("POST", "/api/keys", &[("content-type", "application/json"), ("authorization", &bearer)], request.to_string()).await.expect("create");
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["key"].as_str().unwrap_or_default().to_string()
}

/// A page served from `http://localhost:<port>` calls the API at
/// `http://127.0.0.1:<port>` (another origin): with an ingest key that
/// allows that origin it can post metrics (preflight and all), and nothing
/// else: not read with it, not post with a key that does not allow it.
#[tokio::test]
async fn a_page_on_another_origin_can_send_metrics_with_an_ingest_key_and_nothing_else() {
    chromium();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut variables = quiet_upstream();
    variables.extend([("auth", "required".to_string()), ("admin_token", ADMIN.to_string())]);
    let (host, _) = start_seeded_as_admin(&variables, dir.path()).await;
    let api = format!("http://127.0.0.1:{}", host.address.port());
    // The page's own port is known only once it listens: reserve it first.
    let page_port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let page_origin = format!("http://localhost:{page_port}");
    let allowed = admin_key(host.address, json!({"name": "web", "scopes": ["ingest"], "allowed_origins": [page_origin]})).await;
    let elsewhere = admin_key(host.address, json!({"name": "elsewhere", "scopes": ["ingest"], "allowed_origins": ["http://other.example"]})).await;
    let metric = json!({"type": "from_browser", "value": 42.0, "timestamp": timestamp_seconds_ago(2)}).to_string();
    let html = format!(
        r#"<!doctype html><html><body><pre id="results">pending</pre><script>
const api = {api:?}, metric = {metric:?};
async function attempt(name, path, init) {{
  try {{ const r = await fetch(api + path, init); return name + "=" + r.status; }}
  catch (e) {{ return name + "=blocked"; }}
}}
(async () => {{
  const post = (key) => ({{ method: "POST", headers: {{ "content-type": "application/json", "authorization": "Bearer " + key }}, body: metric }});
  const results = [
    await attempt("ingest", "/api/metrics", post({allowed:?})),
    await attempt("read", "/api/metrics/summary?type=from_browser", {{ headers: {{ "x-api-key": {allowed:?} }} }}),
    await attempt("other_key", "/api/metrics", post({elsewhere:?})),
    await attempt("no_key", "/api/metrics", {{ method: "POST", headers: {{ "content-type": "application/json" }}, body: metric }}),
  ];
  document.getElementById("results").textContent = results.join(" ");
}})();
</script></body></html>"#
    );
    let listener_port = serve_page_on(page_port, html);
    assert_eq!(listener_port, page_port);
    let run = browse(&format!("{page_origin}/page"), 3_000, None);
    let results = Dom(&run.dom).element(r#"id="results""#).inner();
    let results: BTreeMap<&str, &str> = results.split_whitespace().filter_map(|kv| kv.split_once('=')).collect();
    assert_eq!(results.get("ingest"), Some(&"201"), "{results:?}\n{}", run.log);
    assert_eq!(results.get("read"), Some(&"blocked"), "an ingest key reads nothing: {results:?}");
    assert_eq!(results.get("other_key"), Some(&"blocked"), "a key for another origin: {results:?}");
    assert_eq!(results.get("no_key"), Some(&"blocked"), "no key: {results:?}");
    // Exactly the one allowed post was stored.
    let mut c = Connection::open(host.address).await.expect("connect");
    let bearer = format!("Bearer {ADMIN}");
    let summary = c.send("GET", "/api/metrics/summary?type=from_browser", &[("authorization", &bearer)], "").await.expect("summary").json();
    assert_eq!(summary["count"], 1, "{summary}");
}

/// With `auth = "required"`, the dashboard asks for a read key instead of
/// showing empty panels.
#[tokio::test]
async fn the_dashboard_asks_for_a_read_key_when_the_api_needs_one() {
    chromium();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut variables = quiet_upstream();
    variables.extend([("auth", "required".to_string()), ("admin_token", ADMIN.to_string())]);
    let (host, _) = start_seeded_as_admin(&variables, dir.path()).await;
    let url = format!("http://{}/dashboard?type=cpu_usage", host.address);
    let run = browse(&url, ONE_REFRESH_MS, None);
    let dom = Dom(&run.dom);
    assert_eq!(dom.element("<body").attr("data-auth").as_deref(), Some("needed"));
    assert!(dom.element(r#"id="api-key""#).attr("type").as_deref() == Some("password"));
    let errors = dom.element(r#"id="page-errors""#).inner();
    let summary_error = dom.element(r#"data-error="summary""#).inner();
    assert!(summary_error.contains("read scope") || errors.contains("read scope"), "the page says what it needs: {summary_error} {errors}");
}

/// [`start_seeded`], posting the seed with the admin token (for `auth = "required"`).
async fn start_seeded_as_admin(variables: &[(&str, String)], dir: &std::path::Path) -> (HostProcess, BTreeMap<String, usize>) {
    let mut args: Vec<String> = vec!["--state-dir".into(), dir.join("state").to_string_lossy().into_owned()];
    // The page follows the summary's event stream, and Chromium's virtual
    // time stands still while a request is open: short streams keep each run
    // short (the page reconnects after each, as after any stream's end).
    if !variables.iter().any(|(name, _)| *name == "stream_lifetime_seconds") {
        args.extend(["--variable".to_string(), "stream_lifetime_seconds=1".to_string()]);
    }
    for (name, value) in variables {
        args.extend(["--variable".to_string(), format!("{name}={value}")]);
    }
    let host = HostProcess::start(&args, dir.join("host.log")).await;
    let metrics = seed();
    let mut c = Connection::open(host.address).await.expect("connect");
    let bearer = format!("Bearer {ADMIN}");
    let body = Value::Array(metrics.clone()).to_string();
    let r = c.send("POST", "/api/metrics/batch", &[("content-type", "application/json"), ("authorization", &bearer)], body).await.expect("seed");
    assert_eq!(r.status, 200, "seeding: {}", r.text());
    let mut per_type = BTreeMap::new();
    for m in &metrics {
        *per_type.entry(m["type"].as_str().unwrap().to_string()).or_insert(0) += 1;
    }
    (host, per_type)
}
