//! A user's data on request: everything stored about them (an access
//! request, `GET /api/users/{id}/export`) and its erasure (`DELETE
//! /api/users/{id}`).
//!
//! Found through the user's retention record (the days they were active)
//! and the type registry: for each type and day, the journal shards and
//! the entry chunks of the seconds that hold data.
//!
//! Erasure removes the user's metrics from the entry chunks (so from the
//! listing and the export), their user id and properties from metrics still
//! in a journal (which stay, without them, to be counted, and are never
//! listed), and their retention record. It keeps the aggregates (counts,
//! sums, quantile sketches), the cohort counters and the distinct-user
//! sketches, which hold no id and cannot forget one user (estimates keep
//! counting them), and claims of client ids. Running it again finds nothing
//! more: it is idempotent.

use serde_json::{json, Value};

use crate::aggregate::Aggregate;
use crate::entries::Chunk;
use crate::journal::{Journal, SHARDS};
use crate::keys::{bucket_key, journal_key};
use crate::kv::{update, Change, Kv, Reader, StoreError};
use crate::metric::Metric;
use crate::retention::{active_days, user_key};
use crate::time::{Bucket, Level};

/// What one pass found (and, erasing, removed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Found {
    pub metrics: Vec<Metric>,
    pub days: Vec<i64>,
    /// Chunks (erasing: rewritten) and journal shards holding the user's metrics.
    pub chunks: usize,
    pub journal_items: usize,
}

impl Found {
    pub fn export(&self, user_id: &str) -> Value {
        json!({
            "user_id": user_id,
            "metrics": self.metrics.iter().map(Metric::to_json).collect::<Vec<_>>(),
            "active_days": self.days.iter().map(|d| crate::time::format_timestamp(d * 86_400_000)).collect::<Vec<_>>(),
            "not_included": "aggregates (counts, sums, percentiles, distinct-user estimates) and cohort counters, which hold no user id",
        })
    }
}

fn aggregates(reader: &mut dyn Reader, metric_type: &str, buckets: &[Bucket]) -> Result<Vec<(Bucket, Aggregate)>, StoreError> {
    let keys: Vec<String> = buckets.iter().map(|b| bucket_key(metric_type, *b)).collect();
    let values = reader.get_many(&keys)?;
    let mut out = Vec::new();
    for ((bucket, key), value) in buckets.iter().zip(&keys).zip(values) {
        if let Some(bytes) = value {
            out.push((*bucket, Aggregate::decode(&bytes).map_err(|e| StoreError::corrupt(key, e))?));
        }
    }
    Ok(out)
}

/// The second aggregates (with their chunks) of one day of a type.
fn seconds_of_day(reader: &mut dyn Reader, metric_type: &str, day: i64) -> Result<Vec<(Bucket, Aggregate)>, StoreError> {
    let mut level = aggregates(reader, metric_type, &[Bucket { level: Level::Day, index: day }])?;
    while level.first().is_some_and(|(b, _)| b.level != Level::Second) {
        let children: Vec<Bucket> = level.iter().flat_map(|(b, a)| a.children_descending().filter_map(|p| b.child(p)).collect::<Vec<_>>()).collect();
        level = aggregates(reader, metric_type, &children)?;
    }
    Ok(level)
}

