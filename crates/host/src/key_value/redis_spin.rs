//! A Redis server used the way Spin v4.0.2's Redis key-value store uses it,
//! round trip for round trip, for `--store-mode spin`:
//!
//! - every open of the store pings the server;
//! - get, set, increment, delete and set-many are one command each on a
//!   connection the whole app shares;
//! - get-many sends `KEYS k1 k2 ...` (one key: nothing found; more: an error);
//! - every compare-and-swap connects anew, then `WATCH` and `GET` for its
//!   `current`, and `MULTI`/`SET`/`EXEC` plus `UNWATCH <key>` for its `swap`,
//!   which Redis refuses, so every swap is reported as failed, written or
//!   not; the failure's fresh compare-and-swap connects and reads again.

use std::sync::Arc;

use crate::redis::external::ExternalRedis;
use crate::redis::Reply;

use super::{CasState, Found, KvError, KvResult, RedisStore, Session, SpinRedisDefects, Store};

pub struct SpinRedisStore {
    address: String,
    connections: Arc<ExternalRedis>,
    /// The one-command operations, with Spin v4.0.2's defects.
    shared: RedisStore,
    /// CPU Spin spends setting up each new connection ([`crate::spin_model`]).
    connect_cost: std::time::Duration,
}

fn other(e: impl std::fmt::Display) -> KvError {
    KvError::Other(e.to_string())
}

impl SpinRedisStore {
    pub fn new(address: &str, connections: Arc<ExternalRedis>, connect_cost: std::time::Duration) -> anyhow::Result<Self> {
        let shared = RedisStore::new(address, connections.clone(), SpinRedisDefects::V4_0_2)?;
        Ok(SpinRedisStore { address: address.to_string(), connections, shared, connect_cost })
    }

    async fn on_own(&self, state: &mut CasState, args: &[&[u8]]) -> KvResult<Reply> {
        let CasState::Connection(connection) = state else {
            return Err(KvError::Other("compare-and-swap without its connection".into()));
        };
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.to_vec()).collect();
        self.connections.execute(&self.address, connection, &args).await.map_err(other)
    }
}

#[async_trait::async_trait]
impl Store for SpinRedisStore {
    async fn get(&self, session: &Session, key: &str) -> KvResult<Option<Vec<u8>>> {
        self.shared.get(session, key).await
    }

    async fn set(&self, session: &Session, key: &str, value: &[u8]) -> KvResult<()> {
        self.shared.set(session, key, value).await
    }

    async fn delete(&self, session: &Session, key: &str) -> KvResult<()> {
        self.shared.delete(session, key).await
    }

    async fn exists(&self, session: &Session, key: &str) -> KvResult<bool> {
        self.shared.exists(session, key).await
    }

    async fn keys(&self, session: &Session) -> KvResult<Vec<String>> {
        self.shared.keys(session).await
    }

    async fn increment(&self, session: &Session, key: &str, delta: i64) -> KvResult<i64> {
        self.shared.increment(session, key, delta).await
    }

    /// Only reached without a compare-and-swap handle; Spin has no such call.
    async fn swap(&self, session: &Session, key: &str, expected: Option<&[u8]>, new: &[u8]) -> KvResult<bool> {
        self.shared.swap(session, key, expected, new).await
    }

    /// `KEYS k1 k2 ...`, as Spin v4.0.2 sends it.
    async fn get_many(&self, _: &Session, keys: &[String]) -> KvResult<Found> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec![b"KEYS".to_vec()];
        args.extend(keys.iter().map(|k| k.as_bytes().to_vec()));
        let mut connection = self.connections.connect(&self.address).await.map_err(other)?;
        match self.connections.execute(&self.address, &mut connection, &args).await.map_err(other)? {
            Reply::Error(e) => Err(KvError::Other(format!("An error was signalled by the server - ResponseError: {e}"))),
            // Key names, not values: nothing Spin can pair with a value.
            _ => Ok(Vec::new()),
        }
    }

    async fn set_many(&self, session: &Session, entries: &[(String, Vec<u8>)]) -> KvResult<()> {
        self.shared.set_many(session, entries).await
    }

    async fn delete_many(&self, session: &Session, keys: &[String]) -> KvResult<()> {
        self.shared.delete_many(session, keys).await
    }

    async fn opened(&self, _: &Session) -> KvResult<()> {
        let mut connection = self.connections.connect(&self.address).await.map_err(other)?;
        self.connections.execute(&self.address, &mut connection, &[b"PING".to_vec()]).await.map(drop).map_err(other)
    }

    async fn cas_begin(&self, _: &Session, _key: &str) -> KvResult<CasState> {
        crate::spin_model::burn(self.connect_cost);
        Ok(CasState::Connection(self.connections.connect_new(&self.address).await.map_err(other)?))
    }

    async fn cas_current(&self, _: &Session, key: &str, state: &mut CasState) -> KvResult<Option<Vec<u8>>> {
        self.on_own(state, &[b"WATCH", key.as_bytes()]).await?;
        match self.on_own(state, &[b"GET", key.as_bytes()]).await? {
            Reply::Bulk(value) => Ok(Some(value)),
            Reply::Nil => Ok(None),
            Reply::Error(e) => Err(KvError::Other(e)),
            reply => Err(KvError::Other(format!("unexpected reply from Redis: {reply:?}"))),
        }
    }

    /// Written only if the key did not change since `WATCH`; reported as
    /// failed either way, as Spin v4.0.2 reports it.
    async fn cas_swap(&self, _: &Session, key: &str, _expected: Option<&[u8]>, new: &[u8], state: &mut CasState) -> KvResult<bool> {
        let CasState::Connection(connection) = state else {
            return Err(KvError::Other("compare-and-swap without its connection".into()));
        };
        // MULTI, SET, EXEC in one round trip; EXEC answers nil if the key changed.
        crate::telemetry::metrics().redis_command("kv");
        redis::pipe().atomic().cmd("SET").arg(key).arg(new).query_async::<redis::Value>(connection).await.map_err(other)?;
        let _refused = self.on_own(state, &[b"UNWATCH", key.as_bytes()]).await?;
        Ok(false)
    }
}
