//! A Server-Sent Events client over a plain HTTP/1.1 connection: the head,
//! then the stream's blocks one at a time as they arrive.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

/// One block of the stream (up to a blank line).
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// An event: its `id:` and its `data:` lines joined.
    Event { id: Option<String>, data: String },
    /// Comment lines only (a heartbeat).
    Comment(String),
    /// A `retry:` hint, in milliseconds.
    Retry(u64),
}

impl Block {
    /// The event's data as JSON.
    pub fn json(&self) -> serde_json::Value {
        match self {
            Block::Event { data, .. } => serde_json::from_str(data).unwrap_or_else(|e| panic!("event data is not JSON ({e}): {data}")),
            other => panic!("not an event: {other:?}"),
        }
    }

    pub fn id(&self) -> Option<&str> {
        match self {
            Block::Event { id, .. } => id.as_deref(),
            _ => None,
        }
    }

    pub fn is_event(&self) -> bool {
        matches!(self, Block::Event { .. })
    }
}

/// An open stream.
pub struct EventStream {
    pub status: u16,
    pub headers: http::HeaderMap,
    body: Incoming,
    buffer: String,
    /// Whether the server finished the body.
    pub ended: bool,
}

/// Why [`EventStream::next`] returned no block.
#[derive(Debug, PartialEq)]
pub enum Stop {
    /// Nothing arrived in time.
    Timeout,
    /// The server finished the body.
    Ended,
}

impl EventStream {
    /// `GET path` on a new connection to `address`, with `headers`.
    pub async fn open(address: SocketAddr, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<EventStream> {
        let tcp = tokio::net::TcpStream::connect(address).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(connection);
        let mut request = http::Request::get(path).header("host", "localhost").header("accept", "text/event-stream");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = sender.send_request(request.body(Empty::<Bytes>::new())?).await?;
        let (parts, body) = response.into_parts();
        Ok(EventStream { status: parts.status.as_u16(), headers: parts.headers, body, buffer: String::new(), ended: false })
    }

    /// The whole body, for an answer that is not a stream (an error).
    pub async fn text(self) -> String {
        let bytes = self.body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The next block, waiting at most `wait`.
    pub async fn next(&mut self, wait: Duration) -> Result<Block, Stop> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                return Ok(parse(&block));
            }
            if self.ended {
                return Err(Stop::Ended);
            }
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => return Err(Stop::Timeout),
                Ok(None) | Ok(Some(Err(_))) => self.ended = true,
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.push_str(&String::from_utf8_lossy(&data));
                    }
                }
            }
        }
    }

    /// The next event, skipping heartbeats and hints, waiting at most `wait` in all.
    pub async fn next_event(&mut self, wait: Duration) -> Result<Block, Stop> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let block = self.next(left).await?;
            if block.is_event() {
                return Ok(block);
            }
        }
    }
}

fn parse(block: &str) -> Block {
    let (mut id, mut data, mut comments, mut retry) = (None, Vec::new(), Vec::new(), None);
    for line in block.lines().filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix(':') {
            comments.push(comment.trim().to_string());
            continue;
        }
        let (field, value) = line.split_once(':').map_or((line, ""), |(f, v)| (f, v.strip_prefix(' ').unwrap_or(v)));
        match field {
            "id" => id = Some(value.to_string()),
            "data" => data.push(value.to_string()),
            "retry" => retry = value.parse().ok(),
            _ => {}
        }
    }
    match (data.is_empty(), retry) {
        (false, _) => Block::Event { id, data: data.join("\n") },
        (true, Some(ms)) => Block::Retry(ms),
        (true, None) => Block::Comment(comments.join("\n")),
    }
}
