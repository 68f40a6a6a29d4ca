//! What the write path costs on disk, measured natively (no host, no
//! HTTP): metrics go through `analytics_core::ingest` exactly as the ingest
//! component sends them, into a SQLite file in Spin's table layout.
//!
//! - bytes per metric on disk, for a spread-out load with and without
//!   client ids, and after the retention sweep removed older raw metrics;
//! - the fold at 10 000 metrics per type-second: writes and bytes written per
//!   metric, and CPU time, which must not grow with the rate per second.

use std::path::Path;
use std::time::Instant;

use analytics_core::expiry::Expiry;
use analytics_core::ingest::{fold_all, ingest_batch};
use analytics_core::kv::{Kv, Reader, StoreError, Swap};
use analytics_core::metric::{new_id, Metric};
use anyhow::Context;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// A SQLite file with Spin's key-value table, as the core's store. Every
/// call is its own statement; the compare-and-swap is `UPDATE ... WHERE
/// value = <what was read>`, as Spin's is.
pub struct SqliteKv {
    connection: Connection,
    pub writes: u64,
    pub bytes_written: u64,
}

impl SqliteKv {
    pub fn create(path: &Path) -> anyhow::Result<SqliteKv> {
        let connection = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        // Durability does not change what is stored; only the bytes are measured here.
        connection.execute_batch(
            "PRAGMA synchronous = OFF;
             PRAGMA journal_mode = MEMORY;
             CREATE TABLE IF NOT EXISTS spin_key_value (
                store TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (store, key));",
        )?;
        Ok(SqliteKv { connection, writes: 0, bytes_written: 0 })
    }

    /// Bytes the database file occupies (its pages in use).
    pub fn bytes_in_use(&self) -> anyhow::Result<u64> {
        let pages: i64 = self.connection.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let free: i64 = self.connection.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        let size: i64 = self.connection.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok(((pages - free) * size) as u64)
    }

