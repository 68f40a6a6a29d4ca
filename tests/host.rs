//! The host itself: serving, routing and Spin's request headers.

use support::{root, TestApp};

fn hello() -> std::path::PathBuf {
    root().join("tests/fixtures/hello/spin.toml")
}

#[tokio::test]
async fn serves_a_component_in_process() {
    let app = TestApp::start(&hello(), &[]).await;
    let response = app.get("/anything?x=1").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "hello");
}

#[tokio::test]
async fn serves_over_tcp_until_shutdown() {
    let app = TestApp::start(&hello(), &[]).await;
    let listener = spin_host::server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let drain = std::time::Duration::from_secs(10);
    let server = tokio::spawn(spin_host::server::serve(app.app.clone(), listener, async {
        let _ = stopped.await;
    }, drain));
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\r\nhello\r\n"), "{reply}");
    stop.send(()).unwrap();
    assert_eq!(server.await.unwrap().unwrap(), spin_host::server::Drained::All);
    assert!(tokio::net::TcpStream::connect(address).await.is_err(), "listener closed after shutdown");
}

#[tokio::test]
async fn a_port_in_use_is_reported_plainly() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let error = spin_host::server::bind(taken.local_addr().unwrap()).await.unwrap_err().to_string();
    assert!(error.contains("--listen"), "{error}");
}

// ---------------------------------------------------------------------------
// The probe fixture: what a guest sees of routing, grants, stores and traps.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

fn probe() -> std::path::PathBuf {
    root().join("tests/fixtures/probe/spin.toml")
}

/// Percent-encodes a query parameter value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A 200 JSON answer from the probe.
async fn probe_json(app: &TestApp, path: &str) -> Value {
    let response = app.get(path).await;
    assert_eq!(response.status, 200, "{path}: {}", response.text());
    response.json()
}

/// The single value of `name` in an `echo` answer; a second value is a failure.
fn only(echo: &Value, name: &str) -> String {
    let values = echo["headers"][name]
        .as_array()
        .unwrap_or_else(|| panic!("no `{name}` header in {echo}"));
    assert_eq!(values.len(), 1, "`{name}` arrived {} times: {echo}", values.len());
    values[0].as_str().expect("header text").to_string()
}

fn spin_headers(echo: &Value) -> [String; 7] {
    [
        "spin-full-url",
        "spin-path-info",
        "spin-matched-route",
        "spin-raw-component-route",
        "spin-component-route",
        "spin-base-path",
        "spin-client-addr",
    ]
    .map(|name| only(echo, name))
}

#[tokio::test]
async fn exact_route_gets_spins_headers() {
    let app = TestApp::start(&probe(), &[]).await;
    for path in ["/exact", "/exact/", "//exact//"] {
        let echo = probe_json(&app, &format!("{path}?x=1")).await;
        assert_eq!(echo["method"], "GET");
        assert_eq!(echo["path"], path);
        assert_eq!(
            spin_headers(&echo),
            [
                format!("http://localhost:3000{path}?x=1"),
                String::new(),
                "/exact".into(),
                "/exact".into(),
                "/exact".into(),
                "/".into(),
                "127.0.0.1:40000".into(),
            ],
            "{path}"
        );
    }
}

#[tokio::test]
async fn wildcard_route_gets_spins_headers() {
    let app = TestApp::start(&probe(), &[]).await;
    let cases = [
        ("/probe/a/echo?q=1", "/a/echo"),
        ("/probe/a/echo/", "/a/echo/"),
        ("/probe", ""),
        ("/probe/", "/"),
    ];
    for (path, path_info) in cases {
        let echo = probe_json(&app, path).await;
        assert_eq!(
            spin_headers(&echo),
            [
                format!("http://localhost:3000{path}"),
                path_info.into(),
                "/probe/...".into(),
                "/probe/...".into(),
                "/probe".into(),
                "/".into(),
                "127.0.0.1:40000".into(),
            ],
            "{path}"
        );
    }
    let request = http::Request::post("/probe/echo").header("host", "example.test").body(Bytes::new()).unwrap();
    let echo = app.send_from(request, "[::1]:5555".parse().unwrap()).await.json();
    assert_eq!(echo["method"], "POST");
    assert_eq!(only(&echo, "spin-client-addr"), "[::1]:5555");
    assert_eq!(only(&echo, "spin-full-url"), "http://example.test/probe/echo");
}

