//! The key-value store as the algorithms see it (`wasi:keyvalue` with Spin's
//! semantics), and the one way they change a value: [`update`], a bounded
//! compare-and-swap loop that is correct on every store Spin offers.
//!
//! Two Spin behaviours shape it:
//! - Spin's SQLite store swaps unconditionally when `current` saw no value,
//!   so a missing key is created through a guard counter (`increment` is
//!   atomic everywhere): whoever raises it first writes the first value.
//! - Spin v4.0.2's Redis store reports every swap as failed, written or not.
//!   So a reported failure is never taken at its word: the change is asked
//!   again against the value the store now holds, and every change here is
//!   idempotent (it answers [`Change::Done`] when its effect is already
//!   there), which tells a swap that landed from one that did not.

use crate::time::MS_PER_SECOND;

/// A store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("key-value store: {0}")]
    Store(String),
    #[error("stored value under `{key}` is unreadable: {message}")]
    Corrupt { key: String, message: String },
    #[error("`{key}` kept changing: gave up after {attempts} compare-and-swap attempts")]
    Contended { key: String, attempts: usize },
    #[error("`{key}` was claimed for creation but not written within {waited_ms} ms")]
    NotCreated { key: String, waited_ms: u64 },
}

impl StoreError {
    pub fn corrupt(key: &str, message: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt { key: key.to_string(), message: message.to_string() }
    }
}

/// Reads, in the order given; missing keys are `None`.
pub trait Reader {
    /// A consistent snapshot where the store offers one (Spin's SQLite does);
    /// otherwise the keys are read in order, so callers put first what must
    /// be read first.
    fn get_many(&mut self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError>;

    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get_many(&[key.to_string()])?.pop().flatten())
    }

    /// [`Reader::get_many`], except that of the first `heads` keys only at
    /// least their first `bytes` are needed (journal shards' headers without
    /// their items): a store that can read part of a value reads only that,
    /// others read it whole.
    fn get_many_heads(&mut self, keys: &[String], heads: usize, bytes: usize) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let _ = (heads, bytes);
        self.get_many(keys)
    }
}

/// The outcome of a swap.
pub enum Swap<C> {
    Written,
    /// Reported as failed; `current` is what the store holds now, read
    /// through the fresh handle `cas`.
    Failed { cas: C, current: Option<Vec<u8>> },
}

impl<C> Swap<C> {
    /// The same outcome with its handle wrapped.
    pub fn map<D>(self, f: impl FnOnce(C) -> D) -> Swap<D> {
        match self {
            Swap::Written => Swap::Written,
            Swap::Failed { cas, current } => Swap::Failed { cas: f(cas), current },
        }
    }
}

/// Writes and atomics.
pub trait Kv: Reader {
    /// A compare-and-swap handle.
    type Cas;

    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// All or nothing.
    fn set_many(&mut self, entries: &[(String, Vec<u8>)]) -> Result<(), StoreError>;
    /// All or nothing; missing keys are no error.
    fn delete_many(&mut self, keys: &[String]) -> Result<(), StoreError>;
    /// Adds `delta` atomically (missing counts as 0); returns the new value.
    fn increment(&mut self, key: &str, delta: i64) -> Result<i64, StoreError>;
    /// Opens a compare-and-swap on `key` and reads its current value.
    fn watch(&mut self, key: &str) -> Result<(Self::Cas, Option<Vec<u8>>), StoreError>;
    fn swap(&mut self, cas: Self::Cas, value: &[u8]) -> Result<Swap<Self::Cas>, StoreError>;
    /// Waits; the guest parks its instance, a model store may do nothing.
    fn sleep_ms(&mut self, ms: u64);
    /// Compare-and-swap attempts on one key before giving up: a bound on
    /// what a request spends when others keep writing that key.
    fn max_attempts(&self) -> usize {
        MAX_ATTEMPTS
    }
}

/// What a change makes of a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<T> {
    /// Write this value.
    Write(Vec<u8>, T),
    /// Nothing to write: the change's effect is already in the value.
    Done(T),
}

/// Compare-and-swap attempts before giving up. Each failed attempt means
/// someone else's write landed, so reaching this takes heavy contention on
/// one key; the bound keeps a request from looping (and, on Spin's Redis
/// store, from opening connections) without limit.
pub const MAX_ATTEMPTS: usize = 24;

/// How long to wait for a key another request is creating.
pub const CREATION_WAIT_MS: u64 = 5_000;
const CREATION_POLL_MS: u64 = 2;

/// Guard counter step of a takeover. Creators add 1 and the first (ticket 1)
/// writes; a waiter whose creator never wrote adds `EPOCH`, and becomes the
/// creator only if its sum is the first to reach the next multiple.
const EPOCH: i64 = 1 << 32;
/// Takeovers a waiter tries before giving up.
const TAKEOVERS: usize = 3;

