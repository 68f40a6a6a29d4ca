//! Sending one batch until every row has a result: the thin loop around
//! `retry::decide` that does the waiting, splitting and re-sending.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::batch::{self, Batch};
use crate::input::Item;
use crate::reply::{is_transient, Rejection};
use crate::retry::{decide, Answer, Attempts, Decision, Policy};
use crate::transport::Transport;

/// What happened on the wire, for the summary (and to show that waits happened).
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    /// 429s waited out.
    pub rate_limited: AtomicU64,
    /// Re-sends after a 503 or a connection error.
    pub retries: AtomicU64,
    /// 413s answered by halving.
    pub splits: AtomicU64,
    /// Rows re-sent after `id_in_progress`.
    pub in_progress_resends: AtomicU64,
}

/// The result of one batch: counts, and each rejected row by line.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    pub seq: u64,
    pub rows: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: Vec<(u64, Rejection)>,
    /// Replies whose counts did not add up.
    pub warnings: Vec<String>,
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum SendError {
    #[error("{0}")]
    Fatal(String),
    /// Another batch failed fatally; this one stopped where it was.
    #[error("aborted")]
    Aborted,
}

pub struct Sender<'a> {
    pub transport: &'a dyn Transport,
    pub policy: &'a Policy,
    pub counters: &'a Counters,
    pub abort: &'a AtomicBool,
    /// Largest batch the server has taken so far (shrunk by 413s), so that
    /// later batches are split before sending rather than after a refusal.
    pub size_hint: &'a AtomicUsize,
    /// Where to say that a request is being retried (the server being down
    /// should not look like a hang).
    pub log: &'a (dyn Fn(String) + Sync),
}

impl Sender<'_> {
    /// Sends a batch; rows answered `id_in_progress` (or `service_unavailable`
    /// on their own) are sent again after each of the policy's pauses and
    /// reported only if they still fail after the last.
    pub fn send_batch(&self, batch: Batch) -> Result<Outcome, SendError> {
        let mut outcome = Outcome { seq: batch.seq, rows: batch.rows() as u64, ..Outcome::default() };
        let mut rejected = self.post_all(&batch.items, &mut outcome)?;
        for pause in &self.policy.in_progress_pauses {
            let (again, settled): (Vec<_>, Vec<_>) = rejected.into_iter().partition(|(_, r)| is_transient(&r.error));
            rejected = settled;
            if again.is_empty() {
                break;
            }
            self.sleep(*pause)?;
            let items: Vec<Item> =
                batch.items.iter().filter(|i| again.iter().any(|(line, _)| *line == i.line)).cloned().collect();
            self.counters.in_progress_resends.fetch_add(items.len() as u64, Ordering::Relaxed);
            rejected.extend(self.post_all(&items, &mut outcome)?);
        }
        outcome.rejected = batch.refused;
        outcome.rejected.extend(rejected);
        outcome.rejected.sort_by_key(|(line, _)| *line);
        Ok(outcome)
    }

    /// Posts `items` in chunks no larger than the size hint, halving on 413;
    /// adds the counts to `outcome` and returns the rejected rows by line.
    fn post_all(&self, items: &[Item], outcome: &mut Outcome) -> Result<Vec<(u64, Rejection)>, SendError> {
        let mut rejected = Vec::new();
        let mut queue: VecDeque<&[Item]> = VecDeque::from([items]);
        while let Some(chunk) = queue.pop_front() {
            let hint = self.size_hint.load(Ordering::Relaxed).max(1);
            if chunk.len() > hint {
                for piece in chunk.chunks(hint).rev() {
                    queue.push_front(piece);
                }
                continue;
            }
            if chunk.is_empty() {
                continue;
            }
            let mut attempts = Attempts::default();
            loop {
                if self.abort.load(Ordering::Relaxed) {
                    return Err(SendError::Aborted);
                }
                self.counters.requests.fetch_add(1, Ordering::Relaxed);
                let response = self.transport.post(&batch::body(chunk));
                let answer = match &response {
                    Ok(r) => Answer::Response { status: r.status, retry_after: r.retry_after.as_deref(), body: &r.body },
                    Err(e) => Answer::Failed(e),
                };
                match decide(&answer, chunk.len(), attempts, self.policy) {
                    Decision::Done(reply) => {
                        outcome.accepted += reply.accepted;
                        outcome.duplicates += reply.duplicates;
                        rejected.extend(reply.rejected.into_iter().map(|(index, r)| (chunk[index].line, r)));
                        if let Some(mismatch) = reply.mismatch {
                            outcome.warnings.push(format!("{}: {mismatch}", lines(chunk)));
                        }
                        break;
                    }
                    Decision::RateLimited(wait) => {
                        self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                        attempts.rate_limited += 1;
                        attempts.unavailable = 0;
                        self.sleep(wait)?;
                    }
                    Decision::Unavailable(wait) => {
                        self.counters.retries.fetch_add(1, Ordering::Relaxed);
                        attempts.unavailable += 1;
                        let why = match &response {
                            Ok(r) => format!("the server answered {}", r.status),
                            Err(e) => format!("no answer ({e})"),
                        };
                        (self.log)(format!(
                            "{}: {why}; retrying in {:.1} s (attempt {} of {})",
                            lines(chunk),
                            wait.as_secs_f64(),
                            attempts.unavailable + 1,
                            self.policy.max_unavailable
                        ));
                        self.sleep(wait)?;
                    }
                    Decision::Split => {
                        self.counters.splits.fetch_add(1, Ordering::Relaxed);
                        let (first, second) = chunk.split_at(chunk.len() / 2);
                        self.size_hint.fetch_min(first.len().max(1), Ordering::Relaxed);
                        queue.push_front(second);
                        queue.push_front(first);
                        break;
                    }
                    Decision::Fatal(message) => return Err(SendError::Fatal(format!("{}: {message}", lines(chunk)))),
                }
            }
        }
        Ok(rejected)
    }

    /// Sleeps, but stops early when the import is aborted.
    fn sleep(&self, wait: Duration) -> Result<(), SendError> {
        let until = Instant::now() + wait;
        loop {
            if self.abort.load(Ordering::Relaxed) {
                return Err(SendError::Aborted);
            }
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            std::thread::sleep((until - now).min(Duration::from_millis(100)));
        }
    }
}

