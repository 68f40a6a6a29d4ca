//! Folding a journal shard into its type's entry chunks and aggregates
//! (every level of [`Level::ALL`], then all time), then trimming it.
//!
//! The all-types listing index goes first ([`crate::list_index::record`]:
//! a read, and a write only where a type's hour is new). The chunks next,
//! in one `set_many`, each holding its second's items past the watermark
//! its aggregate showed when watched (a repeated fold writes the same ones;
//! a fold that overlaps another cuts or deletes its own, see
//! [`Fold::list_second`]). Every other write is a compare-and-swap
//! through [`update`], and every change checks the target's watermark for
//! the shard first, so a fold can stop at any write (a crash, a store error)
//! and be run again, by anyone, without counting an item twice; the journal
//! is trimmed only after every target holds its items. Targets are written
//! finest first, so a second lists a chunk only once it exists and a coarse
//! bucket never marks a child that does not exist yet.

use std::collections::BTreeMap;

use crate::aggregate::Aggregate;
use crate::entries::{Chunk, ChunkRef};
use crate::expiry::{sweep_step, Expiry};
use crate::journal::Journal;
use crate::keys::{bucket_key, claim_key, entries_key, journal_key, total_key};
use crate::kv::{second_of, update, update_watched, Change, Kv, StoreError};
use crate::list_index::{day_and_hour, record};
use crate::metric::Metric;
use crate::time::{Bucket, Level};

/// One aggregate a metric goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    Bucket(Bucket),
    Total,
}

impl Target {
    pub fn key(&self, metric_type: &str) -> String {
        match self {
            Target::Bucket(b) => bucket_key(metric_type, *b),
            Target::Total => total_key(metric_type),
        }
    }
}

/// The aggregates a metric at `timestamp_ms` goes into, finest first.
pub fn targets(timestamp_ms: i64) -> impl Iterator<Item = Target> {
    Level::ALL
        .into_iter()
        .map(move |level| Target::Bucket(Bucket::containing(level, timestamp_ms)))
        .chain(std::iter::once(Target::Total))
}

/// Adds `metric` to the aggregate of `target`, marking which child bucket
/// (or, for the total, which top-level bucket) now holds data.
pub fn apply(target: &Target, aggregate: &mut Aggregate, metric: &Metric) {
    aggregate.record_metric(metric);
    match target {
        Target::Bucket(bucket) => {
            if let Some(finer) = bucket.level.finer() {
                let child = Bucket::containing(finer, metric.timestamp_ms);
                if let Some((_, position)) = child.position_in_parent() {
                    aggregate.mark_child(position);
                }
            }
        }
        Target::Total => aggregate.mark_top(Bucket::containing(Level::TOP, metric.timestamp_ms).index),
    }
}

/// What a fold did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Folded {
    pub items: usize,
    /// Aggregates it went through (each one write at most), plus one for the
    /// entry chunks.
    pub targets: usize,
    /// Writes to the all-types listing index (0 unless a type's hour, a day
    /// or a block is new to it).
    pub indexed: usize,
    /// The retention sweep's step after it, if raw metrics expire: chunks
    /// deleted, or why it could not (the next fold's step goes on from there).
    pub swept: Option<Result<usize, StoreError>>,
}

/// Items with their `seq`.
type Numbered<'a> = Vec<(u64, &'a Metric)>;

