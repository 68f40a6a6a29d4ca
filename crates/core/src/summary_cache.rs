//! The summary cache in Redis, which may be lost at any time.
//!
//! Per type and window, one hash holds the last answer with the journal state
//! it was computed at (`state`, `body`), and the window's folded part with
//! the folded state it holds (`folded_state`, `folded`). A summary reads the
//! type's journal headers from the store, then asks Redis in one round trip
//! for the answer at exactly that state (a HIT); failing that, Redis sends the
//! folded part and the upstream context, and if the folded part is still at
//! the current folded state, only the journal's items are added to it (a
//! PARTIAL): no aggregate is read again while metrics keep arriving. Every
//! answer therefore includes every acknowledged metric, cached or not.
//!
//! The upstream context is cached on its own, per type (`context:{type}`),
//! so the upstream sees one call per type per context TTL however many
//! summaries are computed.

use crate::aggregate::Aggregate;
use crate::summary::SummaryRequest;
use crate::time::MS_PER_SECOND;

/// The hash of one type and window.
pub fn cache_key(request: &SummaryRequest) -> String {
    match request.window {
        Some(w) => format!("summary:{}:{}:{}", request.metric_type, w.from_second, w.to_second),
        None => format!("summary:{}:all", request.metric_type),
    }
}

pub fn context_key(metric_type: &str) -> String {
    format!("context:{metric_type}")
}

/// Held while one request refreshes a type's context.
pub fn context_refresh_key(metric_type: &str) -> String {
    format!("context:{metric_type}:refresh")
}

/// `KEYS`: the summary hash, the context. `ARGV[1]`: the journal state now.
/// Returns `{1, body}` on a hit, else `{0, folded_state, folded, context}`
/// (each `false`, a nil reply, when absent).
pub const LOOKUP_SCRIPT: &str = r#"
local v = redis.call('HMGET', KEYS[1], 'state', 'body', 'folded_state', 'folded')
if v[1] == ARGV[1] and v[2] then return {1, v[2]} end
return {0, v[3] or false, v[4] or false, redis.call('GET', KEYS[2]) or false}
"#;

/// `KEYS[1]`: the summary hash. `ARGV`: TTL (ms), then field/value pairs.
pub const STORE_SCRIPT: &str = r#"
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"#;

/// What the lookup found.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// The answer at exactly the current journal state.
    Hit(Vec<u8>),
    Miss {
        /// The folded part, if it is at the current folded state.
        folded: Option<Aggregate>,
        /// The cached upstream context, if any.
        context: Option<Vec<u8>>,
    },
}

/// The lookup script's reply, flattened as Spin hands it over: an integer,
/// then bulk strings or nils.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyItem {
    Int(i64),
    Bytes(Vec<u8>),
    Nil,
}

/// Reads the lookup script's reply; `None` if it is malformed.
pub fn read_lookup(reply: Vec<ReplyItem>, folded_state_now: &str) -> Option<Lookup> {
    let mut items = reply.into_iter();
    let bytes = |item: Option<ReplyItem>| match item {
        Some(ReplyItem::Bytes(b)) => Some(b),
        _ => None,
    };
    match items.next()? {
        ReplyItem::Int(1) => Some(Lookup::Hit(bytes(items.next())?)),
        ReplyItem::Int(0) => {
            let folded_state = bytes(items.next());
            let folded = bytes(items.next());
            let context = bytes(items.next());
            let folded = match (folded_state, folded) {
                (Some(state), Some(aggregate)) if state == folded_state_now.as_bytes() => Aggregate::decode(&aggregate).ok(),
                _ => None,
            };
            Some(Lookup::Miss { folded, context })
        }
        _ => None,
    }
}

/// `ARGV` of [`STORE_SCRIPT`]: the answer at `state`, and the folded part
/// at `folded_state` when there is one to keep.
pub fn store_args(ttl_ms: u64, state: &str, body: &[u8], folded: Option<(&str, &Aggregate)>) -> Vec<Vec<u8>> {
    let mut args = vec![ttl_ms.to_string().into_bytes(), b"state".to_vec(), state.as_bytes().to_vec(), b"body".to_vec(), body.to_vec()];
    if let Some((folded_state, aggregate)) = folded {
        args.extend([b"folded_state".to_vec(), folded_state.as_bytes().to_vec(), b"folded".to_vec(), aggregate.encode()]);
    }
    args
}

/// How long to keep a window's entry. A trailing window (one ending now)
/// moves on within a second, so its entry is kept only briefly.
pub fn entry_ttl_ms(request: &SummaryRequest, cache_ttl_seconds: u64, now_ms: i64) -> u64 {
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
    fn keys_name_the_window() {
        assert_eq!(cache_key(&request("type=cpu")), "summary:cpu:all");
        let k = cache_key(&request("type=cpu&period=hourly"));
        assert_eq!(k, format!("summary:cpu:{}:{}", NOW / 1000 + 1 - 3600, NOW / 1000 + 1));
    }

    #[test]
    fn hits_and_partial_hits_are_read() {
        let hit = read_lookup(vec![ReplyItem::Int(1), ReplyItem::Bytes(b"{}".to_vec())], "0");
        assert_eq!(hit, Some(Lookup::Hit(b"{}".to_vec())));
        let mut a = Aggregate::default();
        a.record(2.0, 5);
        let reply = |state: &str| {
            vec![ReplyItem::Int(0), ReplyItem::Bytes(state.into()), ReplyItem::Bytes(a.encode()), ReplyItem::Nil]
        };
        assert_eq!(read_lookup(reply("3,4"), "3,4"), Some(Lookup::Miss { folded: Some(a.clone()), context: None }));
        assert_eq!(read_lookup(reply("3,4"), "3,5"), Some(Lookup::Miss { folded: None, context: None }), "folded since");
        let empty = vec![ReplyItem::Int(0), ReplyItem::Nil, ReplyItem::Nil, ReplyItem::Bytes(b"c".to_vec())];
        assert_eq!(read_lookup(empty, "0"), Some(Lookup::Miss { folded: None, context: Some(b"c".to_vec()) }));
        assert_eq!(read_lookup(vec![ReplyItem::Nil], "0"), None);
    }

    #[test]
    fn trailing_windows_are_kept_briefly() {
        assert_eq!(entry_ttl_ms(&request("type=cpu&period=daily"), 300, NOW), 5_000);
        assert_eq!(entry_ttl_ms(&request("type=cpu"), 300, NOW), 300_000);
        let old = request("type=cpu&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z");
        assert_eq!(entry_ttl_ms(&old, 300, NOW), 300_000);
        let args = store_args(5_000, "1,2", b"{}", None);
        assert_eq!(args.len(), 5);
    }

    #[test]
    fn contexts_go_stale_after_their_ttl() {
        let c = CachedContext { fetched_at_ms: 1_000, context: serde_json::json!({"a": 1}) };
        assert_eq!(CachedContext::decode(&c.encode()), Some(c.clone()));
        assert!(c.fresh(30_999, 30_000));
        assert!(!c.fresh(31_000, 30_000));
    }
}
