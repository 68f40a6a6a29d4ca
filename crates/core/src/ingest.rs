//! Storing one metric: claim its client id (if it has one), append it to a
//! journal shard (one write: the acknowledgement), register a new type, and
//! fold the shard when the append made it due.
//!
//! Durable writes per metric: one append, plus one claim with a client id,
//! plus a fold's share (about 7 writes per [`FOLD_EVERY`] metrics while they
//! arrive in one second; more when they are spread out in time).

use std::collections::{BTreeMap, HashMap};

use crate::fold::{fold, Folded};
use crate::journal::{shard_of_id, Journal, FOLD_EVERY, SHARDS};
use crate::keys::{claim_key, entries_key, journal_key, TYPES_KEY};
use crate::kv::{second_of, update, Change, Kv, StoreError};
use crate::metric::Metric;
use crate::entries::Entries;

/// What became of a metric.
#[derive(Debug, Clone, PartialEq)]
pub enum Ingested {
    /// Stored now. `fold` is the fold this ingest ran, if the shard was due;
    /// a failed fold loses nothing (the items stay in the journal for the
    /// next). `retention` is set if recording the user's activity failed.
    Stored { shard: usize, fold: Option<Result<Folded, StoreError>>, retention: Option<StoreError> },
    /// The id was stored before, with the same content.
    Duplicate,
    /// The id belongs to a metric with different content.
    Conflict,
    /// The id was claimed by a request that has not finished storing it (or died trying).
    InProgress,
}

/// How long a re-post waits for the first post of its id to be stored.
const DUPLICATE_POLLS: usize = 20;
const DUPLICATE_POLL_MS: u64 = 50;

/// A 40-bit fingerprint of what a metric says (not its id): claims add it
/// to the id's counter, so a re-post learns whether the first post said the
/// same thing without another read.
fn fingerprint(metric: &Metric) -> i64 {
    let text = format!(
        "{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}",
        metric.metric_type,
        metric.value.to_bits(),
        metric.timestamp_ms,
        metric.user_id.as_deref().unwrap_or("\u{1}"),
        metric.properties.as_deref().unwrap_or("\u{1}"),
    );
    ((xxhash_rust::xxh3::xxh3_64(text.as_bytes()) & ((1 << 40) - 1)) | 1) as i64
}

/// Stores `metric`. With `client_id`, the id decides the shard and makes the
/// post idempotent; otherwise the metric goes to `shard` (pick it at random).
pub fn ingest<K: Kv>(kv: &mut K, metric: &Metric, client_id: bool, shard: usize) -> Result<Ingested, StoreError> {
    if !client_id {
        return append_and_fold(kv, metric, shard % crate::journal::SHARDS);
    }
    let claim = claim_key(&metric.id);
    let fp = fingerprint(metric);
    let total = kv.increment(&claim, fp)?;
    if total != fp {
        return earlier_post(kv, metric, total - fp, fp, DUPLICATE_POLLS);
    }
    let shard = shard_of_id(&metric.id);
    match append_and_fold(kv, metric, shard) {
        Ok(stored) => Ok(stored),
        Err(error) => {
            // Give the id back only if the metric surely is not stored.
            if let Ok(None) = find(kv, metric) {
                let _ = kv.increment(&claim, -fp);
            }
            Err(error)
        }
    }
}

/// A re-post: `before` is what earlier claims added up to; looks for the
/// stored metric up to `polls` times (the first post may still be storing it).
fn earlier_post<K: Kv>(kv: &mut K, metric: &Metric, before: i64, fp: i64, polls: usize) -> Result<Ingested, StoreError> {
    // Every earlier post carried this content iff the sum is a multiple of
    // its fingerprint (a collision needs 40-bit luck). A conflicting post
    // takes its share back, so the id's first content still shows through.
    if before <= 0 || before % fp != 0 {
        kv.increment(&claim_key(&metric.id), -fp)?;
        return Ok(Ingested::Conflict);
    }
    for attempt in 0..polls {
        if let Some(stored) = find(kv, metric)? {
            return Ok(if stored.same_content(metric) { Ingested::Duplicate } else { Ingested::Conflict });
        }
        if attempt + 1 < polls {
            kv.sleep_ms(DUPLICATE_POLL_MS);
        }
    }
    Ok(Ingested::InProgress)
}

