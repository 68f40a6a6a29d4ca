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
//!
//! Right after the header a shard lists its items' seconds, newest first
//! ([`Stamps`]), so a reader that reads only the first bytes of many shards
//! (the all-types listing) learns which of them hold items it needs without
//! reading their items. It costs no write: an append rewrites the shard anyway.

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

/// The layout with stamps after the header.
const MAGIC: u8 = 0xB2;
/// The layout before stamps, still read (its stamps are unknown until its next append).
const MAGIC_UNSTAMPED: u8 = 0xB1;
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

/// A stored [`Metric`] read without copying its text (same fields, same order).
#[derive(Deserialize)]
struct MetricView<'a> {
    id: &'a str,
    metric_type: &'a str,
    value: f64,
    timestamp_ms: i64,
    user_id: Option<&'a str>,
    properties: Option<&'a str>,
}

impl MetricView<'_> {
    fn to_metric(&self) -> Metric {
        Metric {
            id: self.id.to_string(),
            metric_type: self.metric_type.to_string(),
            value: self.value,
            timestamp_ms: self.timestamp_ms,
            user_id: self.user_id.map(str::to_string),
            properties: self.properties.map(str::to_string),
        }
    }
}

/// The two numbers that say what a shard holds, readable without decoding its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Header {
    /// The `seq` the next item will get.
    pub next_seq: u64,
    pub folded_through: u64,
}

/// The seconds of a shard's items, newest first, as far as the bytes read
/// hold them: a shard read from its start knows its newest items exactly
/// and the rest as lying between its oldest item and the last one listed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stamps {
    pub header: Header,
    /// How many items the shard holds.
    pub items: u64,
    /// The second of its oldest item, if the bytes read hold it.
    pub oldest: Option<i64>,
    /// The seconds of its newest `newest_first.len()` items, newest first.
    pub newest_first: Vec<i64>,
}

impl Stamps {
    /// Whether every item's second is listed.
    pub fn complete(&self) -> bool {
        self.newest_first.len() as u64 == self.items
    }
}

/// Unsigned LEB128.
fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads an unsigned LEB128 at `*at`; `None` when the bytes end first (or it overflows).
fn take_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        n |= u64::from(byte & 0x7F) << shift;
        if byte & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

fn unzigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

/// The seconds of `items`, newest first.
fn seconds_newest_first(items: &[Metric]) -> Vec<i64> {
    let mut seconds: Vec<i64> = items.iter().map(|m| m.timestamp_ms.div_euclid(1_000)).collect();
    seconds.sort_unstable_by(|a, b| b.cmp(a));
    seconds
}

