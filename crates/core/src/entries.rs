//! The metrics of one second (`ent:{type}:{second}`), kept for listing.
//! Written by folds like the aggregates, with the same per-shard watermarks,
//! so a fold that is repeated adds nothing twice.

use serde::{Deserialize, Serialize};

use crate::kv::StoreError;
use crate::metric::Metric;
use crate::watermarks::Watermarks;

const MAGIC: u8 = 0xE1;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Entries {
    /// Per journal shard, the last item held (see [`crate::aggregate::Aggregate::watermarks`]).
    pub watermarks: Watermarks,
    pub metrics: Vec<Metric>,
}

impl Entries {
    /// The last item of journal shard `shard` this value holds.
    pub fn watermark(&self, shard: usize) -> u64 {
        self.watermarks.get(shard)
    }

    pub fn set_watermark(&mut self, shard: usize, seq: u64) {
        self.watermarks.set(shard, seq);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![MAGIC];
        out.extend(postcard::to_allocvec(self).unwrap_or_default());
        out
    }

    pub fn decode(key: &str, bytes: &[u8]) -> Result<Entries, StoreError> {
        match bytes.split_first() {
            Some((&MAGIC, rest)) => postcard::from_bytes(rest).map_err(|e| StoreError::corrupt(key, e)),
            _ => Err(StoreError::corrupt(key, "not an entry list")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let mut e = Entries::default();
        e.metrics.push(Metric::new("a", "t", 1.5, 7));
        e.set_watermark(3, 9);
        assert_eq!(Entries::decode("k", &e.encode()).unwrap(), e);
        assert_eq!((e.watermark(3), e.watermark(2), e.watermark(8)), (9, 0, 0));
        assert!(Entries::decode("k", b"\x00").is_err());
    }
}
