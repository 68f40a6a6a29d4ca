//! The summary cache: one entry per window in the durable store.
//!
//! A summary first reads the type's journal headers (which say exactly which
//! metrics exist) and, in the same store read, the window's entry: the last
//! answer, the window's aggregate it was made from, the journal state both
//! hold, and until when the upstream context inside the answer may be
//! reused. Then:
//! - the entry is at the current journal state: its answer is served as is
//!   (a HIT);
//! - metrics were appended since, and the journal still holds every one of
//!   them: they are added to the entry's aggregate (a PARTIAL), decoding
//!   only them, with no bucket read;
//! - otherwise the window's buckets are read (a MISS) and a new entry kept.
//!
//! None of it opens Redis, which is what keeps summaries cheap under Spin:
//! Spin opens a new Redis connection for every request that uses one, and
//! that costs more than the rest of a cached summary. Redis is asked only
//! for the upstream context, once per context TTL per window.
//!
//! Entries are a bounded set of keys per type (one per named period,
//! [`RANGE_SLOTS`] for explicit ranges, each overwritten), only ever a copy
//! of what the aggregates and the journal say, written with one
//! compare-and-swap attempt against the entry read (so of the requests
//! that computed an answer from the same entry, one writes it). On Spin's
//! SQLite store every write is a durable commit every other request queues
//! behind, so an answer made by adding new metrics is kept only when the
//! entry it replaces lived at least [`STABLE_MS`] ([`worth_keeping`]).
//! Every answer includes every acknowledged metric, cached or not.
//!
//! The upstream context is cached on its own in Redis, per type
//! (`context:{type}`), so the upstream sees one call per type per context
//! TTL however many summaries are computed.

use crate::aggregate::Aggregate;
use crate::summary::SummaryRequest;

/// Key-value slots per type for answers over explicit ranges.
pub const RANGE_SLOTS: u64 = 16;

/// What identifies a window in cache entries.
fn window_id(request: &SummaryRequest) -> String {
    match request.window {
        Some(w) => format!("{}:{}", w.from_second, w.to_second),
        None => "all".into(),
    }
}

/// The key-value key of the entry for `request`'s window.
pub fn answer_key(request: &SummaryRequest) -> String {
    match request.period {
        crate::summary::Period::Range => {
            let slot = xxhash_rust::xxh3::xxh3_64(window_id(request).as_bytes()) % RANGE_SLOTS;
            format!("answer:{}:range{slot}", request.metric_type)
        }
        period => format!("answer:{}:{}", request.metric_type, period.name()),
    }
}

pub fn context_key(metric_type: &str) -> String {
    format!("context:{metric_type}")
}

/// Held while one request refreshes a type's context.
pub fn context_refresh_key(metric_type: &str) -> String {
    format!("context:{metric_type}:refresh")
}

/// An entry that replaced one at least this old is worth a write to a store
/// whose writes are expensive, when it was made by adding new metrics.
pub const STABLE_MS: i64 = 250;

/// First byte of an entry (entries of earlier layouts are not read).
const ENTRY_LAYOUT: u8 = 0xE2;

/// A window's cache entry, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    window: String,
    /// The journal state the answer and `total` hold ([`crate::pending::Pending::state`]).
    pub state: String,
    pub computed_at_ms: i64,
    /// Until when the upstream context inside `body` may be served again
    /// (0: it is a fallback, never reused).
    pub context_until_ms: i64,
    /// The window's aggregate at `state`, encoded.
    total: Vec<u8>,
    /// The answer, serialised JSON.
    pub body: Vec<u8>,
}

/// How an entry serves a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Use<'a> {
    /// The answer, computed at the current state.
    Hit(&'a [u8]),
    /// The window's aggregate at the entry's state: add what was appended since.
    Extend(Aggregate),
    /// Nothing usable.
    Stale,
}

impl Entry {
    /// The entry of an answer computed at `computed_at_ms` from `total`, the
    /// window's aggregate at journal state `state`.
    pub fn new(request: &SummaryRequest, state: &str, total: &Aggregate, computed_at_ms: i64, context_until_ms: i64, body: Vec<u8>) -> Entry {
        Entry { window: window_id(request), state: state.to_string(), computed_at_ms, context_until_ms, total: total.encode(), body }
    }

