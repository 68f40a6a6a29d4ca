//! Storing one metric: claim its client id (if it has one), append it to a
//! journal shard (one write: the acknowledgement), register a new type, and
//! fold the shard when the append made it due.
//!
//! Durable writes per metric: one append, plus one claim with a client id,
//! plus a fold's share (about 7 writes per [`FOLD_EVERY`] metrics while they
//! arrive in one second; more when they are spread out in time).

use std::collections::{BTreeMap, HashMap};

use crate::expiry::Expiry;
use crate::fold::{fold, Folded};
use crate::journal::{shard_of_id, Journal, FOLD_EVERY, SHARDS};
use crate::aggregate::Aggregate;
use crate::entries::{Chunk, ChunkRef};
use crate::keys::{bucket_key, claim_key, journal_key, TYPES_KEY};
use crate::time::{Bucket, Level};
use crate::kv::{second_of, update, update_watched, Change, Kv, StoreError};
use crate::metric::Metric;

/// What became of a metric.
#[derive(Debug, Clone, PartialEq)]
pub enum Ingested {
    /// Stored now (by this request, or by a request with the same id that
    /// was still under way). `fold` is the fold this ingest ran, if the shard
    /// was due; a failed fold loses nothing (the items stay in the journal
    /// for the next). `retention` is set if recording the user's activity failed.
    Stored { shard: usize, fold: Option<Result<Folded, StoreError>>, retention: Option<StoreError> },
    /// The id was stored before, with the same content.
    Duplicate,
    /// The id belongs to a metric with different content.
    Conflict,
}

/// How often a re-post looks for its id again when the shard was folded
/// more than it remembers between its look and its append (each time takes
/// two whole folds of one shard in between).
const RECHECKS: usize = 4;

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

/// What an appender knows of a metric's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    /// Made by the server: no other request has it.
    Unique,
    /// A client id that was in neither its journal shard nor its second's
    /// entries while the shard was folded through this `seq`. Appended
    /// later, it is in the shard's items or its trimmed memory, unless the
    /// shard was folded further than it remembers (then look again).
    AbsentAt(u64),
}

/// What one append did with one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Appended {
    /// Added by this append.
    Added,
    /// Already in the shard.
    Held,
    /// Not added: the shard was folded beyond what it remembers since the
    /// id was known absent; look for it again.
    Unsure,
}

/// Stores `metric`. With `client_id`, the id decides the shard and makes the
/// post idempotent; otherwise the metric goes to `shard` (pick it at random).
///
/// A client id is claimed first (a counter its posts add their content's
/// fingerprint to), which tells a re-post from a conflicting reuse. The
/// append is what stores: it is idempotent per id, so any post with the
/// same content may make it, and a post whose first attempt died is stored
/// by its retry, whenever and wherever that runs.
pub fn ingest<K: Kv>(kv: &mut K, metric: &Metric, client_id: bool, shard: usize, expiry: Option<Expiry>) -> Result<Ingested, StoreError> {
    if !client_id {
        let shard = shard % SHARDS;
        let watched = kv.watch(&journal_key(&metric.metric_type, shard))?;
        let (_, fold) = append_and_fold(kv, watched, &[(metric, Known::Unique)], shard, expiry)?;
        let retention = record_activity(kv, metric).err();
        return Ok(Ingested::Stored { shard, fold, retention });
    }
    let shard = shard_of_id(&metric.id);
    let key = journal_key(&metric.metric_type, shard);
    // Read before claiming: until the claim lands nobody appends this id,
    // so it is not in the shard as read here, nor was it ever folded.
    let watched = kv.watch(&key)?;
    let absent_at = folded_through(&key, watched.1.as_deref())?;
    let claim = claim_key(&metric.id);
    let fp = fingerprint(metric);
    let before = kv.increment(&claim, fp)? - fp;
    if before != 0 {
        // Every earlier post carried this content iff the sum is a multiple
        // of its fingerprint (a collision needs 40-bit luck). A conflicting
        // post takes its share back, so the id's first content shows through.
        if before < 0 || before % fp != 0 {
            kv.increment(&claim, -fp)?;
            return Ok(Ingested::Conflict);
        }
        return re_post(kv, metric, shard, expiry);
    }
    let stored = append_and_fold(kv, watched, &[(metric, Known::AbsentAt(absent_at))], shard, expiry).and_then(|(done, fold)| match done[0] {
        Appended::Added | Appended::Held => Ok(fold),
        Appended::Unsure => re_post(kv, metric, shard, expiry).map(|_| None),
    });
    match stored {
        Ok(fold) => {
            let retention = record_activity(kv, metric).err();
            Ok(Ingested::Stored { shard, fold, retention })
        }
        Err(error) => {
            // Give the id back only if the metric surely is not stored, so
            // the client may still send other content under it.
            if let Ok((None, _)) = find(kv, metric) {
                let _ = kv.increment(&claim, -fp);
            }
            Err(error)
        }
    }
}

