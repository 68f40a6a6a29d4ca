//! The durable store on PostgreSQL (`store_backend = "postgres"`, variable
//! `store_postgres_url`) through Spin's outbound PostgreSQL
//! (`spin:postgres/postgres@4.0.0`), as the core's
//! [`analytics_core::kv::Kv`]: the records live in the table
//! `analytics_kv` (`analytics_core::postgres`).
//!
//! Spin pools these connections (64 per address), so opening one costs no
//! handshake once warm, and every operation is one statement in autocommit:
//! a read of many keys is one `SELECT … = ANY` (one snapshot), a
//! compare-and-swap one conditional `UPDATE` (or an `INSERT … ON CONFLICT
//! DO NOTHING` for a missing key, so creation is exact too), a counter one
//! upsert. Concurrent commits share the server's WAL flushes (group commit),
//! so no request waits behind another's fsync as on Spin's SQLite store.

use analytics_core::kv::{Kv, Reader, StoreError, Swap};
use analytics_core::postgres::{self as schema, kv as sql};
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

/// `(key, value)` rows put back in the order of `keys`.
fn in_order(keys: &[String], rows: RowSet) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
    let mut found = std::collections::HashMap::with_capacity(rows.rows.len());
    for row in rows.rows {
        let [DbValue::Str(key), value] = row.as_slice() else {
            return Err(StoreError::Store(format!("postgres: unexpected row shape {row:?}")));
        };
        found.insert(key.clone(), bytes_of(key, value)?);
    }
    Ok(keys.iter().map(|k| found.get(k).cloned().flatten()).collect())
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

impl Reader for PgStore {
    fn get_many(&mut self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.with_schema(|c| c.query(sql::GET_MANY, &[text_array(keys)]))?;
        in_order(keys, rows)
    }

    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let rows = self.with_schema(|c| c.query(sql::GET, &[ParameterValue::Str(key.to_string())]))?;
        match rows.rows.first().and_then(|r| r.first()) {
            Some(value) => bytes_of(key, value),
            None => Ok(None),
        }
    }

    fn get_many_heads(&mut self, keys: &[String], heads: usize, bytes: usize) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let params = [text_array(keys), ParameterValue::Int64(heads as i64), ParameterValue::Int32(bytes.min(i32::MAX as usize) as i32)];
        let rows = self.with_schema(|c| c.query(sql::GET_MANY_HEADS, &params))?;
        in_order(keys, rows)
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
        if entries.len() * 2 > MAX_PARAMETERS {
            // One statement keeps it all-or-nothing; no write path comes near.
            return Err(StoreError::Store(format!("postgres: {} records in one write is more than one statement takes", entries.len())));
        }
        let statement = sql::set_many(entries.len());
        let params: Vec<ParameterValue> = entries
            .iter()
            .flat_map(|(k, v)| [ParameterValue::Str(k.to_string()), ParameterValue::Binary(v.to_vec())])
            .collect();
        self.with_schema(|c| c.execute(&statement, &params)).map(drop)
    }

    fn delete_many(&mut self, keys: &[String]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.with_schema(|c| c.execute(sql::DELETE_MANY, &[text_array(keys)])).map(drop)
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
        let key = ParameterValue::Str(cas.key.clone());
        let new = ParameterValue::Binary(value.to_vec());
        let changed = match &cas.seen {
            Some(seen) => {
                let params = [key, new, ParameterValue::Binary(seen.clone())];
                self.with_schema(|c| c.execute(sql::SWAP, &params))?
            }
            None => self.with_schema(|c| c.execute(sql::CREATE, &[key.clone(), new.clone()]))?,
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
