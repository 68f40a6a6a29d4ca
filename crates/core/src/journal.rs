//! The journal: where an ingest puts a metric, in one write.
//!
//! Each metric type has [`SHARDS`] journal shards. An ingest appends its
//! metric to one shard with a single compare-and-swap; that write is the
//! acknowledgement. Items are numbered per shard (`seq`, from 1). Once a
//! shard holds [`FOLD_EVERY`] items, the ingest that filled it folds them
//! into the type's aggregates and entry lists ([`crate::fold`]) and trims
//! them off: a handful of writes shared by many metrics.
//!
//! Readers merge what is still in the journal with the aggregates, so every
//! acknowledged metric is in every answer. A value records how far the shard
//! was folded (`folded_through`), and every aggregate records, per shard, the
//! last item it holds (its watermark), so nothing is counted twice either,
//! even when a fold stopped half way.

use serde::{Deserialize, Serialize};

use crate::kv::StoreError;
use crate::metric::Metric;

/// Journal shards per type: appends spread over them, so concurrent ingests
/// of one type rarely contend for the same value.
pub const SHARDS: usize = 16;
/// A shard is folded each time it reaches a multiple of this many items.
pub const FOLD_EVERY: usize = 64;
/// How many trimmed items a shard remembers (by id hash), so an append whose
/// swap was reported failed can still tell that it landed after a fold
/// trimmed it (two whole folds of the shard would have to pass in between).
pub const TRIMMED_MEMORY: usize = 2 * FOLD_EVERY;

const MAGIC: u8 = 0xB1;
/// Bytes of a shard's header: all [`Journal::read_header`] needs.
pub const HEADER: usize = 1 + 8 + 8;

/// One journal shard.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Journal {
    /// Every item with a `seq` up to this one has been folded and trimmed.
    pub folded_through: u64,
    /// Items `folded_through + 1 ..= folded_through + items.len()`, in order.
    pub items: Vec<Metric>,
    /// Id hashes of the most recently trimmed items, oldest first.
    pub trimmed: Vec<u64>,
}

#[derive(Serialize, Deserialize)]
struct Body {
    items: Vec<Metric>,
    trimmed: Vec<u64>,
}

/// The two numbers that say what a shard holds, readable without decoding its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Header {
    /// The `seq` the next item will get.
    pub next_seq: u64,
    pub folded_through: u64,
}

/// A stable 64-bit hash of a metric id.
pub fn id_hash(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes())
}

/// The shard a metric with a client id goes to, so a re-post finds it.
pub fn shard_of_id(id: &str) -> usize {
    (id_hash(id) % SHARDS as u64) as usize
}

impl Journal {
    pub fn next_seq(&self) -> u64 {
        self.folded_through + self.items.len() as u64 + 1
    }

    pub fn header(&self) -> Header {
        Header { next_seq: self.next_seq(), folded_through: self.folded_through }
    }

    /// Items with their `seq`.
    pub fn numbered(&self) -> impl Iterator<Item = (u64, &Metric)> {
        (self.folded_through + 1..).zip(self.items.iter())
    }

    /// Whether the metric with this id was appended here (and maybe trimmed since).
    pub fn holds(&self, id: &str) -> bool {
        self.items.iter().any(|m| m.id == id) || self.trimmed.contains(&id_hash(id))
    }

    /// Adds `metric`; returns its `seq`.
    pub fn append(&mut self, metric: Metric) -> u64 {
        self.items.push(metric);
        self.next_seq() - 1
    }

    /// Drops the items up to `seq` (they are folded), remembering their ids.
    pub fn trim_through(&mut self, seq: u64) {
        if seq <= self.folded_through {
            return;
        }
        let count = ((seq - self.folded_through) as usize).min(self.items.len());
        self.trimmed.extend(self.items.drain(..count).map(|m| id_hash(&m.id)));
        let excess = self.trimmed.len().saturating_sub(TRIMMED_MEMORY);
        self.trimmed.drain(..excess);
        self.folded_through += count as u64;
    }

