//! Raising the application's counters (`analytics_core::app_metrics`) in Redis.

use std::collections::BTreeMap;

use analytics_core::app_metrics::{add_args, field, Family, ADD_SCRIPT, COUNTERS_KEY};

use analytics_core::ApiError;

use crate::redis::Redis;

/// Counts a request of `component` that failed because the key-value store
/// did (a 503), on a connection of its own: an error path, not a hot one.
pub fn count_store_failure(component: &str, error: &ApiError) {
    if error.status == 503 {
        Tally::one(Family::KeyValueFailures, component).send(Redis::connect().ok().as_ref());
    }
}

/// Counter changes gathered during a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally(BTreeMap<String, i64>);

impl Tally {
    pub fn add(&mut self, family: Family, label: &str, delta: i64) {
        *self.0.entry(field(family, label)).or_default() += delta;
    }

    pub fn one(family: Family, label: &str) -> Tally {
        let mut t = Tally::default();
        t.add(family, label, 1);
        t
    }

    /// Field/delta pairs, zero deltas left out.
    pub fn deltas(&self) -> Vec<(String, i64)> {
        self.0.iter().filter(|(_, d)| **d != 0).map(|(f, d)| (f.clone(), *d)).collect()
    }

    /// What `self` adds on top of `counted`, already raised.
    pub fn minus(&self, counted: &Tally) -> Tally {
        let mut out = self.clone();
        for (f, d) in &counted.0 {
            *out.0.entry(f.clone()).or_default() -= d;
        }
        out
    }

    /// Raises the counters in one call; a failure only loses counts.
    pub fn send(&self, redis: Option<&Redis>) {
        let deltas = self.deltas();
        if deltas.is_empty() {
            return;
        }
        let Some(redis) = redis else { return };
        if let Err(e) = redis.eval_ints(ADD_SCRIPT, &[COUNTERS_KEY], &add_args(&deltas)) {
            eprintln!("counters not raised: {e}");
        }
    }
}
