//! A key-value store on SQLite, in the table layout Spin uses
//! (`spin_key_value(store, key, value)`), so a database file can move between
//! this host and `spin up`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use rusqlite::{params, Connection, OptionalExtension};

use super::{KvError, KvResult};

type SharedConnection = Arc<Mutex<Connection>>;

/// One labelled store inside a SQLite database (a file, or memory).
pub struct SqliteStore {
    label: String,
    conn: SharedConnection,
}

/// The open connection to each database file. The host holds the file
/// exclusively (no lock system calls per transaction), so every label in a
/// file, and an app restarted in the same process, must share one connection.
fn connection_to(path: &Path) -> anyhow::Result<SharedConnection> {
    static OPEN: OnceLock<Mutex<HashMap<PathBuf, Weak<Mutex<Connection>>>>> = OnceLock::new();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create key-value directory {}: {e}", dir.display()))?;
    }
    let key = match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) if !dir.as_os_str().is_empty() => dir.canonicalize()?.join(name),
        _ => std::env::current_dir()?.join(path),
    };
    let mut open = OPEN.get_or_init(Default::default).lock().map_err(|_| anyhow::anyhow!("connection registry poisoned"))?;
    if let Some(shared) = open.get(&key).and_then(Weak::upgrade) {
        return Ok(shared);
    }
    let conn = Connection::open(path)
        .map_err(|e| anyhow::anyhow!("cannot open key-value database {}: {e}", path.display()))?;
    // WAL keeps a commit to one sequential write; NORMAL syncs at
    // checkpoints, so a crash of this process loses nothing.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    let shared = Arc::new(Mutex::new(conn));
    open.retain(|_, weak| weak.strong_count() > 0);
    open.insert(key, Arc::downgrade(&shared));
    Ok(shared)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`; `None` keeps it in memory.
    pub fn open(label: &str, path: Option<&Path>) -> anyhow::Result<Self> {
        let conn = match path {
            Some(path) => connection_to(path)?,
            None => Arc::new(Mutex::new(Connection::open_in_memory()?)),
        };
        {
            let conn = conn.lock().map_err(|_| anyhow::anyhow!("key-value store lock poisoned"))?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS spin_key_value (
                    store TEXT NOT NULL,
                    key TEXT NOT NULL,
                    value BLOB NOT NULL,
                    PRIMARY KEY (store, key)
                )",
            )?;
        }
        Ok(SqliteStore {
            label: label.to_string(),
            conn,
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> KvResult<T> {
        let mut conn = self.conn.lock().map_err(|_| KvError::Other("key-value store lock poisoned".into()))?;
        f(&mut conn).map_err(|e| KvError::Other(e.to_string()))
    }

    pub fn get(&self, key: &str) -> KvResult<Option<Vec<u8>>> {
        self.with(|c| {
            c.prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .query_row(params![self.label, key], |r| r.get(0))
                .optional()
        })
    }

    pub fn set(&self, key: &str, value: &[u8]) -> KvResult<()> {
        self.with(|c| upsert(c, &self.label, key, value))
    }

    pub fn delete(&self, key: &str) -> KvResult<()> {
        self.with(|c| {
            c.prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .execute(params![self.label, key])
                .map(drop)
        })
    }

    pub fn keys(&self) -> KvResult<Vec<String>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1")?;
            let keys = stmt.query_map(params![self.label], |r| r.get(0))?;
            keys.collect()
        })
    }

    /// Adds `delta` to an 8-byte little-endian integer (missing is 0), as Spin does.
    pub fn increment(&self, key: &str, delta: i64) -> KvResult<i64> {
        let label = &self.label;
        let mut conn = self.conn.lock().map_err(|_| KvError::Other("key-value store lock poisoned".into()))?;
        let tx = conn.transaction().map_err(|e| KvError::Other(e.to_string()))?;
        let current: Option<Vec<u8>> = tx
            .prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")
            .and_then(|mut s| s.query_row(params![label, key], |r| r.get(0)).optional())
            .map_err(|e| KvError::Other(e.to_string()))?;
        let current = match current {
            None => 0,
            Some(bytes) => {
                let bytes: [u8; 8] = bytes.try_into().map_err(|_| KvError::NotAnInteger(key.to_string()))?;
                i64::from_le_bytes(bytes)
            }
        };
        let next = current.wrapping_add(delta);
        upsert(&tx, label, key, &next.to_le_bytes()).map_err(|e| KvError::Other(e.to_string()))?;
        tx.commit().map_err(|e| KvError::Other(e.to_string()))?;
        Ok(next)
    }

    /// Writes `new` if the key still holds `expected`; with no `expected` the
    /// write is unconditional, which is what Spin's SQLite store does too.
    pub fn swap(&self, key: &str, expected: Option<&[u8]>, new: &[u8]) -> KvResult<bool> {
        self.with(|c| match expected {
            None => upsert(c, &self.label, key, new).map(|_| true),
            Some(old) => c
                .prepare_cached(
                    "UPDATE spin_key_value SET value = ?4 WHERE store = ?1 AND key = ?2 AND value = ?3",
                )?
                .execute(params![self.label, key, old, new])
                .map(|changed| changed == 1),
        })
    }

    /// Existing keys only, like Spin's `get-many`.
    pub fn get_many(&self, keys: &[String]) -> KvResult<Vec<(String, Vec<u8>)>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?;
            let mut found = Vec::with_capacity(keys.len());
            for key in keys {
                if let Some(value) = stmt.query_row(params![self.label, key], |r| r.get(0)).optional()? {
                    found.push((key.clone(), value));
                }
            }
            Ok(found)
        })
    }

    pub fn set_many(&self, entries: &[(String, Vec<u8>)]) -> KvResult<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            for (key, value) in entries {
                upsert(&tx, &self.label, key, value)?;
            }
            tx.commit()
        })
    }

    pub fn delete_many(&self, keys: &[String]) -> KvResult<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")?;
                for key in keys {
                    stmt.execute(params![self.label, key])?;
                }
            }
            tx.commit()
        })
    }
}

fn upsert(c: &Connection, label: &str, key: &str, value: &[u8]) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
         ON CONFLICT(store, key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![label, key, value])
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_succeeds_only_against_the_value_it_saw() {
        let s = SqliteStore::open("default", None).unwrap();
        assert!(s.swap("k", None, b"a").unwrap());
        assert!(s.swap("k", Some(b"a"), b"b").unwrap());
        assert!(!s.swap("k", Some(b"a"), b"c").unwrap());
        assert_eq!(s.get("k").unwrap().as_deref(), Some(&b"b"[..]));
    }

    #[test]
    fn increment_counts_from_zero_and_refuses_non_integers() {
        let s = SqliteStore::open("default", None).unwrap();
        assert_eq!(s.increment("n", 5).unwrap(), 5);
        assert_eq!(s.increment("n", -2).unwrap(), 3);
        assert_eq!(s.get("n").unwrap(), Some(3i64.to_le_bytes().to_vec()));
        s.set("text", b"abc").unwrap();
        assert!(matches!(s.increment("text", 1), Err(KvError::NotAnInteger(_))));
    }

    #[test]
    fn labels_share_a_file_but_not_keys() {
        let dir = std::env::temp_dir().join(format!("kv-labels-{}", std::process::id()));
        let path = dir.join("kv.db");
        let a = SqliteStore::open("a", Some(&path)).unwrap();
        let b = SqliteStore::open("b", Some(&path)).unwrap();
        a.set("k", b"1").unwrap();
        assert_eq!(b.get("k").unwrap(), None);
        assert_eq!(a.keys().unwrap(), vec!["k".to_string()]);
        drop((a, b));
        let reopened = SqliteStore::open("a", Some(&path)).unwrap();
        assert_eq!(reopened.get("k").unwrap().as_deref(), Some(&b"1"[..]));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn batches_skip_missing_keys() {
        let s = SqliteStore::open("default", None).unwrap();
        s.set_many(&[("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())]).unwrap();
        let got = s.get_many(&["a".into(), "zz".into(), "b".into()]).unwrap();
        assert_eq!(got, vec![("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())]);
        s.delete_many(&["a".into()]).unwrap();
        assert_eq!(s.get("a").unwrap(), None);
    }
}
