//! A response whose body is written as it goes (Server-Sent Events): the
//! head is sent at once, then each chunk reaches the client when written.

use futures::SinkExt;
use spin_sdk::http::{OutgoingResponse, Response, ResponseOutparam};

/// The body of a streaming response, open for writing.
pub struct EventStream {
    body: std::pin::Pin<Box<dyn futures::Sink<Vec<u8>, Error = wasi::io::streams::StreamError>>>,
}

/// Why a stream could not go on.
#[derive(Debug)]
pub enum Closed {
    /// The response could not be built from the head given.
    Head(String),
    /// A write failed: the client has gone (or the runtime is stopping).
    Gone(String),
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closed::Head(e) => write!(f, "response not converted: {e}"),
            Closed::Gone(e) => write!(f, "client gone: {e}"),
        }
    }
}

impl EventStream {
    /// Sends `head` (its status and headers; its body is ignored) and
    /// opens its body. `content-type: text/event-stream` and `cache-control:
    /// no-cache` are set here.
    pub fn open(out: ResponseOutparam, mut head: Response) -> Result<EventStream, Closed> {
        head.set_header("content-type", "text/event-stream");
        head.set_header("cache-control", "no-cache");
        // Proxies such as nginx would otherwise hold events back in a buffer.
        head.set_header("x-accel-buffering", "no");
        drop(std::mem::take(head.body_mut()));
        let response = OutgoingResponse::try_from(head).map_err(|e| Closed::Head(e.to_string()))?;
        let body = Box::pin(response.take_body());
        out.set(response);
        Ok(EventStream { body })
    }

    /// Writes `chunk` and flushes it to the client.
    pub async fn send(&mut self, chunk: Vec<u8>) -> Result<(), Closed> {
        self.body.send(chunk).await.map_err(|e| Closed::Gone(e.to_string()))
    }
}