/// Applies `change` to `key` atomically and returns its result.
///
/// `change` must be idempotent: asked again about a value that already holds
/// its effect, it answers [`Change::Done`]. That is how a swap reported as
/// failed but written (Spin v4.0.2's Redis store) is recognised.
pub fn update<K: Kv, T>(
    kv: &mut K,
    key: &str,
    change: impl FnMut(Option<&[u8]>) -> Result<Change<T>, StoreError>,
) -> Result<T, StoreError> {
    let watched = kv.watch(key)?;
    update_watched(kv, key, watched, change)
}

/// [`update`], starting from a compare-and-swap the caller opened on `key`
/// earlier (it may have read the value before doing something else).
pub fn update_watched<K: Kv, T>(
    kv: &mut K,
    key: &str,
    (mut cas, mut current): (K::Cas, Option<Vec<u8>>),
    mut change: impl FnMut(Option<&[u8]>) -> Result<Change<T>, StoreError>,
) -> Result<T, StoreError> {
    if current.is_none() {
        match create(kv, key, cas, &mut change)? {
            Created::ByUs(result) => return Ok(result),
            Created::ByOther => (cas, current) = kv.watch(key)?,
        }
    }
    let attempts = kv.max_attempts();
    for attempt in 0..attempts {
        let (value, result) = match change(current.as_deref())? {
            Change::Done(result) => return Ok(result),
            Change::Write(value, result) => (value, result),
        };
        match kv.swap(cas, &value)? {
            Swap::Written => return Ok(result),
            Swap::Failed { cas: fresh, current: now } => {
                if now.as_deref() == Some(value.as_slice()) {
                    // It landed and nobody wrote since.
                    return Ok(result);
                }
                if attempt >= BACKOFF_AFTER {
                    // Many writers on one key: spread the retries out (each
                    // writer's value differs, so its hash is its jitter).
                    let spread = (attempt - BACKOFF_AFTER + 1) as u64;
                    kv.sleep_ms(1 + xxhash_rust::xxh3::xxh3_64(&value) % spread.min(8));
                }
                (cas, current) = (fresh, now);
            }
        }
    }
    Err(StoreError::Contended { key: key.to_string(), attempts })
}

/// Failed swaps in a row after which a writer waits a little before the next.
const BACKOFF_AFTER: usize = 3;

enum Created<T> {
    ByUs(T),
    ByOther,
}

/// Arbitrates the creation of the missing `key` through its guard counter.
/// `cas` is the compare-and-swap that saw `key` missing: the creator writes
/// through it, which a store with a conditional swap on missing keys (Redis)
/// refuses should the key exist by then; Spin's SQLite store writes anyway,
/// which is why only one creator at a time may try.
fn create<K: Kv, T>(
    kv: &mut K,
    key: &str,
    mut cas: K::Cas,
    change: &mut impl FnMut(Option<&[u8]>) -> Result<Change<T>, StoreError>,
) -> Result<Created<T>, StoreError> {
    let guard = crate::keys::guard_key(key);
    let ticket = kv.increment(&guard, 1)?;
    let (mut creator, mut epoch) = (ticket == 1, ticket / EPOCH);
    for _ in 0..=TAKEOVERS {
        if creator {
            let (value, result) = match change(None)? {
                Change::Write(value, result) => (value, result),
                Change::Done(result) => return Ok(Created::ByUs(result)),
            };
            return match kv.swap(cas, &value)? {
                Swap::Written => Ok(Created::ByUs(result)),
                Swap::Failed { current: Some(now), .. } if now == value => Ok(Created::ByUs(result)),
                Swap::Failed { .. } => Ok(Created::ByOther),
            };
        }
        let mut waited = 0;
        while waited < CREATION_WAIT_MS {
            if kv.get(key)?.is_some() {
                return Ok(Created::ByOther);
            }
            kv.sleep_ms(CREATION_POLL_MS);
            waited += CREATION_POLL_MS;
        }
        // The creator died between its two calls: take over, unless another
        // waiter already did (then wait for that one).
        let jumped = kv.increment(&guard, EPOCH)?;
        creator = jumped / EPOCH == epoch + 1;
        epoch = jumped / EPOCH;
        let (fresh, now) = kv.watch(key)?;
        if now.is_some() {
            return Ok(Created::ByOther);
        }
        cas = fresh;
    }
    Err(StoreError::NotCreated { key: key.to_string(), waited_ms: CREATION_WAIT_MS })
}

/// Reads a counter written by `increment`: Spin's SQLite store keeps 8
/// little-endian bytes, its Redis store decimal text. A counter below 3·10^18
/// always has a byte outside `'0'..='9'` in its 8-byte form, so the two never
/// look alike.
pub fn decode_counter(bytes: &[u8]) -> Option<i64> {
    let all_digits = !bytes.is_empty() && bytes.iter().all(|b| b.is_ascii_digit() || *b == b'-');
    match <[u8; 8]>::try_from(bytes) {
        Ok(raw) if !all_digits => Some(i64::from_le_bytes(raw)),
        _ => std::str::from_utf8(bytes).ok()?.parse().ok(),
    }
}