/// A post of an id claimed before with the same content: a duplicate (the
/// id was posted before), after storing the metric if it is not stored yet
/// (the first post died, or is still under way: the append is idempotent
/// either way). Only a first post answers "stored".
fn re_post<K: Kv>(kv: &mut K, metric: &Metric, shard: usize, expiry: Option<Expiry>) -> Result<Ingested, StoreError> {
    for _ in 0..RECHECKS {
        let (found, absent_at) = find(kv, metric)?;
        if let Some(stored) = found {
            // Stored, but the first post may have died before its user's
            // activity was recorded (recording is idempotent).
            let _ = record_activity(kv, metric);
            return Ok(if stored.same_content(metric) { Ingested::Duplicate } else { Ingested::Conflict });
        }
        let watched = kv.watch(&journal_key(&metric.metric_type, shard))?;
        // A failed fold loses nothing: its items wait in the journal for the next.
        let (done, _fold) = append_and_fold(kv, watched, &[(metric, Known::AbsentAt(absent_at))], shard, expiry)?;
        match done[0] {
            Appended::Added => {
                let _ = record_activity(kv, metric);
                return Ok(Ingested::Duplicate);
            }
            Appended::Held => return Ok(Ingested::Duplicate),
            Appended::Unsure => continue,
        }
    }
    Err(StoreError::Contended { key: journal_key(&metric.metric_type, shard), attempts: RECHECKS })
}

/// The `seq` a shard (as read) is folded through; 0 when it does not exist.
fn folded_through(key: &str, value: Option<&[u8]>) -> Result<u64, StoreError> {
    value.map_or(Ok(0), |bytes| Journal::read_header(key, bytes).map(|h| h.folded_through))
}

/// The stored metric with `metric`'s id, looked up where the same content
/// would be: its journal shard, then (folded by now) the entry chunks its
/// shard's folds wrote for its second; and the `seq` the shard was folded
/// through when read. A fold writes the chunks and lists them in the
/// second's aggregate before it trims the shard, and the shard is read
/// first, so a metric appended before the read is found in one or the other.
fn find<K: Kv>(kv: &mut K, metric: &Metric) -> Result<(Option<Metric>, u64), StoreError> {
    let shard = shard_of_id(&metric.id);
    let second = second_of(metric.timestamp_ms);
    let keys = [journal_key(&metric.metric_type, shard), bucket_key(&metric.metric_type, Bucket { level: Level::Second, index: second })];
    let values = kv.get_many(&keys)?;
    let absent_at = folded_through(&keys[0], values[0].as_deref())?;
    if let Some(bytes) = &values[0] {
        if let Some(m) = Journal::decode(&keys[0], bytes)?.items.into_iter().find(|m| m.id == metric.id) {
            return Ok((Some(m), absent_at));
        }
    }
    let Some(bytes) = &values[1] else { return Ok((None, absent_at)) };
    let aggregate = Aggregate::decode(bytes).map_err(|e| StoreError::corrupt(&keys[1], e))?;
    let chunks: Vec<ChunkRef> = aggregate.chunks.into_iter().filter(|c| c.shard as usize == shard).collect();
    let chunk_keys: Vec<String> = chunks.iter().map(|c| c.key(&metric.metric_type, second)).collect();
    for ((key, value), reference) in chunk_keys.iter().zip(kv.get_many(&chunk_keys)?).zip(&chunks) {
        if let Some(bytes) = value {
            if let Some(m) = reference.metrics(Chunk::decode(key, &bytes)?).find(|m| m.id == metric.id) {
                return Ok((Some(m), absent_at));
            }
        }
    }
    Ok((None, absent_at))
}

