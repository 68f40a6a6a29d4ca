//! A tiny HTTP/1.1 server for tests: answers each request from a script of
//! handlers (then accepts everything), one connection per request.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// A request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The batch's metric objects.
    pub fn items(&self) -> Vec<Value> {
        serde_json::from_slice::<Vec<Value>>(&self.body).unwrap_or_default()
    }
}

/// What to do with a request.
pub enum Answer {
    Respond { status: u16, headers: Vec<(&'static str, String)>, body: String },
    /// Close the connection without answering (a crash, a reset).
    Hang,
}

pub type Handler = Box<dyn Fn(&Request) -> Answer + Send + Sync>;

pub fn respond(status: u16, body: impl Into<String>) -> Answer {
    Answer::Respond { status, headers: Vec::new(), body: body.into() }
}

/// The server's batch contract, played straight: items whose `value` is not
/// a number are rejected, the rest accepted.
pub fn accept_numbers(request: &Request) -> Answer {
    let items = request.items();
    let rejected: Vec<Value> = items
        .iter()
        .enumerate()
        .filter(|(_, m)| !m["value"].is_number())
        .map(|(i, _)| {
            serde_json::json!({"index": i, "error": "validation_failed", "message": "invalid fields: value",
                "details": [{"field": "value", "message": "must be a number, not a string"}]})
        })
        .collect();
    let accepted = items.len() - rejected.len();
    let mut body = serde_json::json!({"accepted": accepted, "duplicates": 0, "rejected": rejected});
    let status = if accepted == 0 {
        body["error"] = "nothing_accepted".into();
        body["message"] = "no item was accepted".into();
        422
    } else {
        200
    };
    respond(status, body.to_string())
}

pub struct FakeServer {
    pub address: SocketAddr,
    pub requests: Arc<Mutex<Vec<Request>>>,
}

impl FakeServer {
    /// Serves `script` in order, then `accept_numbers` for ever (until the test ends).
    pub fn start(script: Vec<Handler>) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let seen = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (seen, script) = (Arc::clone(&seen), Arc::clone(&script));
                std::thread::spawn(move || {
                    let _ = serve(stream, &seen, &script);
                });
            }
        });
        FakeServer { address, requests }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

fn serve(stream: TcpStream, seen: &Mutex<Vec<Request>>, script: &Mutex<VecDeque<Handler>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let request = Request { method, path, headers, body };
    let handler = script.lock().ok().and_then(|mut s| s.pop_front());
    let answer = match &handler {
        Some(handler) => handler(&request),
        None => accept_numbers(&request),
    };
    if let Ok(mut seen) = seen.lock() {
        seen.push(request);
    }
    let Answer::Respond { status, headers, body } = answer else {
        return Ok(()); // dropped: the client sees the connection close
    };
    let mut stream = stream;
    let mut head = format!("HTTP/1.1 {status} Status\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}
