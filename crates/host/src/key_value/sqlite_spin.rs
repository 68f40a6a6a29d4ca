//! SQLite the way Spin 4's `key-value-spin` keeps it, so the host shows what
//! a request costs under `spin up`: one connection behind one lock, SQLite's
//! default rollback journal with full sync, and every write its own durable
//! transaction (about 2 ms each on an ordinary disk).
//!
//! The connection lives on a thread of its own that runs one operation at a
//! time: the lock Spin takes, without blocking the server's workers (Spin
//! runs its operations with `block_in_place` for the same reason) and
//! without a thread per waiting request.

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension};

use super::sqlite::SCHEMA;
use super::{Found, KvError, KvResult, Session, Store};

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// One labelled store with its own connection, as Spin opens one per store.
pub struct SpinSqliteStore {
    label: Arc<str>,
    jobs: mpsc::Sender<Job>,
    /// What Spin spends per operation while it holds the connection's lock
    /// beyond SQLite's own work ([`crate::spin_model`]).
    op_cost: std::time::Duration,
}

fn other(e: impl std::fmt::Display) -> KvError {
    KvError::Other(e.to_string())
}

impl SpinSqliteStore {
    /// Opens (creating if needed) the database at `path`; `None` keeps it in memory.
    pub fn open(label: &str, path: Option<&Path>) -> anyhow::Result<Self> {
        Self::open_with_cost(label, path, std::time::Duration::ZERO)
    }

    /// [`SpinSqliteStore::open`], spending `op_cost` on the connection's
    /// thread with every operation.
    pub fn open_with_cost(label: &str, path: Option<&Path>, op_cost: std::time::Duration) -> anyhow::Result<Self> {
        let connection = match path {
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                Connection::open(path)?
            }
            None => Connection::open_in_memory()?,
        };
        // Spin sets no pragmas: SQLite's defaults (rollback journal, synchronous=FULL) apply.
        rusqlite::vtab::array::load_module(&connection)?;
        connection.execute_batch(SCHEMA)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        let mut connection = connection;
        std::thread::Builder::new().name(format!("kv-{label}")).spawn(move || {
            // Ends when the store, and with it the sender, is dropped.
            for job in queue {
                job(&mut connection);
            }
        })?;
        Ok(SpinSqliteStore { label: label.into(), jobs, op_cost })
    }

    /// Runs `f` on the connection's thread, after every operation queued before it.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &str) -> KvResult<T> + Send + 'static,
    ) -> KvResult<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let (label, op_cost) = (self.label.clone(), self.op_cost);
        let job: Job = Box::new(move |connection| {
            crate::spin_model::burn(op_cost);
            let _ = reply.send(f(connection, &label));
        });
        self.jobs.send(job).map_err(|_| KvError::Other("key-value store thread stopped".into()))?;
        answer.await.map_err(|_| KvError::Other("key-value store thread stopped".into()))?
    }
}

fn select(c: &Connection, label: &str, key: &str) -> KvResult<Option<Vec<u8>>> {
    c.prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")
        .and_then(|mut s| s.query_row(params![label, key], |r| r.get(0)).optional())
        .map_err(other)
}

const UPSERT: &str = "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                      ON CONFLICT(store, key) DO UPDATE SET value = excluded.value";

#[async_trait::async_trait]
impl Store for SpinSqliteStore {
    async fn get(&self, _: &Session, key: &str) -> KvResult<Option<Vec<u8>>> {
        let key = key.to_string();
        self.run(move |c, label| select(c, label, &key)).await
    }

    async fn set(&self, _: &Session, key: &str, value: &[u8]) -> KvResult<()> {
        let (key, value) = (key.to_string(), value.to_vec());
        self.run(move |c, label| c.prepare_cached(UPSERT).and_then(|mut s| s.execute(params![label, key, value])).map(drop).map_err(other))
            .await
    }

    async fn delete(&self, _: &Session, key: &str) -> KvResult<()> {
        let key = key.to_string();
        self.run(move |c, label| {
            c.prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")
                .and_then(|mut s| s.execute(params![label, key]))
                .map(drop)
                .map_err(other)
        })
        .await
    }

    async fn keys(&self, _: &Session) -> KvResult<Vec<String>> {
        self.run(|c, label| {
            let mut stmt = c.prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1").map_err(other)?;
            let keys = stmt.query_map(params![label], |r| r.get(0)).map_err(other)?;
            keys.collect::<rusqlite::Result<_>>().map_err(other)
        })
        .await
    }

