//! A key-value store on SQLite, in the table layout Spin uses
//! (`spin_key_value(store, key, value)`), so a database file can move between
//! this host and `spin up`.
//!
//! Requests share one open transaction per database: a write joins it, and it
//! is committed when a request that used it is about to answer (see
//! [`Session`]). One commit then carries the several writes of a request (and
//! of any request running beside it) instead of one commit per write.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use rusqlite::{params, Connection, OptionalExtension};

use super::session::Session;
use super::{Found, KvError, KvResult, Store};

/// A connection and the transaction open on it, if any.
pub(super) struct Database {
    conn: Connection,
    /// Generation of the open transaction.
    open: Option<u64>,
    next_generation: u64,
    /// Recent generations that were rolled back instead of committed.
    failed: VecDeque<u64>,
}

pub(super) type SharedDatabase = Arc<Mutex<Database>>;

/// The database, for one operation or one commit.
pub(super) fn lock(db: &SharedDatabase) -> KvResult<MutexGuard<'_, Database>> {
    db.lock().map_err(|_| KvError::Other("key-value store lock poisoned".into()))
}

/// How many rolled-back generations to remember; a request spans far fewer.
const FAILED_MEMORY: usize = 1024;

fn other(e: impl std::fmt::Display) -> KvError {
    KvError::Other(e.to_string())
}

impl Database {
    fn new(conn: Connection) -> Self {
        Database { conn, open: None, next_generation: 1, failed: VecDeque::new() }
    }

    fn mark_failed(&mut self, generation: u64) {
        if self.failed.len() == FAILED_MEMORY {
            self.failed.pop_front();
        }
        self.failed.push_back(generation);
    }

    /// SQLite rolls a transaction back by itself after some errors (a full
    /// disk, for one); notice it so the requests that used it learn of it.
    fn notice_rollback(&mut self) {
        if self.conn.is_autocommit() {
            if let Some(generation) = self.open.take() {
                self.mark_failed(generation);
            }
        }
    }

    fn begin(&mut self) -> rusqlite::Result<()> {
        if self.open.is_none() {
            self.conn.execute_batch("BEGIN")?;
            self.open = Some(self.next_generation);
            self.next_generation += 1;
        }
        Ok(())
    }

    /// Commits the open transaction if it is one of `first..=last`, then
    /// fails if any of those was rolled back.
    pub(super) fn commit(&mut self, first: u64, last: u64) -> KvResult<()> {
        self.notice_rollback();
        if self.open.is_some_and(|g| g <= last) {
            self.commit_open();
        }
        match self.failed.iter().find(|g| (first..=last).contains(*g)) {
            Some(_) => Err(KvError::Other("a key-value transaction this request used was rolled back".into())),
            None => Ok(()),
        }
    }

    fn commit_open(&mut self) {
        if let Some(generation) = self.open.take() {
            if let Err(e) = self.conn.execute_batch("COMMIT") {
                eprintln!("error: key-value commit failed: {e}");
                let _ = self.conn.execute_batch("ROLLBACK");
                self.mark_failed(generation);
            }
        }
    }
}

impl Drop for Database {
    /// Writes of requests still running at shutdown are kept, as they would
    /// have been with one commit per write.
    fn drop(&mut self) {
        self.commit_open();
    }
}

/// One labelled store inside a SQLite database (a file, or memory).
pub struct SqliteStore {
    label: String,
    db: SharedDatabase,
}

/// The open connection to each database file. The host holds the file
/// exclusively (no lock system calls per transaction), so every label in a
/// file, and an app restarted in the same process, must share one connection.
fn connection_to(path: &Path) -> anyhow::Result<SharedDatabase> {
    static OPEN: OnceLock<Mutex<HashMap<PathBuf, Weak<Mutex<Database>>>>> = OnceLock::new();
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
    // checkpoints, so a crash of this process loses nothing committed.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    let shared = Arc::new(Mutex::new(Database::new(conn)));
    open.retain(|_, weak| weak.strong_count() > 0);
    open.insert(key, Arc::downgrade(&shared));
    Ok(shared)
}

