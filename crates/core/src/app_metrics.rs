//! The application's operational counters, for `GET /metrics`.
//!
//! They live in one Redis hash (losable: Prometheus treats a reset counter
//! as a restart) and are raised inside calls the requests make anyway, so
//! the ingest and cached-summary paths pay no extra round trip: the
//! rate-limit script counts admitted, rejected and rate-limited ingests, the
//! summary cache's fill script counts misses and partial hits, and cache
//! hits (which do not touch Redis at all) are sampled: one hit in
//! [`HIT_SAMPLE`] adds [`HIT_SAMPLE`], an unbiased estimate. Rarer outcomes
//! (duplicates, conflicts, store failures, upstream calls, breaker
//! transitions) add their own small call on their own, slower path.

use std::collections::BTreeMap;

/// The Redis hash holding every counter.
pub const COUNTERS_KEY: &str = "metrics:counters";
/// One cache hit in this many is counted, by this many.
pub const HIT_SAMPLE: u64 = 32;

/// `KEYS[1]`: the counters. `ARGV`: field, delta, field, delta, ...
pub const ADD_SCRIPT: &str = r#"
for i = 1, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"#;

/// A counter's field in the hash: `family|label`.
pub fn field(family: Family, label: &str) -> String {
    format!("{}|{label}", family.name())
}

/// The counter families, each with one label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    /// Metrics stored, or recognised as duplicates (`outcome`).
    Metrics,
    /// Metrics refused, by `reason` (the error code, or `rate_limited`).
    Rejected,
    /// Summaries by how the cache took part (`cache`: hit, partial, miss, bypass).
    Summaries,
    /// Upstream calls by `outcome` (success, error, timeout, short_circuited).
    Upstream,
    /// Circuit breaker transitions, by the state entered (`to`).
    BreakerTransitions,
    /// Key-value store failures, by `component`.
    KeyValueFailures,
}

impl Family {
    pub const ALL: [Family; 6] = [
        Family::Metrics,
        Family::Rejected,
        Family::Summaries,
        Family::Upstream,
        Family::BreakerTransitions,
        Family::KeyValueFailures,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Metrics => "metrics",
            Family::Rejected => "rejected",
            Family::Summaries => "summaries",
            Family::Upstream => "upstream",
            Family::BreakerTransitions => "breaker_transitions",
            Family::KeyValueFailures => "key_value_failures",
        }
    }

    /// The Prometheus name, its label and its help text.
    pub fn describe(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Family::Metrics => ("analytics_metrics", "outcome", "Metrics stored (accepted) or recognised as re-posts (duplicate)"),
            Family::Rejected => ("analytics_metrics_rejected", "reason", "Metrics or requests refused, by error code (rate_limited counts requests)"),
            Family::Summaries => ("analytics_summaries", "cache", "Summaries by how the cache took part (hits are sampled 1 in 32)"),
            Family::Upstream => ("analytics_upstream_calls", "outcome", "Calls to the external service, by outcome (short_circuited: refused by the open breaker)"),
            Family::BreakerTransitions => ("analytics_circuit_breaker_transitions", "to", "Circuit breaker state changes, by the state entered"),
            Family::KeyValueFailures => ("analytics_key_value_failures", "component", "Requests that failed because the key-value store did"),
        }
    }

    fn from_name(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// The hash's fields as counters: family → label → value (garbage skipped).
pub fn parse(fields: &[(String, String)]) -> BTreeMap<Family, BTreeMap<String, u64>> {
    let mut out: BTreeMap<Family, BTreeMap<String, u64>> = BTreeMap::new();
    for (name, value) in fields {
        let Some((family, label)) = name.split_once('|') else { continue };
        let (Some(family), Ok(value)) = (Family::from_name(family), value.parse::<i64>()) else { continue };
        out.entry(family).or_default().insert(label.to_string(), value.max(0) as u64);
    }
    out
}

/// `ARGV` of [`ADD_SCRIPT`].
pub fn add_args(deltas: &[(String, i64)]) -> Vec<Vec<u8>> {
    deltas.iter().flat_map(|(f, d)| [f.as_bytes().to_vec(), d.to_string().into_bytes()]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_garbage_is_skipped() {
        let fields = vec![
            (field(Family::Metrics, "accepted"), "12".to_string()),
            (field(Family::Rejected, "validation_failed"), "3".to_string()),
            ("nonsense".to_string(), "1".to_string()),
            ("metrics|x".to_string(), "many".to_string()),
            ("summaries|hit".to_string(), "-4".to_string()),
        ];
        let parsed = parse(&fields);
        assert_eq!(parsed[&Family::Metrics]["accepted"], 12);
        assert_eq!(parsed[&Family::Rejected]["validation_failed"], 3);
        assert_eq!(parsed[&Family::Summaries]["hit"], 0);
        assert_eq!(parsed.len(), 3);
        assert_eq!(add_args(&[("a|b".into(), -1)]), vec![b"a|b".to_vec(), b"-1".to_vec()]);
    }
}