    /// Bytes of keys and values, by what the key holds.
    pub fn bytes_by_kind(&self) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
        let mut statement = self.connection.prepare("SELECT key, length(key) + length(value) FROM spin_key_value WHERE store = 'default'")?;
        let mut out = std::collections::BTreeMap::new();
        let rows = statement.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (key, bytes) = row?;
            let kind = match key.split(':').next().unwrap_or("") {
                "ent" | "claim" => "raw",
                "agg" if key.split(':').nth(2) == Some("s") => "second aggregates",
                "agg" => "coarser aggregates",
                "jrn" => "journal",
                _ => "other",
            };
            *out.entry(kind.to_string()).or_insert(0) += bytes as u64;
        }
        Ok(out)
    }

    /// Rows whose key starts with `prefix`.
    pub fn count(&self, prefix: &str) -> anyhow::Result<u64> {
        let n: i64 = self.connection.query_row(
            "SELECT count(*) FROM spin_key_value WHERE store = 'default' AND key >= ?1 AND key < ?1 || x'ff'",
            [prefix],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    fn wrote(&mut self, bytes: usize) {
        self.writes += 1;
        self.bytes_written += bytes as u64;
    }
}

fn failed(e: rusqlite::Error) -> StoreError {
    StoreError::Store(e.to_string())
}

impl Reader for SqliteKv {
    fn get_many(&mut self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut select = self
            .connection
            .prepare_cached("SELECT value FROM spin_key_value WHERE store = 'default' AND key = ?1")
            .map_err(failed)?;
        keys.iter().map(|k| select.query_row([k], |r| r.get(0)).optional().map_err(failed)).collect()
    }
}

impl Kv for SqliteKv {
    /// The key and the value read.
    type Cas = (String, Option<Vec<u8>>);

    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.set_many(&[(key.to_string(), value.to_vec())])
    }

    fn set_many(&mut self, entries: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        let tx = self.connection.transaction().map_err(failed)?;
        for (key, value) in entries {
            tx.execute(
                "INSERT INTO spin_key_value (store, key, value) VALUES ('default', ?1, ?2)
                 ON CONFLICT(store, key) DO UPDATE SET value = ?2",
                params![key, value],
            )
            .map_err(failed)?;
        }
        tx.commit().map_err(failed)?;
        self.wrote(entries.iter().map(|(k, v)| k.len() + v.len()).sum());
        Ok(())
    }

    fn delete_many(&mut self, keys: &[String]) -> Result<(), StoreError> {
        let tx = self.connection.transaction().map_err(failed)?;
        for key in keys {
            tx.execute("DELETE FROM spin_key_value WHERE store = 'default' AND key = ?1", [key]).map_err(failed)?;
        }
        tx.commit().map_err(failed)?;
        self.wrote(0);
        Ok(())
    }

    fn increment(&mut self, key: &str, delta: i64) -> Result<i64, StoreError> {
        let current = self.get(key)?.map_or(Ok(0), |bytes| {
            <[u8; 8]>::try_from(bytes.as_slice()).map(i64::from_le_bytes).map_err(|_| StoreError::corrupt(key, "not a counter"))
        })?;
        let next = current + delta;
        self.set(key, &next.to_le_bytes())?;
        Ok(next)
    }

    fn watch(&mut self, key: &str) -> Result<(Self::Cas, Option<Vec<u8>>), StoreError> {
        let current = self.get(key)?;
        Ok(((key.to_string(), current.clone()), current))
    }

    fn swap(&mut self, (key, seen): Self::Cas, value: &[u8]) -> Result<Swap<Self::Cas>, StoreError> {
        let changed = match &seen {
            Some(old) => self
                .connection
                .execute(
                    "UPDATE spin_key_value SET value = ?3 WHERE store = 'default' AND key = ?1 AND value = ?2",
                    params![key, old, value],
                )
                .map_err(failed)?,
            None => {
                self.set(&key, value)?;
                return Ok(Swap::Written);
            }
        };
        if changed == 1 {
            self.wrote(key.len() + value.len());
            return Ok(Swap::Written);
        }
        let current = self.get(&key)?;
        Ok(Swap::Failed { cas: (key, current.clone()), current })
    }

    fn sleep_ms(&mut self, _ms: u64) {}
}

/// One measured load.
#[derive(Debug, Clone, Serialize)]
pub struct DiskRow {
    pub name: String,
    pub metrics: u64,
    /// Database pages in use per metric stored.
    pub bytes_per_metric: f64,
    /// Key-value writes (each a transaction under Spin) per metric.
    pub writes_per_metric: f64,
    /// Keys and values written per metric (what the disk absorbs).
    pub bytes_written_per_metric: f64,
    /// Native CPU time of the core's ingest and folds per metric.
    pub micros_per_metric: f64,
    pub entry_chunks: u64,
    pub claims: u64,
    /// Bytes of keys and values per metric, by what they hold: `raw`
    /// (entry chunks and claims), `second aggregates`, `coarser aggregates`,
    /// `journal`, `other` (creation guards, registries, retention records).
    pub bytes_by_kind: std::collections::BTreeMap<String, f64>,
}

/// A small deterministic generator (SplitMix64).
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Ingests `count` metrics of `metric_type` in batches of 500, `per_second`
/// to a second starting at `start_ms`, the `with_ids` share carrying client
/// ids; then folds what is left, as later ingests would.
fn load(kv: &mut SqliteKv, metric_type: &str, count: u64, per_second: u64, start_ms: i64, with_ids: bool, expiry: Option<Expiry>) -> anyhow::Result<()> {
    let mut random = Random(count ^ per_second);
    let mut batch = Vec::with_capacity(500);
    for i in 0..count {
        let ts = start_ms + (i / per_second) as i64 * 1_000 + (random.next() % 1_000) as i64;
        let id = if with_ids { format!("{metric_type}-{start_ms}-{i:08}") } else { new_id(ts, u128::from(random.next()) << 64 | u128::from(i)) };
        let mut metric = Metric::new(id, metric_type, (random.next() % 10_000) as f64 / 100.0, ts);
        if i % 3 == 0 {
            metric.user_id = Some(format!("user-{}", random.next() % 5_000));
        }
        batch.push((metric, with_ids));
        if batch.len() == 500 || i + 1 == count {
            for outcome in ingest_batch(kv, &batch, random.next(), expiry) {
                outcome.context("ingest")?;
            }
            batch.clear();
        }
    }
    fold_all(kv, metric_type, expiry).context("folding what is left")?;
    Ok(())
}

