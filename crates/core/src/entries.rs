//! The stored metrics themselves, kept for listing, in write-once chunks:
//! a fold of journal shard `shard` through item `through` writes, for each
//! second its items fall in, one chunk `ent:{type}:{second}:{shard}:{through}`
//! with those items (and their `seq`) past the second's watermark. A fold
//! therefore writes only what it adds, all its chunks in one `set_many`,
//! whatever the rate per second; a repeated fold writes the same chunks
//! again, and a fold that overlaps another leaves no item in two chunks and
//! no chunk unlisted ([`crate::fold`]).
//!
//! The second's aggregate lists its chunks ([`ChunkRef`]), each with the
//! items it adds (those after the aggregate's watermark when it was
//! written). Chunks written before folds cut them may hold items held
//! already: reading through the reference skips those.

use serde::{Deserialize, Serialize};

use crate::keys::entries_key;
use crate::kv::StoreError;
use crate::metric::Metric;

const MAGIC: u8 = 0xE2;

/// One fold's metrics of one second, with their journal `seq`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Chunk {
    pub items: Vec<(u64, Metric)>,
}

/// A chunk of a second, as its aggregate records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub shard: u16,
    /// The fold's last item: part of the chunk's key.
    pub through: u64,
    /// Items up to this `seq` were held before this chunk: skip them.
    pub after: u64,
}

impl ChunkRef {
    pub fn key(&self, metric_type: &str, second: i64) -> String {
        entries_key(metric_type, second, self.shard as usize, self.through)
    }

    /// The metrics this chunk adds to its second.
    pub fn metrics(&self, chunk: Chunk) -> impl Iterator<Item = Metric> + '_ {
        chunk.items.into_iter().filter(move |(seq, _)| *seq > self.after).map(|(_, m)| m)
    }
}

impl Chunk {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![MAGIC];
        out.extend(postcard::to_allocvec(self).unwrap_or_default());
        out
    }

    pub fn decode(key: &str, bytes: &[u8]) -> Result<Chunk, StoreError> {
        match bytes.split_first() {
            Some((&MAGIC, rest)) => postcard::from_bytes(rest).map_err(|e| StoreError::corrupt(key, e)),
            _ => Err(StoreError::corrupt(key, "not an entry chunk")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_skips_what_was_held() {
        let chunk = Chunk { items: vec![(4, Metric::new("a", "t", 1.5, 7)), (5, Metric::new("b", "t", 2.5, 7))] };
        assert_eq!(Chunk::decode("k", &chunk.encode()).unwrap(), chunk);
        assert!(Chunk::decode("k", b"\x00").is_err());
        let reference = ChunkRef { shard: 3, through: 5, after: 4 };
        assert_eq!(reference.key("cpu", 9), "ent:cpu:9:3:5");
        assert_eq!(reference.metrics(chunk).map(|m| m.id).collect::<Vec<_>>(), ["b"]);
    }
}
