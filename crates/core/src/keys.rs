//! The key-value layout. Every key of a metric type starts with a prefix and
//! the type, so one type's data never collides with another's.
//!
//! | key | value |
//! |---|---|
//! | `jrn:{type}:{shard}` | a journal shard: metrics acknowledged but not yet folded ([`crate::journal`]) |
//! | `agg:{type}:{s\|m\|h\|d\|b\|e}:{index}` | aggregate of one time bucket ([`crate::time::Level`]), with per-shard watermarks; a second's lists its entry chunks |
//! | `agg:{type}:all` | all-time aggregate, with the eras holding data |
//! | `ent:{type}:{second}:{shard}:{through}` | metrics of one second that one fold added, for listing ([`crate::entries`]) |
//! | `claim:{id}` | counter the posts of a client id add their content's fingerprint to ([`crate::ingest`]) |
//! | `swept:{type}` | how far the retention sweep got ([`crate::expiry`]) |
//! | `types` | every metric type seen (JSON array) |
//! | `lst:all`, `lst:b:{block}`, `lst:d:{day}` | the all-types listing index: types indexed, blocks, days and per-type hours holding data ([`crate::list_index`]) |
//! | `init:{key}` | counter arbitrating who creates `key` ([`crate::kv::update`]) |

use crate::time::Bucket;

pub const TYPES_KEY: &str = "types";
pub const LIST_ROOT_KEY: &str = "lst:all";

/// The days of one block (64 days) holding data, all types.
pub fn list_block_key(block: i64) -> String {
    format!("lst:b:{block}")
}

/// The types holding data on one UTC day, with their hours.
pub fn list_day_key(day: i64) -> String {
    format!("lst:d:{day}")
}

pub fn journal_key(metric_type: &str, shard: usize) -> String {
    format!("jrn:{metric_type}:{shard}")
}

pub fn bucket_key(metric_type: &str, bucket: Bucket) -> String {
    format!("agg:{metric_type}:{}:{}", bucket.level.tag(), bucket.index)
}

pub fn total_key(metric_type: &str) -> String {
    format!("agg:{metric_type}:all")
}

pub fn entries_key(metric_type: &str, second: i64, shard: usize, through: u64) -> String {
    format!("ent:{metric_type}:{second}:{shard}:{through}")
}

pub fn swept_key(metric_type: &str) -> String {
    format!("swept:{metric_type}")
}

pub fn claim_key(id: &str) -> String {
    format!("claim:{id}")
}

pub fn guard_key(key: &str) -> String {
    format!("init:{key}")
}
