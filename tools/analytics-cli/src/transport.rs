//! The HTTP calls the CLI makes, behind traits so the import's send loop and
//! the export's page walk can be tested against canned answers.

use std::time::Duration;

/// An HTTP answer, whatever its status.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub retry_after: Option<String>,
    /// `X-Next-Cursor` of a list page.
    pub next_cursor: Option<String>,
    pub body: Vec<u8>,
}

/// Posts one batch body; `Err` is "no HTTP answer" (refused, reset, timed out).
pub trait Transport: Send + Sync {
    fn post(&self, body: &[u8]) -> Result<Response, String>;
}

/// GETs a path (with its query) under the API's base URL; `Err` as for `post`.
pub trait Fetch: Send + Sync {
    fn get(&self, path_and_query: &str) -> Result<Response, String>;
}

/// Largest reply read: a reply to 1 000 rejected items, or a page of 1 000
/// metrics with their properties, is well under this.
const MAX_REPLY_BYTES: u64 = 16 * 1024 * 1024;

/// The API over `ureq` (keep-alive connections shared by the worker threads):
/// `POST {base}/api/metrics/batch` and GETs under `base`.
pub struct Http {
    agent: ureq::Agent,
    base: String,
    /// Sent as `Authorization: Bearer <key>` (`ingest` to import, `read` to export).
    api_key: Option<String>,
}

impl Http {
    /// `base` is the server's root URL, e.g. `http://127.0.0.1:3000`.
    pub fn new(base: &str, timeout: Duration) -> Result<Http, String> {
        let base = base.trim().trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!("--url must start with http:// or https://, not `{base}`"));
        }
        ureq::http::Uri::try_from(format!("{base}/api/metrics/batch")).map_err(|e| format!("--url `{base}` is not a URL: {e}"))?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // A redirect would turn the POST into a GET: report it instead.
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(timeout))
            .user_agent(concat!("analytics-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Ok(Http { agent, base: base.to_string(), api_key: None })
    }

    /// Sends `key` with every request.
    pub fn with_api_key(mut self, key: Option<String>) -> Http {
        self.api_key = key.filter(|k| !k.trim().is_empty());
        self
    }
}

impl Transport for Http {
    fn post(&self, body: &[u8]) -> Result<Response, String> {
        let mut request = self.agent.post(format!("{}/api/metrics/batch", self.base)).header("Content-Type", "application/json");
        if let Some(key) = &self.api_key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        read(request.send(body))
    }
}

impl Fetch for Http {
    fn get(&self, path_and_query: &str) -> Result<Response, String> {
        let mut request = self.agent.get(format!("{}{path_and_query}", self.base));
        if let Some(key) = &self.api_key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        read(request.call())
    }
}

fn read(sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Response, String> {
    let mut response = sent.map_err(|e| e.to_string())?;
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (retry_after, next_cursor) = (header("retry-after"), header("x-next-cursor"));
    let status = response.status().as_u16();
    let body = response.body_mut().with_config().limit(MAX_REPLY_BYTES).read_to_vec().map_err(|e| e.to_string())?;
    Ok(Response { status, retry_after, next_cursor, body })
}