/// The user's activity for retention, once the metric is stored; the token
/// is the metric's own (ids are unique per stored metric).
fn record_activity<K: Kv>(kv: &mut K, metric: &Metric) -> Result<usize, StoreError> {
    crate::retention::record(kv, metric, crate::journal::id_hash(&metric.id) | 1)
}

/// Appends `metrics` (all of one type) to shard `shard`, whose
/// compare-and-swap `watched` is open, in one write; registers a new type;
/// and folds the shard if the appends made it due. Says per metric what the
/// append did.
fn append_and_fold<K: Kv>(
    kv: &mut K,
    watched: (K::Cas, Option<Vec<u8>>),
    metrics: &[(&Metric, Known)],
    shard: usize,
    expiry: Option<Expiry>,
) -> Result<(Vec<Appended>, Option<Result<Folded, StoreError>>), StoreError> {
    let metric_type = &metrics[0].0.metric_type;
    let key = journal_key(metric_type, shard);
    let mut created = false;
    let (journal, before, done) = update_watched(kv, &key, watched, |current| {
        let mut journal = match current {
            Some(bytes) => Journal::decode(&key, bytes)?,
            None => {
                created = true;
                Journal::default()
            }
        };
        let before = journal.items.len();
        let done: Vec<Appended> = metrics
            .iter()
            .map(|(metric, known)| {
                if journal.holds(&metric.id) {
                    return Appended::Held;
                }
                match known {
                    Known::AbsentAt(seq) if journal.folded_through - seq.min(&journal.folded_through) > journal.trimmed.len() as u64 => {
                        Appended::Unsure
                    }
                    _ => Appended::Added,
                }
            })
            .collect();
        if !done.contains(&Appended::Added) {
            return Ok(Change::Done((journal, before, done)));
        }
        for ((metric, _), how) in metrics.iter().zip(&done) {
            if *how == Appended::Added {
                journal.append((*metric).clone());
            }
        }
        Ok(Change::Write(journal.encode(), (journal, before, done)))
    })?;
    if created {
        register_type(kv, metric_type)?;
    }
    let fold = journal.due_since(before).then(|| fold(kv, metric_type, shard, &journal, expiry));
    Ok((done, fold))
}

/// What became of each item of a batch.
pub type BatchOutcome = Vec<Result<Ingested, StoreError>>;