/// The stored metric with `metric`'s id, looked up where the same content
/// would be: its journal shard, then (folded by now) its second's entries.
fn find<K: Kv>(kv: &mut K, metric: &Metric) -> Result<Option<Metric>, StoreError> {
    let keys = [journal_key(&metric.metric_type, shard_of_id(&metric.id)), entries_key(&metric.metric_type, second_of(metric.timestamp_ms))];
    let values = kv.get_many(&keys)?;
    if let Some(bytes) = &values[0] {
        if let Some(m) = Journal::decode(&keys[0], bytes)?.items.into_iter().find(|m| m.id == metric.id) {
            return Ok(Some(m));
        }
    }
    match &values[1] {
        Some(bytes) => Ok(Entries::decode(&keys[1], bytes)?.metrics.into_iter().find(|m| m.id == metric.id)),
        None => Ok(None),
    }
}

fn append_and_fold<K: Kv>(kv: &mut K, metric: &Metric, shard: usize) -> Result<Ingested, StoreError> {
    let fold = append_and_fold_many(kv, std::slice::from_ref(metric), shard)?;
    let retention = record_activity(kv, metric).err();
    Ok(Ingested::Stored { shard, fold, retention })
}

/// The user's activity for retention, once the metric is stored; the token
/// is the metric's own (ids are unique per stored metric).
fn record_activity<K: Kv>(kv: &mut K, metric: &Metric) -> Result<usize, StoreError> {
    crate::retention::record(kv, metric, crate::journal::id_hash(&metric.id) | 1)
}

/// Appends `metrics` (all of one type) to one shard in one write, registers
/// a new type, and folds the shard if the appends made it due.
fn append_and_fold_many<K: Kv>(kv: &mut K, metrics: &[Metric], shard: usize) -> Result<Option<Result<Folded, StoreError>>, StoreError> {
    let metric_type = &metrics[0].metric_type;
    let (journal, before, new_shard) = append(kv, metrics, shard)?;
    if new_shard {
        register_type(kv, metric_type)?;
    }
    Ok(journal.due_since(before).then(|| fold(kv, metric_type, shard, &journal)))
}

/// Appends the `metrics` the shard does not hold yet; returns the shard as
/// written, its length before, and whether this append created it.
fn append<K: Kv>(kv: &mut K, metrics: &[Metric], shard: usize) -> Result<(Journal, usize, bool), StoreError> {
    let key = journal_key(&metrics[0].metric_type, shard);
    let mut created = false;
    update(kv, &key, |current| {
        let mut journal = match current {
            Some(bytes) => Journal::decode(&key, bytes)?,
            None => {
                created = true;
                Journal::default()
            }
        };
        let before = journal.items.len();
        let missing: Vec<&Metric> = metrics.iter().filter(|m| !journal.holds(&m.id)).collect();
        if missing.is_empty() {
            return Ok(Change::Done((journal, before, created)));
        }
        for metric in missing {
            journal.append(metric.clone());
        }
        Ok(Change::Write(journal.encode(), (journal, before, created)))
    })
}

/// What became of each item of a batch.
pub type BatchOutcome = Vec<Result<Ingested, StoreError>>;