/// Everything stored about `user_id` across `types`; with `erase`, removes it.
pub fn visit<K: Kv>(kv: &mut K, user_id: &str, types: &[String], erase: bool) -> Result<Found, StoreError> {
    let mine = |m: &Metric| m.user_id.as_deref() == Some(user_id);
    let mut found = Found { days: active_days(kv, user_id)?, ..Found::default() };
    for metric_type in types {
        for shard in 0..SHARDS {
            let key = journal_key(metric_type, shard);
            let Some(bytes) = kv.get(&key)? else { continue };
            let journal = Journal::decode(&key, &bytes)?;
            let theirs: Vec<Metric> = journal.items.iter().filter(|m| mine(m)).cloned().collect();
            if theirs.is_empty() {
                continue;
            }
            found.journal_items += theirs.len();
            found.metrics.extend(theirs);
            if erase {
                update(kv, &key, |current| {
                    let mut journal = Journal::decode(&key, current.unwrap_or_default())?;
                    if !journal.items.iter().any(mine) {
                        return Ok(Change::Done(()));
                    }
                    journal.items.iter_mut().filter(|m| mine(m)).for_each(|m| *m = m.erased());
                    Ok(Change::Write(journal.encode(), ()))
                })?;
            }
        }
        for &day in &found.days {
            for (second, aggregate) in seconds_of_day(kv, metric_type, day)? {
                let keys: Vec<String> = aggregate.chunks.iter().map(|c| c.key(metric_type, second.index)).collect();
                for ((key, value), reference) in keys.iter().zip(kv.get_many(&keys)?).zip(&aggregate.chunks) {
                    let Some(bytes) = value else { continue };
                    let chunk = Chunk::decode(key, &bytes)?;
                    if !chunk.items.iter().any(|(_, m)| mine(m)) {
                        continue;
                    }
                    found.chunks += 1;
                    found.metrics.extend(reference.metrics(chunk.clone()).filter(|m| mine(m)));
                    if erase {
                        let kept = Chunk { items: chunk.items.into_iter().filter(|(_, m)| !mine(m)).collect() };
                        kv.set(key, &kept.encode())?;
                    }
                }
            }
        }
    }
    if erase && !found.days.is_empty() {
        kv.delete_many(&[user_key(user_id)])?;
    }
    found.metrics.sort_by(|a, b| (a.timestamp_ms, &a.id).cmp(&(b.timestamp_ms, &b.id)));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{fold_all, ingest};
    use crate::memory_store::MemoryStore;

    const NOW: i64 = 1_771_416_000_500;

    fn event(i: i64, user: &str) -> Metric {
        Metric { user_id: Some(user.into()), properties: Some(r#"{"plan":"pro"}"#.into()), ..Metric::new(format!("e{i}-{user}"), "visit", 1.0, NOW - i * 3_600_000) }
    }

    #[test]
    fn a_user_is_exported_then_erased_from_chunks_and_journals_and_stays_counted() {
        let mut store = MemoryStore::default();
        let types = vec!["visit".to_string()];
        for i in 0..600 {
            for user in ["ann", "bob"] {
                ingest(&mut store, &event(i, user), true, 0, None).unwrap();
            }
        }
        // Some folded into chunks, some still in journals.
        assert!(store.snapshot().keys().any(|k| k.starts_with("ent:")));
        let export = visit(&mut store, "ann", &types, false).unwrap();
        assert_eq!(export.metrics.len(), 600);
        assert!(export.journal_items > 0 && export.chunks > 0);
        assert_eq!(export.export("ann")["metrics"][0]["properties"]["plan"], "pro");
        let erased = visit(&mut store, "ann", &types, true).unwrap();
        assert_eq!(erased.metrics.len(), 600);
        assert_eq!(visit(&mut store, "ann", &types, false).unwrap(), Found::default(), "nothing left, and erasing again finds nothing");
        assert_eq!(visit(&mut store, "bob", &types, false).unwrap().metrics.len(), 600, "bob untouched");
        fold_all(&mut store, "visit", None).unwrap();
        let all = crate::listing::list(&mut store.request(), &crate::listing::ListRequest::parse(&crate::query::Query::parse("type=visit&limit=1000").unwrap()).unwrap(), &[]).unwrap();
        assert!(all.metrics.iter().all(|m| m.user_id.as_deref() == Some("bob")), "the listing holds no trace of ann");
        assert_eq!(all.metrics.len(), 600);
        let request = crate::summary::SummaryRequest::parse(&crate::query::Query::parse("type=visit").unwrap(), NOW).unwrap();
        let pending = crate::pending::Pending::read(&mut store, "visit").unwrap();
        assert_eq!(crate::summary::window_aggregate(&mut store, &request, &pending).unwrap().count, 1_200, "still counted");
        assert!(store.value("user:ann").is_none() && store.value("user:bob").is_some());
    }
}
