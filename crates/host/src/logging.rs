//! The host's request log and the guests' stderr, as text or as one JSON
//! object per line (`--log-format json`), every line of a request tagged
//! with the same request id and component.

use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// How the host writes its logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    #[default]
    Auto,
    Text,
    Json,
}

impl LogFormat {
    /// `Auto` decided against stdout.
    pub fn resolve(self) -> LogFormat {
        match self {
            LogFormat::Auto if std::io::IsTerminal::is_terminal(&std::io::stdout()) => LogFormat::Text,
            LogFormat::Auto => LogFormat::Json,
            other => other,
        }
    }
}

/// A new request id: unique within the process, distinct across processes.
pub fn request_id() -> String {
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let prefix = PREFIX.get_or_init(|| {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        nanos ^ std::process::id().rotate_left(16)
    });
    format!("{prefix:08x}{:08x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// One served request.
#[derive(Serialize)]
pub struct RequestLine<'a> {
    pub request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    pub component: &'a str,
    pub status: u16,
    pub duration_ms: f64,
    pub client: SocketAddr,
}

impl RequestLine<'_> {
    pub fn write(&self, format: LogFormat) {
        let line = match format {
            LogFormat::Json => {
                #[derive(Serialize)]
                struct Line<'a> {
                    time: String,
                    #[serde(flatten)]
                    request: &'a RequestLine<'a>,
                }
                serde_json::to_string(&Line { time: now(), request: self }).unwrap_or_default()
            }
            _ => format!(
                "{} {} {} {} {} {:.2}ms",
                now(),
                self.method,
                self.path,
                self.component,
                self.status,
                self.duration_ms
            ),
        };
        println!("{line}");
    }
}

/// Milliseconds, for log lines.
pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1_000.0
}

/// A guest's stderr whose lines are written as JSON objects tagged with the
/// request and the component.
#[derive(Clone)]
pub struct TaggedStderr {
    request_id: Arc<str>,
    component: Arc<str>,
    partial: Arc<Mutex<Vec<u8>>>,
}

impl TaggedStderr {
    pub fn new(request_id: &str, component: &str) -> TaggedStderr {
        TaggedStderr { request_id: request_id.into(), component: component.into(), partial: Arc::default() }
    }

    fn emit(&self, message: &[u8]) {
        #[derive(Serialize)]
        struct Line<'a> {
            time: String,
            request_id: &'a str,
            component: &'a str,
            stream: &'static str,
            message: std::borrow::Cow<'a, str>,
        }
        let line = Line {
            time: now(),
            request_id: &self.request_id,
            component: &self.component,
            stream: "stderr",
            message: String::from_utf8_lossy(message),
        };
        let _ = writeln!(std::io::stderr(), "{}", serde_json::to_string(&line).unwrap_or_default());
    }

    /// Writes out every complete line of `bytes` and keeps the rest.
    fn accept(&self, bytes: &[u8]) {
        let mut partial = self.partial.lock().unwrap_or_else(PoisonError::into_inner);
        partial.extend_from_slice(bytes);
        while let Some(end) = partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = partial.drain(..=end).collect();
            self.emit(&line[..line.len() - 1]);
        }
    }
}

impl Drop for TaggedStderr {
    /// The last line, if the guest ended without a newline.
    fn drop(&mut self) {
        if Arc::strong_count(&self.partial) == 1 {
            let partial = std::mem::take(&mut *self.partial.lock().unwrap_or_else(PoisonError::into_inner));
            if !partial.is_empty() {
                self.emit(&partial);
            }
        }
    }
}

impl IsTerminal for TaggedStderr {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for TaggedStderr {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for TaggedStderr {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.accept(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for TaggedStderr {
    async fn ready(&mut self) {}
}

impl AsyncWrite for TaggedStderr {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.accept(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), if
/// it is one (all-zero ids are invalid).
pub fn trace_id(traceparent: &str) -> Option<String> {
    let parts: Vec<&str> = traceparent.trim().split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    match parts.as_slice() {
        [version, trace, parent, flags] if hex(version, 2) && *version != "ff" && hex(trace, 32) && hex(parent, 16) && hex(flags, 2) => {
            (trace.bytes().any(|b| b != b'0') && parent.bytes().any(|b| b != b'0')).then(|| trace.to_string())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_come_from_valid_traceparents_only() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(trace_id(&format!("00-{id}-00f067aa0ba902b7-01")).as_deref(), Some(id));
        for bad in ["", "00-abc-00f067aa0ba902b7-01", &format!("ff-{id}-00f067aa0ba902b7-01"), &format!("00-{id}-0000000000000000-01"), "00-00000000000000000000000000000000-00f067aa0ba902b7-01", &format!("00-{}-00f067aa0ba902b7-01", id.to_uppercase())] {
            assert_eq!(trace_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn request_ids_are_unique() {
        let (a, b) = (request_id(), request_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
    }

    #[test]
    fn lines_are_split_and_the_partial_one_kept() {
        let s = TaggedStderr::new("r1", "ingest");
        s.accept(b"one\ntw");
        assert_eq!(*s.partial.lock().unwrap(), b"tw");
        s.accept(b"o\n");
        assert!(s.partial.lock().unwrap().is_empty());
    }
}