/// Whether an operation writes, and so needs the shared transaction open.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`; `None` keeps it in memory.
    pub fn open(label: &str, path: Option<&Path>) -> anyhow::Result<Self> {
        let db = match path {
            Some(path) => connection_to(path)?,
            None => Arc::new(Mutex::new(Database::new(Connection::open_in_memory()?))),
        };
        {
            let db = lock(&db)?;
            db.conn.busy_timeout(std::time::Duration::from_secs(5))?;
            rusqlite::vtab::array::load_module(&db.conn)?;
            db.conn.execute_batch(SCHEMA)?;
        }
        Ok(SqliteStore {
            label: label.to_string(),
            db,
        })
    }


    /// Runs `f` for `session`, inside the shared transaction when it writes,
    /// and records the transaction the session saw or joined.
    fn with<T>(&self, session: &Session, access: Access, f: impl FnOnce(&mut Connection) -> KvResult<T>) -> KvResult<T> {
        let mut db = lock(&self.db)?;
        db.notice_rollback();
        if access == Access::Write {
            db.begin().map_err(other)?;
        }
        let result = f(&mut db.conn);
        db.notice_rollback();
        if let Some(generation) = db.open {
            session.used(&self.db, generation);
        }
        result
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    /// Whether writes wait in an open transaction (none should once every
    /// response is out).
    fn uncommitted(&self) -> bool {
        lock(&self.db).map(|db| db.open.is_some()).unwrap_or(false)
    }

    async fn get(&self, session: &Session, key: &str) -> KvResult<Option<Vec<u8>>> {
        self.with(session, Access::Read, |c| select(c, &self.label, key))
    }

    async fn set(&self, session: &Session, key: &str, value: &[u8]) -> KvResult<()> {
        self.with(session, Access::Write, |c| upsert(c, &self.label, key, value).map_err(other))
    }

    async fn delete(&self, session: &Session, key: &str) -> KvResult<()> {
        self.with(session, Access::Write, |c| {
            c.prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")
                .and_then(|mut s| s.execute(params![self.label, key]))
                .map(drop)
                .map_err(other)
        })
    }

    async fn keys(&self, session: &Session) -> KvResult<Vec<String>> {
        self.with(session, Access::Read, |c| {
            let mut stmt = c.prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1").map_err(other)?;
            let keys = stmt.query_map(params![self.label], |r| r.get(0)).map_err(other)?;
            keys.collect::<rusqlite::Result<_>>().map_err(other)
        })
    }

    /// Adds `delta` to an 8-byte little-endian integer (missing is 0), as
    /// Spin does. The store's lock makes the read and the write one step.
    async fn increment(&self, session: &Session, key: &str, delta: i64) -> KvResult<i64> {
        self.with(session, Access::Write, |c| {
            let current = match select(c, &self.label, key)? {
                None => 0,
                Some(bytes) => {
                    let bytes: [u8; 8] = bytes.try_into().map_err(|_| KvError::NotAnInteger(key.to_string()))?;
                    i64::from_le_bytes(bytes)
                }
            };
            let next = current.wrapping_add(delta);
            upsert(c, &self.label, key, &next.to_le_bytes()).map_err(other)?;
            Ok(next)
        })
    }

    /// Writes `new` if the key still holds `expected`; with no `expected` the
    /// write is unconditional, which is what Spin's SQLite store does too.
    async fn swap(&self, session: &Session, key: &str, expected: Option<&[u8]>, new: &[u8]) -> KvResult<bool> {
        self.with(session, Access::Write, |c| {
            match expected {
                None => upsert(c, &self.label, key, new).map(|_| true),
                Some(old) => c
                    .prepare_cached("UPDATE spin_key_value SET value = ?4 WHERE store = ?1 AND key = ?2 AND value = ?3")
                    .and_then(|mut s| s.execute(params![self.label, key, old, new]))
                    .map(|changed| changed == 1),
            }
            .map_err(other)
        })
    }

    /// Existing keys only, like Spin's `get-many`.
    async fn get_many(&self, session: &Session, keys: &[String]) -> KvResult<Found> {
        self.with(session, Access::Read, |c| select_many(c, &self.label, keys))
    }

    /// All or nothing, inside the shared transaction.
    async fn set_many(&self, session: &Session, entries: &[(String, Vec<u8>)]) -> KvResult<()> {
        self.with(session, Access::Write, |c| {
            let batch = c.savepoint().map_err(other)?;
            for (key, value) in entries {
                upsert(&batch, &self.label, key, value).map_err(other)?;
            }
            batch.commit().map_err(other)
        })
    }

    /// All or nothing, inside the shared transaction.
    async fn delete_many(&self, session: &Session, keys: &[String]) -> KvResult<()> {
        self.with(session, Access::Write, |c| {
            let batch = c.savepoint().map_err(other)?;
            {
                let mut stmt = batch
                    .prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")
                    .map_err(other)?;
                for key in keys {
                    stmt.execute(params![self.label, key]).map_err(other)?;
                }
            }
            batch.commit().map_err(other)
        })
    }
}

