//! The durable store on PostgreSQL (`store_backend = "postgres"`, variable
//! `store_postgres_url`) through Spin's outbound PostgreSQL
//! (`spin:postgres/postgres@4.0.0`), as the core's
//! [`analytics_core::kv::Kv`], with the records in tables a person can
//! query (`analytics_core::postgres`): entry chunks as rows of
//! `analytics_metrics` (one per metric, partitioned by month), aggregates
//! as rows of `analytics_rollups` (count, sum, min, max and latest as
//! columns, the DDSketch and HyperLogLog beside them), every other record
//! in `analytics_kv`.
//!
//! Spin pools these connections (64 per address), so opening one costs no
//! handshake once warm, and every operation is one statement in autocommit:
//! a read of many keys is one `SELECT … = ANY … UNION ALL` over the three
//! tables (one snapshot), a write of many one statement of data-modifying
//! CTEs, a compare-and-swap one conditional `UPDATE` (or an `INSERT … ON
//! CONFLICT DO NOTHING` for a missing key, so creation is exact too), a
//! counter one upsert. Concurrent commits share the server's WAL flushes (group commit),
//! so no request waits behind another's fsync as on Spin's SQLite store.

use analytics_core::kv::{Kv, Reader, StoreError, Swap};
use analytics_core::postgres::{self as schema, kv as sql, records, MetricRow, Partition, Record, RollupRow};
use spin_sdk::pg4::{Connection, DbValue, ParameterValue, PgError, QueryError, RowSet};

/// Parameters one statement may carry (PostgreSQL's limit is 65 535).
const MAX_PARAMETERS: usize = 60_000;

/// A connection to the store's PostgreSQL.
pub struct PgStore {
    connection: Connection,
    /// Whether this request already ran the migration (once is enough).
    migrated: bool,
}

/// What a compare-and-swap compares against.
pub struct PgCas {
    key: String,
    seen: Option<Vec<u8>>,
}

fn sqlstate(e: &PgError) -> Option<&str> {
    match e {
        PgError::QueryFailed(QueryError::DbError(db)) => Some(db.code.as_str()),
        _ => None,
    }
}

fn describe(e: &PgError) -> String {
    match e {
        PgError::QueryFailed(QueryError::DbError(db)) => format!("postgres: {} ({})", db.message, db.code),
        other => format!("postgres: {other:?}"),
    }
}

fn text_array(keys: &[String]) -> ParameterValue {
    ParameterValue::ArrayStr(keys.iter().cloned().map(Some).collect())
}

fn bytes_of(key: &str, value: &DbValue) -> Result<Option<Vec<u8>>, StoreError> {
    match value {
        DbValue::Binary(b) => Ok(Some(b.clone())),
        DbValue::DbNull => Ok(None),
        other => Err(StoreError::corrupt(key, format!("postgres returned {other:?} for a value"))),
    }
}

impl PgStore {
    /// Takes a connection to `url` from Spin's pool (one for the whole request).
    pub fn connect(url: &str) -> Result<PgStore, String> {
        Connection::open(url).map(|connection| PgStore { connection, migrated: false }).map_err(|e| describe(&e))
    }

    /// Runs `op`; if it failed because the schema is missing or older than
    /// this code, migrates once and runs it again.
    fn with_schema<T>(&mut self, op: impl Fn(&Connection) -> Result<T, PgError>) -> Result<T, StoreError> {
        match op(&self.connection) {
            Err(e) if !self.migrated && sqlstate(&e).is_some_and(schema::needs_migration) => {
                self.migrate()?;
                op(&self.connection).map_err(|e| StoreError::Store(describe(&e)))
            }
            other => other.map_err(|e| StoreError::Store(describe(&e))),
        }
    }

    /// Brings the schema up to date (one statement; safe to run anywhere, any time).
    pub fn migrate(&mut self) -> Result<(), StoreError> {
        self.migrated = true;
        self.connection
            .execute(&schema::migrate_statement(schema::MIGRATIONS), &[])
            .map(drop)
            .map_err(|e| StoreError::Store(format!("migrating the schema: {}", describe(&e))))
    }
}

/// Which table a key's record is in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Table {
    Kv,
    Rollups,
    Metrics,
}

fn table(key: &str) -> Table {
    match schema::classify(key) {
        Record::Kv => Table::Kv,
        Record::Rollup { .. } => Table::Rollups,
        Record::Chunk { .. } => Table::Metrics,
    }
}

fn opt_str(v: Option<String>) -> ParameterValue {
    v.map_or(ParameterValue::DbNull, ParameterValue::Str)
}

