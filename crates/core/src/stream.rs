//! `GET /api/metrics/stream`: a summary as Server-Sent Events.
//!
//! A stream checks a cheap change token once a second: the type's journal
//! state (the same headers every summary reads first, [`crate::pending::Pending::state`]),
//! which changes with every acknowledged metric. When the token moved since
//! the last summary the client holds, the summary is computed and sent as an
//! event whose `id` is the token; otherwise a heartbeat comment is written,
//! which is also how a client that went away is noticed (the write fails).
//! A window that moves with time (a trailing period, or a range without
//! `to`) also loses metrics as they age out, which no append announces: its
//! token includes the current [`MOVING_REFRESH_MS`] slot, so such a summary
//! is sent again at least that often.
//!
//! A client reconnecting with `Last-Event-ID` equal to the current token gets
//! no repeated event; any other id gets the current summary at once. A stream
//! ends after its lifetime (the client reconnects, after the `retry` hint),
//! so that no instance is held forever and a deployment can drain.

use crate::query::Query;
use crate::summary::{Period, SummaryRequest};

/// How often an open stream looks at the store.
pub const CHECK_MS: u64 = 1_000;

/// The reconnection delay suggested to clients (`retry:`).
pub const RETRY_MS: u64 = 2_000;

/// How often the summary of a moving window is sent even when no metric arrived.
pub const MOVING_REFRESH_MS: i64 = 30_000;

/// The most a stream may be configured to live (`stream_lifetime_seconds`).
pub const MAX_LIFETIME_SECONDS: u64 = 3_600;

/// Whether the window of a summary request moves with time: a trailing
/// period, or a range whose end is "now" (`to` left out).
pub fn window_moves(request: &SummaryRequest, query: &Query) -> bool {
    match request.period {
        Period::All => false,
        Period::Range => query.get("to").is_none(),
        Period::Hourly | Period::Daily | Period::Weekly | Period::Monthly => true,
    }
}

/// The change token of a stream at `now_ms`, used as the event id: the
/// journal `state`, and for a moving window the refresh slot too. Hashed,
/// so ids stay short whatever the number of journal shards.
pub fn event_id(state: &str, moves: bool, now_ms: i64) -> String {
    let token = match moves {
        true => format!("{state}@{}", now_ms.div_euclid(MOVING_REFRESH_MS)),
        false => state.to_string(),
    };
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(token.as_bytes()))
}

/// The first bytes of a stream: the reconnection delay.
pub fn opening() -> Vec<u8> {
    format!("retry: {RETRY_MS}\n\n").into_bytes()
}

/// A summary event: its id, then the body as `data:` lines (one per line of
/// `body`, so a body with a newline still arrives whole).
pub fn summary_event(id: &str, body: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(body);
    let mut out = String::with_capacity(body.len() + id.len() + 16);
    out.push_str("id: ");
    out.push_str(id);
    out.push('\n');
    for line in text.split('\n') {
        out.push_str("data: ");
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
        out.push('\n');
    }
    out.push('\n');
    out.into_bytes()
}

/// A comment line: clients ignore it, and writing it fails once the client has gone.
pub const HEARTBEAT: &[u8] = b": heartbeat\n\n";

/// What a stream does at one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Compute the summary and send it.
    Summary,
    /// Nothing changed: write a heartbeat.
    Heartbeat,
    /// The lifetime is over: finish the body.
    End,
}

/// One open stream's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    opened_ms: i64,
    lifetime_ms: i64,
    /// The id of the last summary the client holds.
    held: Option<String>,
    checked: bool,
}

impl Stream {
    /// A stream opened at `now_ms` for `lifetime_ms`, by a client holding
    /// the event `last_event_id` (its `Last-Event-ID` header), if any.
    pub fn open(now_ms: i64, lifetime_ms: u64, last_event_id: Option<&str>) -> Stream {
        let held = last_event_id.map(str::trim).filter(|id| !id.is_empty()).map(str::to_string);
        Stream { opened_ms: now_ms, lifetime_ms: lifetime_ms.min(i64::MAX as u64) as i64, held, checked: false }
    }

    /// What to do at `now_ms`, when the change token is `id`. The first
    /// check always sends (or, for a client already holding `id`, beats),
    /// even with a lifetime of 0: such a stream is one summary.
    pub fn step(&mut self, now_ms: i64, id: &str) -> Step {
        let first = !self.checked;
        self.checked = true;
        if !first && now_ms - self.opened_ms >= self.lifetime_ms {
            Step::End
        } else if self.held.as_deref() == Some(id) {
            Step::Heartbeat
        } else {
            Step::Summary
        }
    }

    /// The client now holds the summary with this id (which may be newer
    /// than the token that asked for it: the summary read the store again).
    pub fn sent(&mut self, id: String) {
        self.held = Some(id);
    }

