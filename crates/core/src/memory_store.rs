//! An in-memory store with Spin's semantics, for tests of the algorithms and
//! for building seeded data: handles share one map (a clone is another
//! request on the same store), every write is durable on its own as in Spin's
//! SQLite store, and faults are injectable: a request that dies after its
//! n-th write, the swap of Spin v4.0.2's Redis store, and interference
//! between any two operations.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::kv::{Kv, Reader, StoreError, Swap};

/// How `swap` behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SwapBehaviour {
    /// Spin's SQLite store: conditional on an existing value, unconditional
    /// when `current` saw none.
    #[default]
    SpinSqlite,
    /// Conditional either way, as Redis `WATCH`/`MULTI`/`EXEC` (or a script) is.
    Correct,
    /// Spin v4.0.2's Redis store: conditional, then reported as failed whether written or not.
    SpinV4_0_2,
}

/// Called before every operation of one handle, with the store's values:
/// another request's writes, landing at the worst moment.
pub type Interference = Box<dyn FnMut(&mut HashMap<String, Vec<u8>>) + Send>;

/// Run once, outside the store's lock, before one operation of a handle:
/// other requests that run to completion while this one is stalled there.
pub type Stall = Arc<Mutex<Option<Box<dyn FnOnce() + Send>>>>;

/// A handle on a shared in-memory store.
#[derive(Clone, Default)]
pub struct MemoryStore {
    values: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    pub swaps: SwapBehaviour,
    /// After this many more writes, every operation of this handle fails, as
    /// if its request died there.
    pub writes_left: Option<usize>,
    /// Keys read, writes made and bytes written (keys and values) through this handle.
    pub reads: usize,
    pub writes: usize,
    pub bytes_written: usize,
    pub slept_ms: u64,
    /// Sleep for real (a thousandth of the time asked), for tests with threads.
    pub real_sleep: bool,
    pub interfere: Option<Arc<Mutex<Interference>>>,
    /// Operations begun through this handle.
    pub operations: usize,
    /// Before operation number `.0` (from 0), run `.1`.
    pub stall: Option<(usize, Stall)>,
}

/// A compare-and-swap handle: the key and what `current` read.
pub struct MemoryCas {
    key: String,
    seen: Option<Vec<u8>>,
}

fn crashed() -> StoreError {
    StoreError::Store("the request died here (injected)".into())
}

impl MemoryStore {
    pub fn with_swaps(swaps: SwapBehaviour) -> MemoryStore {
        MemoryStore { swaps, ..MemoryStore::default() }
    }

    /// Another request on the same store, with its own counters and faults.
    pub fn request(&self) -> MemoryStore {
        MemoryStore {
            values: self.values.clone(),
            swaps: self.swaps,
            real_sleep: self.real_sleep,
            ..MemoryStore::default()
        }
    }