    /// Layout byte, a tag line (`window state computed_at context_until`),
    /// the aggregate's length (4 bytes, little endian), the aggregate, the body.
    pub fn encode(&self) -> Vec<u8> {
        let tag = format!("{} {} {} {}", self.window, self.state, self.computed_at_ms, self.context_until_ms);
        let mut out = Vec::with_capacity(1 + tag.len() + 5 + self.total.len() + self.body.len());
        out.push(ENTRY_LAYOUT);
        out.extend_from_slice(tag.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(&(self.total.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.total);
        out.extend_from_slice(&self.body);
        out
    }

    /// `None` for anything but an entry of this layout.
    pub fn decode(bytes: &[u8]) -> Option<Entry> {
        let rest = bytes.strip_prefix(&[ENTRY_LAYOUT])?;
        let newline = rest.iter().position(|b| *b == b'\n')?;
        let tag = std::str::from_utf8(&rest[..newline]).ok()?;
        let mut parts = tag.split(' ');
        let (window, state) = (parts.next()?, parts.next()?);
        let computed_at_ms = parts.next()?.parse().ok()?;
        let context_until_ms = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        let rest = &rest[newline + 1..];
        let length = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let total = rest.get(4..4usize.checked_add(length)?)?;
        Some(Entry {
            window: window.to_string(),
            state: state.to_string(),
            computed_at_ms,
            context_until_ms,
            total: total.to_vec(),
            body: rest[4 + length..].to_vec(),
        })
    }

    /// What this entry is worth to `request` at journal state `state`, at
    /// `now_ms` with entries kept `ttl_ms`.
    pub fn serve(&self, request: &SummaryRequest, state: &str, now_ms: i64, ttl_ms: u64) -> Use<'_> {
        if self.window != window_id(request) || now_ms - self.computed_at_ms >= ttl_ms as i64 {
            Use::Stale
        } else if self.state == state {
            Use::Hit(&self.body)
        } else {
            Aggregate::decode(&self.total).map_or(Use::Stale, Use::Extend)
        }
    }

    /// The upstream context inside the answer (its `external_data`), if it
    /// may still be served at `now_ms`.
    pub fn context(&self, now_ms: i64) -> Option<serde_json::Value> {
        if now_ms >= self.context_until_ms {
            return None;
        }
        let mut body: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        Some(body.get_mut("external_data")?.take())
    }
}

/// Whether a new answer is worth a store write: one computed from the
/// buckets always is (it saves the next request that read); one made by
/// adding new metrics to an entry only where writes are cheap, or when the
/// entry it replaces lived at least [`STABLE_MS`] (metrics are not arriving
/// faster than that, so hits will follow).
pub fn worth_keeping(from_buckets: bool, replaced_computed_at_ms: Option<i64>, now_ms: i64, cheap_writes: bool) -> bool {
    from_buckets || cheap_writes || replaced_computed_at_ms.is_none_or(|at| now_ms - at >= STABLE_MS)
}

/// A cached upstream context and when it was fetched.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CachedContext {
    pub fetched_at_ms: i64,
    pub context: serde_json::Value,
}

