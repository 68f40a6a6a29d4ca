//! Fault injection: a store that ends the whole process, as `kill -9` would,
//! right after the n-th write the host made (across every request and every
//! store). Tests and the benchmark use it to stop the write path at exact
//! points and check that retries recover everything.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{Found, KvResult, Session, Store};

/// Counts writes for every store it wraps; aborts the process at `after`.
pub struct CrashPoint {
    after: u64,
    writes: AtomicU64,
}

impl CrashPoint {
    pub fn new(after: u64) -> Arc<CrashPoint> {
        Arc::new(CrashPoint { after, writes: AtomicU64::new(0) })
    }

    /// One write landed (or failed: either way the request got that far).
    fn wrote(&self) {
        if self.writes.fetch_add(1, Ordering::SeqCst) + 1 == self.after {
            eprintln!("crash point: aborting after key-value write {}", self.after);
            // No unwinding, no destructors, no flushing: as abrupt as a SIGKILL.
            std::process::abort();
        }
    }
}

/// `inner`, ending the process at the crash point.
pub struct CrashingStore {
    pub inner: Arc<dyn Store>,
    pub point: Arc<CrashPoint>,
}

impl CrashingStore {
    fn after<T>(&self, result: KvResult<T>) -> KvResult<T> {
        self.point.wrote();
        result
    }
}

#[async_trait::async_trait]
impl Store for CrashingStore {
    async fn get(&self, session: &Session, key: &str) -> KvResult<Option<Vec<u8>>> {
        self.inner.get(session, key).await
    }

    async fn set(&self, session: &Session, key: &str, value: &[u8]) -> KvResult<()> {
        self.after(self.inner.set(session, key, value).await)
    }

    async fn delete(&self, session: &Session, key: &str) -> KvResult<()> {
        self.after(self.inner.delete(session, key).await)
    }

    async fn exists(&self, session: &Session, key: &str) -> KvResult<bool> {
        self.inner.exists(session, key).await
    }

    async fn keys(&self, session: &Session) -> KvResult<Vec<String>> {
        self.inner.keys(session).await
    }

    async fn increment(&self, session: &Session, key: &str, delta: i64) -> KvResult<i64> {
        self.after(self.inner.increment(session, key, delta).await)
    }

    async fn swap(&self, session: &Session, key: &str, expected: Option<&[u8]>, new: &[u8]) -> KvResult<bool> {
        self.after(self.inner.swap(session, key, expected, new).await)
    }

    async fn get_many(&self, session: &Session, keys: &[String]) -> KvResult<Found> {
        self.inner.get_many(session, keys).await
    }

    async fn set_many(&self, session: &Session, entries: &[(String, Vec<u8>)]) -> KvResult<()> {
        self.after(self.inner.set_many(session, entries).await)
    }

    async fn delete_many(&self, session: &Session, keys: &[String]) -> KvResult<()> {
        self.after(self.inner.delete_many(session, keys).await)
    }

    fn uncommitted(&self) -> bool {
        self.inner.uncommitted()
    }
}
