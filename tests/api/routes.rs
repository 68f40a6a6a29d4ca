//! The index, unknown routes, and health.

use support::api::{Api, Backend};

async fn the_index_lists_the_endpoints(backend: Backend) {
    let api = Api::start(backend, &[]).await;
    let index = api.get("/").await;
    assert_eq!(index.status, 200);
    let body = index.json();
    assert_eq!(body["name"], "Resilient Analytics API");
    assert!(body["version"].is_string());
    let paths: Vec<&str> = body["endpoints"].as_array().unwrap().iter().filter_map(|e| e["path"].as_str()).collect();
    for path in ["/api/metrics", "/api/metrics/summary", "/api/metrics/list", "/health", "/api/circuit-breaker/status"] {
        assert!(paths.contains(&path), "{path} missing from {paths:?}");
    }
}

async fn unknown_routes_are_json_404s(backend: Backend) {
    let api = Api::start(backend, &[]).await;
    for path in ["/nope", "/api/metrics/nope", "/api/simulator/nope"] {
        let r = api.get(path).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.json()["error"], "not_found");
    }
    let r = api.request("DELETE", "/health", &[], "").await;
    assert_eq!((r.status, r.header("allow")), (405, Some("GET")));
}

on_both_redis!(the_index_lists_the_endpoints, unknown_routes_are_json_404s);
