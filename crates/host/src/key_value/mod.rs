//! Key-value stores, served to guests through both `fermyon:spin/key-value`
//! and `wasi:keyvalue` (store, atomics, batch).
//!
//! Every kind of store sits behind one [`Store`] trait, as Spin's
//! `key-value-spin` and `key-value-redis` crates sit behind its `Store`:
//!
//! - [`SqliteStore`]: SQLite, with a request's writes in one shared
//!   transaction committed before its response leaves (fast);
//! - [`SpinSqliteStore`]: SQLite exactly as Spin 4 keeps it: one connection
//!   behind one lock, one durable transaction per write (Spin's costs);
//! - [`RedisStore`]: a Redis server, pooled connections, an atomic
//!   compare-and-swap, and optionally Spin v4.0.2's defects;
//! - [`SpinRedisStore`]: a Redis server used exactly as Spin v4.0.2's Redis
//!   store uses it (a ping per open, a connection per compare-and-swap,
//!   `WATCH`/`MULTI`/`EXEC`/`UNWATCH`, `KEYS` for get-many), for Spin's costs.

mod hooked;
mod redis_spin;
mod redis_store;
pub mod session;
pub mod sqlite;
mod sqlite_spin;

use std::sync::Arc;

pub use hooked::{CrashPoint, HookedStore, SpinCallCost};
pub use redis_spin::SpinRedisStore;
pub use redis_store::{RedisStore, SpinRedisDefects};
pub use session::Session;
pub use sqlite::SqliteStore;
pub use sqlite_spin::SpinSqliteStore;

/// How faithfully the host reproduces Spin's costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum StoreMode {
    /// A request's SQLite writes share one transaction, committed before its
    /// response leaves; Redis connections are pooled.
    #[default]
    Fast,
    /// As Spin 4 does it: every SQLite write is its own durable transaction
    /// on one locked connection, and every guest Redis `open` connects anew.
    Spin,
}

/// A failure inside a store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// `increment` on a value that is not an 8-byte integer. Spin traps here,
    /// so the host turns it into a trap too.
    #[error("key `{0}` does not hold an 8-byte integer")]
    NotAnInteger(String),
    #[error("{0}")]
    Other(String),
}

pub type KvResult<T> = Result<T, KvError>;

/// What a guest's `get-many` gets back: only the keys that exist, as Spin returns them.
pub type Found = Vec<(String, Vec<u8>)>;

/// One labelled key-value store. `session` is the calling request's, for
/// stores that defer durability to the end of the request.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    async fn get(&self, session: &Session, key: &str) -> KvResult<Option<Vec<u8>>>;
    async fn set(&self, session: &Session, key: &str, value: &[u8]) -> KvResult<()>;
    async fn delete(&self, session: &Session, key: &str) -> KvResult<()>;
    async fn exists(&self, session: &Session, key: &str) -> KvResult<bool> {
        Ok(self.get(session, key).await?.is_some())
    }
    async fn keys(&self, session: &Session) -> KvResult<Vec<String>>;
    /// Adds `delta` to the integer under `key` (missing is 0) and returns the sum.
    async fn increment(&self, session: &Session, key: &str, delta: i64) -> KvResult<i64>;
    /// Writes `new` if `key` still holds `expected` (`None`: if it still holds
    /// what `current` saw missing, as each store defines it). `Ok(false)`
    /// means the guest is told the swap failed.
    async fn swap(&self, session: &Session, key: &str, expected: Option<&[u8]>, new: &[u8]) -> KvResult<bool>;
    async fn get_many(&self, session: &Session, keys: &[String]) -> KvResult<Found>;
    async fn set_many(&self, session: &Session, entries: &[(String, Vec<u8>)]) -> KvResult<()>;
    async fn delete_many(&self, session: &Session, keys: &[String]) -> KvResult<()>;
    /// Whether acknowledged writes still wait for a commit (only a store
    /// that defers durability to the end of a request ever has any).
    fn uncommitted(&self) -> bool {
        false
    }

    /// A guest opened the store (Spin's Redis store pings its server then).
    async fn opened(&self, _session: &Session) -> KvResult<()> {
        Ok(())
    }

    /// A guest created a compare-and-swap on `key`.
    async fn cas_begin(&self, _session: &Session, _key: &str) -> KvResult<CasState> {
        Ok(CasState::Plain)
    }

    /// The compare-and-swap's `current`: the value its `swap` compares against.
    async fn cas_current(&self, session: &Session, key: &str, _state: &mut CasState) -> KvResult<Option<Vec<u8>>> {
        self.get(session, key).await
    }

    /// The compare-and-swap's `swap`, after `current` read `expected`.
    async fn cas_swap(&self, session: &Session, key: &str, expected: Option<&[u8]>, new: &[u8], _state: &mut CasState) -> KvResult<bool> {
        self.swap(session, key, expected, new).await
    }
}

/// What a compare-and-swap holds besides its key and the value it read.
#[derive(Default)]
pub enum CasState {
    #[default]
    Plain,
    /// A connection of its own, watching the key (Spin's Redis store).
    Connection(redis::aio::MultiplexedConnection),
}

/// An open store, as a guest resource.
pub struct StoreHandle {
    pub store: Arc<dyn Store>,
}

/// A compare-and-swap handle: the key and the value it last read.
pub struct CasHandle {
    pub store: Arc<dyn Store>,
    pub key: String,
    /// `None` until `current` reads the key, and also when the key was missing.
    pub snapshot: Option<Vec<u8>>,
    pub state: CasState,
}