/// Stores a batch: `(metric, has a client id)` pairs. Each item ends like a
/// single ingest would, but each journal shard a batch touches is written
/// once for all its items, and folded at most once. The same client id
/// twice in one batch is one metric and one duplicate (or conflict).
pub fn ingest_batch<K: Kv>(kv: &mut K, items: &[(Metric, bool)], random: u64) -> BatchOutcome {
    let mut outcome: Vec<Option<Result<Ingested, StoreError>>> = vec![None; items.len()];
    let mut first_of_id: HashMap<&str, usize> = HashMap::new();
    // (type, shard) -> indexes to store there.
    let mut groups: BTreeMap<(&str, usize), Vec<usize>> = BTreeMap::new();
    for (index, (metric, client_id)) in items.iter().enumerate() {
        if !client_id {
            let shard = ((random ^ crate::journal::id_hash(&metric.metric_type)) % SHARDS as u64) as usize;
            groups.entry((&metric.metric_type, shard)).or_default().push(index);
            continue;
        }
        if let Some(&first) = first_of_id.get(metric.id.as_str()) {
            let same = items[first].0.same_content(metric);
            outcome[index] = Some(Ok(if same { Ingested::Duplicate } else { Ingested::Conflict }));
            continue;
        }
        first_of_id.insert(&metric.id, index);
        let fp = fingerprint(metric);
        match kv.increment(&claim_key(&metric.id), fp) {
            Ok(total) if total == fp => groups.entry((&metric.metric_type, shard_of_id(&metric.id))).or_default().push(index),
            Ok(total) => outcome[index] = Some(earlier_post(kv, metric, total - fp, fp, 1)),
            Err(e) => outcome[index] = Some(Err(e)),
        }
    }
    for ((_, shard), indexes) in groups {
        let metrics: Vec<Metric> = indexes.iter().map(|&i| items[i].0.clone()).collect();
        match append_and_fold_many(kv, &metrics, shard) {
            Ok(fold) => {
                // One activity record per user and day of the group.
                let mut seen = std::collections::HashSet::new();
                for (n, &i) in indexes.iter().enumerate() {
                    let metric = &items[i].0;
                    let day = metric.timestamp_ms.div_euclid(86_400_000);
                    let retention = match &metric.user_id {
                        Some(user) if seen.insert((user.clone(), day)) => record_activity(kv, metric).err(),
                        _ => None,
                    };
                    // The group's fold is reported once, with its first item.
                    let fold = if n == 0 { fold.clone() } else { None };
                    outcome[i] = Some(Ok(Ingested::Stored { shard, fold, retention }));
                }
            }
            Err(error) => {
                for &i in &indexes {
                    let (metric, client_id) = &items[i];
                    if *client_id {
                        if let Ok(None) = find(kv, metric) {
                            let _ = kv.increment(&claim_key(&metric.id), -fingerprint(metric));
                        }
                    }
                    outcome[i] = Some(Err(error.clone()));
                }
            }
        }
    }
    outcome.into_iter().map(|o| o.unwrap_or_else(|| Err(StoreError::Store("item not processed".into())))).collect()
}

/// Adds a type to the registry the all-types listing walks.
pub fn register_type<K: Kv>(kv: &mut K, metric_type: &str) -> Result<(), StoreError> {
    update(kv, TYPES_KEY, |current| {
        let mut types: Vec<String> = match current {
            Some(bytes) => serde_json::from_slice(bytes).map_err(|e| StoreError::corrupt(TYPES_KEY, e))?,
            None => Vec::new(),
        };
        match types.binary_search_by(|t| t.as_str().cmp(metric_type)) {
            Ok(_) => Ok(Change::Done(())),
            Err(pos) => {
                types.insert(pos, metric_type.to_string());
                Ok(Change::Write(serde_json::to_vec(&types).unwrap_or_default(), ()))
            }
        }
    })
}

/// The registered types.
pub fn types(reader: &mut dyn crate::kv::Reader) -> Result<Vec<String>, StoreError> {
    match reader.get(TYPES_KEY)? {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::corrupt(TYPES_KEY, e)),
        None => Ok(Vec::new()),
    }
}

/// Folds every shard of `metric_type` that holds items (for tests and tools).
pub fn fold_all<K: Kv>(kv: &mut K, metric_type: &str) -> Result<usize, StoreError> {
    let mut folded = 0;
    for shard in 0..crate::journal::SHARDS {
        let key = journal_key(metric_type, shard);
        if let Some(bytes) = kv.get(&key)? {
            folded += fold(kv, metric_type, shard, &Journal::decode(&key, &bytes)?)?.items;
        }
    }
    Ok(folded)
}

const _: () = assert!(FOLD_EVERY > 1);
