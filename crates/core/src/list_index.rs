//! The all-types listing index: which types hold folded metrics in which
//! hour, so a listing of every type reads the buckets of the types that have
//! data where its page is, not a walk down every type's hierarchy.
//!
//! | key | value |
//! |---|---|
//! | `lst:all` | the types indexed since their first fold, and the blocks (64 days) holding their data |
//! | `lst:b:{block}` | the days of the block holding data (a 64-bit mask) |
//! | `lst:d:{day}` | per type, the hours of the day holding its data (a 24-bit mask) |
//!
//! A fold writes it before anything else ([`record`]): one read of the keys
//! its items' days touch, and a compare-and-swap only where a type's hour,
//! a day or a block is new, so a type adds at most one write an hour (a
//! busy type folds dozens of times an hour) and most folds add none. The
//! journal is trimmed after, so an item a listing does not find in a
//! journal is in the index by then.
//!
//! A type whose metrics were folded before the index existed (its all-time
//! aggregate was there at its first fold under this version) is never
//! marked indexed: listings walk it down its own buckets, as before.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::keys::{list_block_key, list_day_key, total_key, LIST_ROOT_KEY};
use crate::kv::{update, Change, Kv, StoreError};
use crate::time::{Bucket, Level};

const ROOT_MAGIC: u8 = 0xC1;
const BLOCK_MAGIC: u8 = 0xC2;
const DAY_MAGIC: u8 = 0xC3;

const DAY_SECONDS: i64 = 86_400;

/// `lst:all`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Root {
    /// Types whose every fold wrote the index, sorted.
    pub indexed: Vec<String>,
    /// Blocks ([`Level::Block`]) holding data of an indexed type, sorted.
    pub blocks: Vec<i64>,
}

/// `lst:d:{day}`: per type (sorted), bit `h` set when hour `h` holds its data.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Day {
    pub types: Vec<(String, u32)>,
}

fn encode<T: Serialize>(magic: u8, value: &T) -> Vec<u8> {
    let mut out = vec![magic];
    // Serialising plain strings and numbers cannot fail.
    out.extend(postcard::to_allocvec(value).unwrap_or_default());
    out
}

fn decode<T: for<'a> Deserialize<'a> + Default>(magic: u8, key: &str, bytes: Option<&[u8]>) -> Result<T, StoreError> {
    match bytes.map(|b| b.split_first()) {
        None => Ok(T::default()),
        Some(Some((&m, rest))) if m == magic => postcard::from_bytes(rest).map_err(|e| StoreError::corrupt(key, e)),
        Some(_) => Err(StoreError::corrupt(key, "not a listing index value")),
    }
}

impl Root {
    pub fn encode(&self) -> Vec<u8> {
        encode(ROOT_MAGIC, self)
    }

    /// A missing value is the empty root.
    pub fn decode(bytes: Option<&[u8]>) -> Result<Root, StoreError> {
        decode(ROOT_MAGIC, LIST_ROOT_KEY, bytes)
    }

    pub fn is_indexed(&self, metric_type: &str) -> bool {
        self.indexed.binary_search_by(|t| t.as_str().cmp(metric_type)).is_ok()
    }
}

impl Day {
    pub fn encode(&self) -> Vec<u8> {
        encode(DAY_MAGIC, self)
    }

    /// A missing value is a day without data.
    pub fn decode(key: &str, bytes: Option<&[u8]>) -> Result<Day, StoreError> {
        decode(DAY_MAGIC, key, bytes)
    }

    /// The hours of `metric_type`.
    pub fn hours(&self, metric_type: &str) -> u32 {
        self.types.binary_search_by(|(t, _)| t.as_str().cmp(metric_type)).map_or(0, |i| self.types[i].1)
    }

    /// Adds hours to a type; whether anything was new.
    fn add(&mut self, metric_type: &str, hours: u32) -> bool {
        match self.types.binary_search_by(|(t, _)| t.as_str().cmp(metric_type)) {
            Ok(i) if self.types[i].1 & hours == hours => false,
            Ok(i) => {
                self.types[i].1 |= hours;
                true
            }
            Err(i) => {
                self.types.insert(i, (metric_type.to_string(), hours));
                true
            }
        }
    }
}

