//! Who may write and who may read: projects, keys and their scopes, both
//! modes, revoked, rotated and unknown keys, another project's key, per-key
//! rate limits, CORS answers, and secrets stored only as hashes
//! (`tests/logging.rs` scans a host's log for them).

use serde_json::{json, Value};
use support::api::{metric, Api, Backend};

const ADMIN: &str = "root-token-for-tests";

/// Every data endpoint, the scope it needs, and a request to it.
const ENDPOINTS: &[(&str, &str, &str, &str)] = &[
    ("ingest", "POST", "/api/metrics", "metric"),
    ("ingest", "POST", "/api/metrics/batch", "batch"),
    ("read", "GET", "/api/metrics/summary?type=cpu", ""),
    ("read", "GET", "/api/metrics/list", ""),
    ("read", "GET", "/api/metrics/series?type=cpu&from=2026-01-01T00:00:00Z&step=1d", ""),
    ("read", "GET", "/api/stats/active-users", ""),
    ("read", "GET", "/api/stats/top-types", ""),
    ("read", "GET", "/api/stats/retention", ""),
    ("admin", "GET", "/api/keys", ""),
];

fn body(kind: &str) -> String {
    match kind {
        "metric" => metric("cpu", 1.0, 1).to_string(),
        "batch" => json!([metric("cpu", 2.0, 1)]).to_string(),
        _ => String::new(),
    }
}

async fn send(api: &Api, method: &str, path: &str, kind: &str, key: Option<&str>) -> support::TestResponse {
    let bearer = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(b) = &bearer {
        headers.push(("authorization", b.as_str()));
    }
    api.request(method, path, &headers, body(kind)).await
}

/// Creates a key with `scopes` (in `project` when given) using the admin token.
async fn key(api: &Api, scopes: &[&str], project: Option<&str>, extra: Value) -> (String, String) {
    let mut request = json!({"name": format!("{scopes:?}"), "scopes": scopes});
    if let Some(p) = project {
        request["project"] = json!(p);
    }
    if let (Some(target), Some(extra)) = (request.as_object_mut(), extra.as_object()) {
        target.extend(extra.clone());
    }
    let bearer = format!("Bearer {ADMIN}");
    let r = api.request("POST", "/api/keys", &[("content-type", "application/json"), ("authorization", &bearer)], request.to_string()).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let created = r.json();
    (created["key"].as_str().unwrap_or_default().to_string(), created["id"].as_str().unwrap_or_default().to_string())
}

fn ok(status: u16) -> bool {
    (200..300).contains(&status)
}

async fn every_endpoint_by_scope_and_mode(backend: Backend) {
    for mode in ["open", "required"] {
        let api = Api::start(backend, &[("auth", mode), ("admin_token", ADMIN)]).await;
        let (ingest, _) = key(&api, &["ingest"], None, json!({})).await;
        let (read, _) = key(&api, &["read"], None, json!({})).await;
        let (admin, _) = key(&api, &["admin"], None, json!({})).await;
        for &(scope, method, path, kind) in ENDPOINTS {
            let none = send(&api, method, path, kind, None).await;
            let expected_anonymous = mode == "open" && scope != "admin";
            assert_eq!(ok(none.status), expected_anonymous, "{mode} {method} {path} without a key: {} {}", none.status, none.text());
            if !expected_anonymous {
                assert_eq!((none.status, none.json()["error"].as_str()), (401, Some("unauthorized")), "{mode} {path}");
            }
            for (key_scope, secret) in [("ingest", &ingest), ("read", &read), ("admin", &admin)] {
                let r = send(&api, method, path, kind, Some(secret)).await;
                if key_scope == scope {
                    assert!(ok(r.status), "{mode} {method} {path} with a {key_scope} key: {} {}", r.status, r.text());
                } else {
                    assert_eq!((r.status, r.json()["error"].as_str()), (403, Some("forbidden")), "{mode} {path} with a {key_scope} key");
                }
            }
            let r = send(&api, method, path, kind, Some(ADMIN)).await;
            assert!(ok(r.status), "{mode} {path} with the admin token: {}", r.text());
            let r = send(&api, method, path, kind, Some("rak_0000")).await;
            assert_eq!(r.status, 401, "{mode} {path} with an unknown key");
        }
        let health = api.get("/health").await.json();
        assert_eq!(health["auth"], mode, "/health says which mode: {health}");
    }
}

