//! Stored metrics for the read scenarios, written straight into the host's
//! SQLite key-value file before it starts: what ingests leave once their
//! journals are folded (the aggregates of every level and all time, each
//! second's entry chunk, and the `types` registry), computed
//! with `analytics_core` in memory instead of through a million HTTP requests.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use analytics_core::aggregate::Aggregate;
use analytics_core::entries::{Chunk, ChunkRef};
use analytics_core::fold::{apply, targets};
use analytics_core::keys::{bucket_key, TYPES_KEY};
use analytics_core::time::{Bucket, Level};
use analytics_core::kv::second_of;
use analytics_core::metric::{new_id, Metric};
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
        Metric::new(id, metric_type.to_string(), value, timestamp_ms)
    })
}

/// Every record folded ingests of the seeds' metrics leave in the store,
/// passed to `write` in batches: entry lists as each second completes, then
/// the aggregates and `types`.
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
        // Metrics come oldest first, so each second's chunk is complete when
        // the next second begins: as if journal shard 0 folded every second
        // on its own.
        let mut second: Option<(i64, Chunk)> = None;
        let chunk_done = |s: i64, chunk: Chunk, aggregates: &mut HashMap<String, Aggregate>, batch: &mut Vec<(String, Vec<u8>)>| {
            let through = chunk.items.last().map_or(0, |(seq, _)| *seq);
            let reference = ChunkRef { shard: 0, through, after: through - chunk.items.len() as u64 };
            let key = bucket_key(&seed.metric_type, Bucket { level: Level::Second, index: s });
            aggregates.entry(key).or_default().chunks.push(reference);
            batch.push((reference.key(&seed.metric_type, s), chunk.encode()));
        };
        for (seq, metric) in (1..).zip(metrics(&seed.metric_type, seed.count, now_ms)) {
            for target in targets(metric.timestamp_ms) {
                apply(&target, aggregates.entry(target.key(&metric.metric_type)).or_default(), &metric);
            }
            let this = second_of(metric.timestamp_ms);
            match &mut second {
                Some((s, chunk)) if *s == this => chunk.items.push((seq, metric)),
                _ => {
                    if let Some((s, chunk)) = second.replace((this, Chunk { items: vec![(seq, metric)] })) {
                        chunk_done(s, chunk, &mut aggregates, &mut batch);
                    }
                }
            }
            if batch.len() >= BATCH {
                flush(&mut batch, &mut rows)?;
            }
        }
        if let Some((s, chunk)) = second {
            chunk_done(s, chunk, &mut aggregates, &mut batch);
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
    use analytics_core::ingest::{fold_all, ingest};
    use analytics_core::listing::{list, ListRequest};
    use analytics_core::memory_store::MemoryStore;
    use analytics_core::pending::Pending;
    use analytics_core::query::Query;
    use analytics_core::summary::{window_aggregate, SummaryRequest};

    const NOW: i64 = 1_771_416_000_500;

    fn seeded(seeds: &[Seed]) -> MemoryStore {
        let store = MemoryStore::default();
        records(seeds, NOW, |batch| {
            store.load(batch);
            Ok(())
        })
        .unwrap();
        store
    }

    fn summary(store: &MemoryStore, q: &str) -> Aggregate {
        let mut reader = store.request();
        let request = SummaryRequest::parse(&Query::parse(q).unwrap(), NOW).unwrap();
        let pending = Pending::read(&mut reader, &request.metric_type).unwrap();
        window_aggregate(&mut reader, &request, &pending).unwrap()
    }

    #[test]
    fn seeding_leaves_what_ingesting_one_by_one_leaves() {
        // Dense enough that seconds hold several metrics.
        let seeds = [Seed { metric_type: "dense".into(), count: 3_000_000 / 1_000 }, Seed { metric_type: "sparse".into(), count: 50 }];
        let seeded = seeded(&seeds);
        let ingested = MemoryStore::default();
        for seed in &seeds {
            let mut kv = ingested.request();
            for (i, metric) in metrics(&seed.metric_type, seed.count, NOW).enumerate() {
                ingest(&mut kv, &metric, false, i, None).unwrap();
            }
            fold_all(&mut kv, &seed.metric_type, None).unwrap();
        }
        for q in ["type=dense", "type=dense&period=daily", "type=dense&period=monthly", "type=sparse&period=weekly"] {
            let (a, b) = (summary(&seeded, q), summary(&ingested, q));
            // Sums differ only by the order of additions.
            assert!((a.sum - b.sum).abs() < 1e-6 * a.sum.abs().max(1.0), "{q}");
            assert_eq!((a.count, a.min, a.max, a.latest_ms, &a.sketch), (b.count, b.min, b.max, b.latest_ms, &b.sketch), "{q}");
        }
        let request = ListRequest::parse(&Query::parse("limit=1000").unwrap()).unwrap();
        let types = ["dense".to_string(), "sparse".to_string()];
        let page = |store: &MemoryStore| list(&mut store.request(), &request, &types).unwrap();
        assert_eq!(page(&seeded), page(&ingested));
        assert_eq!(seeded.value(TYPES_KEY), Some(br#"["dense","sparse"]"#.to_vec()));
    }

    #[test]
    fn seeded_metrics_are_summarised_and_listed() {
        let store = seeded(&[Seed { metric_type: "cpu".into(), count: 2_000 }]);
        assert_eq!(summary(&store, "type=cpu").count, 2_000);
        // The monthly window starts a second after the oldest possible metric.
        assert!(summary(&store, "type=cpu&period=monthly").count >= 1_999);
        let daily = summary(&store, "type=cpu&period=daily").count;
        assert!((60..=74).contains(&daily), "{daily}");
        let request = ListRequest::parse(&Query::parse("type=cpu&limit=100").unwrap()).unwrap();
        let page = list(&mut store.request(), &request, &[]).unwrap();
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
        assert_eq!(Aggregate::decode(&get("agg:t:all")).unwrap().count, 500);
        assert_eq!(get(TYPES_KEY), br#"["t"]"#.to_vec());
    }
}
