//! The summary cache in Redis, which may be lost at any time.
//!
//! Per type and window, two entries: the last answer with the journal state
//! it was computed at, and the window's folded part with the folded state it
//! holds. A summary reads the type's journal headers from the store, then
//! asks Redis for the answer (one `GET`): at exactly the current state it is
//! a HIT. Otherwise it fetches the folded part and the upstream context (one
//! `MGET`); if the folded part is still at the current folded state, only
//! the journal's items are added to it (a PARTIAL): no aggregate is read
//! again while metrics keep arriving. Every answer therefore includes every
//! acknowledged metric, cached or not.
//!
//! The upstream context is cached on its own, per type (`context:{type}`),
//! so the upstream sees one call per type per context TTL however many
//! summaries are computed.

use crate::aggregate::Aggregate;
use crate::summary::SummaryRequest;
use crate::time::MS_PER_SECOND;

/// The answer's key for one type and window.
pub fn cache_key(request: &SummaryRequest) -> String {
    match request.window {
        Some(w) => format!("summary:{}:{}:{}", request.metric_type, w.from_second, w.to_second),
        None => format!("summary:{}:all", request.metric_type),
    }
}

/// The folded part's key, next to the answer's.
pub fn folded_key(request: &SummaryRequest) -> String {
    format!("{}:folded", cache_key(request))
}

pub fn context_key(metric_type: &str) -> String {
    format!("context:{metric_type}")
}

/// Held while one request refreshes a type's context.
pub fn context_refresh_key(metric_type: &str) -> String {
    format!("context:{metric_type}:refresh")
}

/// `KEYS`: the answer, then optionally the folded part. `ARGV`: TTL (ms),
/// the answer, then optionally the folded part.
pub const STORE_SCRIPT: &str = r#"
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])
if KEYS[2] then redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[1]) end
return 1
"#;

/// `state`, a newline, then the payload.
fn tagged(state: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(state.len() + 1 + payload.len());
    out.extend_from_slice(state.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload);
    out
}

/// The payload of `entry` if it was tagged with `state`.
fn untag<'a>(entry: &'a [u8], state: &str) -> Option<&'a [u8]> {
    let rest = entry.strip_prefix(state.as_bytes())?;
    rest.strip_prefix(b"\n")
}

/// The cached answer's body, if it was computed at journal state `state`.
pub fn read_answer<'a>(entry: &'a [u8], state: &str) -> Option<&'a [u8]> {
    untag(entry, state)
}

/// The cached folded part, if it holds exactly folded state `folded_state`.
pub fn read_folded(entry: &[u8], folded_state: &str) -> Option<Aggregate> {
    Aggregate::decode(untag(entry, folded_state)?).ok()
}

/// `ARGV` of [`STORE_SCRIPT`]: the answer at `state`, and the folded part
/// at `folded_state` when there is one to keep.
pub fn store_args(ttl_ms: u64, state: &str, body: &[u8], folded: Option<(&str, &Aggregate)>) -> Vec<Vec<u8>> {
    let mut args = vec![ttl_ms.to_string().into_bytes(), tagged(state, body)];
    if let Some((folded_state, aggregate)) = folded {
        args.push(tagged(folded_state, &aggregate.encode()));
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
        assert_eq!(folded_key(&request("type=cpu")), "summary:cpu:all:folded");
        let k = cache_key(&request("type=cpu&period=hourly"));
        assert_eq!(k, format!("summary:cpu:{}:{}", NOW / 1000 + 1 - 3600, NOW / 1000 + 1));
    }

    #[test]
    fn entries_are_used_only_at_their_state() {
        let args = store_args(5_000, "3,4", b"{}", None);
        assert_eq!(args.len(), 2);
        assert_eq!(read_answer(&args[1], "3,4"), Some(&b"{}"[..]));
        assert_eq!(read_answer(&args[1], "3,44"), None);
        assert_eq!(read_answer(&args[1], "3"), None);
        let mut a = Aggregate::default();
        a.record(2.0, 5);
        let args = store_args(5_000, "3,4", b"{}", Some(("1,2", &a)));
        assert_eq!(read_folded(&args[2], "1,2"), Some(a));
        assert_eq!(read_folded(&args[2], "1,3"), None, "folded since");
        assert_eq!(read_folded(b"1,2\njunk", "1,2"), None);
    }

    #[test]
    fn trailing_windows_are_kept_briefly() {
        assert_eq!(entry_ttl_ms(&request("type=cpu&period=daily"), 300, NOW), 5_000);
        assert_eq!(entry_ttl_ms(&request("type=cpu"), 300, NOW), 300_000);
        let old = request("type=cpu&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z");
        assert_eq!(entry_ttl_ms(&old, 300, NOW), 300_000);
    }

    #[test]
    fn contexts_go_stale_after_their_ttl() {
        let c = CachedContext { fetched_at_ms: 1_000, context: serde_json::json!({"a": 1}) };
        assert_eq!(CachedContext::decode(&c.encode()), Some(c.clone()));
        assert!(c.fresh(30_999, 30_000));
        assert!(!c.fresh(31_000, 30_000));
    }
}
