//! Outbound PostgreSQL for guests (`spin:postgres/postgres@4.0.0`), the way
//! Spin 4 provides it: one connection pool per address (64 connections, as
//! Spin's `factor-outbound-pg`), a guest `open` takes a connection out of
//! its pool for the life of the resource, and every statement runs on it in
//! autocommit unless the guest says `BEGIN`.
//!
//! Values cross as the interface's `parameter-value` and `db-value`; this
//! host converts the types the application uses (booleans, integers,
//! floats, text, bytea, jsonb, timestamps, nulls) and hands any other
//! column back as `unsupported` with its raw bytes, as Spin does.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::{Arc, Mutex};

use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use tokio_postgres::NoTls;

use crate::key_value::CrashPoint;

/// Connections kept per address: Spin 4's `CONNECTION_POOL_SIZE`.
pub const POOL_SIZE: usize = 64;

/// Why a call failed, before it is put in the interface's terms.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The address does not parse or the server cannot be reached.
    #[error("{0}")]
    Connection(String),
    /// A parameter this host cannot send.
    #[error("{0}")]
    Parameter(String),
    /// The server refused the statement (`db` holds its fields).
    #[error("{text}")]
    Query { text: String, db: Option<DbErrorFields> },
    /// A column value this host cannot decode.
    #[error("{0}")]
    Conversion(String),
}

/// The server's error fields, for the interface's `db-error`.
#[derive(Debug, Clone)]
pub struct DbErrorFields {
    pub severity: String,
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub extras: Vec<(String, String)>,
}

/// A parameter as the guest sent it (the subset this host converts).
#[derive(Debug, Clone)]
pub enum Param {
    Bool(bool),
    I8(i8),
    I16(i16),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    Str(String),
    Bytes(Vec<u8>),
    /// JSON text, sent as `jsonb` (or as text to a `json`/`text` parameter).
    Jsonb(Vec<u8>),
    /// `text[]`.
    StrArray(Vec<Option<String>>),
    Null,
}

