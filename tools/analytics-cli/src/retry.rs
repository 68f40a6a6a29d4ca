//! What to do with the server's answer to a batch: a plain function of the
//! answer and the attempt so far, so every rule is tested without a server.

use std::time::Duration;

use crate::reply::{parse_reply, snippet, BatchReply, Rejection, PAYLOAD_TOO_LARGE};

/// Timings and limits of the retries.
#[derive(Debug, Clone)]
pub struct Policy {
    /// First pause after a 503 or a connection error; doubled each time up to `backoff_max`.
    pub backoff_start: Duration,
    pub backoff_max: Duration,
    /// Attempts of one request that fail with 503 or a connection error
    /// before the import gives up.
    pub max_unavailable: u32,
    /// 429s in a row for one request before the import gives up (the server is
    /// up but will not take more; better to stop than to wait for ever).
    pub max_rate_limited: u32,
    /// Wait after a 429 without a usable `Retry-After`.
    pub default_retry_after: Duration,
    /// Longest `Retry-After` obeyed as given.
    pub max_retry_after: Duration,
    /// Pauses before re-sending rows answered `id_in_progress` or, item by
    /// item, `service_unavailable` (one re-send per pause).
    pub in_progress_pauses: Vec<Duration>,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            backoff_start: Duration::from_millis(500),
            backoff_max: Duration::from_secs(10),
            max_unavailable: 10,
            max_rate_limited: 100,
            default_retry_after: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(600),
            in_progress_pauses: vec![Duration::from_millis(500), Duration::from_millis(1500)],
        }
    }
}

/// The answer to one POST.
#[derive(Debug)]
pub enum Answer<'a> {
    Response { status: u16, retry_after: Option<&'a str>, body: &'a [u8] },
    /// No HTTP answer: refused, reset, timed out.
    Failed(&'a str),
}

/// What the sender does next.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Per-item results: report them.
    Done(BatchReply),
    /// 429: wait, then re-send the same batch.
    RateLimited(Duration),
    /// 503 or no answer: wait, then re-send the same batch (safe: every item has an id).
    Unavailable(Duration),
    /// 413: send each half on its own.
    Split,
    /// Stop the import.
    Fatal(String),
}

/// How many of the same kind of failure this request has had so far.
#[derive(Debug, Default, Clone, Copy)]
pub struct Attempts {
    pub unavailable: u32,
    pub rate_limited: u32,
}

/// The rules: 200/422 carry per-item results; 429 waits `Retry-After`;
/// 413 halves (a single item that is still too large is rejected); 502, 503,
/// 504 and connection errors back off; anything else is fatal.
pub fn decide(answer: &Answer, batch_len: usize, attempts: Attempts, policy: &Policy) -> Decision {
    let (status, retry_after, body) = match *answer {
        Answer::Failed(error) => return unavailable(format!("no answer from the server: {error}"), attempts, policy),
        Answer::Response { status, retry_after, body } => (status, retry_after, body),
    };
    match status {
        200 | 422 => match parse_reply(status, body, batch_len) {
            Ok(reply) => Decision::Done(reply),
            Err(message) => Decision::Fatal(message),
        },
        429 if attempts.rate_limited + 1 >= policy.max_rate_limited => {
            Decision::Fatal(format!("still rate limited after {} waits in a row", attempts.rate_limited + 1))
        }
        429 => Decision::RateLimited(wait_after_429(retry_after, body, policy)),
        413 if batch_len > 1 => Decision::Split,
        413 => Decision::Done(BatchReply {
            rejected: vec![(0, Rejection::new(PAYLOAD_TOO_LARGE, format!("the server refused the row alone as too large: {}", snippet(body))))],
            ..BatchReply::default()
        }),
        502..=504 => unavailable(format!("the server answered {status}: {}", snippet(body)), attempts, policy),
        404 => Decision::Fatal(format!(
            "the server has no batch endpoint (404: {}); check --url and that the server is new enough",
            snippet(body)
        )),
        _ => Decision::Fatal(format!("unexpected answer {status}: {}", snippet(body))),
    }
}

fn unavailable(message: String, attempts: Attempts, policy: &Policy) -> Decision {
    let failures = attempts.unavailable + 1;
    if failures >= policy.max_unavailable {
        return Decision::Fatal(format!("giving up after {failures} attempts; last: {message}"));
    }
    Decision::Unavailable(backoff(attempts.unavailable, policy))
}

/// The pause after `failures` earlier failures: start, doubled each time, capped.
pub fn backoff(failures: u32, policy: &Policy) -> Duration {
    let factor = 2u32.saturating_pow(failures.min(30));
    policy.backoff_start.saturating_mul(factor).min(policy.backoff_max)
}