async fn revoked_keys_stop_at_once_and_rotation_overlaps(backend: Backend) {
    let api = Api::start(backend, &[("auth", "required"), ("admin_token", ADMIN)]).await;
    let (old, old_id) = key(&api, &["ingest", "read"], None, json!({})).await;
    let (new, _) = key(&api, &["ingest", "read"], None, json!({})).await;
    // Both work while they overlap.
    for k in [&old, &new] {
        assert_eq!(send(&api, "POST", "/api/metrics", "metric", Some(k)).await.status, 201);
    }
    let bearer = format!("Bearer {ADMIN}");
    let listed = api.request("GET", "/api/keys", &[("authorization", &bearer)], "").await;
    let keys = listed.json()["keys"].as_array().cloned().unwrap_or_default();
    assert_eq!(keys.len(), 2);
    assert!(!listed.text().contains(&old) && !listed.text().contains("hash"), "no secret, no hash: {}", listed.text());
    let revoked = api.request("DELETE", &format!("/api/keys/{old_id}"), &[("authorization", &bearer)], "").await;
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    assert!(revoked.json()["revoked_at"].is_string());
    let refused = send(&api, "POST", "/api/metrics", "metric", Some(&old)).await;
    assert_eq!(refused.status, 401);
    assert!(refused.text().contains("revoked"), "{}", refused.text());
    assert_eq!(send(&api, "GET", "/api/metrics/summary?type=cpu", "", Some(&new)).await.json()["count"], 2);
    // Revoking again is harmless; an unknown id is a 404.
    assert_eq!(api.request("DELETE", &format!("/api/keys/{old_id}"), &[("authorization", &bearer)], "").await.status, 200);
    assert_eq!(api.request("DELETE", "/api/keys/key_nope", &[("authorization", &bearer)], "").await.status, 404);
    // X-API-Key works as well as Authorization.
    let r = api.request("GET", "/api/metrics/summary?type=cpu", &[("x-api-key", new.as_str())], "").await;
    assert_eq!(r.status, 200);
}

async fn projects_never_see_each_other(backend: Backend) {
    let api = Api::start(backend, &[("auth", "required"), ("admin_token", ADMIN)]).await;
    let (acme, _) = key(&api, &["ingest", "read"], Some("acme"), json!({})).await;
    let (bolt, _) = key(&api, &["ingest", "read", "admin"], Some("bolt"), json!({})).await;
    assert!(acme.starts_with("rak_acme_") && bolt.starts_with("rak_bolt_"), "a key names its project: {acme}");
    let event = json!({"type": "signup", "value": 5.0, "timestamp": support::api::timestamp_seconds_ago(3), "user_id": "u-acme", "id": "same-id"});
    assert_eq!(api.request("POST", "/api/metrics", &[("content-type", "application/json"), ("x-api-key", &acme)], event.to_string()).await.status, 201);
    // The same id in another project is another metric.
    let other = json!({"type": "signup", "value": 7.0, "timestamp": support::api::timestamp_seconds_ago(3), "id": "same-id"});
    assert_eq!(api.request("POST", "/api/metrics", &[("content-type", "application/json"), ("x-api-key", &bolt)], other.to_string()).await.status, 201);
    for (secret, sum) in [(&acme, 5.0), (&bolt, 7.0)] {
        let s = api.request("GET", "/api/metrics/summary?type=signup", &[("x-api-key", secret.as_str())], "").await.json();
        assert_eq!((s["count"].as_u64(), s["sum"].as_f64()), (Some(1), Some(sum)), "{s}");
        let listed = api.request("GET", "/api/metrics/list", &[("x-api-key", secret.as_str())], "").await.json();
        assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
        let top = api.request("GET", "/api/stats/top-types", &[("x-api-key", secret.as_str())], "").await.json();
        assert_eq!(top["types"].as_array().map(Vec::len), Some(1));
    }
    let users = api.request("GET", "/api/stats/active-users", &[("x-api-key", bolt.as_str())], "").await.json();
    assert!(users["data"].as_array().unwrap().iter().all(|d| d["active_users"] == 0), "acme's user is not bolt's: {users}");
    // The default project (the admin token's) sees neither.
    let bearer = format!("Bearer {ADMIN}");
    assert_eq!(api.request("GET", "/api/metrics/summary?type=signup", &[("authorization", &bearer)], "").await.json()["count"], 0);
    // bolt's admin key lists and revokes only bolt's keys.
    let listed = api.request("GET", "/api/keys", &[("x-api-key", bolt.as_str())], "").await.json();
    assert_eq!(listed["project"], "bolt");
    assert_eq!(api.request("GET", "/api/keys?project=acme", &[("x-api-key", bolt.as_str())], "").await.status, 403);
}

