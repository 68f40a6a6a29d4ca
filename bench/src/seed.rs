//! Stored metrics for the read scenarios, written straight into the host's
//! SQLite key-value file before it starts: the same records an ingest writes
//! (the metric, the aggregates of its second, minute, hour, day and all time,
//! its list entry, the `types` registry and the `version:{type}` counter),
//! computed with `analytics_core` in memory instead of through a million
//! HTTP requests.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use analytics_core::aggregate::Aggregate;
use analytics_core::ingest::{apply, targets, Target};
use analytics_core::metric::{new_id, Metric};
use analytics_core::store::{entry_key, metric_key, version_key, TYPES_KEY};
use analytics_core::time::{Bucket, Level};
use anyhow::Context;
use rusqlite::{params, Connection};

/// Metrics are spread evenly over this much time before `now`.
pub const SPAN_MS: i64 = 30 * 86_400 * 1_000;
/// Rows per `set_many` transaction.
const BATCH: usize = 100_000;

/// One metric type and how many metrics it gets.
#[derive(Debug, Clone)]
pub struct Seed {
    pub metric_type: String,
    pub count: u64,
}

/// What seeding wrote, and how long it took.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SeedStats {
    pub metrics: u64,
    pub rows: u64,
    pub compute_seconds: f64,
    pub write_seconds: f64,
    pub file_bytes: u64,
}

/// A small deterministic generator (SplitMix64), so runs seed the same values.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The `count` metrics of `metric_type`, oldest first, evenly spread over
/// [`SPAN_MS`] before `now_ms` with some jitter, values in 0..100.
pub fn metrics(metric_type: &str, count: u64, now_ms: i64) -> impl Iterator<Item = Metric> + '_ {
    let mut random = SplitMix(count ^ metric_type.len() as u64);
    let step = SPAN_MS as f64 / count.max(1) as f64;
    let start = now_ms - SPAN_MS;
    (0..count).map(move |i| {
        let jitter = (random.next() % step.max(1.0) as u64) as i64;
        let timestamp_ms = (start + (i as f64 * step) as i64 + jitter).min(now_ms - 1);
        let value = (random.next() % 10_000) as f64 / 100.0;
        let id = new_id(timestamp_ms, u128::from(random.next()) << 64 | u128::from(random.next()));
        Metric { id, metric_type: metric_type.to_string(), value, timestamp_ms }
    })
}

/// Every record an ingest of `metrics` (in order) leaves in the store, passed
/// to `write` in batches: metric and entry records as they are produced, the
/// aggregates, `types` and versions at the end.
pub fn records(
    seeds: &[Seed],
    now_ms: i64,
    mut write: impl FnMut(Vec<(String, Vec<u8>)>) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let mut aggregates: HashMap<String, Aggregate> = HashMap::new();
    let mut batch = Vec::with_capacity(BATCH);
    let mut rows = 0u64;
    let mut flush = |batch: &mut Vec<(String, Vec<u8>)>, rows: &mut u64| -> anyhow::Result<()> {
        *rows += batch.len() as u64;
        write(std::mem::replace(batch, Vec::with_capacity(BATCH)))
    };
    for seed in seeds {
        for metric in metrics(&seed.metric_type, seed.count, now_ms) {
            let record = serde_json::to_vec(&metric).context("serialising a metric")?;
            let mut entry_number = 0;
            for target in targets(metric.timestamp_ms) {
                let aggregate = aggregates.entry(target.key(&metric.metric_type)).or_default();
                apply(&target, aggregate, &metric);
                // As in the component: the second's new count numbers the list entry.
                if let Target::Bucket(Bucket { level: Level::Second, .. }) = target {
                    entry_number = aggregate.count;
                }
            }
            let second = Bucket::containing(Level::Second, metric.timestamp_ms).index;
            batch.push((entry_key(&metric.metric_type, second, entry_number), record.clone()));
            batch.push((metric_key(&metric.id), record));
            if batch.len() >= BATCH {
                flush(&mut batch, &mut rows)?;
            }
        }
    }
    // Sorted, so the inserts walk the primary-key index in order.
    let mut aggregates: Vec<(String, Aggregate)> = aggregates.into_iter().collect();
    aggregates.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (key, aggregate) in aggregates {
        batch.push((key, aggregate.encode()));
        if batch.len() >= BATCH {
            flush(&mut batch, &mut rows)?;
        }
    }
    let mut types: Vec<&str> = seeds.iter().map(|s| s.metric_type.as_str()).collect();
    types.sort_unstable();
    types.dedup();
    batch.push((TYPES_KEY.to_string(), serde_json::to_vec(&types).context("serialising the types")?));
    for seed in seeds {
        // Every ingest bumps the version once.
        batch.push((version_key(&seed.metric_type), (seed.count as i64).to_le_bytes().to_vec()));
    }
    flush(&mut batch, &mut rows)?;
    Ok(rows)
}