impl ToSql for Param {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        // Each inner value checks its own type, so a mismatch is the
        // driver's usual "cannot convert" error rather than bad bytes.
        match self {
            Param::Bool(v) => v.to_sql_checked(ty, out),
            Param::I8(v) => v.to_sql_checked(ty, out),
            Param::I16(v) => v.to_sql_checked(ty, out),
            Param::I32(v) => v.to_sql_checked(ty, out),
            Param::I64(v) => v.to_sql_checked(ty, out),
            Param::F32(v) => v.to_sql_checked(ty, out),
            Param::F64(v) => v.to_sql_checked(ty, out),
            Param::Str(v) => v.to_sql_checked(ty, out),
            Param::Bytes(v) => v.to_sql_checked(ty, out),
            Param::Jsonb(v) => {
                if *ty == Type::JSONB {
                    // jsonb's binary format: version 1, then the text.
                    out.put_u8(1);
                    out.extend_from_slice(v);
                    Ok(IsNull::No)
                } else if *ty == Type::JSON || *ty == Type::TEXT {
                    out.extend_from_slice(v);
                    Ok(IsNull::No)
                } else {
                    Err(format!("cannot send jsonb as {ty}").into())
                }
            }
            Param::StrArray(v) => v.to_sql_checked(ty, out),
            Param::Null => Ok(IsNull::Yes),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// A column value as the guest receives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    I16(i16),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    Str(String),
    Bytes(Vec<u8>),
    Jsonb(Vec<u8>),
    /// UTC (year, month, day, hour, minute, second, nanosecond).
    DateTime((i32, u8, u8, u8, u8, u8, u32)),
    Null,
    /// Any other type: the server's binary encoding, as Spin hands it back.
    Unsupported(Vec<u8>),
}

/// The raw bytes of any value.
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

fn get<'a, T: FromSql<'a>>(row: &'a tokio_postgres::Row, i: usize, wrap: impl Fn(T) -> Value) -> Result<Value, PgError> {
    row.try_get::<_, Option<T>>(i)
        .map(|v| v.map_or(Value::Null, wrap))
        .map_err(|e| PgError::Conversion(format!("column {i}: {e}")))
}

fn datetime(t: chrono::NaiveDateTime) -> Value {
    use chrono::{Datelike, Timelike};
    Value::DateTime((t.year(), t.month() as u8, t.day() as u8, t.hour() as u8, t.minute() as u8, t.second() as u8, t.nanosecond()))
}

/// One row's values, converted by column type.
pub fn convert_row(row: &tokio_postgres::Row) -> Result<Vec<Value>, PgError> {
    (0..row.len())
        .map(|i| match *row.columns()[i].type_() {
            Type::BOOL => get(row, i, Value::Bool),
            Type::INT2 => get(row, i, Value::I16),
            Type::INT4 => get(row, i, Value::I32),
            Type::INT8 => get(row, i, Value::I64),
            Type::FLOAT4 => get(row, i, Value::F32),
            Type::FLOAT8 => get(row, i, Value::F64),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => get(row, i, Value::Str),
            Type::BYTEA => get(row, i, Value::Bytes),
            // jsonb's binary format is a version byte and the text.
            Type::JSONB => get(row, i, |raw: Raw| Value::Jsonb(raw.0.get(1..).unwrap_or_default().to_vec())),
            Type::JSON => get(row, i, |raw: Raw| Value::Jsonb(raw.0)),
            Type::TIMESTAMP => get(row, i, datetime),
            Type::TIMESTAMPTZ => get(row, i, |t: chrono::DateTime<chrono::Utc>| datetime(t.naive_utc())),
            _ => get(row, i, |raw: Raw| Value::Unsupported(raw.0)),
        })
        .collect()
}

/// A result set: column names with their types' names, and rows.
#[derive(Debug, Default)]
pub struct Rows {
    pub columns: Vec<(String, Type)>,
    pub rows: Vec<Vec<Value>>,
}

/// Spin 4.0.2 never answers a `query` whose statement returns no row (it
/// waits for the first row to learn the columns, and the guest hangs until
/// its client gives up); this host fails it at once instead, so a guest
/// that would hang under Spin fails its tests here.
pub const NO_ROWS: &str = "the statement returned no row, and Spin 4.0.2 never answers such a query: make it return one (a LEFT JOIN from VALUES (1), or a padding row)";

fn query_failed(e: tokio_postgres::Error) -> PgError {
    let db = e.as_db_error().map(|d| {
        let mut extras = Vec::new();
        let mut extra = |name: &str, value: Option<&str>| {
            if let Some(v) = value {
                extras.push((name.to_string(), v.to_string()));
            }
        };
        extra("column", d.column());
        extra("constraint", d.constraint());
        extra("table", d.table());
        extra("schema", d.schema());
        extra("hint", d.hint());
        DbErrorFields {
            severity: d.severity().to_string(),
            code: d.code().code().to_string(),
            message: d.message().to_string(),
            detail: d.detail().map(str::to_string),
            extras,
        }
    });
    let text = match &db {
        Some(d) => format!("{}: {} ({})", d.severity, d.message, d.code),
        None => format!("{e:#}"),
    };
    PgError::Query { text, db }
}

/// Whether a statement only reads (it does not count toward a crash point).
pub fn is_read_only(statement: &str) -> bool {
    let head = statement.trim_start().get(..6).unwrap_or("");
    head.eq_ignore_ascii_case("select")
}

/// The pools of a running app, one per address.
pub struct PostgresService {
    pools: Mutex<HashMap<String, deadpool_postgres::Pool>>,
    /// Spin's costs: its clean recycling on every checkout, statements
    /// prepared anew every call, and CPU per host call.
    spin_costs: Option<crate::spin_model::SpinCosts>,
    /// Guests' PostgreSQL writes count toward the host's crash point.
    crash_point: Option<Arc<CrashPoint>>,
}

/// An open guest connection: a pooled client, returned to its pool on drop.
pub struct Connection {
    client: deadpool_postgres::Object,
}

impl PostgresService {
    pub fn new(spin_costs: Option<crate::spin_model::SpinCosts>, crash_point: Option<Arc<CrashPoint>>) -> Self {
        PostgresService { pools: Mutex::default(), spin_costs, crash_point }
    }

