//! The summary cache.
//!
//! A summary first reads the type's journal headers (which say exactly which
//! metrics exist) and, in the same store read, the last answer kept in the
//! store for its window: if that answer was computed at the current journal
//! state it is served as is (a HIT), without opening Redis at all. That is
//! what keeps a cached summary cheap under Spin, which opens a new Redis
//! connection for every request that uses one. Answers in the store are a
//! bounded set of keys per type (one per named period, [`RANGE_SLOTS`] for
//! explicit ranges, each overwritten), and are only ever a copy of what the
//! aggregates say.
//!
//! Where a new answer goes is a cost decision ([`placement`]): on Spin's
//! SQLite store every write is a durable commit that every other request
//! queues behind, worth it only for an answer that will serve many hits.
//! So an answer goes to the store when the one it replaces lived at least
//! [`STABLE_MS`] (or the store's writes are cheap), and otherwise to Redis,
//! where the next request looks when the store had nothing current.
//!
//! When the answer is stale, Redis (which may be lost at any time) supplies
//! the window's folded part (its aggregates, tagged with the folded state they
//! hold) and the upstream context in one `MGET`. If the folded part is still
//! at the current folded state, only the journal's items are added to it (a
//! PARTIAL): no aggregate is read again while metrics keep arriving. Every
//! answer includes every acknowledged metric, cached or not.
//!
//! The upstream context is cached on its own, per type (`context:{type}`),
//! so the upstream sees one call per type per context TTL however many
//! summaries are computed.

use crate::aggregate::Aggregate;
use crate::summary::SummaryRequest;
use crate::time::MS_PER_SECOND;

/// Key-value slots per type for answers over explicit ranges.
pub const RANGE_SLOTS: u64 = 16;

/// What identifies a window in cache entries.
fn window_id(request: &SummaryRequest) -> String {
    match request.window {
        Some(w) => format!("{}:{}", w.from_second, w.to_second),
        None => "all".into(),
    }
}

/// The key-value key of the last answer for `request`'s window.
pub fn answer_key(request: &SummaryRequest) -> String {
    match request.period {
        crate::summary::Period::Range => {
            let slot = xxhash_rust::xxh3::xxh3_64(window_id(request).as_bytes()) % RANGE_SLOTS;
            format!("answer:{}:range{slot}", request.metric_type)
        }
        period => format!("answer:{}:{}", request.metric_type, period.name()),
    }
}

/// The Redis key of the window's last answer (when it did not go to the store).
pub fn cache_answer_key(request: &SummaryRequest) -> String {
    format!("summary:{}:{}:answer", request.metric_type, window_id(request))
}

/// The Redis key of the window's folded part.
pub fn folded_key(request: &SummaryRequest) -> String {
    format!("summary:{}:{}:folded", request.metric_type, window_id(request))
}

pub fn context_key(metric_type: &str) -> String {
    format!("context:{metric_type}")
}

/// Held while one request refreshes a type's context.
pub fn context_refresh_key(metric_type: &str) -> String {
    format!("context:{metric_type}:refresh")
}

/// Held by the one request that stores a new answer for a window and state,
/// so concurrent misses do not all write the same answer.
pub fn fill_key(request: &SummaryRequest, state: &str) -> String {
    format!("fill:{}:{}:{state}", request.metric_type, window_id(request))
}

/// `KEYS`: the application's counters, the fill lock, the folded part, the
/// answer. `ARGV`: the counter field of this answer (see
/// [`crate::app_metrics`]), the lock's TTL (ms), the folded part's TTL (ms,
/// empty: none) and value, the answer's TTL (ms, empty: not in Redis) and
/// value. Counts the answer, stores what it is given, and returns 1 if this
/// request got the lock (and so stores the answer in the store, if anyone).
pub const FILL_SCRIPT: &str = r#"
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
if ARGV[3] ~= '' then redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[3]) end
if ARGV[5] ~= '' then redis.call('SET', KEYS[4], ARGV[6], 'PX', ARGV[5]) end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"#;

/// An answer that replaced one at least this old is worth a write to a
/// store whose writes are expensive.
pub const STABLE_MS: i64 = 250;

/// Where a new answer is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// In the store, read with the journal headers: free to hit, a write to keep.
    Store,
    /// In Redis: cheap to keep, a Redis round trip to hit.
    Redis,
}

/// Where the answer computed at `now_ms` goes, given when the answer it
/// replaces was computed (if there was one) and whether the store's writes
/// are cheap (a Redis store) or durable commits (Spin's key-value store).
///
/// Only answers replaced within [`STABLE_MS`] (metrics keep arriving) go to
/// Redis. With none to replace, the store takes it: a trailing window (a
/// new one every second) then keeps its answer in the store, where a hit
/// costs no Redis connection, at one store write a second.
pub fn placement(replaced_computed_at_ms: Option<i64>, now_ms: i64, cheap_writes: bool) -> Placement {
    match replaced_computed_at_ms {
        Some(at) if !cheap_writes && now_ms - at < STABLE_MS => Placement::Redis,
        _ => Placement::Store,
    }
}

/// When the answer in `entry` was computed (whatever its window or state).
pub fn computed_at(entry: &[u8]) -> Option<i64> {
    let newline = entry.iter().position(|b| *b == b'\n')?;
    std::str::from_utf8(&entry[..newline]).ok()?.rsplit(' ').next()?.parse().ok()
}

/// `tag`, a newline, then the payload.
fn tagged(tag: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(tag.len() + 1 + payload.len());
    out.extend_from_slice(tag.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload);
    out
}