#[tokio::test]
async fn clients_cannot_supply_spin_headers() {
    let app = TestApp::start(&probe(), &[]).await;
    let request = http::Request::get("/probe/x/echo")
        .header("host", "localhost:3000")
        .header("spin-client-addr", "6.6.6.6:66")
        .header("spin-path-info", "/forged")
        .header("x-kept", "yes")
        .body(Bytes::new())
        .unwrap();
    let echo = app.send(request).await.json();
    assert_eq!(only(&echo, "spin-client-addr"), "127.0.0.1:40000");
    assert_eq!(only(&echo, "spin-path-info"), "/x/echo");
    assert_eq!(only(&echo, "x-kept"), "yes");
}

#[tokio::test]
async fn an_inbound_chaining_host_header_is_dropped() {
    let app = TestApp::start(&probe(), &[]).await;
    let request =
        http::Request::get("/probe/echo").header("host", "backend.spin.internal:80").body(Bytes::new()).unwrap();
    let echo = app.send(request).await.json();
    assert_eq!(echo["headers"]["host"], Value::Null, "{echo}");
    assert_eq!(only(&echo, "spin-full-url"), "http://localhost/probe/echo");
    assert_eq!(only(&echo, "spin-client-addr"), "127.0.0.1:40000");
}

#[tokio::test]
async fn unmatched_and_private_paths_are_an_empty_404() {
    let app = TestApp::start(&probe(), &[]).await;
    for path in ["/", "/nope", "/exact/more", "/exactly", "/probex", "/backend", "/backend/echo"] {
        let response = app.get(path).await;
        assert_eq!((response.status, response.text().as_str()), (404, ""), "{path}");
    }
}

/// A one-response-per-connection HTTP server counting its connections.
async fn counting_server() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\nfetched";
                let _ = stream.write_all(reply).await;
            });
        }
    });
    (port, count)
}

#[tokio::test]
async fn outbound_hosts_not_listed_are_denied_before_any_connection() {
    let app = TestApp::start(&probe(), &[]).await;
    let (port, connections) = counting_server().await;
    let fetch = |url: String| format!("/probe/fetch?url={}", encode(&url));

    // The same listener, named by a host the component does not list.
    let denied = probe_json(&app, &fetch(format!("http://127.0.0.1:{port}/x"))).await;
    assert_eq!(denied["error"], "HttpRequestDenied", "{denied}");
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 0);
    // `http://self` allows self requests, not a host named `self`.
    for url in ["https://example.com/", "http://self/probe/echo", "https://localhost:1/"] {
        let denied = probe_json(&app, &fetch(url.to_string())).await;
        assert_eq!(denied["error"], "HttpRequestDenied", "{url}: {denied}");
    }

    let allowed = probe_json(&app, &fetch(format!("http://localhost:{port}/x"))).await;
    assert_eq!((allowed["status"].as_u64(), allowed["body"].as_str()), (Some(200), Some("fetched")), "{allowed}");
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn chaining_reaches_a_private_component_in_process() {
    let app = TestApp::start(&probe(), &[]).await;
    let url = "http://backend.spin.internal/deep/path/echo?q=1";
    let answer = probe_json(&app, &format!("/probe/fetch?url={}", encode(url))).await;
    assert_eq!(answer["status"], 200, "{answer}");
    let echo: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(echo["path"], "/deep/path/echo");
    assert_eq!(
        spin_headers(&echo),
        [
            "http://localhost/deep/path/echo?q=1".to_string(),
            "/deep/path/echo".into(),
            "/...".into(),
            "/...".into(),
            String::new(),
            "/".into(),
            "0.0.0.0:0".into(),
        ]
    );

    // An https entry allows https chaining, on https's default port.
    let url = "https://backend.spin.internal/tls/echo";
    let answer = probe_json(&app, &format!("/probe/fetch?url={}", encode(url))).await;
    assert_eq!(answer["status"], 200, "{answer}");

    // The chained instance runs with the backend's grants, not the caller's.
    let url = "http://backend.spin.internal/var?name=message";
    let answer = probe_json(&app, &format!("/probe/fetch?url={}", encode(url))).await;
    let read: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(read["error"], "Undefined", "{read}");
    assert!(read["detail"].as_str().unwrap().contains("backend"), "{read}");
}