/// A block's day mask; a missing value is no day.
pub fn decode_block(key: &str, bytes: Option<&[u8]>) -> Result<u64, StoreError> {
    decode(BLOCK_MAGIC, key, bytes)
}

pub fn encode_block(days: u64) -> Vec<u8> {
    encode(BLOCK_MAGIC, &days)
}

/// The day and hour bit of second `second`.
pub fn day_and_hour(second: i64) -> (i64, u32) {
    (second.div_euclid(DAY_SECONDS), 1 << (second.rem_euclid(DAY_SECONDS) / 3_600))
}

/// The block of `day`, and the day's bit in it.
fn block_and_bit(day: i64) -> (i64, u64) {
    let (block, position) = Bucket { level: Level::Day, index: day }.position_in_parent().unwrap_or((Bucket { level: Level::Block, index: 0 }, 0));
    (block.index, 1 << position)
}

/// Records that `metric_type` holds data in the hours of `hours` (day →
/// hour mask), where the index lacks it: one read of every key concerned,
/// then a compare-and-swap for each new fact. Marks the type indexed at its
/// first fold; does nothing for a type folded before the index existed.
/// Returns the writes made. Idempotent, so a fold redone after a crash
/// redoes it harmlessly.
pub fn record<K: Kv>(kv: &mut K, metric_type: &str, hours: &BTreeMap<i64, u32>) -> Result<usize, StoreError> {
    if hours.is_empty() {
        return Ok(0);
    }
    let mut blocks: BTreeMap<i64, u64> = BTreeMap::new();
    for day in hours.keys() {
        let (block, bit) = block_and_bit(*day);
        *blocks.entry(block).or_default() |= bit;
    }
    // The total first: once it exists, a type indexed from its first fold is
    // marked already (the mark is written before it), so the root read
    // after it tells an indexed type from one folded before the index.
    let mut keys = vec![total_key(metric_type), LIST_ROOT_KEY.to_string()];
    keys.extend(blocks.keys().map(|b| list_block_key(*b)));
    keys.extend(hours.keys().map(|d| list_day_key(*d)));
    let values = kv.get_many(&keys)?;
    let root = Root::decode(values[1].as_deref())?;
    let marked = root.is_indexed(metric_type);
    if !marked && values[0].is_some() {
        return Ok(0);
    }
    let mut writes = 0;
    let new_blocks: Vec<i64> = blocks.keys().copied().filter(|b| root.blocks.binary_search(b).is_err()).collect();
    if !marked || !new_blocks.is_empty() {
        writes += usize::from(update(kv, LIST_ROOT_KEY, |current| {
            let mut root = Root::decode(current)?;
            let mut changed = false;
            if let Err(i) = root.indexed.binary_search_by(|t| t.as_str().cmp(metric_type)) {
                root.indexed.insert(i, metric_type.to_string());
                changed = true;
            }
            for block in &new_blocks {
                if let Err(i) = root.blocks.binary_search(block) {
                    root.blocks.insert(i, *block);
                    changed = true;
                }
            }
            Ok(if changed { Change::Write(root.encode(), true) } else { Change::Done(false) })
        })?);
    }
    let stored_blocks = &values[2..2 + blocks.len()];
    for ((block, days), stored) in blocks.iter().zip(stored_blocks) {
        let key = list_block_key(*block);
        if decode_block(&key, stored.as_deref())? & days == *days {
            continue;
        }
        writes += usize::from(update(kv, &key, |current| {
            let held = decode_block(&key, current)?;
            Ok(if held & days == *days { Change::Done(false) } else { Change::Write(encode_block(held | days), true) })
        })?);
    }
    let stored_days = &values[2 + blocks.len()..];
    for ((day, mask), stored) in hours.iter().zip(stored_days) {
        let key = list_day_key(*day);
        if Day::decode(&key, stored.as_deref())?.hours(metric_type) & mask == *mask {
            continue;
        }
        writes += usize::from(update(kv, &key, |current| {
            let mut held = Day::decode(&key, current)?;
            Ok(if held.add(metric_type, *mask) { Change::Write(held.encode(), true) } else { Change::Done(false) })
        })?);
    }
    Ok(writes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory_store::MemoryStore;

    fn hours(entries: &[(i64, u32)]) -> BTreeMap<i64, u32> {
        entries.iter().copied().collect()
    }

    #[test]
    fn a_new_type_is_marked_and_each_new_fact_written_once() {
        let mut kv = MemoryStore::default();
        assert_eq!(day_and_hour(86_400 * 3 + 7_300), (3, 1 << 2));
        // First fold: the mark and the block in the root, the block, the day.
        assert_eq!(record(&mut kv, "cpu", &hours(&[(3, 0b100)])).unwrap(), 3);
        assert_eq!(record(&mut kv, "cpu", &hours(&[(3, 0b100)])).unwrap(), 0, "nothing new: reads only");
        assert_eq!(record(&mut kv, "cpu", &hours(&[(3, 0b1)])).unwrap(), 1, "a new hour: the day");
        assert_eq!(record(&mut kv, "mem", &hours(&[(3, 0b1)])).unwrap(), 2, "a new type: the root and the day");
        assert_eq!(record(&mut kv, "cpu", &hours(&[(70, 0b1)])).unwrap(), 3, "a new block: root, block, day");
        let root = Root::decode(kv.value(LIST_ROOT_KEY).as_deref()).unwrap();
        assert_eq!(root, Root { indexed: vec!["cpu".into(), "mem".into()], blocks: vec![0, 1] });
        assert_eq!(decode_block("k", kv.value(&list_block_key(0)).as_deref()).unwrap(), 1 << 3);
        let day = Day::decode("k", kv.value(&list_day_key(3)).as_deref()).unwrap();
        assert_eq!(day.types, vec![("cpu".to_string(), 0b101), ("mem".to_string(), 0b1)]);
    }

    #[test]
    fn a_type_folded_before_the_index_is_left_out() {
        let mut kv = MemoryStore::default();
        kv.set(&total_key("old"), b"folded by the version before").unwrap();
        assert_eq!(record(&mut kv, "old", &hours(&[(3, 1)])).unwrap(), 0);
        assert_eq!(kv.value(LIST_ROOT_KEY), None);
        // A type marked before its total was written stays indexed.
        record(&mut kv, "new", &hours(&[(3, 1)])).unwrap();
        kv.set(&total_key("new"), b"written after the mark").unwrap();
        assert_eq!(record(&mut kv, "new", &hours(&[(4, 1)])).unwrap(), 2, "the block's new day, and the day");
    }

    /// A busy type writes the index once an hour at most: 16 384 metrics
    /// over two hours fold 256 times and write it 4 times (the first: the
    /// root, the block, the day; then the day for the second hour).
    #[test]
    fn a_busy_type_adds_an_index_write_an_hour_at_most() {
        use crate::ingest::{ingest, Ingested};
        use crate::metric::Metric;
        let mut kv = MemoryStore::default();
        // The start of an hour.
        let start = 1_771_416_000_000 / 3_600_000 * 3_600_000;
        let (mut folds, mut indexed) = (0, 0);
        for i in 0..16_384i64 {
            let metric = Metric::new(format!("m{i}"), "busy", 1.0, start + i * 7_200_000 / 16_384);
            if let Ingested::Stored { fold: Some(Ok(folded)), .. } = ingest(&mut kv, &metric, false, i as usize, None).unwrap() {
                folds += 1;
                indexed += folded.indexed;
            }
        }
        assert_eq!((folds, indexed), (256, 4));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(Root::decode(Some(b"\x00")).is_err());
        assert!(Day::decode("k", Some(&[DAY_MAGIC, 0xFF, 0xFF])).is_err());
        assert_eq!(Root::decode(None).unwrap(), Root::default());
        assert!(decode_block("k", Some(&Root::default().encode())).is_err());
    }
}