fn opt_i64(v: Option<i64>) -> ParameterValue {
    v.map_or(ParameterValue::DbNull, ParameterValue::Int64)
}

fn opt_bytes(v: Option<Vec<u8>>) -> ParameterValue {
    v.map_or(ParameterValue::DbNull, ParameterValue::Binary)
}

/// A rollup row's parameters, in [`records::write`]'s order.
fn rollup_params(key: &str, row: RollupRow) -> [ParameterValue; records::ROLLUP_COLUMNS] {
    [
        ParameterValue::Str(key.to_string()),
        ParameterValue::Str(row.project),
        ParameterValue::Str(row.metric_type),
        ParameterValue::Str(row.level),
        opt_i64(row.start_second),
        ParameterValue::Int64(row.count),
        ParameterValue::Floating64(row.sum),
        ParameterValue::Floating64(row.min),
        ParameterValue::Floating64(row.max),
        opt_i64(row.latest_ms),
        ParameterValue::Floating64(row.latest_value),
        opt_bytes(row.sketch),
        opt_bytes(row.users),
        ParameterValue::Binary(row.state),
    ]
}

/// A metric row's parameters, in [`records::write`]'s order.
fn metric_params(row: MetricRow) -> [ParameterValue; records::METRIC_COLUMNS] {
    [
        ParameterValue::Str(row.chunk),
        ParameterValue::Int32(row.pos),
        ParameterValue::Int64(row.seq),
        ParameterValue::Str(row.project),
        ParameterValue::Str(row.metric_type),
        ParameterValue::Int64(row.timestamp_ms),
        ParameterValue::Str(row.id),
        ParameterValue::Floating64(row.value),
        opt_str(row.user_id),
        opt_str(row.properties),
    ]
}

fn str_of(v: &DbValue) -> Option<String> {
    match v {
        DbValue::Str(s) => Some(s.clone()),
        _ => None,
    }
}

fn i64_of(v: &DbValue) -> Option<i64> {
    match v {
        DbValue::Int64(n) => Some(*n),
        DbValue::Int32(n) => Some(*n as i64),
        _ => None,
    }
}

fn blob_of(v: &DbValue) -> Option<Vec<u8>> {
    match v {
        DbValue::Binary(b) => Some(b.clone()),
        _ => None,
    }
}

/// The rows of [`records::READ`] as each key's bytes.
fn assemble(rows: RowSet) -> Result<std::collections::HashMap<String, Vec<u8>>, StoreError> {
    let mut found = std::collections::HashMap::new();
    let mut chunks: std::collections::HashMap<String, Vec<MetricRow>> = std::collections::HashMap::new();
    for row in rows.rows {
        if row.first().and_then(i64_of) == Some(records::PADDING) {
            continue;
        }
        let shape = || StoreError::Store(format!("postgres: unexpected row shape {row:?}"));
        let (Some(kind), Some(key)) = (row.first().and_then(i64_of), row.get(1).and_then(str_of)) else {
            return Err(shape());
        };
        match kind {
            0 => {
                found.insert(key, row.get(2).and_then(blob_of).ok_or_else(shape)?);
            }
            1 => {
                let state = row.get(2).and_then(blob_of).ok_or_else(shape)?;
                let (sketch, users) = (row.get(3).and_then(blob_of), row.get(4).and_then(blob_of));
                let bytes = schema::rollup_bytes(&state, sketch.as_deref(), users.as_deref()).map_err(|e| StoreError::corrupt(&key, e))?;
                found.insert(key, bytes);
            }
            _ => {
                let metric = MetricRow {
                    chunk: key.clone(),
                    pos: row.get(11).and_then(i64_of).ok_or_else(shape)? as i32,
                    seq: row.get(5).and_then(i64_of).ok_or_else(shape)?,
                    project: String::new(),
                    metric_type: row.get(12).and_then(str_of).ok_or_else(shape)?,
                    timestamp_ms: row.get(6).and_then(i64_of).ok_or_else(shape)?,
                    id: row.get(7).and_then(str_of).ok_or_else(shape)?,
                    value: match row.get(8) {
                        Some(DbValue::Floating64(v)) => *v,
                        _ => return Err(shape()),
                    },
                    user_id: row.get(9).and_then(str_of),
                    properties: row.get(10).and_then(str_of),
                };
                chunks.entry(key).or_default().push(metric);
            }
        }
    }
    for (key, mut rows) in chunks {
        rows.sort_by_key(|r| r.pos);
        found.insert(key, schema::chunk_from_rows(rows));
    }
    Ok(found)
}

