//! Outbound HTTP with a deadline, on WASI 0.2 directly: the request options
//! ask the runtime for a first-byte timeout, and the guest also waits on a
//! clock, so the deadline holds even on a runtime that ignores the options.

use std::time::Duration;

use wasi::clocks::monotonic_clock;
use wasi::http::outgoing_handler;
use wasi::http::types::{ErrorCode, Fields, Method, OutgoingRequest, RequestOptions, Scheme};

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// No answer in time.
    Timeout,
    /// Refused, unreachable, denied by `allowed_outbound_hosts`, or a broken response.
    Transport(String),
}

/// A response: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

fn split_url(url: &str) -> Result<(Scheme, String, String), CallError> {
    let bad = || CallError::Transport(format!("`{url}` is not an absolute http(s) URL"));
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return Err(bad()),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') { format!("/{path}") } else { path.to_string() };
    Ok((scheme, authority.to_string(), path))
}

/// GET `url`, giving up after `timeout`.
pub fn get(url: &str, timeout: Duration) -> Result<Reply, CallError> {
    let deadline = monotonic_clock::now().saturating_add(timeout.as_nanos() as u64);
    let (scheme, authority, path) = split_url(url)?;
    let transport = |e: ErrorCode| match e {
        ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout | ErrorCode::HttpResponseTimeout => CallError::Timeout,
        other => CallError::Transport(format!("{other:?}")),
    };
    let headers = Fields::new();
    let _ = headers.set(&"accept".to_string(), &[b"application/json".to_vec()]);
    if let Some(traceparent) = crate::trace::outgoing() {
        let _ = headers.set(&"traceparent".to_string(), &[traceparent.into_bytes()]);
    }
    let request = OutgoingRequest::new(headers);
    let setup = |ok: Result<(), ()>| ok.map_err(|()| CallError::Transport("invalid request".into()));
    setup(request.set_method(&Method::Get))?;
    setup(request.set_scheme(Some(&scheme)))?;
    setup(request.set_authority(Some(&authority)))?;
    setup(request.set_path_with_query(Some(&path)))?;
    let options = RequestOptions::new();
    let _ = options.set_connect_timeout(Some(timeout.as_nanos() as u64));
    let _ = options.set_first_byte_timeout(Some(timeout.as_nanos() as u64));
    let _ = options.set_between_bytes_timeout(Some(timeout.as_nanos() as u64));
    let pending = outgoing_handler::handle(request, Some(options)).map_err(transport)?;

    let timer = monotonic_clock::subscribe_instant(deadline);
    let ready = pending.subscribe();
    let mut timed_out = false;
    loop {
        // `get` hands the response over once; ask once per wake-up.
        if let Some(result) = pending.get() {
            let response = result
                .map_err(|()| CallError::Transport("response already taken".into()))?
                .map_err(transport)?;
            let status = response.status();
            let body = read_body(&response, deadline)?;
            return Ok(Reply { status, body });
        }
        if timed_out {
            return Err(CallError::Timeout);
        }
        timed_out = wasi::io::poll::poll(&[&ready, &timer]).contains(&1);
    }
}

fn read_body(response: &wasi::http::types::IncomingResponse, deadline: u64) -> Result<Vec<u8>, CallError> {
    let body = response.consume().map_err(|()| CallError::Transport("no body".into()))?;
    let stream = body.stream().map_err(|()| CallError::Transport("no body stream".into()))?;
    let mut out = Vec::new();
    let timer = monotonic_clock::subscribe_instant(deadline);
    loop {
        match stream.read(64 * 1024) {
            Ok(chunk) if chunk.is_empty() => {
                let ready = stream.subscribe();
                if wasi::io::poll::poll(&[&ready, &timer]).contains(&1) {
                    return Err(CallError::Timeout);
                }
            }
            Ok(chunk) => {
                out.extend(chunk);
                if out.len() > 1 << 20 {
                    return Err(CallError::Transport("response body over 1 MiB".into()));
                }
            }
            Err(wasi::io::streams::StreamError::Closed) => return Ok(out),
            Err(e) => return Err(CallError::Transport(format!("{e:?}"))),
        }
    }
}