fn select(c: &Connection, label: &str, key: &str) -> KvResult<Option<Vec<u8>>> {
    c.prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")
        .and_then(|mut s| s.query_row(params![label, key], |r| r.get(0)).optional())
        .map_err(other)
}

/// Spin's table: every store's keys in one table, keyed by store label and key.
pub(super) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS spin_key_value (
    store TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (store, key)
)";

/// The existing keys among `keys`, in one statement, as Spin reads them
/// (`IN rarray(...)`): one statement instead of one per key.
pub(super) fn select_many(c: &Connection, label: &str, keys: &[String]) -> KvResult<Found> {
    let keys: Vec<rusqlite::types::Value> = keys.iter().cloned().map(rusqlite::types::Value::from).collect();
    let mut stmt = c
        .prepare_cached("SELECT key, value FROM spin_key_value WHERE store = ?1 AND key IN rarray(?2)")
        .map_err(other)?;
    let rows = stmt
        .query_map(params![label, std::rc::Rc::new(keys)], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(other)?;
    rows.collect::<rusqlite::Result<_>>().map_err(other)
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

    /// Runs one operation as its own request: committed before it returns.
    macro_rules! committed {
        (|$t:ident| $op:expr) => {{
            let session = Session::default();
            let $t = &session;
            let value = $op.unwrap();
            session.commit().unwrap();
            value
        }};
    }

    #[tokio::test]
    async fn swap_succeeds_only_against_the_value_it_saw() {
        let s = SqliteStore::open("default", None).unwrap();
        let t = Session::default();
        assert!(s.swap(&t, "k", None, b"a").await.unwrap());
        assert!(s.swap(&t, "k", Some(b"a"), b"b").await.unwrap());
        assert!(!s.swap(&t, "k", Some(b"a"), b"c").await.unwrap());
        assert_eq!(s.get(&t, "k").await.unwrap().as_deref(), Some(&b"b"[..]));
    }

    #[tokio::test]
    async fn increment_counts_from_zero_and_refuses_non_integers() {
        let s = SqliteStore::open("default", None).unwrap();
        let t = Session::default();
        assert_eq!(s.increment(&t, "n", 5).await.unwrap(), 5);
        assert_eq!(s.increment(&t, "n", -2).await.unwrap(), 3);
        assert_eq!(s.get(&t, "n").await.unwrap(), Some(3i64.to_le_bytes().to_vec()));
        s.set(&t, "text", b"abc").await.unwrap();
        assert!(matches!(s.increment(&t, "text", 1).await, Err(KvError::NotAnInteger(_))));
        assert_eq!(s.get(&t, "text").await.unwrap().as_deref(), Some(&b"abc"[..]), "a refused increment changes nothing");
    }

    #[tokio::test]
    async fn labels_share_a_file_but_not_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        let a = SqliteStore::open("a", Some(&path)).unwrap();
        let b = SqliteStore::open("b", Some(&path)).unwrap();
        committed!(|t| a.set(t, "k", b"1").await);
        assert_eq!(committed!(|t| b.get(t, "k").await), None);
        assert_eq!(committed!(|t| a.keys(t).await), vec!["k".to_string()]);
        drop((a, b));
        let reopened = SqliteStore::open("a", Some(&path)).unwrap();
        assert_eq!(committed!(|t| reopened.get(t, "k").await).as_deref(), Some(&b"1"[..]));
    }

    #[tokio::test]
    async fn batches_skip_missing_keys() {
        let s = SqliteStore::open("default", None).unwrap();
        let t = Session::default();
        s.set_many(&t, &[("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())]).await.unwrap();
        let got = s.get_many(&t, &["a".into(), "zz".into(), "b".into()]).await.unwrap();
        assert_eq!(got, vec![("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())]);
        s.delete_many(&t, &["a".into()]).await.unwrap();
        assert_eq!(s.get(&t, "a").await.unwrap(), None);
    }

    #[tokio::test]
    async fn sessions_share_one_transaction_and_the_first_commit_carries_both() {
        let s = SqliteStore::open("default", None).unwrap();
        let (first, second) = (Session::default(), Session::default());
        s.set(&first, "a", b"1").await.unwrap();
        s.set(&second, "b", b"2").await.unwrap();
        assert!(!lock(&s.db).unwrap().conn.is_autocommit(), "both writes wait in one open transaction");
        first.commit().unwrap();
        assert!(lock(&s.db).unwrap().conn.is_autocommit(), "one commit took both");
        second.commit().unwrap();
        assert_eq!(committed!(|t| s.get_many(t, &["a".into(), "b".into()]).await).len(), 2);
    }

    #[tokio::test]
    async fn a_reader_of_uncommitted_data_commits_it_before_answering() {
        let s = SqliteStore::open("default", None).unwrap();
        let (writer, reader) = (Session::default(), Session::default());
        s.set(&writer, "a", b"1").await.unwrap();
        assert_eq!(s.get(&reader, "a").await.unwrap().as_deref(), Some(&b"1"[..]));
        reader.commit().unwrap();
        assert!(lock(&s.db).unwrap().conn.is_autocommit());
    }

    #[tokio::test]
    async fn a_rolled_back_transaction_fails_every_session_that_used_it_and_no_other() {
        let s = SqliteStore::open("default", None).unwrap();
        let (lost, reader, later) = (Session::default(), Session::default(), Session::default());
        s.set(&lost, "a", b"1").await.unwrap();
        s.get(&reader, "a").await.unwrap();
        // What SQLite does by itself after, say, a full disk.
        lock(&s.db).unwrap().conn.execute_batch("ROLLBACK").unwrap();
        s.set(&later, "b", b"2").await.unwrap();
        assert!(lost.commit().is_err());
        assert!(reader.commit().is_err());
        later.commit().unwrap();
        assert_eq!(committed!(|t| s.get(t, "a").await), None);
        assert_eq!(committed!(|t| s.get(t, "b").await).as_deref(), Some(&b"2"[..]));
    }

    #[tokio::test]
    async fn writes_not_yet_committed_survive_a_clean_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        let s = SqliteStore::open("default", Some(&path)).unwrap();
        s.set(&Session::default(), "k", b"v").await.unwrap();
        drop(s);
        let reopened = SqliteStore::open("default", Some(&path)).unwrap();
        assert_eq!(committed!(|t| reopened.get(t, "k").await).as_deref(), Some(&b"v"[..]));
    }
}