impl PgStore {
    /// Reads `keys` from their tables in one statement; of the first
    /// `heads` keys only `bytes` bytes where they are plain records.
    fn read(&mut self, keys: &[String], heads: usize, bytes: usize) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let (mut kv, mut rollups, mut chunks) = (Vec::new(), Vec::new(), Vec::new());
        let mut kv_heads = 0;
        for (i, key) in keys.iter().enumerate() {
            match table(key) {
                Table::Kv => {
                    kv_heads += usize::from(i < heads);
                    kv.push(key.clone());
                }
                Table::Rollups => rollups.push(key.clone()),
                Table::Metrics => chunks.push(key.clone()),
            }
        }
        let params = [
            text_array(&kv),
            ParameterValue::Int64(if bytes == 0 { 0 } else { kv_heads as i64 }),
            ParameterValue::Int32(bytes.clamp(1, i32::MAX as usize) as i32),
            text_array(&rollups),
            text_array(&chunks),
        ];
        let rows = self.with_schema(|c| c.query(records::READ, &params))?;
        let mut found = assemble(rows)?;
        Ok(keys.iter().map(|k| found.remove(k)).collect())
    }

    /// Runs a write; creates the month partitions its metrics need when
    /// the server says one is missing, and runs it again.
    fn write(&mut self, statement: &str, params: &[ParameterValue], months: &[Partition]) -> Result<u64, StoreError> {
        let first = self.with_schema(|c| c.execute(statement, params));
        let missing_partition = matches!(&first, Err(StoreError::Store(m)) if m.contains(schema::NO_PARTITION));
        if !missing_partition || months.is_empty() {
            return first;
        }
        self.connection
            .execute(&schema::create_partitions_statement(months), &[])
            .map_err(|e| StoreError::Store(format!("creating partitions: {}", describe(&e))))?;
        self.with_schema(|c| c.execute(statement, params))
    }
}

impl Reader for PgStore {
    fn get_many(&mut self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.read(keys, 0, 0)
    }

    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if table(key) != Table::Kv {
            return Ok(self.read(&[key.to_string()], 0, 0)?.pop().flatten());
        }
        let rows = self.with_schema(|c| c.query(sql::GET, &[ParameterValue::Str(key.to_string())]))?;
        match rows.rows.first().and_then(|r| r.first()) {
            Some(value) => bytes_of(key, value),
            None => Ok(None),
        }
    }

    fn get_many_heads(&mut self, keys: &[String], heads: usize, bytes: usize) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.read(keys, heads, bytes)
    }
}

