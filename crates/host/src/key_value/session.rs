//! What one request did inside the shared, still-open key-value transactions,
//! so that its answer leaves only once they are committed.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::sqlite::{lock, SharedDatabase};
use super::KvResult;

/// The transactions a request wrote to, or read uncommitted data from.
///
/// Every write a guest makes is acknowledged to it at once; the host makes it
/// durable by calling [`Session::commit`] before the response goes out. A
/// reader of another request's uncommitted write commits it too, so nothing a
/// client is shown can later be rolled back.
#[derive(Default)]
pub struct Session {
    used: Mutex<Vec<Used>>,
}

/// The generations one session used in one database.
struct Used {
    db: SharedDatabase,
    first: u64,
    last: u64,
}

impl Session {
    /// The record itself; a list that is only ever pushed to or taken whole
    /// stays consistent even if a holder panicked.
    fn record(&self) -> MutexGuard<'_, Vec<Used>> {
        self.used.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn used(&self, db: &SharedDatabase, generation: u64) {
        let mut used = self.record();
        match used.iter_mut().find(|u| Arc::ptr_eq(&u.db, db)) {
            Some(u) => u.last = u.last.max(generation),
            None => used.push(Used { db: db.clone(), first: generation, last: generation }),
        }
    }

    /// Commits what this session used (and whatever else shares those
    /// transactions), and fails if any of it was rolled back. Later use
    /// starts a new record.
    pub fn commit(&self) -> KvResult<()> {
        let used = std::mem::take(&mut *self.record());
        let mut outcome = Ok(());
        for u in used {
            let committed = lock(&u.db).and_then(|mut db| db.commit(u.first, u.last));
            if outcome.is_ok() {
                outcome = committed;
            }
        }
        outcome
    }
}