/// Reads the stamps section at `*at` (after the header): the count, the
/// oldest second, then as many seconds, newest first, as `bytes` hold.
/// `whole` when the section must be complete.
fn take_stamps(key: &str, bytes: &[u8], at: &mut usize, whole: bool) -> Result<(u64, Option<i64>, Vec<i64>), StoreError> {
    let cut = || StoreError::corrupt(key, "journal stamps are cut short");
    let count = take_varint(bytes, at).ok_or_else(cut)?;
    let oldest = match count {
        0 => None,
        _ => match take_varint(bytes, at) {
            Some(n) => Some(unzigzag(n)),
            None if whole => return Err(cut()),
            None => return Ok((count, None, Vec::new())),
        },
    };
    let mut seconds = Vec::new();
    let mut previous = 0i64;
    while (seconds.len() as u64) < count {
        let start = *at;
        let Some(n) = take_varint(bytes, at) else {
            if whole {
                return Err(cut());
            }
            *at = start;
            break;
        };
        let second = if seconds.is_empty() { unzigzag(n) } else { previous.checked_sub_unsigned(n).ok_or_else(|| StoreError::corrupt(key, "journal stamps out of range"))? };
        seconds.push(second);
        previous = second;
    }
    Ok((count, oldest, seconds))
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

    /// The items of an encoded shard with a `seq` of at least `from_seq`,
    /// decoding only those: the ones before are read as borrowed text and
    /// skipped, so a reader that knows what it saw before pays for the rest.
    pub fn items_from(key: &str, bytes: &[u8], from_seq: u64) -> Result<Vec<(u64, Metric)>, StoreError> {
        let header = Self::read_header(key, bytes)?;
        let mut at = HEADER;
        if bytes[0] == MAGIC {
            take_stamps(key, bytes, &mut at, true)?;
        }
        let corrupt = |e: postcard::Error| StoreError::corrupt(key, e);
        // `Body` is postcard: the item count, the items, then the trimmed ids.
        let count = take_varint(bytes, &mut at).ok_or_else(|| StoreError::corrupt(key, "journal items are cut short"))?;
        if header.folded_through.checked_add(count).and_then(|n| n.checked_add(1)) != Some(header.next_seq) {
            return Err(StoreError::corrupt(key, "journal header does not match its items"));
        }
        let mut rest = &bytes[at..];
        let mut out = Vec::new();
        for seq in header.folded_through + 1..header.next_seq {
            let (item, after) = postcard::take_from_bytes::<MetricView>(rest).map_err(corrupt)?;
            rest = after;
            if seq >= from_seq {
                out.push((seq, item.to_metric()));
            }
        }
        Ok(out)
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
        let mut out = Vec::with_capacity(HEADER + self.items.len() * 52 + self.trimmed.len() * 9);
        out.push(MAGIC);
        out.extend(self.next_seq().to_le_bytes());
        out.extend(self.folded_through.to_le_bytes());
        let seconds = seconds_newest_first(&self.items);
        put_varint(&mut out, seconds.len() as u64);
        if let Some(oldest) = seconds.last() {
            put_varint(&mut out, zigzag(*oldest));
        }
        for (i, second) in seconds.iter().enumerate() {
            // Newest first, so every step back is a non-negative delta.
            put_varint(&mut out, if i == 0 { zigzag(*second) } else { seconds[i - 1].abs_diff(*second) });
        }
        let body = Body { items: self.items.clone(), trimmed: self.trimmed.clone() };
        // Serialising plain records cannot fail.
        out.extend(postcard::to_allocvec(&body).unwrap_or_default());
        out
    }

    pub fn decode(key: &str, bytes: &[u8]) -> Result<Journal, StoreError> {
        let header = Self::read_header(key, bytes)?;
        let mut at = HEADER;
        let stamps = match bytes[0] {
            MAGIC => Some(take_stamps(key, bytes, &mut at, true)?),
            _ => None,
        };
        let body: Body = postcard::from_bytes(&bytes[at..]).map_err(|e| StoreError::corrupt(key, e))?;
        let journal = Journal { folded_through: header.folded_through, items: body.items, trimmed: body.trimmed };
        if journal.next_seq() != header.next_seq {
            return Err(StoreError::corrupt(key, "journal header does not match its items"));
        }
        if stamps.is_some_and(|(_, oldest, seconds)| oldest != seconds.last().copied() || seconds != seconds_newest_first(&journal.items)) {
            return Err(StoreError::corrupt(key, "journal stamps do not match its items"));
        }
        Ok(journal)
    }

    /// The header and the items' seconds, from the first bytes of a shard
    /// (as many seconds as they hold; none from a shard of the layout
    /// before stamps).
    pub fn read_stamps(key: &str, bytes: &[u8]) -> Result<Stamps, StoreError> {
        let header = Self::read_header(key, bytes)?;
        let items = header.next_seq.saturating_sub(header.folded_through.saturating_add(1));
        if bytes[0] == MAGIC_UNSTAMPED {
            return Ok(Stamps { header, items, oldest: None, newest_first: Vec::new() });
        }
        let mut at = HEADER;
        let (count, oldest, newest_first) = take_stamps(key, bytes, &mut at, false)?;
        if count != items {
            return Err(StoreError::corrupt(key, "journal stamps do not match its header"));
        }
        Ok(Stamps { header, items, oldest, newest_first })
    }

    /// Only the header: what a cached answer is checked against.
    pub fn read_header(key: &str, bytes: &[u8]) -> Result<Header, StoreError> {
        if bytes.len() < HEADER || (bytes[0] != MAGIC && bytes[0] != MAGIC_UNSTAMPED) {
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
    fn items_from_a_seq_are_the_decoded_journals_tail_in_either_layout() {
        let mut j = Journal::default();
        for i in 1..=6 {
            let mut m = metric(i);
            m.user_id = (i % 2 == 0).then(|| format!("u{i}"));
            m.properties = (i == 5).then(|| r#"{"k":"v"}"#.to_string());
            j.append(m);
        }
        j.trim_through(2);
        for bytes in [j.encode(), unstamped(&j)] {
            let tail: Vec<(u64, Metric)> = j.numbered().filter(|(s, _)| *s >= 4).map(|(s, m)| (s, m.clone())).collect();
            assert_eq!(Journal::items_from("k", &bytes, 4).unwrap(), tail);
            assert_eq!(Journal::items_from("k", &bytes, 0).unwrap().len(), 4, "every item still held");
            assert!(Journal::items_from("k", &bytes, 7).unwrap().is_empty());
            assert!(Journal::items_from("k", &bytes[..bytes.len() - 30], 4).is_err(), "cut short");
        }
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

    /// A shard as the layout before stamps wrote it.
    fn unstamped(j: &Journal) -> Vec<u8> {
        let mut out = vec![MAGIC_UNSTAMPED];
        out.extend(j.next_seq().to_le_bytes());
        out.extend(j.folded_through.to_le_bytes());
        out.extend(postcard::to_allocvec(&Body { items: j.items.clone(), trimmed: j.trimmed.clone() }).unwrap());
        out
    }

    #[test]
    fn stamps_list_the_items_seconds_newest_first_and_a_cut_head_its_newest() {
        let mut j = Journal::default();
        for (i, ts) in [5_500i64, 1_771_416_000_999, 90_000, 1_771_416_000_000, 7].into_iter().enumerate() {
            j.append(Metric::new(format!("m{i}"), "t", 1.0, ts));
        }
        j.trim_through(1);
        let bytes = j.encode();
        let stamps = Journal::read_stamps("k", &bytes).unwrap();
        assert_eq!(stamps.header, j.header());
        assert_eq!(stamps.newest_first, [1_771_416_000, 1_771_416_000, 90, 0]);
        assert_eq!(stamps.oldest, Some(0));
        assert!(stamps.complete());
        assert_eq!(Journal::decode("k", &bytes).unwrap(), j);
        // The header, the count, the oldest and the first (absolute) second: 17 + 1 + 1 + 5 bytes.
        let cut = Journal::read_stamps("k", &bytes[..HEADER + 7]).unwrap();
        assert_eq!((cut.items, cut.oldest, cut.newest_first.as_slice()), (4, Some(0), &[1_771_416_000][..]));
        assert!(!cut.complete());
        let bare = Journal::read_stamps("k", &bytes[..HEADER + 1]).unwrap();
        assert_eq!((bare.oldest, bare.newest_first.len()), (None, 0));
        assert!(Journal::read_stamps("k", &bytes[..HEADER]).is_err(), "not even the count");
        assert!(Journal::decode("k", &bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn shards_of_the_layout_before_stamps_are_still_read() {
        let mut j = Journal::default();
        j.append(metric(1));
        j.append(metric(2));
        let old = unstamped(&j);
        assert_eq!(Journal::decode("k", &old).unwrap(), j);
        assert_eq!(Journal::read_header("k", &old).unwrap(), j.header());
        let stamps = Journal::read_stamps("k", &old).unwrap();
        assert_eq!((stamps.items, stamps.newest_first.len()), (2, 0), "its seconds are unknown");
        // The next append writes it anew, stamped.
        let mut again = Journal::decode("k", &old).unwrap();
        again.append(metric(3));
        assert!(Journal::read_stamps("k", &again.encode()).unwrap().complete());
    }

    #[test]
    fn stamps_that_disagree_with_the_items_are_refused() {
        let mut j = Journal::default();
        j.append(metric(1));
        j.append(metric(2));
        let mut bytes = j.encode();
        // Count 2, oldest 1 (zigzag 2), newest 2 (zigzag 4), then a delta of 1 made 2.
        assert_eq!(&bytes[HEADER..HEADER + 4], [2, 2, 4, 1]);
        bytes[HEADER + 3] = 2;
        assert!(Journal::decode("k", &bytes).is_err());
        let mut oldest = j.encode();
        oldest[HEADER + 1] = 4;
        assert!(Journal::decode("k", &oldest).is_err(), "an oldest second that is not the last");
        let mut wrong_count = j.encode();
        wrong_count[HEADER] = 3;
        assert!(Journal::read_stamps("k", &wrong_count).is_err());
    }

    #[test]
    fn garbage_is_refused() {
        assert!(Journal::decode("k", b"").is_err());
        assert!(Journal::items_from("k", &[MAGIC; 20], 0).is_err());
        assert!(Journal::decode("k", &[MAGIC; 20]).is_err());
        assert!(Journal::read_stamps("k", &[MAGIC; 20]).is_err());
        let mut huge = vec![MAGIC];
        huge.extend(u64::MAX.to_le_bytes());
        huge.extend(u64::MAX.to_le_bytes());
        huge.extend([0xFF; 12]);
        assert!(Journal::read_stamps("k", &huge).is_err() && Journal::decode("k", &huge).is_err());
        let mut bytes = Journal::default().encode();
        bytes[1] = 9;
        assert!(Journal::decode("k", &bytes).is_err());
    }
}