impl CachedContext {
    pub fn decode(bytes: &[u8]) -> Option<CachedContext> {
        serde_json::from_slice(bytes).ok()
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Fresh for `ttl_ms` after it was fetched.
    pub fn fresh(&self, now_ms: i64, ttl_ms: u64) -> bool {
        now_ms - self.fetched_at_ms < ttl_ms as i64
    }
}

/// How long Redis keeps a context: past its freshness, so that while one
/// request refreshes it the others can still answer with the stale one.
pub fn context_keep_ms(ttl_ms: u64) -> u64 {
    ttl_ms.saturating_mul(10).max(60_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::Query;

    const NOW: i64 = 1_771_416_000_500;

    fn request(q: &str) -> SummaryRequest {
        SummaryRequest::parse(&Query::parse(q).unwrap(), NOW).unwrap()
    }

    #[test]
    fn keys_are_bounded_per_type() {
        assert_eq!(answer_key(&request("type=cpu")), "answer:cpu:all");
        assert_eq!(answer_key(&request("type=cpu&period=hourly")), "answer:cpu:hourly");
        let slots: std::collections::HashSet<String> = (0..500)
            .map(|i| answer_key(&request(&format!("type=cpu&from=2026-01-01T00:00:00Z&to=2026-01-02T00:{:02}:{:02}Z", i / 60, i % 60))))
            .collect();
        assert!(slots.len() <= RANGE_SLOTS as usize && slots.len() > 1, "{}", slots.len());
    }

    fn total() -> Aggregate {
        let mut a = Aggregate::default();
        a.record(2.0, 5);
        a
    }

    #[test]
    fn entries_round_trip_and_refuse_anything_else() {
        let hourly = request("type=cpu&period=hourly");
        let entry = Entry::new(&hourly, "3,4", &total(), NOW, NOW + 30_000, br#"{"count":1}"#.to_vec());
        assert_eq!(Entry::decode(&entry.encode()), Some(entry.clone()));
        let bytes = entry.encode();
        for cut in 0..bytes.len() - entry.body.len() {
            assert_eq!(Entry::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        assert_eq!(Entry::decode(b"hourly 3,4 1\n{}"), None, "an answer of an earlier layout");
    }

    #[test]
    fn an_entry_is_a_hit_at_its_state_extended_at_another_and_stale_when_old_or_moved_on() {
        let hourly = request("type=cpu&period=hourly");
        let entry = Entry::new(&hourly, "3,4", &total(), NOW, 0, b"{}".to_vec());
        assert_eq!(entry.serve(&hourly, "3,4", NOW + 10, 5_000), Use::Hit(b"{}"));
        assert_eq!(entry.serve(&hourly, "3,5", NOW + 10, 5_000), Use::Extend(total()), "a metric arrived since");
        assert_eq!(entry.serve(&hourly, "3,4", NOW + 5_000, 5_000), Use::Stale, "older than the TTL");
        let later = SummaryRequest::parse(&Query::parse("type=cpu&period=hourly").unwrap(), NOW + 1_000).unwrap();
        assert_eq!(entry.serve(&later, "3,4", NOW + 1_000, 5_000), Use::Stale, "the window moved on");
    }

    #[test]
    fn the_context_inside_an_answer_is_reused_until_its_time() {
        let hourly = request("type=cpu&period=hourly");
        let body = br#"{"count":1,"external_data":{"status":"success","external_metric_context":{"a":1}}}"#.to_vec();
        let entry = Entry::new(&hourly, "3", &total(), NOW, NOW + 30_000, body);
        assert_eq!(entry.context(NOW + 29_999), Some(serde_json::json!({"status":"success","external_metric_context":{"a":1}})));
        assert_eq!(entry.context(NOW + 30_000), None);
        let fallback = Entry::new(&hourly, "3", &total(), NOW, 0, br#"{"external_data":{"status":"fallback"}}"#.to_vec());
        assert_eq!(fallback.context(NOW), None, "a fallback is never reused");
    }

    #[test]
    fn answers_from_the_folded_part_are_kept_only_when_they_pay() {
        assert!(worth_keeping(true, Some(NOW - 10), NOW, false), "from the buckets: always");
        assert!(!worth_keeping(false, Some(NOW - 10), NOW, false), "replaced within 10 ms: metrics keep arriving");
        assert!(worth_keeping(false, Some(NOW - STABLE_MS), NOW, false));
        assert!(worth_keeping(false, None, NOW, false));
        assert!(worth_keeping(false, Some(NOW - 10), NOW, true), "a Redis store's writes are cheap");
    }

    #[test]
    fn contexts_go_stale_after_their_ttl() {
        let c = CachedContext { fetched_at_ms: 1_000, context: serde_json::json!({"a": 1}) };
        assert_eq!(CachedContext::decode(&c.encode()), Some(c.clone()));
        assert!(c.fresh(30_999, 30_000));
        assert!(!c.fresh(31_000, 30_000));
    }
}
