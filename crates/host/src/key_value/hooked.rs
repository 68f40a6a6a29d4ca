//! A store with hooks around every call: fault injection (a crash point that
//! ends the process, as `kill -9` would, right after the n-th write) and the
//! per-call cost of Spin's host interface in `--store-mode spin`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{CasState, Found, KvResult, Session, Store};

/// Something that happens around a store's calls.
pub trait Hook: Send + Sync {
    /// Before any call.
    fn call(&self) {}
    /// After a write returned (landed or failed: the request got that far).
    fn wrote(&self) {}
}

/// Ends the process right after the `after`-th write, counted over every
/// store it hooks (tests and the benchmark stop the write path at exact points).
pub struct CrashPoint {
    after: u64,
    writes: AtomicU64,
}

impl CrashPoint {
    pub fn new(after: u64) -> Arc<CrashPoint> {
        Arc::new(CrashPoint { after, writes: AtomicU64::new(0) })
    }

    /// Counts one write; the `after`-th ends the process.
    pub fn wrote(&self) {
        if self.writes.fetch_add(1, Ordering::SeqCst) + 1 == self.after {
            eprintln!("crash point: aborting after write {}", self.after);
            // No unwinding, no destructors, no flushing: as abrupt as a SIGKILL.
            std::process::abort();
        }
    }
}

impl Hook for CrashPoint {
    fn wrote(&self) {
        CrashPoint::wrote(self);
    }
}

/// The CPU Spin's host interface spends per key-value call ([`crate::spin_model`]).
pub struct SpinCallCost(pub std::time::Duration);

impl Hook for SpinCallCost {
    fn call(&self) {
        crate::spin_model::burn(self.0);
    }
}

/// `inner` with `hook` around each call.
pub struct HookedStore {
    pub inner: Arc<dyn Store>,
    pub hook: Arc<dyn Hook>,
}

impl HookedStore {
    fn written<T>(&self, result: KvResult<T>) -> KvResult<T> {
        self.hook.wrote();
        result
    }
}

#[async_trait::async_trait]
impl Store for HookedStore {
    async fn get(&self, session: &Session, key: &str) -> KvResult<Option<Vec<u8>>> {
        self.hook.call();
        self.inner.get(session, key).await
    }

    async fn set(&self, session: &Session, key: &str, value: &[u8]) -> KvResult<()> {
        self.hook.call();
        self.written(self.inner.set(session, key, value).await)
    }

    async fn delete(&self, session: &Session, key: &str) -> KvResult<()> {
        self.hook.call();
        self.written(self.inner.delete(session, key).await)
    }

    async fn exists(&self, session: &Session, key: &str) -> KvResult<bool> {
        self.hook.call();
        self.inner.exists(session, key).await
    }

    async fn keys(&self, session: &Session) -> KvResult<Vec<String>> {
        self.hook.call();
        self.inner.keys(session).await
    }

    async fn increment(&self, session: &Session, key: &str, delta: i64) -> KvResult<i64> {
        self.hook.call();
        self.written(self.inner.increment(session, key, delta).await)
    }

    async fn swap(&self, session: &Session, key: &str, expected: Option<&[u8]>, new: &[u8]) -> KvResult<bool> {
        self.hook.call();
        self.written(self.inner.swap(session, key, expected, new).await)
    }

    async fn get_many(&self, session: &Session, keys: &[String]) -> KvResult<Found> {
        self.hook.call();
        self.inner.get_many(session, keys).await
    }

    async fn set_many(&self, session: &Session, entries: &[(String, Vec<u8>)]) -> KvResult<()> {
        self.hook.call();
        self.written(self.inner.set_many(session, entries).await)
    }

    async fn delete_many(&self, session: &Session, keys: &[String]) -> KvResult<()> {
        self.hook.call();
        self.written(self.inner.delete_many(session, keys).await)
    }

    async fn opened(&self, session: &Session) -> KvResult<()> {
        self.hook.call();
        self.inner.opened(session).await
    }

    async fn cas_begin(&self, session: &Session, key: &str) -> KvResult<CasState> {
        self.hook.call();
        self.inner.cas_begin(session, key).await
    }

    async fn cas_current(&self, session: &Session, key: &str, state: &mut CasState) -> KvResult<Option<Vec<u8>>> {
        self.hook.call();
        self.inner.cas_current(session, key, state).await
    }

    async fn cas_swap(&self, session: &Session, key: &str, expected: Option<&[u8]>, new: &[u8], state: &mut CasState) -> KvResult<bool> {
        self.hook.call();
        self.written(self.inner.cas_swap(session, key, expected, new, state).await)
    }

    fn uncommitted(&self) -> bool {
        self.inner.uncommitted()
    }
}