#[tokio::test]
async fn chaining_needs_an_allowed_outbound_host() {
    let app = TestApp::start(&probe(), &[]).await;
    for url in ["http://outsider.spin.internal/echo", "http://backend.spin.internal:8080/echo"] {
        let answer = probe_json(&app, &format!("/probe/fetch?url={}", encode(url))).await;
        assert_eq!(answer["error"], "HttpRequestDenied", "{url}: {answer}");
    }
    // The outsider lists no hosts at all, so it cannot chain back either.
    let url = "http://backend.spin.internal/echo";
    let answer = probe_json(&app, &format!("/outsider/fetch?url={}", encode(url))).await;
    assert_eq!(answer["error"], "HttpRequestDenied", "{answer}");
}

#[tokio::test]
async fn self_requests_need_a_self_entry() {
    let app = TestApp::start(&probe(), &[]).await;
    for (url, route) in [("/probe/inner/echo", "/probe/..."), ("http://self.alt/exact", "/exact")] {
        let answer = probe_json(&app, &format!("/probe/fetch?url={}", encode(url))).await;
        assert_eq!(answer["status"], 200, "{url}: {answer}");
        let echo: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
        assert_eq!(only(&echo, "spin-matched-route"), route, "{url}");
    }
    let answer = probe_json(&app, &format!("/outsider/fetch?url={}", encode("/probe/echo"))).await;
    assert_eq!(answer["error"], "HttpRequestDenied", "{answer}");
}

/// Sends `count` requests to `path` at once and returns the `value` of each answer.
async fn concurrently(app: &Arc<TestApp>, path: &'static str, count: usize) -> Vec<i64> {
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { probe_json(&app, path).await })
        })
        .collect();
    let mut values = Vec::new();
    for task in tasks {
        let answer = task.await.unwrap();
        values.push(answer["value"].as_i64().unwrap_or_else(|| panic!("{path}: {answer}")));
    }
    values.sort();
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn key_value_atomics_hold_under_concurrent_guests() {
    let app = Arc::new(TestApp::start(&probe(), &[]).await);
    let (increments, swaps) = tokio::join!(
        concurrently(&app, "/probe/incr?key=hits", 200),
        concurrently(&app, "/probe/cas?key=swaps", 200),
    );
    // Every guest saw a distinct count: no update was lost or repeated.
    let expected: Vec<i64> = (1..=200).collect();
    assert_eq!(increments, expected);
    assert_eq!(swaps, expected);
    for key in ["hits", "swaps"] {
        let stored = probe_json(&app, &format!("/probe/get?key={key}")).await;
        assert_eq!(stored["i64"], 200, "{key}: {stored}");
        assert_eq!(stored["bytes"], serde_json::json!(200i64.to_le_bytes()), "{key}: {stored}");
    }
    let missing = probe_json(&app, "/probe/get?key=never-set").await;
    assert_eq!(missing["value"], Value::Null);
    // A store the component does not list is refused, even though it exists.
    let denied = probe_json(&app, "/outsider/incr?key=hits").await;
    assert_eq!(denied["error"], "AccessDenied", "{denied}");
}