/// Stores a batch: `(metric, has a client id)` pairs. Each item ends like a
/// single ingest would, but each journal shard a batch touches is written
/// once for all its items, and folded at most once. The same client id
/// twice in one batch is one metric and one duplicate (or conflict).
pub fn ingest_batch<K: Kv>(kv: &mut K, items: &[(Metric, bool)], random: u64, expiry: Option<Expiry>) -> BatchOutcome {
    let mut outcome: Vec<Option<Result<Ingested, StoreError>>> = vec![None; items.len()];
    let mut first_of_id: HashMap<&str, usize> = HashMap::new();
    // (type, shard) -> (index, what is known of its id) to store there.
    let mut groups: BTreeMap<(&str, usize), Vec<(usize, Known)>> = BTreeMap::new();
    let mut claimed = Vec::new();
    for (index, (metric, client_id)) in items.iter().enumerate() {
        if !client_id {
            let shard = ((random ^ crate::journal::id_hash(&metric.metric_type)) % SHARDS as u64) as usize;
            groups.entry((&metric.metric_type, shard)).or_default().push((index, Known::Unique));
            continue;
        }
        if let Some(&first) = first_of_id.get(metric.id.as_str()) {
            let same = items[first].0.same_content(metric);
            outcome[index] = Some(Ok(if same { Ingested::Duplicate } else { Ingested::Conflict }));
            continue;
        }
        first_of_id.insert(&metric.id, index);
        claimed.push(index);
    }
    // The shards of the ids, read before claiming them (see `ingest`).
    let shard_keys: Vec<String> = claimed.iter().map(|&i| journal_key(&items[i].0.metric_type, shard_of_id(&items[i].0.id))).collect();
    let mut unique_keys = shard_keys.clone();
    unique_keys.sort();
    unique_keys.dedup();
    let absent_at: Result<HashMap<&String, u64>, StoreError> = kv.get_many(&unique_keys).and_then(|values| {
        unique_keys.iter().zip(&values).map(|(key, value)| Ok((key, folded_through(key, value.as_deref())?))).collect()
    });
    for (&index, key) in claimed.iter().zip(&shard_keys) {
        let metric = &items[index].0;
        let absent_at = match &absent_at {
            Ok(seqs) => seqs.get(key).copied().unwrap_or(0),
            Err(e) => {
                outcome[index] = Some(Err(e.clone()));
                continue;
            }
        };
        let fp = fingerprint(metric);
        match kv.increment(&claim_key(&metric.id), fp) {
            Ok(total) if total == fp => {
                groups.entry((&metric.metric_type, shard_of_id(&metric.id))).or_default().push((index, Known::AbsentAt(absent_at)));
            }
            Ok(total) if total - fp < 0 || (total - fp) % fp != 0 => {
                outcome[index] = Some(kv.increment(&claim_key(&metric.id), -fp).map(|_| Ingested::Conflict));
            }
            Ok(_) => outcome[index] = Some(re_post(kv, metric, shard_of_id(&metric.id), expiry)),
            Err(e) => outcome[index] = Some(Err(e)),
        }
    }
    for ((metric_type, shard), members) in groups {
        let metrics: Vec<(&Metric, Known)> = members.iter().map(|&(i, known)| (&items[i].0, known)).collect();
        let appended = kv
            .watch(&journal_key(metric_type, shard))
            .and_then(|watched| append_and_fold(kv, watched, &metrics, shard, expiry));
        match appended {
            Ok((done, fold)) => {
                // One activity record per user and day of the group.
                let mut seen = std::collections::HashSet::new();
                let mut fold = Some(fold);
                for (&(i, _), how) in members.iter().zip(done) {
                    let metric = &items[i].0;
                    if how == Appended::Unsure {
                        // Folded past its memory: the id is looked up again.
                        outcome[i] = Some(re_post(kv, metric, shard, expiry).map(|o| match o {
                            // A first post: stored, whoever finished it.
                            Ingested::Duplicate => Ingested::Stored { shard, fold: None, retention: None },
                            other => other,
                        }));
                        continue;
                    }
                    let day = metric.timestamp_ms.div_euclid(86_400_000);
                    let retention = match &metric.user_id {
                        Some(user) if seen.insert((user.clone(), day)) => record_activity(kv, metric).err(),
                        _ => None,
                    };
                    // The group's fold is reported once, with its first item.
                    outcome[i] = Some(Ok(Ingested::Stored { shard, fold: fold.take().flatten(), retention }));
                }
            }
            Err(error) => {
                for &(i, known) in &members {
                    let metric = &items[i].0;
                    if known != Known::Unique {
                        if let Ok((None, _)) = find(kv, metric) {
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
pub fn fold_all<K: Kv>(kv: &mut K, metric_type: &str, expiry: Option<Expiry>) -> Result<usize, StoreError> {
    let mut folded = 0;
    for shard in 0..crate::journal::SHARDS {
        let key = journal_key(metric_type, shard);
        if let Some(bytes) = kv.get(&key)? {
            folded += fold(kv, metric_type, shard, &Journal::decode(&key, &bytes)?, expiry)?.items;
        }
    }
    Ok(folded)
}

const _: () = assert!(FOLD_EVERY > 1);
