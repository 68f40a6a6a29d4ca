//! The one HTTP call the import makes, behind a trait so the send loop can be
//! tested against canned answers.

use std::time::Duration;

/// An HTTP answer, whatever its status.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Vec<u8>,
}

/// Posts one batch body; `Err` is "no HTTP answer" (refused, reset, timed out).
pub trait Transport: Send + Sync {
    fn post(&self, body: &[u8]) -> Result<Response, String>;
}

/// Largest reply read: a reply to 1 000 rejected items is well under this.
const MAX_REPLY_BYTES: u64 = 16 * 1024 * 1024;

/// `POST {base}/api/metrics/batch` with `ureq` (keep-alive connections shared
/// by the worker threads).
pub struct Http {
    agent: ureq::Agent,
    url: String,
    /// Sent as `Authorization: Bearer <key>` (an `ingest` key).
    api_key: Option<String>,
}

impl Http {
    /// `base` is the server's root URL, e.g. `http://127.0.0.1:3000`.
    pub fn new(base: &str, timeout: Duration) -> Result<Http, String> {
        let base = base.trim().trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!("--url must start with http:// or https://, not `{base}`"));
        }
        let url = format!("{base}/api/metrics/batch");
        ureq::http::Uri::try_from(url.as_str()).map_err(|e| format!("--url `{base}` is not a URL: {e}"))?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // A redirect would turn the POST into a GET: report it instead.
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(timeout))
            .user_agent(concat!("analytics-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Ok(Http { agent, url, api_key: None })
    }

    /// Sends `key` with every request.
    pub fn with_api_key(mut self, key: Option<String>) -> Http {
        self.api_key = key.filter(|k| !k.trim().is_empty());
        self
    }
}

impl Transport for Http {
    fn post(&self, body: &[u8]) -> Result<Response, String> {
        let mut request = self.agent.post(&self.url).header("Content-Type", "application/json");
        if let Some(key) = &self.api_key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        let mut response = request.send(body).map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = response.body_mut().with_config().limit(MAX_REPLY_BYTES).read_to_vec().map_err(|e| e.to_string())?;
        Ok(Response { status, retry_after, body })
    }
}
