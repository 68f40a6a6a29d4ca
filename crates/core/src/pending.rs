//! Reading a type's journal shards: the metrics acknowledged but not yet
//! folded, and the state that says whether anything changed since a cached
//! answer was computed.
//!
//! Readers read the journal shards before the aggregates. An item folded
//! and trimmed in between is then in the aggregates when they are read; an
//! item still in a shard is added to an aggregate only if the aggregate's
//! watermark for that shard is below the item's `seq`. So every acknowledged
//! metric is counted, once, even on a store whose reads are not a snapshot.

use crate::journal::{Header, Journal, SHARDS};
use crate::keys::journal_key;
use crate::kv::{Reader, StoreError};
use crate::metric::Metric;

/// One unfolded item.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingItem {
    pub shard: usize,
    pub seq: u64,
    pub metric: Metric,
}

/// The journal shards of one type, as read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pending {
    pub headers: Vec<Header>,
    pub items: Vec<PendingItem>,
}

pub fn journal_keys(metric_type: &str) -> Vec<String> {
    (0..SHARDS).map(|shard| journal_key(metric_type, shard)).collect()
}

impl Pending {
    /// Reads every shard of `metric_type`.
    pub fn read(reader: &mut dyn Reader, metric_type: &str) -> Result<Pending, StoreError> {
        let keys = journal_keys(metric_type);
        let values = reader.get_many(&keys)?;
        Pending::decode(&keys, &values)
    }

    /// From the values of [`journal_keys`], items and all.
    pub fn decode(keys: &[String], values: &[Option<Vec<u8>>]) -> Result<Pending, StoreError> {
        let mut pending = Pending::default();
        for (shard, (key, value)) in keys.iter().zip(values).enumerate() {
            let Some(bytes) = value else {
                pending.headers.push(Header { next_seq: 1, folded_through: 0 });
                continue;
            };
            let journal = Journal::decode(key, bytes)?;
            pending.headers.push(journal.header());
            pending.items.extend(journal.numbered().map(|(seq, metric)| PendingItem { shard, seq, metric: metric.clone() }));
        }
        Ok(pending)
    }

    /// From the values of [`journal_keys`], headers only (cheap: no items decoded).
    pub fn headers(keys: &[String], values: &[Option<Vec<u8>>]) -> Result<Vec<Header>, StoreError> {
        keys.iter()
            .zip(values)
            .map(|(key, value)| match value {
                Some(bytes) => Journal::read_header(key, bytes),
                None => Ok(Header { next_seq: 1, folded_through: 0 }),
            })
            .collect()
    }

    /// Changes with every append: equal states mean the same metrics.
    pub fn state(headers: &[Header]) -> String {
        join(headers.iter().map(|h| h.next_seq))
    }

    /// The shards as read (`values` of `keys`) and only the items appended
    /// since `state` (an earlier [`Pending::state`] of the same shards).
    /// `None` when the journal cannot tell: a state of another shape, a
    /// shard behind it, or items appended since that a fold trimmed already.
    pub fn since(keys: &[String], values: &[Option<Vec<u8>>], state: &str) -> Result<Option<Pending>, StoreError> {
        let before: Vec<u64> = match state.split(',').map(str::parse).collect() {
            Ok(before) => before,
            Err(_) => return Ok(None),
        };
        if before.len() != keys.len() || values.len() != keys.len() {
            return Ok(None);
        }
        let mut pending = Pending { headers: Pending::headers(keys, values)?, items: Vec::new() };
        for (shard, ((key, value), (header, from))) in keys.iter().zip(values).zip(pending.headers.iter().zip(&before)).enumerate() {
            let appended = header.next_seq > *from;
            if header.next_seq < *from || (appended && header.folded_through >= *from) {
                return Ok(None);
            }
            if let (true, Some(bytes)) = (appended, value) {
                let items = Journal::items_from(key, bytes, *from)?;
                pending.items.extend(items.into_iter().map(|(seq, metric)| PendingItem { shard, seq, metric }));
            }
        }
        Ok(Some(pending))
    }
}

fn join(numbers: impl Iterator<Item = u64>) -> String {
    numbers.map(|n| n.to_string()).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_shards_read_as_empty_and_states_track_appends_not_folds() {
        let keys = journal_keys("t");
        let mut journal = Journal::default();
        journal.append(Metric::new("a", "t", 1.0, 5));
        let mut values = vec![None; SHARDS];
        values[3] = Some(journal.encode());
        let pending = Pending::decode(&keys, &values).unwrap();
        assert_eq!(pending.items.len(), 1);
        assert_eq!((pending.items[0].shard, pending.items[0].seq), (3, 1));
        let headers = Pending::headers(&keys, &values).unwrap();
        assert_eq!(headers, pending.headers);
        let before = Pending::state(&headers);
        journal.trim_through(1);
        values[3] = Some(journal.encode());
        assert_eq!(Pending::state(&Pending::headers(&keys, &values).unwrap()), before, "a fold changes no metric");
    }

    #[test]
    fn items_since_a_state_are_the_new_ones_while_the_journal_still_holds_them() {
        let keys = journal_keys("t");
        let mut journals: Vec<Journal> = (0..SHARDS).map(|_| Journal::default()).collect();
        let encode = |journals: &[Journal]| journals.iter().map(|j| (j.next_seq() > 1).then(|| j.encode())).collect::<Vec<_>>();
        journals[0].append(Metric::new("a", "t", 1.0, 5));
        journals[5].append(Metric::new("b", "t", 2.0, 5));
        let state = Pending::state(&Pending::headers(&keys, &encode(&journals)).unwrap());
        journals[5].append(Metric::new("c", "t", 3.0, 6));
        journals[9].append(Metric::new("d", "t", 4.0, 7));
        // Old items folded since change nothing: they were in the state.
        journals[0].trim_through(1);
        let values = encode(&journals);
        let since = Pending::since(&keys, &values, &state).unwrap().expect("every new item is still in the journal");
        let new: Vec<(usize, u64, &str)> = since.items.iter().map(|i| (i.shard, i.seq, i.metric.id.as_str())).collect();
        assert_eq!(new, [(5, 2, "c"), (9, 1, "d")]);
        assert_eq!(since.headers, Pending::headers(&keys, &values).unwrap());
        assert!(Pending::since(&keys, &values, &Pending::state(&since.headers)).unwrap().unwrap().items.is_empty());
        // A new item folded and trimmed already is no longer in the journal.
        journals[9].trim_through(1);
        assert_eq!(Pending::since(&keys, &encode(&journals), &state).unwrap(), None);
        assert_eq!(Pending::since(&keys, &values, "1,2").unwrap(), None, "a state of another shape");
        assert_eq!(Pending::since(&keys, &values, "junk").unwrap(), None);
    }
}