    /// Whether appends that grew the shard from `before` items made it due
    /// for a fold (they reached a multiple of [`FOLD_EVERY`]).
    pub fn due_since(&self, before: usize) -> bool {
        before / FOLD_EVERY < self.items.len() / FOLD_EVERY
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.items.len() * 48 + self.trimmed.len() * 9);
        out.push(MAGIC);
        out.extend(self.next_seq().to_le_bytes());
        out.extend(self.folded_through.to_le_bytes());
        let body = Body { items: self.items.clone(), trimmed: self.trimmed.clone() };
        // Serialising plain records cannot fail.
        out.extend(postcard::to_allocvec(&body).unwrap_or_default());
        out
    }

    pub fn decode(key: &str, bytes: &[u8]) -> Result<Journal, StoreError> {
        let header = Self::read_header(key, bytes)?;
        let body: Body = postcard::from_bytes(&bytes[HEADER..]).map_err(|e| StoreError::corrupt(key, e))?;
        let journal = Journal { folded_through: header.folded_through, items: body.items, trimmed: body.trimmed };
        if journal.next_seq() != header.next_seq {
            return Err(StoreError::corrupt(key, "journal header does not match its items"));
        }
        Ok(journal)
    }

    /// Only the header: what a cached answer is checked against.
    pub fn read_header(key: &str, bytes: &[u8]) -> Result<Header, StoreError> {
        if bytes.len() < HEADER || bytes[0] != MAGIC {
            return Err(StoreError::corrupt(key, "not a journal shard"));
        }
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or_default());
        Ok(Header { next_seq: word(1), folded_through: word(9) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(i: u64) -> Metric {
        Metric::new(format!("m{i}"), "t", i as f64, 1_000 * i as i64)
    }

    #[test]
    fn items_are_numbered_from_one_and_survive_encoding() {
        let mut j = Journal::default();
        assert_eq!(j.append(metric(1)), 1);
        assert_eq!(j.append(metric(2)), 2);
        let decoded = Journal::decode("k", &j.encode()).unwrap();
        assert_eq!(decoded, j);
        assert_eq!(Journal::read_header("k", &j.encode()).unwrap(), Header { next_seq: 3, folded_through: 0 });
        assert_eq!(j.numbered().map(|(s, m)| (s, m.id.as_str())).collect::<Vec<_>>(), [(1, "m1"), (2, "m2")]);
    }

    #[test]
    fn trimming_keeps_numbering_and_remembers_ids() {
        let mut j = Journal::default();
        for i in 1..=5 {
            j.append(metric(i));
        }
        j.trim_through(3);
        assert_eq!(j.folded_through, 3);
        assert_eq!(j.numbered().map(|(s, _)| s).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(j.append(metric(6)), 6);
        assert!(j.holds("m1") && j.holds("m5") && !j.holds("m9"));
        j.trim_through(2); // Already trimmed: no change.
        assert_eq!(j.folded_through, 3);
        for i in 7..=300 {
            j.append(metric(i));
        }
        j.trim_through(300);
        assert_eq!(j.trimmed.len(), TRIMMED_MEMORY);
        assert!(j.holds("m300") && !j.holds("m1"));
    }

    #[test]
    fn a_shard_is_due_at_each_multiple_of_fold_every() {
        let mut j = Journal::default();
        let due: Vec<u64> = (1..=3 * FOLD_EVERY as u64)
            .filter(|i| {
                let before = j.items.len();
                j.append(metric(*i));
                j.due_since(before)
            })
            .collect();
        assert_eq!(due, [64, 128, 192]);
        let before = j.items.len();
        for i in 0..500 {
            j.append(metric(1_000 + i));
        }
        assert!(j.due_since(before), "a batch that crosses a multiple");
    }

    #[test]
    fn garbage_is_refused() {
        assert!(Journal::decode("k", b"").is_err());
        assert!(Journal::decode("k", &[MAGIC; 20]).is_err());
        let mut bytes = Journal::default().encode();
        bytes[1] = 9;
        assert!(Journal::decode("k", &bytes).is_err());
    }
}