    /// A read and a write in one transaction, as Spin does it.
    async fn increment(&self, _: &Session, key: &str, delta: i64) -> KvResult<i64> {
        let key = key.to_string();
        self.run(move |c, label| {
            let tx = c.transaction().map_err(other)?;
            let current = match select(&tx, label, &key)? {
                None => 0,
                Some(bytes) => i64::from_le_bytes(bytes.try_into().map_err(|_| KvError::NotAnInteger(key.clone()))?),
            };
            let next = current.wrapping_add(delta);
            tx.prepare_cached(UPSERT).and_then(|mut s| s.execute(params![label, key, next.to_le_bytes()])).map_err(other)?;
            tx.commit().map_err(other)?;
            Ok(next)
        })
        .await
    }

    /// Spin's compare-and-swap: an `UPDATE ... WHERE value = old` against the
    /// value `current` read, and an unconditional upsert when it read nothing.
    async fn swap(&self, _: &Session, key: &str, expected: Option<&[u8]>, new: &[u8]) -> KvResult<bool> {
        let (key, expected, new) = (key.to_string(), expected.map(<[u8]>::to_vec), new.to_vec());
        self.run(move |c, label| {
            let changed = match expected {
                Some(old) => c
                    .prepare_cached("UPDATE spin_key_value SET value = ?4 WHERE store = ?1 AND key = ?2 AND value = ?3")
                    .and_then(|mut s| s.execute(params![label, key, old, new]))
                    .map_err(other)?,
                None => {
                    let tx = c.transaction().map_err(other)?;
                    let rows = tx.prepare_cached(UPSERT).and_then(|mut s| s.execute(params![label, key, new])).map_err(other)?;
                    tx.commit().map_err(other)?;
                    rows
                }
            };
            Ok(changed == 1)
        })
        .await
    }

    /// Spin's single `SELECT ... IN rarray(...)`: one statement, one file
    /// lock, a consistent snapshot.
    async fn get_many(&self, _: &Session, keys: &[String]) -> KvResult<Found> {
        let keys = keys.to_vec();
        self.run(move |c, label| super::sqlite::select_many(c, label, &keys)).await
    }

    async fn set_many(&self, _: &Session, entries: &[(String, Vec<u8>)]) -> KvResult<()> {
        let entries = entries.to_vec();
        self.run(move |c, label| {
            let tx = c.transaction().map_err(other)?;
            for (key, value) in entries {
                tx.prepare_cached(UPSERT).and_then(|mut s| s.execute(params![label, key, value])).map_err(other)?;
            }
            tx.commit().map_err(other)
        })
        .await
    }

    async fn delete_many(&self, _: &Session, keys: &[String]) -> KvResult<()> {
        let keys = keys.to_vec();
        self.run(move |c, label| {
            let tx = c.transaction().map_err(other)?;
            for key in keys {
                tx.prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")
                    .and_then(|mut s| s.execute(params![label, key]))
                    .map_err(other)?;
            }
            tx.commit().map_err(other)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_write_is_durable_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        let store = SpinSqliteStore::open("default", Some(&path)).unwrap();
        let session = Session::default();
        store.set(&session, "a", b"1").await.unwrap();
        assert_eq!(store.increment(&session, "n", 2).await.unwrap(), 2);
        // Another connection sees both at once: nothing waits for a commit.
        let reader = Connection::open(&path).unwrap();
        let count: i64 = reader.query_row("SELECT COUNT(*) FROM spin_key_value", [], |r| r.get(0)).unwrap();
        assert_eq!(count, 2);
        let pragmas = store
            .run(|c, _| {
                let journal: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0)).map_err(other)?;
                let sync: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0)).map_err(other)?;
                Ok((journal, sync))
            })
            .await
            .unwrap();
        assert_eq!(pragmas, ("delete".to_string(), 2), "Spin's defaults: rollback journal, full sync");
    }

    #[tokio::test]
    async fn swap_is_conditional_only_on_an_existing_value() {
        let store = SpinSqliteStore::open("default", None).unwrap();
        let session = Session::default();
        assert!(store.swap(&session, "k", None, b"a").await.unwrap());
        // Spin upserts when `current` saw nothing, even if the key exists by now.
        assert!(store.swap(&session, "k", None, b"b").await.unwrap());
        assert!(!store.swap(&session, "k", Some(b"a"), b"c").await.unwrap());
        assert!(store.swap(&session, "k", Some(b"b"), b"c").await.unwrap());
        assert_eq!(store.get(&session, "k").await.unwrap().as_deref(), Some(&b"c"[..]));
        store.set(&session, "text", b"abc").await.unwrap();
        assert!(matches!(store.increment(&session, "text", 1).await, Err(KvError::NotAnInteger(_))));
    }
}