/// Milliseconds as whole seconds, rounding down.
pub fn second_of(ms: i64) -> i64 {
    ms.div_euclid(MS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory_store::{MemoryStore, SwapBehaviour};

    fn count(value: Option<&[u8]>) -> u64 {
        value.map_or(0, |v| std::str::from_utf8(v).unwrap().parse().unwrap())
    }

    /// Adds one token to a comma-separated set: idempotent, like every real change.
    fn add_token(token: &'static str) -> impl FnMut(Option<&[u8]>) -> Result<Change<usize>, StoreError> {
        move |value| {
            let text = value.map(|v| String::from_utf8(v.to_vec()).unwrap()).unwrap_or_default();
            let mut tokens: Vec<&str> = text.split(',').filter(|t| !t.is_empty()).collect();
            if tokens.contains(&token) {
                return Ok(Change::Done(tokens.len()));
            }
            tokens.push(token);
            Ok(Change::Write(tokens.join(",").into_bytes(), tokens.len()))
        }
    }

    #[test]
    fn counters_read_in_either_encoding() {
        assert_eq!(decode_counter(&7i64.to_le_bytes()), Some(7));
        assert_eq!(decode_counter(&0i64.to_le_bytes()), Some(0));
        assert_eq!(decode_counter(&(1i64 << 40).to_le_bytes()), Some(1 << 40));
        assert_eq!(decode_counter(b"7"), Some(7));
        assert_eq!(decode_counter(b"12345678"), Some(12_345_678));
        assert_eq!(decode_counter(b"-3"), Some(-3));
        assert_eq!(decode_counter(b"junk"), None);
    }

    #[test]
    fn a_swap_reported_failed_but_written_is_applied_once() {
        for behaviour in [SwapBehaviour::Correct, SwapBehaviour::SpinV4_0_2] {
            let mut kv = MemoryStore::with_swaps(behaviour);
            for token in ["a", "b", "c"] {
                update(&mut kv, "set", add_token(token)).unwrap();
            }
            assert_eq!(kv.value("set").as_deref(), Some(&b"a,b,c"[..]), "{behaviour:?}");
        }
    }

    #[test]
    fn a_missing_key_is_created_once_and_later_changes_swap_against_it() {
        let mut kv = MemoryStore::default();
        assert_eq!(update(&mut kv, "k", add_token("x")).unwrap(), 1);
        assert_eq!(kv.value("init:k"), Some(1i64.to_le_bytes().to_vec()));
        assert_eq!(update(&mut kv, "k", add_token("y")).unwrap(), 2);
        assert_eq!(kv.value("init:k"), Some(1i64.to_le_bytes().to_vec()), "the guard is touched only to create");
    }

    #[test]
    fn a_waiter_takes_over_a_creation_whose_creator_died() {
        let mut kv = MemoryStore::default();
        // A creator raised the guard, then died before writing.
        kv.increment("init:k", 1).unwrap();
        assert_eq!(update(&mut kv, "k", add_token("x")).unwrap(), 1);
        assert_eq!(kv.value("k").as_deref(), Some(&b"x"[..]));
        assert!(kv.slept_ms >= CREATION_WAIT_MS);
    }

    #[test]
    fn a_waiter_that_loses_the_takeover_waits_for_the_winner() {
        let mut kv = MemoryStore::default();
        kv.increment("init:k", 1).unwrap();
        // Another waiter took over just before us and writes while we wait.
        kv.increment("init:k", EPOCH).unwrap();
        let mut polls = 0;
        kv.interfere_with(move |values| {
            polls += 1;
            if polls == 1_000 {
                values.insert("k".into(), b"w".to_vec());
            }
        });
        assert_eq!(update(&mut kv, "k", add_token("x")).unwrap(), 2);
        assert_eq!(kv.value("k").as_deref(), Some(&b"w,x"[..]));
    }

    #[test]
    fn contention_is_bounded() {
        let mut kv = MemoryStore::default();
        kv.set("n", b"0").unwrap();
        // Someone else writes before every one of our swaps.
        kv.interfere_with(|values| {
            let n = count(values.get("n").map(Vec::as_slice));
            values.insert("n".into(), (n + 1).to_string().into_bytes());
        });
        let mut calls = 0;
        let result = update(&mut kv, "n", |v| {
            calls += 1;
            Ok(Change::Write(format!("{}!", count(v)).into_bytes(), ()))
        });
        assert_eq!(result, Err(StoreError::Contended { key: "n".into(), attempts: MAX_ATTEMPTS }));
        assert!(calls <= 2 * MAX_ATTEMPTS);
    }
}