/// Writes the records of `seeds` into the key-value file at `path` (store
/// `default`, Spin's table layout), as a host would find them.
pub fn seed_file(path: &Path, seeds: &[Seed], now_ms: i64) -> anyhow::Result<SeedStats> {
    let mut connection = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    connection.execute_batch(
        "CREATE TABLE IF NOT EXISTS spin_key_value (
            store TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (store, key))",
    )?;
    let started = Instant::now();
    let mut writing = Duration::ZERO;
    let rows = records(seeds, now_ms, |batch| {
        let t = Instant::now();
        let tx = connection.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO spin_key_value (store, key, value) VALUES ('default', ?1, ?2)
                 ON CONFLICT(store, key) DO UPDATE SET value = excluded.value",
            )?;
            for (key, value) in &batch {
                insert.execute(params![key, value])?;
            }
        }
        tx.commit().with_context(|| format!("writing {} rows to {}", batch.len(), path.display()))?;
        writing += t.elapsed();
        Ok(())
    })?;
    drop(connection);
    let total = started.elapsed();
    Ok(SeedStats {
        metrics: seeds.iter().map(|s| s.count).sum(),
        rows,
        compute_seconds: (total - writing).as_secs_f64(),
        write_seconds: writing.as_secs_f64(),
        file_bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use analytics_core::ingest::ingest_into;
    use analytics_core::listing::{list, ListRequest};
    use analytics_core::query::Query;
    use analytics_core::store::MemoryStore;
    use analytics_core::summary::{window_aggregate, SummaryRequest};

    const NOW: i64 = 1_771_416_000_500;

    fn seeded(seeds: &[Seed]) -> MemoryStore {
        let mut store = MemoryStore::default();
        records(seeds, NOW, |batch| {
            store.values.extend(batch);
            Ok(())
        })
        .unwrap();
        store
    }

    #[test]
    fn seeding_leaves_what_ingesting_one_by_one_leaves() {
        // Dense enough that seconds hold several metrics.
        let seeds = [Seed { metric_type: "dense".into(), count: 3_000_000 / 1_000 }, Seed { metric_type: "sparse".into(), count: 50 }];
        let seeded = seeded(&seeds);
        let mut ingested = MemoryStore::default();
        for seed in &seeds {
            for metric in metrics(&seed.metric_type, seed.count, NOW) {
                ingest_into(&mut ingested, &metric);
            }
        }
        // ingest_into writes aggregates and entries; the seed adds metric records, types and versions.
        for (key, value) in &ingested.values {
            assert_eq!(seeded.values.get(key), Some(value), "{key}");
        }
        assert_eq!(seeded.values.len(), ingested.values.len() + 3_050 + 1 + 2);
        assert_eq!(seeded.values[TYPES_KEY], br#"["dense","sparse"]"#.to_vec());
        assert_eq!(seeded.values["version:dense"], 3_000i64.to_le_bytes().to_vec());
    }

    #[test]
    fn seeded_metrics_are_summarised_and_listed() {
        let mut store = seeded(&[Seed { metric_type: "cpu".into(), count: 2_000 }]);
        let summary = |store: &mut MemoryStore, q: &str| {
            let request = SummaryRequest::parse(&Query::parse(q).unwrap(), NOW).unwrap();
            window_aggregate(store, &request).unwrap().count
        };
        assert_eq!(summary(&mut store, "type=cpu"), 2_000);
        // The monthly window starts a second after the oldest possible metric.
        assert!(summary(&mut store, "type=cpu&period=monthly") >= 1_999);
        let daily = summary(&mut store, "type=cpu&period=daily");
        assert!((60..=74).contains(&daily), "{daily}");
        let request = ListRequest::parse(&Query::parse("type=cpu&limit=100").unwrap()).unwrap();
        let page = list(&mut store, &request, &[]).unwrap();
        assert_eq!(page.metrics.len(), 100);
        assert!(page.metrics.windows(2).all(|w| w[0].timestamp_ms >= w[1].timestamp_ms));
        assert!(page.next.is_some());
    }

    #[test]
    fn seeds_a_sqlite_file_the_host_can_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sqlite_key_value.db");
        let stats = seed_file(&path, &[Seed { metric_type: "t".into(), count: 500 }], NOW).unwrap();
        assert_eq!(stats.metrics, 500);
        let connection = Connection::open(&path).unwrap();
        let get = |key: &str| -> Vec<u8> {
            connection
                .query_row("SELECT value FROM spin_key_value WHERE store = 'default' AND key = ?1", [key], |r| r.get(0))
                .unwrap()
        };
        let total = Aggregate::decode(&get("agg:t:all")).unwrap().unwrap();
        assert_eq!(total.count, 500);
        assert_eq!(get("version:t"), 500i64.to_le_bytes().to_vec());
    }
}
