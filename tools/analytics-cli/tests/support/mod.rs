//! What the end-to-end tests share: a real `spin-host` on a free port, and
//! plain HTTP calls to it.

// Each test file uses a part of this.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `<target>/release/spin-host`, `<target>` being `$CARGO_TARGET_DIR` or `<repo>/target`.
fn host_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"));
    let path = target.join("release").join("spin-host");
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build --release -p spin-host` (same CARGO_TARGET_DIR), or run `cargo xtask test`",
        path.display()
    );
    path
}

/// A `spin-host up` process on a free port, killed when dropped.
pub struct Host {
    child: Child,
    pub url: String,
    log: PathBuf,
}

impl Host {
    /// A host with a rate limit of 20 requests per second, so that a test
    /// meets 429s without waiting a minute for each.
    pub fn start(state_dir: &Path, log: PathBuf) -> Host {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let file = std::fs::File::create(&log).expect("host log");
        let mut command = Command::new(host_binary());
        command
            .arg("up")
            .arg("-f")
            .arg(repo_root().join("spin.toml"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--quiet", "--redis", "embedded"])
            .arg("--state-dir")
            .arg(state_dir)
            .args(["--variable", "rate_limit_requests=20", "--variable", "rate_limit_window_seconds=1"])
            .args(["--variable", "external_service_latency_ms=0"])
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SPIN_") {
                command.env_remove(name);
            }
        }
        let mut host = Host { child: command.spawn().expect("spawning spin-host"), url: format!("http://127.0.0.1:{port}"), log };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(status)) = host.child.try_wait() {
                panic!("spin-host exited with {status} while starting:\n{}", host.log_text());
            }
            if get(&format!("{}/", host.url)).is_some_and(|(status, _)| status == 200) {
                return host;
            }
            assert!(Instant::now() < deadline, "spin-host did not answer in 120 s:\n{}", host.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /api/metrics/summary?type=<t>` (no period: all time), waiting out 429s.
    pub fn summary(&self, metric_type: &str) -> serde_json::Value {
        let url = format!("{}/api/metrics/summary?type={metric_type}", self.url);
        let body = self.call_until_served(&url, get);
        serde_json::from_str(&body).expect("summary JSON")
    }

    /// `count` of the all-time summary.
    pub fn count(&self, metric_type: &str) -> u64 {
        let summary = self.summary(metric_type);
        summary["count"].as_u64().unwrap_or_else(|| panic!("no count in {summary}"))
    }

    pub fn counts(&self, types: &[String]) -> BTreeMap<String, u64> {
        types.iter().map(|t| (t.clone(), self.count(t))).collect()
    }

    /// `POST /api/metrics/batch` of `metrics` (a JSON array), waiting out 429s;
    /// the answer's JSON.
    pub fn post_batch(&self, metrics: &serde_json::Value) -> serde_json::Value {
        let url = format!("{}/api/metrics/batch", self.url);
        let body = metrics.to_string();
        let answer = self.call_until_served(&url, |url| post(url, &body));
        serde_json::from_str(&answer).expect("batch answer JSON")
    }

    /// Calls `call` until it answers something other than 429; panics on anything but 200.
    fn call_until_served(&self, url: &str, call: impl Fn(&str) -> Option<(u16, String)>) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = call(url).unwrap_or_else(|| panic!("no answer from {url}"));
            if status == 429 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            assert_eq!(status, 200, "{url}: {body}");
            return body;
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(30))).build().new_agent()
}

pub fn get(url: &str) -> Option<(u16, String)> {
    let mut response = agent().get(url).call().ok()?;
    let status = response.status().as_u16();
    Some((status, response.body_mut().read_to_string().ok()?))
}

fn post(url: &str, json: &str) -> Option<(u16, String)> {
    let mut response = agent().post(url).header("content-type", "application/json").send(json).ok()?;
    let status = response.status().as_u16();
    Some((status, response.body_mut().read_to_string().ok()?))
}

/// RFC 3339 in UTC for Unix seconds (days to civil date: Howard Hinnant's algorithm).
pub fn rfc3339(seconds: u64) -> String {
    let (days, rest) = ((seconds / 86_400) as i64, seconds % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}