    fn charge(&self) {
        if let Some(costs) = self.spin_costs {
            crate::spin_model::burn(costs.host_call);
        }
    }

    fn pool(&self, address: &str) -> Result<deadpool_postgres::Pool, PgError> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pool) = pools.get(address) {
            return Ok(pool.clone());
        }
        let config: tokio_postgres::Config = address.parse().map_err(|e| PgError::Connection(format!("{e}")))?;
        // Spin recycles with `Clean` (a round trip resetting the session on
        // every checkout); the fast mode only checks the connection is open.
        let recycling_method = match self.spin_costs {
            Some(_) => deadpool_postgres::RecyclingMethod::Clean,
            None => deadpool_postgres::RecyclingMethod::Fast,
        };
        let manager = deadpool_postgres::Manager::from_config(config, NoTls, deadpool_postgres::ManagerConfig { recycling_method });
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| PgError::Connection(format!("{e}")))?;
        pools.insert(address.to_string(), pool.clone());
        Ok(pool)
    }

    /// Takes a connection to `address` from its pool (opening one if needed).
    pub async fn open(&self, address: &str) -> Result<Connection, PgError> {
        self.charge();
        let pool = self.pool(address)?;
        let client = pool.get().await.map_err(|e| PgError::Connection(format!("{e}")))?;
        Ok(Connection { client })
    }

    async fn statement(&self, connection: &Connection, statement: &str) -> Result<tokio_postgres::Statement, PgError> {
        // Spin prepares every statement anew (a round trip); the fast mode
        // keeps them per connection.
        match self.spin_costs {
            Some(_) => connection.client.prepare(statement).await,
            None => connection.client.prepare_cached(statement).await,
        }
        .map_err(query_failed)
    }

    fn counted(&self, statement: &str) {
        if let Some(point) = &self.crash_point {
            if !is_read_only(statement) {
                point.wrote();
            }
        }
    }

    /// Runs a statement that returns rows; one that returns none is an
    /// error ([`NO_ROWS`]).
    pub async fn query(&self, connection: &Connection, statement: &str, params: &[Param]) -> Result<Rows, PgError> {
        self.charge();
        let prepared = self.statement(connection, statement).await?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let result = connection.client.query(&prepared, &refs).await.map_err(query_failed);
        self.counted(statement);
        let rows = result?;
        if rows.is_empty() {
            return Err(PgError::Query { text: NO_ROWS.to_string(), db: None });
        }
        let columns = prepared.columns().iter().map(|c| (c.name().to_string(), c.type_().clone())).collect();
        let rows = rows.iter().map(convert_row).collect::<Result<_, _>>()?;
        Ok(Rows { columns, rows })
    }

    /// Runs a statement; answers the rows it affected.
    pub async fn execute(&self, connection: &Connection, statement: &str, params: &[Param]) -> Result<u64, PgError> {
        self.charge();
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        // One command per call, as Spin (the extended protocol refuses more).
        let prepared = self.statement(connection, statement).await?;
        let result = connection.client.execute(&prepared, &refs).await.map_err(query_failed);
        self.counted(statement);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_selects_are_read_only() {
        assert!(is_read_only("  select 1"));
        assert!(is_read_only("SELECT value FROM kv"));
        assert!(!is_read_only("UPDATE kv SET value = $1"));
        assert!(!is_read_only("WITH x AS (INSERT INTO t VALUES (1) RETURNING 1) SELECT * FROM x"));
        assert!(!is_read_only(""));
    }
}