/// Folds every item of `journal` (shard `shard` of `metric_type`, as read)
/// into the entry chunks and aggregates, then trims them off the shard.
/// With an `expiry`, seconds past it get no chunk (their ids' claims are
/// deleted instead) and a step of the retention sweep follows.
pub fn fold<K: Kv>(kv: &mut K, metric_type: &str, shard: usize, journal: &Journal, expiry: Option<Expiry>) -> Result<Folded, StoreError> {
    let through = journal.next_seq() - 1;
    if journal.items.is_empty() {
        return Ok(Folded::default());
    }
    let mut by_target: BTreeMap<Target, Numbered> = BTreeMap::new();
    let mut by_second: BTreeMap<i64, Numbered> = BTreeMap::new();
    for (seq, metric) in journal.numbered() {
        for target in targets(metric.timestamp_ms) {
            by_target.entry(target).or_default().push((seq, metric));
        }
        by_second.entry(second_of(metric.timestamp_ms)).or_default().push((seq, metric));
    }
    let keeps = |second: i64| expiry.is_none_or(|e| e.keeps(second));
    let (kept, expired): (Vec<_>, Vec<_>) = by_second.iter().partition(|(second, _)| keeps(**second));
    // Only what gets a chunk can be listed.
    let mut hours: BTreeMap<i64, u32> = BTreeMap::new();
    for (second, _) in &kept {
        let (day, hour) = day_and_hour(**second);
        *hours.entry(day).or_default() |= hour;
    }
    let indexed = record(kv, metric_type, &hours)?;
    // Each kept second's aggregate is watched before its chunk is written,
    // and the chunk holds only the items past the watermark it shows.
    let mut watched = BTreeMap::new();
    let mut chunks: Vec<(String, Vec<u8>)> = Vec::new();
    for (second, items) in &kept {
        let key = second_target(**second).key(metric_type);
        let (cas, current) = kv.watch(&key)?;
        let held = aggregate_of(&key, current.as_deref())?.watermark(shard);
        let chunk = chunk_after(items, held);
        let written = chunk.as_ref().map(|chunk| {
            chunks.push((entries_key(metric_type, **second, shard, through), chunk.encode()));
            held
        });
        watched.insert(**second, ((cas, current), written));
    }
    if !chunks.is_empty() {
        kv.set_many(&chunks)?;
    }
    let claims: Vec<String> = expired.iter().flat_map(|(_, items)| items.iter().map(|(_, m)| claim_key(&m.id))).collect();
    if !claims.is_empty() {
        kv.delete_many(&claims)?;
    }
    let fold = Fold { metric_type, shard, through };
    for (target, items) in &by_target {
        let key = target.key(metric_type);
        let kept_second = match target {
            Target::Bucket(Bucket { level: Level::Second, index }) => watched.remove(index).map(|w| (*index, w)),
            _ => None,
        };
        match kept_second {
            Some((second, (opened, written))) => fold.list_second(kv, second, items, opened, written)?,
            None => {
                update(kv, &key, |current| fold.add(target, &key, current, items, None))?;
            }
        }
    }
    let key = journal_key(metric_type, shard);
    update(kv, &key, |current| {
        let mut journal = Journal::decode(&key, current.unwrap_or_default())?;
        if journal.folded_through >= through {
            return Ok(Change::Done(()));
        }
        journal.trim_through(through);
        Ok(Change::Write(journal.encode(), ()))
    })?;
    let swept = expiry.map(|expiry| sweep_step(kv, metric_type, expiry).map(|s| s.chunks));
    Ok(Folded { items: journal.items.len(), targets: by_target.len() + 1, indexed, swept })
}

fn second_target(second: i64) -> Target {
    Target::Bucket(Bucket { level: Level::Second, index: second })
}

/// The aggregate stored at `key` (a new one if there is none).
fn aggregate_of(key: &str, current: Option<&[u8]>) -> Result<Aggregate, StoreError> {
    match current {
        Some(bytes) => Aggregate::decode(bytes).map_err(|e| StoreError::corrupt(key, e)),
        None => Ok(Aggregate::default()),
    }
}

/// The chunk of a second's `items` past `held`, if any are.
fn chunk_after(items: &Numbered, held: u64) -> Option<Chunk> {
    let items: Vec<(u64, Metric)> = items.iter().filter(|(seq, _)| *seq > held).map(|(seq, m)| (*seq, (*m).clone())).collect();
    (!items.is_empty()).then_some(Chunk { items })
}

/// What updating an aggregate found.
enum Outcome {
    /// The items past its watermark went in (and the chunk, if any, is listed).
    Added,
    /// It held them already; `listed` is what it lists of this fold's chunk
    /// key, with the items it takes from it.
    Held { listed: Option<u64> },
    /// Its watermark moved to `held` since the chunk was written with the
    /// items past an older one: the chunk must be cut first.
    Moved { held: u64 },
}

/// One fold: a shard of a type, through item `through`.
struct Fold<'a> {
    metric_type: &'a str,
    shard: usize,
    through: u64,
}

