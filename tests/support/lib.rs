//! Test harness: runs an application in-process through the project's host
//! (no TCP), with one place to set variables, reach Redis and key-value, and
//! send requests.

pub mod api;
pub mod host_process;
pub mod http_client;
pub mod postgres_server;
pub mod redis_server;
pub mod sse;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use spin_host::{App, AppOptions, RedisMode};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_path_buf()
}

/// A response with its body read.
#[derive(Debug)]
pub struct TestResponse {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A running app with its own state directory.
pub struct TestApp {
    pub app: App,
    pub state_dir: tempfile::TempDir,
}

impl TestApp {
    /// Loads `manifest` with `variables` set, on embedded Redis and a fresh SQLite store.
    pub async fn start(manifest: &Path, variables: &[(&str, &str)]) -> TestApp {
        let state_dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(manifest, variables, state_dir, RedisMode::Embedded).await
    }

    pub async fn start_in(
        manifest: &Path,
        variables: &[(&str, &str)],
        state_dir: tempfile::TempDir,
        redis: RedisMode,
    ) -> TestApp {
        let options = AppOptions {
            state_dir: Some(state_dir.path().to_path_buf()),
            variables: variables.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            redis,
            ..AppOptions::new(manifest)
        };
        let app = App::load(options).await.unwrap_or_else(|e| panic!("app failed to load: {e:#}"));
        TestApp { app, state_dir }
    }

    /// Sends a request from `client` and reads the whole response.
    pub async fn send_from(&self, request: http::Request<Bytes>, client: SocketAddr) -> TestResponse {
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, Full::new(body));
        let response = self.app.handle(request, client).await;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("response body").to_bytes();
        TestResponse { status: parts.status.as_u16(), headers: parts.headers, body }
    }

    pub async fn send(&self, request: http::Request<Bytes>) -> TestResponse {
        self.send_from(request, "127.0.0.1:40000".parse().expect("address")).await
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.send(http::Request::get(path).header("host", "localhost:3000").body(Bytes::new()).expect("request"))
            .await
    }
}