/// `Retry-After` in seconds (the header, else the body's
/// `retry_after_seconds`, else the default), capped. An HTTP-date is not
/// worth a date parser here: it gets the default.
pub fn wait_after_429(header: Option<&str>, body: &[u8], policy: &Policy) -> Duration {
    let from_header = header.and_then(|h| h.trim().parse::<f64>().ok());
    let from_body = || {
        serde_json::from_slice::<serde_json::Value>(body).ok()?.get("retry_after_seconds")?.as_f64()
    };
    match from_header.or_else(from_body) {
        Some(seconds) if seconds.is_finite() && seconds >= 0.0 => {
            Duration::from_secs_f64(seconds.min(policy.max_retry_after.as_secs_f64()))
        }
        _ => policy.default_retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn respond(status: u16, retry_after: Option<&'static str>, body: &'static str) -> Answer<'static> {
        Answer::Response { status, retry_after, body: body.as_bytes() }
    }

    fn first(answer: &Answer, batch_len: usize) -> Decision {
        decide(answer, batch_len, Attempts::default(), &Policy::default())
    }

    #[test]
    fn results_come_from_200_and_422() {
        let ok = respond(200, None, r#"{"accepted": 2, "duplicates": 0, "rejected": []}"#);
        assert!(matches!(first(&ok, 2), Decision::Done(r) if r.accepted == 2));
        let none = respond(422, None, r#"{"error": "nothing_accepted", "message": "m", "accepted": 0, "duplicates": 0,
            "rejected": [{"index": 0, "error": "validation_failed", "message": "bad"}]}"#);
        assert!(matches!(first(&none, 1), Decision::Done(r) if r.rejected.len() == 1));
        let whole = respond(422, None, r#"{"error": "invalid_json", "message": "m"}"#);
        assert!(matches!(first(&whole, 1), Decision::Fatal(_)));
    }

    #[test]
    fn rate_limits_wait_as_told() {
        let told = respond(429, Some("3"), r#"{"error":"rate_limited","retry_after_seconds":7}"#);
        assert_eq!(first(&told, 5), Decision::RateLimited(Duration::from_secs(3)));
        let body_only = respond(429, None, r#"{"error":"rate_limited","retry_after_seconds":7}"#);
        assert_eq!(first(&body_only, 5), Decision::RateLimited(Duration::from_secs(7)));
        let neither = respond(429, Some("Wed, 21 Oct 2026 07:28:00 GMT"), "");
        assert_eq!(first(&neither, 5), Decision::RateLimited(Duration::from_secs(1)));
        let huge = respond(429, Some("99999999"), "");
        assert_eq!(first(&huge, 5), Decision::RateLimited(Duration::from_secs(600)));
        let policy = Policy { max_rate_limited: 3, ..Policy::default() };
        let attempts = Attempts { rate_limited: 2, unavailable: 0 };
        assert!(matches!(decide(&told, 5, attempts, &policy), Decision::Fatal(m) if m.contains("3 waits")));
    }

    #[test]
    fn unavailable_backs_off_then_gives_up() {
        let policy = Policy::default();
        let down = respond(503, None, r#"{"error":"service_unavailable"}"#);
        let refused = Answer::Failed("connection refused");
        let waits: Vec<Decision> = (0..10)
            .map(|n| decide(if n % 2 == 0 { &down } else { &refused }, 4, Attempts { unavailable: n, rate_limited: 0 }, &policy))
            .collect();
        let millis = |d: &Decision| match d {
            Decision::Unavailable(w) => w.as_millis(),
            other => panic!("{other:?}"),
        };
        assert_eq!(waits[..9].iter().map(millis).collect::<Vec<_>>(), vec![500, 1000, 2000, 4000, 8000, 10000, 10000, 10000, 10000]);
        assert!(matches!(&waits[9], Decision::Fatal(m) if m.contains("after 10 attempts") && m.contains("connection refused")));
        assert!(matches!(first(&respond(502, None, ""), 1), Decision::Unavailable(_)));
        assert_eq!(backoff(u32::MAX, &policy), Duration::from_secs(10));
    }

    #[test]
    fn too_large_halves_down_to_one_row() {
        let big = respond(413, None, r#"{"error":"payload_too_large"}"#);
        assert_eq!(first(&big, 2), Decision::Split);
        let Decision::Done(reply) = first(&big, 1) else { panic!() };
        assert_eq!(reply.rejected[0].0, 0);
        assert_eq!(reply.rejected[0].1.error, PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn anything_else_is_fatal() {
        for status in [400, 401, 404, 405, 415, 500, 301] {
            assert!(matches!(first(&respond(status, None, "{}"), 1), Decision::Fatal(_)), "{status}");
        }
        assert!(matches!(first(&respond(404, None, ""), 1), Decision::Fatal(m) if m.contains("no batch endpoint")));
    }
}