impl Kv for PgStore {
    type Cas = PgCas;

    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.set_many(&[(key.to_string(), value.to_vec())])
    }

    fn set_many(&mut self, entries: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        let entries = schema::last_per_key(entries);
        if entries.is_empty() {
            return Ok(());
        }
        let (mut kv, mut rollups, mut chunks, mut metrics) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut months = Vec::new();
        for (key, value) in entries {
            match table(key) {
                Table::Kv => kv.extend([ParameterValue::Str(key.to_string()), ParameterValue::Binary(value.to_vec())]),
                Table::Rollups => {
                    let row = schema::rollup_row(key, value).ok_or_else(|| StoreError::corrupt(key, "not an aggregate's key"))?;
                    rollups.extend(rollup_params(key, row));
                }
                Table::Metrics => {
                    chunks.push(key.to_string());
                    for row in schema::chunk_rows(key, value)? {
                        let month = Partition::of(row.timestamp_ms);
                        if !months.contains(&month) {
                            months.push(month);
                        }
                        metrics.extend(metric_params(row));
                    }
                }
            }
        }
        let counts = (kv.len() / 2, rollups.len() / records::ROLLUP_COLUMNS, chunks.len(), metrics.len() / records::METRIC_COLUMNS);
        if kv.len() + rollups.len() + metrics.len() + 1 > MAX_PARAMETERS {
            // One statement keeps it all-or-nothing; no write path comes near.
            return Err(StoreError::Store(format!("postgres: {counts:?} records in one write is more than one statement takes")));
        }
        let statement = records::write(counts.0, counts.1, counts.2, counts.3);
        let mut params = kv;
        params.extend(rollups);
        if !chunks.is_empty() {
            params.push(text_array(&chunks));
        }
        params.extend(metrics);
        self.write(&statement, &params, &months).map(drop)
    }

    fn delete_many(&mut self, keys: &[String]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let pick = |t: Table| keys.iter().filter(|k| table(k) == t).cloned().collect::<Vec<_>>();
        let (kv, rollups, chunks) = (pick(Table::Kv), pick(Table::Rollups), pick(Table::Metrics));
        let params = [text_array(&kv), text_array(&rollups), text_array(&chunks)];
        self.with_schema(|c| c.execute(records::DELETE, &params))?;
        // Only the retention sweep deletes chunks, oldest first: every month
        // before the oldest chunk it deletes is past the horizon, whatever
        // its type or project, so whole partitions go at once (and that
        // chunk's month once it is empty).
        let oldest = chunks
            .iter()
            .filter_map(|k| match schema::classify(k) {
                Record::Chunk { second, .. } => Some(second),
                _ => None,
            })
            .min();
        if let Some(second) = oldest {
            let keep = Partition::of(second.saturating_mul(1000));
            self.connection
                .execute(&schema::drop_expired_partitions_statement(&keep), &[])
                .map_err(|e| StoreError::Store(format!("dropping expired partitions: {}", describe(&e))))?;
        }
        Ok(())
    }

    fn increment(&mut self, key: &str, delta: i64) -> Result<i64, StoreError> {
        let params = [ParameterValue::Str(key.to_string()), ParameterValue::Int64(delta)];
        let rows = self.with_schema(|c| c.query(sql::INCREMENT, &params))?;
        match rows.rows.first().and_then(|r| r.first()) {
            Some(DbValue::Int64(n)) => Ok(*n),
            other => Err(StoreError::corrupt(key, format!("postgres returned {other:?} for a counter"))),
        }
    }

    fn watch(&mut self, key: &str) -> Result<(PgCas, Option<Vec<u8>>), StoreError> {
        let seen = self.get(key)?;
        Ok((PgCas { key: key.to_string(), seen: seen.clone() }, seen))
    }

    fn swap(&mut self, cas: PgCas, value: &[u8]) -> Result<Swap<PgCas>, StoreError> {
        let changed = match table(&cas.key) {
            Table::Kv => {
                let key = ParameterValue::Str(cas.key.clone());
                let new = ParameterValue::Binary(value.to_vec());
                match &cas.seen {
                    Some(seen) => {
                        let params = [key, new, ParameterValue::Binary(seen.clone())];
                        self.with_schema(|c| c.execute(sql::SWAP, &params))?
                    }
                    None => self.with_schema(|c| c.execute(sql::CREATE, &[key.clone(), new.clone()]))?,
                }
            }
            Table::Rollups => {
                let new = schema::rollup_row(&cas.key, value).ok_or_else(|| StoreError::corrupt(&cas.key, "not an aggregate's key"))?;
                match &cas.seen {
                    Some(seen) => {
                        let old = schema::rollup_row(&cas.key, seen).ok_or_else(|| StoreError::corrupt(&cas.key, "not an aggregate's key"))?;
                        let params = [
                            ParameterValue::Str(cas.key.clone()),
                            ParameterValue::Int64(new.count),
                            ParameterValue::Floating64(new.sum),
                            ParameterValue::Floating64(new.min),
                            ParameterValue::Floating64(new.max),
                            opt_i64(new.latest_ms),
                            ParameterValue::Floating64(new.latest_value),
                            opt_bytes(new.sketch),
                            opt_bytes(new.users),
                            ParameterValue::Binary(new.state),
                            ParameterValue::Binary(old.state),
                            opt_bytes(old.sketch),
                            opt_bytes(old.users),
                        ];
                        self.with_schema(|c| c.execute(records::SWAP_ROLLUP, &params))?
                    }
                    None => {
                        let params = rollup_params(&cas.key, new);
                        let statement = records::create_rollup();
                        self.with_schema(|c| c.execute(&statement, &params))?
                    }
                }
            }
            // Chunks are written whole and never swapped (`entries`).
            Table::Metrics => return Err(StoreError::Store(format!("postgres: `{}` is an entry chunk, written whole, never swapped", cas.key))),
        };
        if changed == 1 {
            return Ok(Swap::Written);
        }
        // Someone else's write landed first: hand back what is there now.
        let current = self.get(&cas.key)?;
        Ok(Swap::Failed { cas: PgCas { key: cas.key, seen: current.clone() }, current })
    }

    fn sleep_ms(&mut self, ms: u64) {
        crate::clock::sleep_ms(ms);
    }

    /// A failed attempt is one statement on the request's own pooled
    /// connection, so a hot key may take more than on Spin's stores.
    fn max_attempts(&self) -> usize {
        256
    }
}