fn lines(chunk: &[Item]) -> String {
    match (chunk.first(), chunk.last()) {
        (Some(a), Some(b)) if a.line != b.line => format!("the batch of lines {}–{}", a.line, b.line),
        (Some(a), _) => format!("line {}", a.line),
        _ => "an empty batch".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Response;
    use std::sync::Mutex;

    /// Answers from a script, recording what was sent.
    struct Scripted {
        answers: Mutex<VecDeque<Result<Response, String>>>,
        sent: Mutex<Vec<serde_json::Value>>,
    }

    impl Scripted {
        fn new(answers: Vec<Result<Response, String>>) -> Scripted {
            Scripted { answers: Mutex::new(answers.into()), sent: Mutex::new(Vec::new()) }
        }
        fn sent_ids(&self) -> Vec<Vec<String>> {
            let sent = self.sent.lock().unwrap();
            sent.iter().map(|b| b.as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect()).collect()
        }
    }

    impl Transport for Scripted {
        fn post(&self, body: &[u8]) -> Result<Response, String> {
            self.sent.lock().unwrap().push(serde_json::from_slice(body).unwrap());
            self.answers.lock().unwrap().pop_front().expect("no more scripted answers")
        }
    }

    fn ok(status: u16, body: &str) -> Result<Response, String> {
        Ok(Response { status, retry_after: None, next_cursor: None, body: body.as_bytes().to_vec() })
    }

    fn batch(lines: std::ops::Range<u64>) -> Batch {
        let items = lines.map(|l| Item { line: l, json: format!(r#"{{"id":"r{l}","value":{l}}}"#) }).collect();
        Batch { seq: 3, items, refused: vec![(1, Rejection::new("invalid_csv", "x"))] }
    }

    fn fast() -> Policy {
        Policy {
            backoff_start: Duration::from_millis(1),
            backoff_max: Duration::from_millis(4),
            default_retry_after: Duration::from_millis(1),
            in_progress_pauses: vec![Duration::from_millis(1), Duration::from_millis(1)],
            max_unavailable: 3,
            ..Policy::default()
        }
    }

    fn send(transport: &Scripted, batch: Batch, size_hint: usize) -> (Result<Outcome, SendError>, Counters) {
        let (policy, counters, abort, hint) = (fast(), Counters::default(), AtomicBool::new(false), AtomicUsize::new(size_hint));
        let sender = Sender { transport, policy: &policy, counters: &counters, abort: &abort, size_hint: &hint, log: &|_| {} };
        (sender.send_batch(batch), counters)
    }

    #[test]
    fn maps_rejections_to_lines_and_keeps_refused_rows() {
        let t = Scripted::new(vec![ok(200, r#"{"accepted":1,"duplicates":1,"rejected":[{"index":2,"error":"validation_failed","message":"m"}]}"#)]);
        let (outcome, _) = send(&t, batch(10..13), 1000);
        let outcome = outcome.unwrap();
        assert_eq!((outcome.seq, outcome.rows, outcome.accepted, outcome.duplicates), (3, 4, 1, 1));
        assert_eq!(outcome.rejected.iter().map(|(l, r)| (*l, r.error.as_str())).collect::<Vec<_>>(), vec![(1, "invalid_csv"), (12, "validation_failed")]);
    }

    #[test]
    fn resends_the_same_batch_after_429_and_503() {
        let t = Scripted::new(vec![
            Ok(Response { status: 429, retry_after: Some("0".into()), next_cursor: None, body: br#"{"error":"rate_limited","retry_after_seconds":0}"#.to_vec() }),
            ok(503, r#"{"error":"service_unavailable"}"#),
            Err("connection reset".into()),
            ok(200, r#"{"accepted":2,"duplicates":0,"rejected":[]}"#),
        ]);
        let (outcome, counters) = send(&t, batch(5..7), 1000);
        assert_eq!(outcome.unwrap().accepted, 2);
        let ids = t.sent_ids();
        assert_eq!(ids.len(), 4);
        assert!(ids.iter().all(|b| b == &ids[0]), "{ids:?}");
        assert_eq!((counters.rate_limited.into_inner(), counters.retries.into_inner()), (1, 2));
    }

    #[test]
    fn gives_up_when_the_server_stays_down() {
        let t = Scripted::new(vec![Err("refused".into()), Err("refused".into()), Err("refused".into())]);
        let (outcome, _) = send(&t, batch(5..7), 1000);
        assert!(matches!(outcome, Err(SendError::Fatal(m)) if m.contains("giving up after 3 attempts")));
    }

    #[test]
    fn halves_on_413_and_remembers_the_size() {
        let t = Scripted::new(vec![
            ok(413, r#"{"error":"payload_too_large"}"#),
            ok(200, r#"{"accepted":2,"duplicates":0,"rejected":[]}"#),
            ok(200, r#"{"accepted":1,"duplicates":0,"rejected":[{"index":1,"error":"validation_failed","message":"m"}]}"#),
        ]);
        let (policy, counters, abort, hint) = (fast(), Counters::default(), AtomicBool::new(false), AtomicUsize::new(1000));
        let sender = Sender { transport: &t, policy: &policy, counters: &counters, abort: &abort, size_hint: &hint, log: &|_| {} };
        let outcome = sender.send_batch(batch(10..14)).unwrap();
        assert_eq!(outcome.accepted, 3);
        assert_eq!(outcome.rejected.last().unwrap().0, 13);
        assert_eq!(t.sent_ids().iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 2, 2]);
        assert_eq!(hint.load(Ordering::Relaxed), 2);
        // Later batches go out pre-split.
        let t = Scripted::new(vec![ok(200, r#"{"accepted":2,"duplicates":0,"rejected":[]}"#), ok(200, r#"{"accepted":1,"duplicates":0,"rejected":[]}"#)]);
        let sender = Sender { transport: &t, ..sender };
        assert_eq!(sender.send_batch(batch(20..23)).unwrap().accepted, 3);
        assert_eq!(t.sent_ids().iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 1]);
    }

    #[test]
    fn resends_rows_in_progress_or_unavailable_then_reports_them() {
        let in_progress = r#"{"accepted":1,"duplicates":0,"rejected":[
            {"index":1,"error":"id_in_progress","message":"still being stored"},
            {"index":2,"error":"id_in_progress","message":"still being stored"}]}"#;
        let t = Scripted::new(vec![
            ok(200, in_progress),
            ok(200, r#"{"accepted":0,"duplicates":1,"rejected":[{"index":1,"error":"service_unavailable","message":"store"}]}"#),
            ok(422, r#"{"error":"nothing_accepted","message":"m","accepted":0,"duplicates":0,"rejected":[{"index":0,"error":"id_in_progress","message":"still"}]}"#),
        ]);
        let (outcome, counters) = send(&t, batch(10..13), 1000);
        let outcome = outcome.unwrap();
        assert_eq!((outcome.accepted, outcome.duplicates), (1, 1));
        assert_eq!(outcome.rejected.iter().map(|(l, r)| (*l, r.error.as_str())).collect::<Vec<_>>(), vec![(1, "invalid_csv"), (12, "id_in_progress")]);
        assert!(!is_transient("id_conflict") && !is_transient("validation_failed"));
        assert_eq!(t.sent_ids(), vec![vec!["r10", "r11", "r12"], vec!["r11", "r12"], vec!["r12"]]);
        assert_eq!(counters.in_progress_resends.into_inner(), 3);
    }

    #[test]
    fn fatal_answers_name_the_lines() {
        let t = Scripted::new(vec![ok(415, r#"{"error":"unsupported_media_type"}"#)]);
        let (outcome, _) = send(&t, batch(10..13), 1000);
        assert_eq!(outcome, Err(SendError::Fatal(r#"the batch of lines 10–12: unexpected answer 415: {"error":"unsupported_media_type"}"#.into())));
    }

    #[test]
    fn stops_when_aborted() {
        let t = Scripted::new(vec![]);
        let (policy, counters, abort, hint) = (fast(), Counters::default(), AtomicBool::new(true), AtomicUsize::new(10));
        let sender = Sender { transport: &t, policy: &policy, counters: &counters, abort: &abort, size_hint: &hint, log: &|_| {} };
        assert_eq!(sender.send_batch(batch(1..3)), Err(SendError::Aborted));
        assert!(t.sent_ids().is_empty());
    }
}