    /// Runs `f` before each operation of this handle.
    pub fn interfere_with(&mut self, f: impl FnMut(&mut HashMap<String, Vec<u8>>) + Send + 'static) {
        self.interfere = Some(Arc::new(Mutex::new(Box::new(f))));
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<u8>>> {
        self.values.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The stored value, outside any request.
    pub fn value(&self, key: &str) -> Option<Vec<u8>> {
        self.lock().get(key).cloned()
    }

    /// Every key and value, outside any request.
    pub fn snapshot(&self) -> HashMap<String, Vec<u8>> {
        self.lock().clone()
    }

    /// Stores `entries` directly, outside any request (for seeding).
    pub fn load(&self, entries: impl IntoIterator<Item = (String, Vec<u8>)>) {
        self.lock().extend(entries);
    }

    /// Before this handle's operation number `operation` (from 0), stalls
    /// it while `others` runs.
    pub fn stall_before(&mut self, operation: usize, others: impl FnOnce() + Send + 'static) {
        self.stall = Some((operation, Arc::new(Mutex::new(Some(Box::new(others))))));
    }

    /// Whether a stall was set and has not run (the handle never got that far).
    pub fn stall_pending(&self) -> bool {
        self.stall.as_ref().is_some_and(|(_, others)| others.lock().unwrap_or_else(PoisonError::into_inner).is_some())
    }

    /// Starts an operation: a stall, interference, then the crash check.
    fn begin(&mut self) -> Result<MutexGuard<'_, HashMap<String, Vec<u8>>>, StoreError> {
        if let Some((at, others)) = &self.stall {
            if *at == self.operations {
                let others = others.lock().unwrap_or_else(PoisonError::into_inner).take();
                if let Some(others) = others {
                    others();
                }
            }
        }
        self.operations += 1;
        if self.writes_left == Some(0) {
            return Err(crashed());
        }
        let mut values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = &self.interfere {
            (f.lock().unwrap_or_else(PoisonError::into_inner))(&mut values);
        }
        Ok(values)
    }

    fn wrote(&mut self) {
        self.writes += 1;
        if let Some(left) = &mut self.writes_left {
            *left = left.saturating_sub(1);
        }
    }
}

impl Reader for MemoryStore {
    fn get_many(&mut self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let found: Vec<Option<Vec<u8>>> = {
            let values = self.begin()?;
            keys.iter().map(|k| values.get(k).cloned()).collect()
        };
        self.reads += keys.len();
        Ok(found)
    }
}

impl Kv for MemoryStore {
    type Cas = MemoryCas;

    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.begin()?.insert(key.to_string(), value.to_vec());
        self.wrote();
        self.bytes_written += key.len() + value.len();
        Ok(())
    }

    fn set_many(&mut self, entries: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        self.begin()?.extend(entries.iter().cloned());
        self.wrote();
        self.bytes_written += entries.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        Ok(())
    }

    fn delete_many(&mut self, keys: &[String]) -> Result<(), StoreError> {
        let mut values = self.begin()?;
        for key in keys {
            values.remove(key);
        }
        drop(values);
        self.wrote();
        Ok(())
    }

    /// 8 little-endian bytes, as Spin's SQLite store keeps counters.
    fn increment(&mut self, key: &str, delta: i64) -> Result<i64, StoreError> {
        let next = {
            let mut values = self.begin()?;
            let current = match values.get(key) {
                None => 0,
                Some(bytes) => i64::from_le_bytes(
                    bytes.as_slice().try_into().map_err(|_| StoreError::corrupt(key, "not an 8-byte counter"))?,
                ),
            };
            let next = current.wrapping_add(delta);
            values.insert(key.to_string(), next.to_le_bytes().to_vec());
            next
        };
        self.wrote();
        Ok(next)
    }

    fn watch(&mut self, key: &str) -> Result<(MemoryCas, Option<Vec<u8>>), StoreError> {
        let seen = self.begin()?.get(key).cloned();
        self.reads += 1;
        Ok((MemoryCas { key: key.to_string(), seen: seen.clone() }, seen))
    }

    fn swap(&mut self, cas: MemoryCas, value: &[u8]) -> Result<Swap<MemoryCas>, StoreError> {
        let swaps = self.swaps;
        let (written, now) = {
            let mut values = self.begin()?;
            let current = values.get(&cas.key);
            let matches = match (&cas.seen, swaps) {
                (None, SwapBehaviour::SpinSqlite) => true,
                (seen, _) => current == seen.as_ref(),
            };
            if matches {
                values.insert(cas.key.clone(), value.to_vec());
            }
            (matches, values.get(&cas.key).cloned())
        };
        if written {
            self.wrote();
            self.bytes_written += cas.key.len() + value.len();
        }
        if written && swaps != SwapBehaviour::SpinV4_0_2 {
            return Ok(Swap::Written);
        }
        self.reads += 1;
        Ok(Swap::Failed { cas: MemoryCas { key: cas.key, seen: now.clone() }, current: now })
    }

    fn sleep_ms(&mut self, ms: u64) {
        self.slept_ms += ms;
        if self.real_sleep {
            std::thread::sleep(std::time::Duration::from_micros(ms));
        }
    }
}