#[tokio::test]
async fn a_response_leaves_only_once_its_writes_are_committed() {
    let app = TestApp::start(&probe(), &[]).await;
    let store = app.app.key_value("default").expect("the default store");
    for path in ["/probe/incr?key=hits", "/probe/cas?key=swaps", "/probe/get?key=hits"] {
        probe_json(&app, path).await;
        assert!(!store.uncommitted(), "{path}: answered with writes still uncommitted");
    }
}

async fn var(app: &TestApp, name: &str) -> Value {
    probe_json(app, &format!("/probe/var?name={name}")).await
}

#[tokio::test]
async fn variables_expand_templates_and_report_each_failure() {
    let app = TestApp::start(&probe(), &[]).await;
    assert_eq!(var(&app, "message").await["value"], "hello, world!");
    assert_eq!(var(&app, "subject").await["value"], "world");
    let undefined = var(&app, "greeting").await;
    assert_eq!(undefined["error"], "Undefined", "app variables are not visible directly: {undefined}");
    assert_eq!(var(&app, "nope").await["error"], "Undefined");
    assert_eq!(var(&app, "Bad").await["error"], "InvalidName");
    assert_eq!(var(&app, "a__b").await["error"], "InvalidName");
    // The app loaded without `token`: a required variable fails only when read.
    let missing = var(&app, "token").await;
    assert_eq!(missing["error"], "Provider", "{missing}");
    assert!(missing["detail"].as_str().unwrap().contains("token"), "{missing}");

    let app = TestApp::start(&probe(), &[("subject", "tests"), ("token", "s3cret")]).await;
    assert_eq!(var(&app, "message").await["value"], "hello, tests!");
    assert_eq!(var(&app, "token").await["value"], "s3cret");
}

#[tokio::test]
async fn a_trap_fails_only_its_own_request() {
    let app = TestApp::start(&probe(), &[]).await;
    let trapped = app.get("/probe/trap").await;
    assert_eq!((trapped.status, trapped.text().as_str()), (500, ""));
    let next = app.get("/probe/echo").await;
    assert_eq!(next.status, 200);
    // A trap in a chained component reaches the caller as a 500 response.
    let url = "http://backend.spin.internal/trap";
    let answer = probe_json(&app, &format!("/probe/fetch?url={}", encode(url))).await;
    assert_eq!(answer["status"], 500, "{answer}");
}

/// Loads `manifest` (written into a fresh directory) and returns the error text.
async fn load_error(manifest: &str) -> (String, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spin.toml");
    std::fs::write(&path, manifest).unwrap();
    let mut options = spin_host::AppOptions::new(&path);
    options.state_dir = Some(dir.path().join(".spin"));
    match spin_host::App::load(options).await {
        Ok(_) => panic!("loaded:\n{manifest}"),
        Err(error) => (format!("{error:#}"), path),
    }
}

const SMALL: &str = r#"
spin_manifest_version = 2
[application]
name = "small"
[[trigger.http]]
route = "/..."
component = "web"
[component.web]
source = "SOURCE"
allowed_outbound_hosts = ["HOSTS"]
"#;

#[tokio::test]
async fn a_missing_wasm_file_is_named_with_a_hint_to_build() {
    let manifest = SMALL.replace("SOURCE", "target/never-built.wasm").replace("HOSTS", "http://self");
    let (error, path) = load_error(&manifest).await;
    let wasm = path.parent().unwrap().join("target/never-built.wasm");
    assert!(error.contains(&wasm.display().to_string()), "{error}");
    assert!(error.contains("`web`") && error.contains("build"), "{error}");
}

#[tokio::test]
async fn manifest_errors_name_the_file_and_the_key() {
    let wasm = root().join("target/wasm32-wasip2/release/probe.wasm");
    let good = SMALL.replace("SOURCE", &wasm.display().to_string());
    let cases = [
        (good.replace("component = \"web\"", "component = \"nope\""), "trigger.http[0].component"),
        (good.replace("HOSTS", "example.com"), "component.web.allowed_outbound_hosts"),
        (good.replace("route = \"/...\"", "route = \"/users/:id\""), "trigger.http"),
        (good.replace("HOSTS\"]", "HOSTS\"]\nsauce = 1"), "sauce"),
    ];
    for (manifest, key) in cases {
        let (error, path) = load_error(&manifest).await;
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains(key), "expected `{key}` in: {error}");
    }
}