/// The payload of `entry` if it was tagged with `tag`.
fn untag<'a>(entry: &'a [u8], tag: &str) -> Option<&'a [u8]> {
    entry.strip_prefix(tag.as_bytes())?.strip_prefix(b"\n")
}

/// The tag of an answer: its window, the journal state it was computed at,
/// and when (so an entry older than the cache TTL is not served).
fn answer_tag(request: &SummaryRequest, state: &str, computed_at_ms: i64) -> String {
    format!("{} {state} {computed_at_ms}", window_id(request))
}

/// An answer entry for the key-value store.
pub fn encode_answer(request: &SummaryRequest, state: &str, computed_at_ms: i64, body: &[u8]) -> Vec<u8> {
    tagged(&answer_tag(request, state, computed_at_ms), body)
}

/// The cached body, if the entry is for `request`'s window, at journal
/// state `state`, and younger than `ttl_ms`.
pub fn read_answer<'a>(entry: &'a [u8], request: &SummaryRequest, state: &str, now_ms: i64, ttl_ms: u64) -> Option<&'a [u8]> {
    let newline = entry.iter().position(|b| *b == b'\n')?;
    let tag = std::str::from_utf8(&entry[..newline]).ok()?;
    let mut parts = tag.rsplitn(2, ' ');
    let computed_at: i64 = parts.next()?.parse().ok()?;
    let expected = format!("{} {state}", window_id(request));
    (parts.next()? == expected && now_ms - computed_at < ttl_ms as i64).then(|| &entry[newline + 1..])
}

/// The folded part for Redis, tagged with the folded state it holds.
pub fn encode_folded(folded_state: &str, aggregate: &Aggregate) -> Vec<u8> {
    tagged(folded_state, &aggregate.encode())
}

/// The cached folded part, if it holds exactly folded state `folded_state`.
pub fn read_folded(entry: &[u8], folded_state: &str) -> Option<Aggregate> {
    Aggregate::decode(untag(entry, folded_state)?).ok()
}

/// How long Redis keeps a window's folded part. A trailing window (one
/// ending now) moves on within a second, so its part is kept only briefly.
pub fn folded_ttl_ms(request: &SummaryRequest, cache_ttl_seconds: u64, now_ms: i64) -> u64 {
    let full = cache_ttl_seconds * 1_000;
    match request.window {
        Some(w) if w.to_second * MS_PER_SECOND > now_ms - 2 * MS_PER_SECOND => full.min(5_000),
        _ => full,
    }
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
        assert_eq!(folded_key(&request("type=cpu")), "summary:cpu:all:folded");
    }

    #[test]
    fn answers_are_served_only_for_their_window_state_and_age() {
        let hourly = request("type=cpu&period=hourly");
        let entry = encode_answer(&hourly, "3,4", NOW, b"{}");
        assert_eq!(read_answer(&entry, &hourly, "3,4", NOW + 10, 5_000), Some(&b"{}"[..]));
        assert_eq!(read_answer(&entry, &hourly, "3,5", NOW, 5_000), None, "a metric arrived since");
        assert_eq!(read_answer(&entry, &hourly, "3", NOW, 5_000), None);
        assert_eq!(read_answer(&entry, &hourly, "3,4", NOW + 5_000, 5_000), None, "older than the TTL");
        let later = SummaryRequest::parse(&Query::parse("type=cpu&period=hourly").unwrap(), NOW + 1_000).unwrap();
        assert_eq!(read_answer(&entry, &later, "3,4", NOW, 5_000), None, "the window moved on");
        assert_eq!(read_answer(b"junk", &hourly, "3,4", NOW, 5_000), None);
    }

    #[test]
    fn answers_that_lived_long_go_to_the_store_the_others_to_redis() {
        let entry = encode_answer(&request("type=cpu&period=hourly"), "3,4", NOW - 2_000, b"{}");
        assert_eq!(computed_at(&entry), Some(NOW - 2_000));
        assert_eq!(computed_at(b"junk"), None);
        assert_eq!(placement(computed_at(&entry), NOW, false), Placement::Store);
        assert_eq!(placement(Some(NOW - 10), NOW, false), Placement::Redis, "replaced within 10 ms: metrics keep arriving");
        assert_eq!(placement(None, NOW, false), Placement::Store, "nothing kept yet, for this window or its period");
        assert_eq!(placement(Some(NOW - 10), NOW, true), Placement::Store, "a Redis store's writes are cheap");
    }

    #[test]
    fn folded_parts_are_used_only_at_their_folded_state() {
        let mut a = Aggregate::default();
        a.record(2.0, 5);
        let entry = encode_folded("1,2", &a);
        assert_eq!(read_folded(&entry, "1,2"), Some(a));
        assert_eq!(read_folded(&entry, "1,3"), None, "folded since");
        assert_eq!(read_folded(b"1,2\njunk", "1,2"), None);
    }

    #[test]
    fn trailing_windows_keep_their_folded_part_briefly() {
        assert_eq!(folded_ttl_ms(&request("type=cpu&period=daily"), 300, NOW), 5_000);
        assert_eq!(folded_ttl_ms(&request("type=cpu"), 300, NOW), 300_000);
        let old = request("type=cpu&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z");
        assert_eq!(folded_ttl_ms(&old, 300, NOW), 300_000);
    }

    #[test]
    fn contexts_go_stale_after_their_ttl() {
        let c = CachedContext { fetched_at_ms: 1_000, context: serde_json::json!({"a": 1}) };
        assert_eq!(CachedContext::decode(&c.encode()), Some(c.clone()));
        assert!(c.fresh(30_999, 30_000));
        assert!(!c.fresh(31_000, 30_000));
    }
}
