//! Per journal shard, the last item a folded value (an aggregate, an entry
//! list) holds: it holds its items of that shard up to there, and none after.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Watermarks(Vec<u64>);

impl Watermarks {
    /// The last item of `shard` held (0: none).
    pub fn get(&self, shard: usize) -> u64 {
        self.0.get(shard).copied().unwrap_or(0)
    }

    pub fn set(&mut self, shard: usize, seq: u64) {
        if self.0.len() <= shard {
            self.0.resize(shard + 1, 0);
        }
        self.0[shard] = seq;
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_shards_hold_nothing() {
        let mut w = Watermarks::default();
        w.set(3, 9);
        assert_eq!((w.get(3), w.get(2), w.get(15)), (9, 0, 0));
    }
}