#[tokio::test]
async fn imports_the_host_cannot_provide_are_all_named() {
    let options = spin_host::AppOptions::new(root().join("tests/fixtures/unsupported/spin.toml"));
    let error = match spin_host::App::load(options).await {
        Ok(_) => panic!("a component importing SQLite and LLM must be refused"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("component `unsupported`"), "{error}");
    assert!(error.contains("fermyon:spin/sqlite@2.0.0"), "{error}");
    assert!(error.contains("fermyon:spin/llm@2.0.0"), "{error}");
}

/// Spin 4.0.2 never answers a query that returns no row; the host fails
/// it at once, so a guest that would hang under Spin fails here instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_query_that_returns_no_row_fails_as_it_would_hang_under_spin() {
    use spin_host::postgres::{Param, PgError, PostgresService, NO_ROWS};
    let server = support::postgres_server::PostgresServer::start();
    let service = PostgresService::new(None, None);
    let connection = service.open(&server.url("postgres")).await.expect("a connection");
    let none = service.query(&connection, "SELECT 1 WHERE $1::text = 'never'", &[Param::Str("x".into())]).await;
    assert!(matches!(&none, Err(PgError::Query { text, .. }) if text == NO_ROWS), "{none:?}");
    let one = service.query(&connection, "SELECT 1 WHERE $1::text = 'x'", &[Param::Str("x".into())]).await.expect("a row");
    assert_eq!(one.rows.len(), 1);
}

/// `spin:postgres/postgres@4.0.0` as the host gives it: statements on pooled
/// connections (200 concurrent upserts of one row each see a distinct
/// count: the pool hands each guest its own connection), a read by primary
/// key, server errors with their SQLSTATE, and addresses checked against
/// `allowed_outbound_hosts` host by host before any connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_statements_run_on_pooled_connections_to_allowed_hosts_only() {
    let server = support::postgres_server::PostgresServer::start();
    let app = Arc::new(TestApp::start(&probe(), &[]).await);
    let url = encode(&server.url("postgres"));
    let upsert: &'static str = Box::leak(format!("/probe/pg-upsert?url={url}&key=hits").into_boxed_str());
    let counts = concurrently(&app, upsert, 200).await;
    assert_eq!(counts, (1..=200).collect::<Vec<i64>>(), "no upsert lost or repeated");
    let read = probe_json(&app, &format!("/probe/pg-get?url={url}&key=hits")).await;
    assert_eq!(read["value"], 200, "{read}");
    let missing = probe_json(&app, &format!("/probe/pg-get?url={url}&key=never")).await;
    assert_eq!(missing["value"], Value::Null, "{missing}");
    let connections = server.client("postgres").await;
    let open: i64 = connections
        .query_one("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'", &[])
        .await
        .expect("connections")
        .get(0);
    assert!(open <= spin_host::postgres::POOL_SIZE as i64 + 1, "{open} connections: the pool holds at most 64");
    // `localhost` is not `127.0.0.1`: refused before any connection, as Spin does.
    let other = encode(&format!("postgres://postgres@localhost:{}/postgres", server.port()));
    let denied = probe_json(&app, &format!("/probe/pg-get?url={other}&key=hits")).await;
    assert_eq!(denied["error"], "ConnectionFailed", "{denied}");
    assert!(denied["detail"].as_str().unwrap_or_default().contains("is not permitted"), "{denied}");
    // A server error carries its SQLSTATE (a database that does not exist).
    let wrong = encode(&server.url("no_such_database"));
    let failed = probe_json(&app, &format!("/probe/pg-get?url={wrong}&key=hits")).await;
    assert_eq!(failed["error"], "ConnectionFailed", "{failed}");
}
