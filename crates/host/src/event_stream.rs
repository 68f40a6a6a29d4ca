//! Responses a guest keeps writing after their head (`text/event-stream`):
//! they reach the client chunk by chunk as the guest writes (the body is the
//! guest's own stream, never collected), and they end when the host starts
//! stopping. A Server-Sent Events client reconnects on its own, so ending its
//! stream loses nothing, while waiting for it would hold a shutdown up until
//! the drain timeout. The guest's next write then fails and its instance ends.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::sync::watch;
use wasmtime_wasi_http::WasiBody;

/// Whether `response` is an event stream.
pub fn is_event_stream(response: &Response<WasiBody>) -> bool {
    response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream")))
}

/// `response`, whose body ends (cleanly, as if the guest had finished it)
/// once `stopping` turns true.
pub fn until_stopping(response: Response<WasiBody>, stopping: &watch::Sender<bool>) -> Response<WasiBody> {
    let mut receiver = stopping.subscribe();
    let stopped = Box::pin(async move {
        // A dropped sender means the app is gone: end too.
        let _ = receiver.wait_for(|stopping| *stopping).await;
    });
    response.map(|body| UntilStopping { body, stopped }.boxed_unsync())
}

struct UntilStopping {
    body: WasiBody,
    stopped: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Body for UntilStopping {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.stopped.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body the test writes into, as a guest writes its response.
    struct Written(tokio::sync::mpsc::Receiver<Bytes>);

    impl Body for Written {
        type Data = Bytes;
        type Error = wasmtime_wasi_http::Error;

        fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
        }
    }

    fn stream_response(content_type: &str) -> (tokio::sync::mpsc::Sender<Bytes>, Response<WasiBody>) {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(4);
        let body = Written(receiver).boxed_unsync();
        (sender, Response::builder().header("content-type", content_type).body(body).expect("response"))
    }

    #[test]
    fn only_event_streams_are_recognised() {
        assert!(is_event_stream(&stream_response("text/event-stream").1));
        assert!(is_event_stream(&stream_response("Text/Event-Stream; charset=utf-8").1));
        assert!(!is_event_stream(&stream_response("application/json").1));
    }

    #[tokio::test]
    async fn chunks_pass_as_written_and_the_body_ends_when_stopping() {
        let (stopping, _) = watch::channel(false);
        let (sender, response) = stream_response("text/event-stream");
        let mut body = until_stopping(response, &stopping).into_body();
        sender.send(Bytes::from_static(b"a")).await.expect("send");
        let frame = body.frame().await.expect("a frame").expect("data");
        assert_eq!(frame.into_data().ok(), Some(Bytes::from_static(b"a")), "a chunk arrives before the body ends");
        stopping.send_replace(true);
        assert!(body.frame().await.is_none(), "the body ends once the host stops");
        drop(body);
        assert!(sender.send(Bytes::from_static(b"b")).await.is_err(), "the guest's next write fails");
    }
}