fn measure(dir: &Path, name: &str, run: impl FnOnce(&mut SqliteKv) -> anyhow::Result<u64>) -> anyhow::Result<DiskRow> {
    let path = dir.join(format!("disk-{}.db", name.replace(|c: char| !c.is_ascii_alphanumeric(), "-")));
    let mut kv = SqliteKv::create(&path)?;
    let started = Instant::now();
    let metrics = run(&mut kv)?;
    let micros = started.elapsed().as_secs_f64() * 1e6;
    let per = |x: f64| x / metrics.max(1) as f64;
    Ok(DiskRow {
        name: name.to_string(),
        metrics,
        bytes_per_metric: per(kv.bytes_in_use()? as f64),
        writes_per_metric: per(kv.writes as f64),
        bytes_written_per_metric: per(kv.bytes_written as f64),
        micros_per_metric: per(micros),
        entry_chunks: kv.count("ent:")?,
        claims: kv.count("claim:")?,
        bytes_by_kind: kv.bytes_by_kind()?.into_iter().map(|(k, v)| (k, per(v as f64))).collect(),
    })
}

/// Every disk measurement, in `dir`.
pub fn run(dir: &Path, now_ms: i64) -> anyhow::Result<Vec<DiskRow>> {
    const DAY_MS: i64 = 86_400_000;
    let mut rows = Vec::new();
    // A steady type: 2 metrics a second for a day.
    for with_ids in [false, true] {
        let name = if with_ids { "steady, client ids" } else { "steady, server ids" };
        rows.push(measure(dir, name, |kv| {
            load(kv, "steady", 172_800, 2, now_ms - DAY_MS, with_ids, None)?;
            Ok(172_800)
        })?);
    }
    // 60 days of the same, raw metrics kept 30 days: the sweep keeps up.
    rows.push(measure(dir, "60 days, 30 kept, ids", |kv| {
        let per_day = 10_000;
        for day in (0..60).rev() {
            let expiry = Expiry::at(now_ms - day * DAY_MS, 30);
            load(kv, "kept", per_day, 1, now_ms - (day + 1) * DAY_MS, true, expiry)?;
        }
        Ok(60 * per_day)
    })?);
    // The rate per type-second: 100 and 10 000 metrics in each second.
    for per_second in [100, 10_000] {
        rows.push(measure(dir, &format!("{per_second} per type-second"), |kv| {
            load(kv, "busy", 100_000, per_second, now_ms - DAY_MS, false, None)?;
            Ok(100_000)
        })?);
    }
    Ok(rows)
}

/// The rows as a table.
pub fn render(rows: &[DiskRow]) -> String {
    let mut out = String::from("load                        metrics  bytes/metric on disk  writes/metric  bytes written/metric  µs/metric  chunks   claims\n");
    for r in rows {
        out.push_str(&format!(
            "{:<26} {:>9} {:>21.0} {:>14.3} {:>21.0} {:>10.1} {:>7} {:>8}\n",
            r.name, r.metrics, r.bytes_per_metric, r.writes_per_metric, r.bytes_written_per_metric, r.micros_per_metric, r.entry_chunks, r.claims
        ));
        let kinds: Vec<String> = r.bytes_by_kind.iter().map(|(k, v)| format!("{k} {v:.0}")).collect();
        out.push_str(&format!("{:<26}   keys and values per metric: {}\n", "", kinds.join(", ")));
    }
    out
}
