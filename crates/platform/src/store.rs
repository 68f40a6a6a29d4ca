//! The durable store a request uses, by the variable `store_backend`:
//! `key-value` (the default), Spin's key-value store `default` (SQLite, or
//! whatever the runtime config puts behind it); `redis`, the Redis server
//! at `store_redis_url` spoken to directly (`redis_store`), which is much
//! cheaper than Spin's Redis key-value store; or `postgres`, the PostgreSQL
//! at `store_postgres_url` through Spin's pooled connections (`pg_store`).

use analytics_core::kv::{Kv as CoreKv, Reader, StoreError, Swap};

use crate::kv::Kv;
use crate::pg_store::{PgCas, PgStore};
use crate::redis_store::{RedisCas, RedisStore};

/// One of the three.
pub enum Store {
    KeyValue(Kv),
    Redis(RedisStore),
    Postgres(PgStore),
}

/// A compare-and-swap of either.
pub enum StoreCas {
    KeyValue(<Kv as CoreKv>::Cas),
    Redis(RedisCas),
    Postgres(PgCas),
}

impl Store {
    /// Whether writes are cheap (a Redis round trip, or a PostgreSQL commit
    /// that shares its flush with concurrent ones) rather than durable
    /// commits every request queues behind (Spin's SQLite store).
    pub fn cheap_writes(&self) -> bool {
        matches!(self, Store::Redis(_) | Store::Postgres(_))
    }

    /// The store the app is configured with.
    pub fn open() -> Result<Store, String> {
        match crate::config::spin_lookup("store_backend")?.trim() {
            "key-value" => Kv::open_default().map(Store::KeyValue),
            "redis" => RedisStore::connect(crate::config::spin_lookup("store_redis_url")?.trim()).map(Store::Redis),
            "postgres" => PgStore::connect(crate::config::spin_lookup("store_postgres_url")?.trim()).map(Store::Postgres),
            other => Err(format!("variable `store_backend` has the value `{other}`; expected key-value, redis or postgres")),
        }
    }
}

impl Reader for Store {
    fn get_many(&mut self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        match self {
            Store::KeyValue(kv) => kv.get_many(keys),
            Store::Redis(redis) => redis.get_many(keys),
            Store::Postgres(pg) => pg.get_many(keys),
        }
    }

    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Store::KeyValue(kv) => kv.get(key),
            Store::Redis(redis) => redis.get(key),
            Store::Postgres(pg) => pg.get(key),
        }
    }

    fn get_many_heads(&mut self, keys: &[String], heads: usize, bytes: usize) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        match self {
            Store::KeyValue(kv) => kv.get_many_heads(keys, heads, bytes),
            Store::Redis(redis) => redis.get_many_heads(keys, heads, bytes),
            Store::Postgres(pg) => pg.get_many_heads(keys, heads, bytes),
        }
    }
}

fn mismatched() -> StoreError {
    StoreError::Store("a compare-and-swap of one store used on the other".into())
}

impl CoreKv for Store {
    type Cas = StoreCas;

    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        match self {
            Store::KeyValue(kv) => kv.set(key, value),
            Store::Redis(redis) => redis.set(key, value),
            Store::Postgres(pg) => pg.set(key, value),
        }
    }

    fn set_many(&mut self, entries: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        match self {
            Store::KeyValue(kv) => kv.set_many(entries),
            Store::Redis(redis) => redis.set_many(entries),
            Store::Postgres(pg) => pg.set_many(entries),
        }
    }

    fn delete_many(&mut self, keys: &[String]) -> Result<(), StoreError> {
        match self {
            Store::KeyValue(kv) => kv.delete_many(keys),
            Store::Redis(redis) => redis.delete_many(keys),
            Store::Postgres(pg) => pg.delete_many(keys),
        }
    }

    fn increment(&mut self, key: &str, delta: i64) -> Result<i64, StoreError> {
        match self {
            Store::KeyValue(kv) => kv.increment(key, delta),
            Store::Redis(redis) => redis.increment(key, delta),
            Store::Postgres(pg) => pg.increment(key, delta),
        }
    }

    fn watch(&mut self, key: &str) -> Result<(StoreCas, Option<Vec<u8>>), StoreError> {
        match self {
            Store::KeyValue(kv) => kv.watch(key).map(|(cas, v)| (StoreCas::KeyValue(cas), v)),
            Store::Redis(redis) => redis.watch(key).map(|(cas, v)| (StoreCas::Redis(cas), v)),
            Store::Postgres(pg) => pg.watch(key).map(|(cas, v)| (StoreCas::Postgres(cas), v)),
        }
    }

    fn swap(&mut self, cas: StoreCas, value: &[u8]) -> Result<Swap<StoreCas>, StoreError> {
        let swapped = match (self, cas) {
            (Store::KeyValue(kv), StoreCas::KeyValue(cas)) => kv.swap(cas, value)?.map(StoreCas::KeyValue),
            (Store::Redis(redis), StoreCas::Redis(cas)) => redis.swap(cas, value)?.map(StoreCas::Redis),
            (Store::Postgres(pg), StoreCas::Postgres(cas)) => pg.swap(cas, value)?.map(StoreCas::Postgres),
            _ => return Err(mismatched()),
        };
        Ok(swapped)
    }

    fn sleep_ms(&mut self, ms: u64) {
        crate::clock::sleep_ms(ms);
    }

    fn max_attempts(&self) -> usize {
        match self {
            Store::KeyValue(kv) => kv.max_attempts(),
            Store::Redis(redis) => redis.max_attempts(),
            Store::Postgres(pg) => pg.max_attempts(),
        }
    }
}
