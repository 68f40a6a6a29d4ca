//! The Spin key-value store (`wasi:keyvalue`) as the core's [`analytics_core::kv::Kv`].
//!
//! Spin v4.0.2's Redis-backed store implements `get-many` as `KEYS k1 k2
//! ...`: one key comes back as missing and more keys are an error. So a
//! single key is always read with `get`, and after that error the request
//! reads key by key, in order.

use std::cell::Cell;

use analytics_core::kv::{Kv as CoreKv, Reader, StoreError, Swap};
use spin_sdk::wit::wasi::keyvalue::{atomics, batch, store};

/// The `default` store.
pub struct Kv {
    bucket: store::Bucket,
    /// `false` once the store's `get-many` proved broken.
    batch_reads: Cell<bool>,
}

fn message(e: store::Error) -> String {
    match e {
        store::Error::NoSuchStore => "no such store".into(),
        store::Error::AccessDenied => "access denied".into(),
        store::Error::Other(m) => m,
    }
}

fn failed(e: store::Error) -> StoreError {
    StoreError::Store(message(e))
}

impl Kv {
    pub fn open_default() -> Result<Kv, String> {
        store::open("default").map(|bucket| Kv { bucket, batch_reads: Cell::new(true) }).map_err(message)
    }

    fn get_one(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.bucket.get(key).map_err(failed)
    }

    fn get_each(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        keys.iter().map(|k| self.get_one(k)).collect()
    }
}

impl Reader for Kv {
    fn get_many(&mut self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.len() < 2 || !self.batch_reads.get() {
            return self.get_each(keys);
        }
        // Spin returns only the keys that exist, in no particular order.
        match batch::get_many(&self.bucket, keys) {
            Ok(found) => {
                let mut by_key: std::collections::HashMap<String, Vec<u8>> =
                    found.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect();
                Ok(keys.iter().map(|k| by_key.remove(k)).collect())
            }
            Err(store::Error::Other(m)) if m.contains("wrong number of arguments") => {
                self.batch_reads.set(false);
                self.get_each(keys)
            }
            Err(e) => Err(failed(e)),
        }
    }

    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_one(key)
    }
}

impl CoreKv for Kv {
    type Cas = atomics::Cas;

    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.bucket.set(key, value).map_err(failed)
    }

    fn set_many(&mut self, entries: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        batch::set_many(&self.bucket, entries).map_err(failed)
    }

    fn delete_many(&mut self, keys: &[String]) -> Result<(), StoreError> {
        batch::delete_many(&self.bucket, keys).map_err(failed)
    }

    fn increment(&mut self, key: &str, delta: i64) -> Result<i64, StoreError> {
        atomics::increment(&self.bucket, key, delta).map_err(failed)
    }

    fn watch(&mut self, key: &str) -> Result<(atomics::Cas, Option<Vec<u8>>), StoreError> {
        let cas = atomics::Cas::new(&self.bucket, key).map_err(failed)?;
        let current = cas.current().map_err(failed)?;
        Ok((cas, current))
    }

    fn swap(&mut self, cas: atomics::Cas, value: &[u8]) -> Result<Swap<atomics::Cas>, StoreError> {
        match atomics::swap(cas, value) {
            Ok(()) => Ok(Swap::Written),
            Err(atomics::CasError::CasFailed(fresh)) => {
                let current = fresh.current().map_err(failed)?;
                Ok(Swap::Failed { cas: fresh, current })
            }
            Err(atomics::CasError::StoreError(e)) => Err(failed(e)),
        }
    }

    fn sleep_ms(&mut self, ms: u64) {
        crate::clock::sleep_ms(ms);
    }
}
