//! The Spin key-value store (`wasi:keyvalue`), with the compare-and-swap
//! update loop every aggregate write goes through.

use analytics_core::store::{ReadError, Reader};
use spin_sdk::wit::wasi::keyvalue::{atomics, batch, store};

/// The `default` store.
pub struct Kv {
    bucket: store::Bucket,
}

fn message(e: store::Error) -> String {
    match e {
        store::Error::NoSuchStore => "no such store".into(),
        store::Error::AccessDenied => "access denied".into(),
        store::Error::Other(m) => m,
    }
}

impl Kv {
    pub fn open_default() -> Result<Kv, String> {
        store::open("default").map(|bucket| Kv { bucket }).map_err(message)
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.bucket.get(key).map_err(message)
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), String> {
        self.bucket.set(key, value).map_err(message)
    }

    pub fn delete(&self, key: &str) -> Result<(), String> {
        self.bucket.delete(key).map_err(message)
    }

    /// A counter kept with [`Kv::increment`] (0 when missing), read without writing.
    pub fn counter(&self, key: &str) -> Result<i64, String> {
        match self.get(key)? {
            None => Ok(0),
            Some(bytes) => analytics_core::store::decode_counter(&bytes).ok_or_else(|| format!("`{key}` does not hold a counter")),
        }
    }

    /// Atomically adds `delta`; a missing key counts as 0.
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, String> {
        atomics::increment(&self.bucket, key, delta).map_err(message)
    }

    /// Rewrites `key` with `change(current)` atomically: read, compute, swap,
    /// and start over when someone else wrote in between. Returns what
    /// `change` returned for the value written.
    ///
    /// Spin's swap is unconditional when the key did not exist, so creating a
    /// key needs its own arbitration: whoever first raises the key's guard
    /// counter (`increment` is atomic) writes the first value; everyone else
    /// waits for that value and swaps against it.
    pub fn update<T>(&self, key: &str, mut change: impl FnMut(Option<&[u8]>) -> Result<(Vec<u8>, T), String>) -> Result<T, String> {
        let mut cas = atomics::Cas::new(&self.bucket, key).map_err(message)?;
        let mut current = cas.current().map_err(message)?;
        if current.is_none() {
            let guard = format!("init:{key}");
            if self.increment(&guard, 1)? == 1 {
                let created = change(None).and_then(|(value, result)| self.set(key, &value).map(|()| result));
                if created.is_err() {
                    // Others wait for this value: let the next writer create it instead.
                    let _ = self.delete(&guard);
                }
                return created;
            }
            // The creator is between its two calls; the value is a moment away.
            for _ in 0..CREATION_POLLS {
                cas = atomics::Cas::new(&self.bucket, key).map_err(message)?;
                current = cas.current().map_err(message)?;
                if current.is_some() {
                    break;
                }
                crate::clock::sleep_ms(1);
            }
            if current.is_none() {
                return Err(format!("`{key}` was claimed for creation but never written"));
            }
        }
        loop {
            let (next, result) = change(current.as_deref())?;
            match atomics::swap(cas, &next) {
                Ok(()) => return Ok(result),
                Err(atomics::CasError::CasFailed(fresh)) => {
                    current = fresh.current().map_err(message)?;
                    cas = fresh;
                }
                Err(atomics::CasError::StoreError(e)) => return Err(message(e)),
            }
        }
    }
}

/// How many times (1 ms apart) to look for a key another request is creating.
const CREATION_POLLS: usize = 1_000;

impl Reader for Kv {
    fn get_many(&mut self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, ReadError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // Spin returns only the keys that exist, in no particular order.
        let found = batch::get_many(&self.bucket, keys).map_err(|e| ReadError::Store(message(e)))?;
        let mut by_key: std::collections::HashMap<String, Vec<u8>> =
            found.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect();
        Ok(keys.iter().map(|k| by_key.remove(k)).collect())
    }
}
