//! The key-value layout, and the read interface the summary and listing
//! algorithms run against (the component implements it on the Spin store;
//! tests implement it on a map).
//!
//! | key | value |
//! |---|---|
//! | `metric:{id}` | a metric posted with a client `id` (JSON), to answer re-posts |
//! | `claim:{id}` | counter; whoever raises it to 1 owns the id |
//! | `agg:{type}:{s|m|h|d}:{index}` | aggregate of one time bucket |
//! | `agg:{type}:all` | all-time aggregate, with the list of days holding data |
//! | `entry:{type}:{second}:{n}` | the n-th metric stored in that second (JSON) |
//! | `version:{type}` | counter bumped by every ingest; cached summaries carry it |
//! | `types` | every metric type seen (JSON array) |
//! | `init:{key}` | counter; whoever raises it to 1 writes `key`'s first value |

use crate::aggregate::{Aggregate, DecodeError};
use crate::metric::Metric;
use crate::time::Bucket;

pub const TYPES_KEY: &str = "types";

pub fn metric_key(id: &str) -> String {
    format!("metric:{id}")
}

pub fn claim_key(id: &str) -> String {
    format!("claim:{id}")
}

pub fn bucket_key(metric_type: &str, bucket: Bucket) -> String {
    format!("agg:{metric_type}:{}:{}", bucket.level.tag(), bucket.index)
}

pub fn total_key(metric_type: &str) -> String {
    format!("agg:{metric_type}:all")
}

pub fn entry_key(metric_type: &str, second: i64, n: u64) -> String {
    format!("entry:{metric_type}:{second}:{n}")
}

pub fn version_key(metric_type: &str) -> String {
    format!("version:{metric_type}")
}

/// Reads a counter written by `wasi:keyvalue` `increment`: Spin's SQLite
/// store keeps 8 little-endian bytes, its Redis store decimal text. A counter
/// below 3·10^18 always has a byte outside `'0'..='9'` in its 8-byte form, so
/// the two never look alike.
pub fn decode_counter(bytes: &[u8]) -> Option<i64> {
    let all_digits = !bytes.is_empty() && bytes.iter().all(|b| b.is_ascii_digit() || *b == b'-');
    match <[u8; 8]>::try_from(bytes) {
        Ok(raw) if !all_digits => Some(i64::from_le_bytes(raw)),
        _ => std::str::from_utf8(bytes).ok()?.parse().ok(),
    }
}

/// A storage read failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("key-value store: {0}")]
    Store(String),
    #[error(transparent)]
    Corrupt(#[from] DecodeError),
    #[error("stored metric under {key} is corrupt: {message}")]
    CorruptMetric { key: String, message: String },
}

/// Batched reads of raw values; missing keys give `None`, in input order.
pub trait Reader {
    fn get_many(&mut self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, ReadError>;

    fn aggregates(&mut self, keys: &[String]) -> Result<Vec<Option<Aggregate>>, ReadError> {
        self.get_many(keys)?
            .into_iter()
            .map(|v| match v {
                Some(bytes) => Ok(Aggregate::decode(&bytes)?),
                None => Ok(None),
            })
            .collect()
    }

    fn metrics(&mut self, keys: &[String]) -> Result<Vec<Option<Metric>>, ReadError> {
        let values = self.get_many(keys)?;
        keys.iter()
            .zip(values)
            .map(|(key, v)| match v {
                Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| ReadError::CorruptMetric {
                    key: key.clone(),
                    message: e.to_string(),
                }),
                None => Ok(None),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::decode_counter;

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
}

/// An in-memory store for tests of the algorithms.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    pub values: std::collections::HashMap<String, Vec<u8>>,
    /// How many keys were read, to check the cost of an algorithm.
    pub reads: usize,
}

impl Reader for MemoryStore {
    fn get_many(&mut self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, ReadError> {
        self.reads += keys.len();
        Ok(keys.iter().map(|k| self.values.get(k).cloned()).collect())
    }
}