async fn a_key_counts_against_its_own_limit(backend: Backend) {
    let api = Api::start(backend, &[("auth", "required"), ("admin_token", ADMIN), ("rate_limit_requests", "1000")]).await;
    let (tight, _) = key(&api, &["ingest"], None, json!({"rate_limit_requests": 3})).await;
    let (roomy, _) = key(&api, &["ingest"], None, json!({})).await;
    let statuses = |secret: String| {
        let api = &api;
        async move {
            let mut out = Vec::new();
            for _ in 0..5 {
                out.push(send(api, "POST", "/api/metrics", "metric", Some(&secret)).await.status);
            }
            out
        }
    };
    assert_eq!(statuses(tight).await, [201, 201, 201, 429, 429], "three for the tight key");
    assert_eq!(statuses(roomy).await, [201; 5], "the roomy key has the app's limit, counted apart");
}

async fn cors_lets_allowed_origins_in_and_refuses_others(backend: Backend) {
    let api = Api::start(backend, &[("auth", "required"), ("admin_token", ADMIN)]).await;
    let (web, _) = key(&api, &["ingest"], None, json!({"allowed_origins": ["http://shop.example"]})).await;
    let preflight = api
        .request("OPTIONS", "/api/metrics", &[("origin", "http://shop.example"), ("access-control-request-method", "POST")], "")
        .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("http://shop.example"));
    assert!(preflight.header("access-control-allow-headers").unwrap_or("").contains("authorization"));
    let headers = |origin: &'static str| vec![("content-type", "application/json"), ("origin", origin), ("x-api-key", web.as_str())];
    let allowed = api.request("POST", "/api/metrics", &headers("http://shop.example"), body("metric")).await;
    assert_eq!((allowed.status, allowed.header("access-control-allow-origin")), (201, Some("http://shop.example")));
    let refused = api.request("POST", "/api/metrics", &headers("http://evil.example"), body("metric")).await;
    assert_eq!((refused.status, refused.json()["error"].as_str()), (403, Some("origin_not_allowed")));
    assert_eq!(refused.header("access-control-allow-origin"), None);
}

async fn each_admin_route_names_its_own_methods(backend: Backend) {
    let api = Api::start(backend, &[("auth", "required"), ("admin_token", ADMIN)]).await;
    let bearer = format!("Bearer {ADMIN}");
    for (path, allow, other) in [
        ("/api/keys", "GET, POST", "DELETE"),
        ("/api/keys/key_0123456789abcdef", "DELETE", "GET"),
        ("/api/users/u-1", "DELETE", "GET"),
        ("/api/users/u-1/export", "GET", "DELETE"),
        ("/api/users/export", "DELETE", "GET"),
    ] {
        let preflight = api.request("OPTIONS", path, &[], "").await;
        let with_options = format!("{allow}, OPTIONS");
        assert_eq!((preflight.status, preflight.header("allow")), (204, Some(with_options.as_str())), "OPTIONS {path}");
        let refused = api.request(other, path, &[("authorization", bearer.as_str())], "").await;
        assert_eq!((refused.status, refused.header("allow")), (405, Some(allow)), "{other} {path}: {}", refused.text());
    }
}

async fn secrets_are_stored_only_as_hashes(backend: Backend) {
    let api = Api::start(backend, &[("auth", "required"), ("admin_token", ADMIN)]).await;
    let (secret, _) = key(&api, &["ingest", "read"], None, json!({})).await;
    for path in ["/api/metrics/summary?type=cpu", "/api/metrics/list"] {
        send(&api, "GET", path, "", Some(&secret)).await;
    }
    send(&api, "POST", "/api/metrics", "metric", Some(&secret)).await;
    let stored = api.store_keys().await;
    assert!(stored.iter().all(|k| !k.contains(&secret)), "no key name holds a secret");
    assert!(stored.iter().any(|k| k.starts_with("apikey:")), "records are stored by hash");
}

on_both_redis!(
    every_endpoint_by_scope_and_mode,
    revoked_keys_stop_at_once_and_rotation_overlaps,
    projects_never_see_each_other,
    a_key_counts_against_its_own_limit,
    cors_lets_allowed_origins_in_and_refuses_others,
    each_admin_route_names_its_own_methods,
    secrets_are_stored_only_as_hashes,
);
