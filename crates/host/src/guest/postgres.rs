//! `spin:postgres/postgres@4.0.0`: guests' outbound PostgreSQL, through
//! [`PostgresService`](crate::postgres::PostgresService). An address is
//! checked against the component's `allowed_outbound_hosts` as Spin does:
//! each host of the connection string, as `postgres://host:port`.

use wasmtime::component::Resource;

use crate::bindings::spin_postgres::{self as pg, Column, DbDataType, DbValue, Error, ParameterValue, QueryError, RowSet};
use crate::postgres::{Connection, Param, PgError, Value};
use crate::state::HostState;

fn param(value: ParameterValue) -> Result<Param, Error> {
    Ok(match value {
        ParameterValue::Boolean(v) => Param::Bool(v),
        ParameterValue::Int8(v) => Param::I8(v),
        ParameterValue::Int16(v) => Param::I16(v),
        ParameterValue::Int32(v) => Param::I32(v),
        ParameterValue::Int64(v) => Param::I64(v),
        ParameterValue::Floating32(v) => Param::F32(v),
        ParameterValue::Floating64(v) => Param::F64(v),
        ParameterValue::Str(v) => Param::Str(v),
        ParameterValue::Binary(v) => Param::Bytes(v),
        ParameterValue::Jsonb(v) => Param::Jsonb(v),
        // Spin sends a `timestamp` parameter as a BIGINT of seconds.
        ParameterValue::Timestamp(v) => Param::I64(v),
        ParameterValue::ArrayStr(v) => Param::StrArray(v),
        ParameterValue::DbNull => Param::Null,
        other => return Err(Error::ValueConversionFailed(format!("this host does not send {other:?} parameters"))),
    })
}

fn value(value: Value) -> DbValue {
    match value {
        Value::Bool(v) => DbValue::Boolean(v),
        Value::I16(v) => DbValue::Int16(v),
        Value::I32(v) => DbValue::Int32(v),
        Value::I64(v) => DbValue::Int64(v),
        Value::F32(v) => DbValue::Floating32(v),
        Value::F64(v) => DbValue::Floating64(v),
        Value::Str(v) => DbValue::Str(v),
        Value::Bytes(v) => DbValue::Binary(v),
        Value::Jsonb(v) => DbValue::Jsonb(v),
        Value::DateTime(v) => DbValue::Datetime(v),
        Value::Null => DbValue::DbNull,
        Value::Unsupported(v) => DbValue::Unsupported(v),
    }
}

fn data_type(ty: &tokio_postgres::types::Type) -> DbDataType {
    use tokio_postgres::types::Type;
    match *ty {
        Type::BOOL => DbDataType::Boolean,
        Type::INT2 => DbDataType::Int16,
        Type::INT4 => DbDataType::Int32,
        Type::INT8 => DbDataType::Int64,
        Type::FLOAT4 => DbDataType::Floating32,
        Type::FLOAT8 => DbDataType::Floating64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => DbDataType::Str,
        Type::BYTEA => DbDataType::Binary,
        Type::JSONB | Type::JSON => DbDataType::Jsonb,
        Type::TIMESTAMP | Type::TIMESTAMPTZ => DbDataType::Datetime,
        _ => DbDataType::Other(ty.name().to_string()),
    }
}

fn error(e: PgError) -> Error {
    match e {
        PgError::Connection(m) => Error::ConnectionFailed(m),
        PgError::Parameter(m) => Error::BadParameter(m),
        PgError::Conversion(m) => Error::ValueConversionFailed(m),
        PgError::Query { text, db: None } => Error::QueryFailed(QueryError::Text(text)),
        PgError::Query { text, db: Some(d) } => Error::QueryFailed(QueryError::DbError(pg::DbError {
            as_text: text,
            severity: d.severity,
            code: d.code,
            message: d.message,
            detail: d.detail,
            extras: d.extras,
        })),
    }
}

/// Whether every host in `address` is allowed, as Spin checks it; `Err`
/// names why not.
fn check_address(allowed: &crate::allowed_hosts::AllowedHosts, address: &str) -> Result<(), Error> {
    let config: tokio_postgres::Config = address.parse().map_err(|e| Error::ConnectionFailed(format!("{e}")))?;
    let ports = config.get_ports();
    for (i, host) in config.get_hosts().iter().enumerate() {
        let tokio_postgres::config::Host::Tcp(name) = host else {
            return Err(Error::ConnectionFailed("Unix sockets are not supported on WebAssembly".into()));
        };
        let port = ports.get(i).or(if ports.len() == 1 { ports.first() } else { None }).copied().unwrap_or(5432);
        if !allowed.allows("postgres", name, port) {
            return Err(Error::ConnectionFailed(format!("address postgres://{name}:{port} is not permitted")));
        }
    }
    Ok(())
}

impl pg::Host for HostState {}

impl pg::HostConnection for HostState {
    async fn open(&mut self, address: String) -> wasmtime::Result<Result<Resource<Connection>, Error>> {
        if let Err(e) = check_address(&self.component.allowed_hosts, &address) {
            eprintln!(
                "warning: component `{}` tried to open PostgreSQL at an address its allowed_outbound_hosts does not list ({e:?})",
                self.component.id
            );
            return Ok(Err(e));
        }
        match self.services.postgres.open(&address).await {
            Ok(connection) => Ok(Ok(self.table.push(connection)?)),
            Err(e) => Ok(Err(error(e))),
        }
    }

    async fn query(&mut self, c: Resource<Connection>, statement: String, params: Vec<ParameterValue>) -> wasmtime::Result<Result<RowSet, Error>> {
        let params = match params.into_iter().map(param).collect::<Result<Vec<_>, _>>() {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let services = self.services.clone();
        let connection = self.table.get(&c)?;
        Ok(match services.postgres.query(connection, &statement, &params).await {
            Ok(rows) => Ok(RowSet {
                columns: rows.columns.iter().map(|(name, ty)| Column { name: name.clone(), data_type: data_type(ty) }).collect(),
                rows: rows.rows.into_iter().map(|row| row.into_iter().map(value).collect()).collect(),
            }),
            Err(e) => Err(error(e)),
        })
    }

    async fn execute(&mut self, c: Resource<Connection>, statement: String, params: Vec<ParameterValue>) -> wasmtime::Result<Result<u64, Error>> {
        let params = match params.into_iter().map(param).collect::<Result<Vec<_>, _>>() {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let services = self.services.clone();
        let connection = self.table.get(&c)?;
        Ok(services.postgres.execute(connection, &statement, &params).await.map_err(error))
    }

    async fn drop(&mut self, c: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(c)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_host_by_host_like_spin() {
        let allowed = crate::allowed_hosts::AllowedHosts::parse(["postgres://127.0.0.1:5432"]).expect("valid");
        assert!(check_address(&allowed, "postgres://analytics@127.0.0.1:5432/analytics").is_ok());
        assert!(check_address(&allowed, "host=127.0.0.1 user=analytics dbname=analytics").is_ok());
        assert!(check_address(&allowed, "postgres://analytics@127.0.0.1:5433/analytics").is_err());
        assert!(check_address(&allowed, "postgres://analytics@10.0.0.1/analytics").is_err());
        assert!(check_address(&allowed, "not a url =").is_err());
        let any_port = crate::allowed_hosts::AllowedHosts::parse(["postgres://127.0.0.1:*"]).expect("valid");
        assert!(check_address(&any_port, "postgres://u@127.0.0.1:40001/db").is_ok());
    }
}
