//! A project's view of the store: every key it reads or writes carries the
//! project's prefix (none for the default project, whose layout is the one
//! from before projects), so one project's data, types, users and counters
//! can never meet another's. The core's algorithms run on it unchanged.

use analytics_core::kv::{Kv, Reader, StoreError, Swap};

use crate::store::{Store, StoreCas};

pub struct Scoped {
    pub store: Store,
    prefix: String,
}

impl Scoped {
    pub fn new(store: Store, prefix: String) -> Scoped {
        Scoped { store, prefix }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn keys(&self, keys: &[String]) -> Vec<String> {
        if self.prefix.is_empty() {
            return keys.to_vec();
        }
        keys.iter().map(|k| self.key(k)).collect()
    }

    pub fn cheap_writes(&self) -> bool {
        self.store.cheap_writes()
    }
}

impl Reader for Scoped {
    fn get_many(&mut self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let keys = self.keys(keys);
        self.store.get_many(&keys)
    }

    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.key(key);
        self.store.get(&key)
    }

    fn get_many_heads(&mut self, keys: &[String], heads: usize, bytes: usize) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let keys = self.keys(keys);
        self.store.get_many_heads(&keys, heads, bytes)
    }
}

impl Kv for Scoped {
    type Cas = StoreCas;

    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let key = self.key(key);
        self.store.set(&key, value)
    }

    fn set_many(&mut self, entries: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        let entries: Vec<(String, Vec<u8>)> = entries.iter().map(|(k, v)| (self.key(k), v.clone())).collect();
        self.store.set_many(&entries)
    }

    fn delete_many(&mut self, keys: &[String]) -> Result<(), StoreError> {
        let keys = self.keys(keys);
        self.store.delete_many(&keys)
    }

    fn increment(&mut self, key: &str, delta: i64) -> Result<i64, StoreError> {
        let key = self.key(key);
        self.store.increment(&key, delta)
    }

    fn watch(&mut self, key: &str) -> Result<(StoreCas, Option<Vec<u8>>), StoreError> {
        let key = self.key(key);
        self.store.watch(&key)
    }

    fn swap(&mut self, cas: StoreCas, value: &[u8]) -> Result<Swap<StoreCas>, StoreError> {
        self.store.swap(cas, value)
    }

    fn sleep_ms(&mut self, ms: u64) {
        self.store.sleep_ms(ms);
    }

    fn max_attempts(&self) -> usize {
        self.store.max_attempts()
    }
}