impl Fold<'_> {
    /// Adds the `items` past `target`'s watermark. With `chunk`, the watermark
    /// the second's chunk was written past: listed only if it still holds.
    fn add(&self, target: &Target, key: &str, current: Option<&[u8]>, items: &Numbered, chunk: Option<u64>) -> Result<Change<Outcome>, StoreError> {
        let mut aggregate = aggregate_of(key, current)?;
        let held = aggregate.watermark(self.shard);
        if held >= self.through {
            let listed = aggregate.chunks.iter().find(|c| c.shard as usize == self.shard && c.through == self.through).map(|c| c.after);
            return Ok(Change::Done(Outcome::Held { listed }));
        }
        if chunk.is_some_and(|after| after != held) {
            return Ok(Change::Done(Outcome::Moved { held }));
        }
        for (_, metric) in items.iter().filter(|(seq, _)| *seq > held) {
            apply(target, &mut aggregate, metric);
        }
        if chunk.is_some() {
            aggregate.chunks.push(ChunkRef { shard: self.shard as u16, through: self.through, after: held });
        }
        aggregate.set_watermark(self.shard, self.through);
        Ok(Change::Write(aggregate.encode(), Outcome::Added))
    }

    /// Folds a kept second's `items` into its aggregate, listing the chunk
    /// written past `written` (the watermark `opened` showed). Two folds of
    /// one shard can overlap (more items arrive while one runs), so a chunk
    /// must never hold an item another listed chunk holds, and a chunk no
    /// aggregate lists must not stay behind: the retention sweep would never
    /// find it, and PostgreSQL keeps every chunk's metrics as rows.
    fn list_second<K: Kv>(&self, kv: &mut K, second: i64, items: &Numbered, opened: (K::Cas, Option<Vec<u8>>), mut written: Option<u64>) -> Result<(), StoreError> {
        let target = second_target(second);
        let key = target.key(self.metric_type);
        let chunk = entries_key(self.metric_type, second, self.shard, self.through);
        let mut opened = Some(opened);
        loop {
            let watched = match opened.take() {
                Some(watched) => watched,
                None => kv.watch(&key)?,
            };
            match update_watched(kv, &key, watched, |current| self.add(&target, &key, current, items, written))? {
                Outcome::Added => return Ok(()),
                Outcome::Held { listed } => {
                    match (written, listed) {
                        // Listed by another fold of the same items: this one
                        // may have written after it, past an older watermark.
                        (Some(ours), Some(after)) if ours != after => {
                            if let Some(cut) = chunk_after(items, after) {
                                kv.set(&chunk, &cut.encode())?;
                            }
                        }
                        // A later fold holds these items in its own chunk.
                        (Some(_), None) => kv.delete_many(std::slice::from_ref(&chunk))?,
                        _ => {}
                    }
                    return Ok(());
                }
                Outcome::Moved { held } => {
                    written = match chunk_after(items, held) {
                        Some(cut) => {
                            kv.set(&chunk, &cut.encode())?;
                            Some(held)
                        }
                        None => {
                            kv.delete_many(std::slice::from_ref(&chunk))?;
                            None
                        }
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_go_from_fine_to_coarse() {
        let t: Vec<Target> = targets(90_061_000).collect();
        assert_eq!(t.len(), 7);
        assert_eq!(t[0], Target::Bucket(Bucket { level: Level::Second, index: 90_061 }));
        assert_eq!(t[3], Target::Bucket(Bucket { level: Level::Day, index: 1 }));
        assert_eq!(t[5], Target::Bucket(Bucket { level: Level::Era, index: 0 }));
        assert_eq!(t[6], Target::Total);
        assert_eq!(t[1].key("cpu"), "agg:cpu:m:1501");
        let mut sorted = t.clone();
        sorted.sort();
        assert_eq!(sorted, t, "the fold's order is finest first");
    }

    #[test]
    fn coarse_aggregates_mark_their_children() {
        let metric = Metric::new("a", "cpu", 1.0, 90_061_000);
        let t: Vec<Target> = targets(metric.timestamp_ms).collect();
        let mut minute = Aggregate::default();
        apply(&t[1], &mut minute, &metric);
        assert_eq!(minute.children, 1 << 1);
        let mut day = Aggregate::default();
        apply(&t[3], &mut day, &metric);
        assert_eq!(day.children, 1 << 1);
        let mut block = Aggregate::default();
        apply(&t[4], &mut block, &metric);
        assert_eq!(block.children, 1 << 1, "day 1 of block 0");
        let mut total = Aggregate::default();
        apply(&Target::Total, &mut total, &metric);
        assert_eq!(total.tops, vec![0]);
    }
}