    /// How long to wait after a check at `now_ms` before the next: a
    /// second, or less when the lifetime ends sooner.
    pub fn wait_ms(&self, now_ms: i64) -> u64 {
        let left = (self.opened_ms + self.lifetime_ms - now_ms).max(0) as u64;
        left.min(CHECK_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_771_416_000_500;

    fn request(q: &str) -> (SummaryRequest, Query) {
        let query = Query::parse(q).unwrap();
        (SummaryRequest::parse(&query, NOW).unwrap(), query)
    }

    #[test]
    fn the_first_check_sends_the_summary_then_only_changes_do() {
        let mut s = Stream::open(NOW, 60_000, None);
        assert_eq!(s.step(NOW, "a"), Step::Summary);
        s.sent("a".into());
        assert_eq!(s.step(NOW + 1_000, "a"), Step::Heartbeat);
        assert_eq!(s.step(NOW + 2_000, "b"), Step::Summary, "a metric arrived");
        s.sent("b".into());
        assert_eq!(s.step(NOW + 3_000, "b"), Step::Heartbeat);
    }

    #[test]
    fn a_summary_newer_than_its_token_is_not_sent_twice() {
        let mut s = Stream::open(NOW, 60_000, None);
        assert_eq!(s.step(NOW, "a"), Step::Summary);
        // The summary read the store again and found a newer state.
        s.sent("b".into());
        assert_eq!(s.step(NOW + 1_000, "b"), Step::Heartbeat);
    }

    #[test]
    fn a_client_holding_the_current_summary_gets_no_repeat_and_an_old_one_gets_it_at_once() {
        let mut resumed = Stream::open(NOW, 60_000, Some("a"));
        assert_eq!(resumed.step(NOW, "a"), Step::Heartbeat);
        assert_eq!(resumed.step(NOW + 1_000, "b"), Step::Summary);
        let mut behind = Stream::open(NOW, 60_000, Some("old"));
        assert_eq!(behind.step(NOW, "a"), Step::Summary);
        let mut blank = Stream::open(NOW, 60_000, Some("  "));
        assert_eq!(blank.step(NOW, ""), Step::Summary, "an empty Last-Event-ID holds nothing");
    }

    #[test]
    fn a_stream_ends_after_its_lifetime_and_waits_no_longer_than_it() {
        let mut s = Stream::open(NOW, 2_500, None);
        assert_eq!(s.step(NOW, "a"), Step::Summary);
        s.sent("a".into());
        assert_eq!(s.wait_ms(NOW), CHECK_MS);
        assert_eq!(s.step(NOW + 2_000, "b"), Step::Summary);
        assert_eq!(s.wait_ms(NOW + 2_000), 500, "the last wait is cut to the lifetime");
        assert_eq!(s.step(NOW + 2_500, "c"), Step::End);
        assert_eq!(s.wait_ms(NOW + 9_000), 0);
    }

    #[test]
    fn a_lifetime_of_zero_is_one_summary() {
        let mut s = Stream::open(NOW, 0, None);
        assert_eq!(s.step(NOW, "a"), Step::Summary);
        assert_eq!(s.wait_ms(NOW), 0);
        assert_eq!(s.step(NOW, "a"), Step::End);
    }

    #[test]
    fn ids_follow_the_journal_and_for_moving_windows_the_refresh_slot() {
        let fixed = event_id("1,2,3", false, NOW);
        assert_eq!(fixed, event_id("1,2,3", false, NOW + 10 * MOVING_REFRESH_MS), "all time does not move");
        assert_ne!(fixed, event_id("1,2,4", false, NOW));
        assert_eq!(fixed.len(), 16);
        let slot_start = NOW - NOW.rem_euclid(MOVING_REFRESH_MS);
        let moving = event_id("1,2,3", true, slot_start);
        assert_eq!(moving, event_id("1,2,3", true, slot_start + MOVING_REFRESH_MS - 1));
        assert_ne!(moving, event_id("1,2,3", true, slot_start + MOVING_REFRESH_MS), "metrics may have aged out");
        assert_ne!(moving, event_id("1,2,4", true, slot_start));
    }

    #[test]
    fn trailing_periods_and_open_ranges_move() {
        let moves = |q: &str| {
            let (r, query) = request(q);
            window_moves(&r, &query)
        };
        assert!(!moves("type=cpu"));
        assert!(!moves("type=cpu&period=all"));
        assert!(moves("type=cpu&period=hourly"));
        assert!(moves("type=cpu&period=monthly"));
        assert!(moves("type=cpu&from=2026-01-01T00:00:00Z"));
        assert!(!moves("type=cpu&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z"));
    }

    #[test]
    fn events_are_framed_as_server_sent_events() {
        assert_eq!(summary_event("ab", br#"{"count":1}"#), b"id: ab\ndata: {\"count\":1}\n\n");
        assert_eq!(summary_event("ab", b"x\r\ny"), b"id: ab\ndata: x\ndata: y\n\n", "a newline cannot end the event early");
        assert_eq!(opening(), format!("retry: {RETRY_MS}\n\n").into_bytes());
        assert!(HEARTBEAT.starts_with(b":") && HEARTBEAT.ends_with(b"\n\n"));
    }
}
