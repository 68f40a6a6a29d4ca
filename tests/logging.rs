//! `--log-format json`: one JSON object per request, and the guests' stderr
//! lines tagged with the same request id and component.

use serde_json::Value;
use support::host_process::HostProcess;
use support::http_client::Connection;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_guest_stderr_share_a_request_id() {
    let dir = tempfile::tempdir().expect("temp dir");
    let args: Vec<String> = [
        "--log-format", "json", "--redis", "embedded", "--state-dir", &dir.path().to_string_lossy(),
        "--variable", "external_context_ttl_seconds=0", "--variable", "external_service_latency_ms=0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut host = HostProcess::start_logging(&args, dir.path().join("host.log")).await;
    let mut c = Connection::open(host.address).await.expect("connect");
    let put = c
        .send("PUT", "/api/simulator/config", &[("content-type", "application/json")], r#"{"failure_rate": 1.0, "latency_ms": 0}"#)
        .await
        .expect("simulator");
    assert_eq!(put.status, 200);
    assert_eq!(c.get("/api/metrics/summary?type=logs").await.expect("summary").status, 200);
    host.kill();
    let lines: Vec<Value> = host
        .log_text()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let request = lines
        .iter()
        .find(|l| l["path"] == "/api/metrics/summary" && l["status"] == 200)
        .unwrap_or_else(|| panic!("no request line: {lines:?}"));
    for field in ["time", "request_id", "method", "component", "duration_ms", "client"] {
        assert!(!request[field].is_null(), "{field} missing: {request}");
    }
    assert_eq!(request["component"], "summary");
    let id = request["request_id"].as_str().expect("an id");
    let guest = lines
        .iter()
        .find(|l| l["stream"] == "stderr" && l["request_id"] == id)
        .unwrap_or_else(|| panic!("no stderr line of {id}: {lines:?}"));
    assert_eq!(guest["component"], "summary");
    assert!(guest["message"].as_str().unwrap_or_default().contains("external service call failed"), "{guest}");
}

/// No log line, the host's or a guest's, in either format, holds an API key
/// or the admin token, whatever the request (created, used, refused, revoked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_never_reach_the_log() {
    const ADMIN: &str = "admin-token-that-must-not-be-logged";
    for format in ["json", "text"] {
        let dir = tempfile::tempdir().expect("temp dir");
        let args: Vec<String> = [
            "--log-format", format, "--redis", "embedded", "--state-dir", &dir.path().to_string_lossy(),
            "--variable", "auth=required", "--variable", &format!("admin_token={ADMIN}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut host = HostProcess::start_logging(&args, dir.path().join("host.log")).await;
        let mut c = Connection::open(host.address).await.expect("connect");
        let bearer = format!("Bearer {ADMIN}");
        let created = c
            .send("POST", "/api/keys", &[("content-type", "application/json"), ("authorization", &bearer)], r#"{"name": "logged?", "scopes": ["ingest"]}"#)
            .await
            .expect("create");
        assert_eq!(created.status, 201, "{}", created.text());
        let key = created.json()["key"].as_str().unwrap_or_default().to_string();
        let id = created.json()["id"].as_str().unwrap_or_default().to_string();
        let metric = r#"{"type": "t", "value": 1, "timestamp": "2026-02-18T12:00:00Z"}"#;
        c.send("POST", "/api/metrics", &[("content-type", "application/json"), ("x-api-key", &key)], metric).await.expect("post");
        c.send("GET", "/api/metrics/summary?type=t", &[("x-api-key", &key)], "").await.expect("refused: ingest only");
        c.send("GET", "/api/metrics/list", &[("authorization", "Bearer rak_unknown_key_value")], "").await.expect("unknown");
        c.send("DELETE", &format!("/api/keys/{id}"), &[("authorization", &bearer)], "").await.expect("revoke");
        c.send("POST", "/api/metrics", &[("content-type", "application/json"), ("x-api-key", &key)], metric).await.expect("revoked");
        host.kill();
        let log = host.log_text();
        assert!(log.contains("/api/metrics"), "the requests were logged:\n{log}");
        for secret in [key.as_str(), ADMIN, "rak_unknown_key_value"] {
            assert!(!log.contains(secret), "{format} log holds a secret:\n{log}");
        }
    }
}
