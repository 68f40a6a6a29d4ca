//! Key-value stores, served to guests through both `fermyon:spin/key-value`
//! and `wasi:keyvalue` (store, atomics, batch).

pub mod session;
mod spin_interface;
pub mod sqlite;
mod wasi_interface;

use std::sync::Arc;

pub use session::Session;
pub use sqlite::SqliteStore;

/// A failure inside a store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// `increment` on a value that is not an 8-byte integer. Spin traps here,
    /// so the host turns it into a trap too.
    #[error("key `{0}` does not hold an 8-byte integer")]
    NotAnInteger(String),
    #[error("{0}")]
    Other(String),
}

pub type KvResult<T> = Result<T, KvError>;

/// An open store, as a guest resource.
pub struct StoreHandle {
    pub store: Arc<SqliteStore>,
}

/// A compare-and-swap handle: the key and the value it last read.
pub struct CasHandle {
    pub store: Arc<SqliteStore>,
    pub key: String,
    /// `None` until `current` reads the key, and also when the key was missing.
    pub snapshot: Option<Vec<u8>>,
}
