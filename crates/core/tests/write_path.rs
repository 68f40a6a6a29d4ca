//! The write path's guarantees, on the in-memory model of Spin's stores:
//! concurrent ingests (with re-posted client ids) are each counted once on
//! every store Spin offers, Spin v4.0.2's Redis store included; a request
//! that dies after any of its writes loses no acknowledged metric and counts
//! none twice; and every read sees every acknowledged metric.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use analytics_core::ingest::{fold_all, ingest, Ingested};
use analytics_core::kv::{Kv, StoreError};
use analytics_core::listing::{list, Cursor, ListRequest};
use analytics_core::memory_store::{MemoryStore, SwapBehaviour};
use analytics_core::metric::Metric;
use analytics_core::pending::Pending;
use analytics_core::query::Query;
use analytics_core::summary::{window_aggregate, SummaryRequest};

const NOW: i64 = 1_771_416_000_500;
const BEHAVIOURS: [SwapBehaviour; 3] = [SwapBehaviour::SpinSqlite, SwapBehaviour::Correct, SwapBehaviour::SpinV4_0_2];

fn metric(id: &str, t: &str, value: f64, ts: i64) -> Metric {
    Metric::new(id, t, value, ts)
}

/// Count and sum over all time, as a summary reports them.
fn totals(store: &MemoryStore, t: &str) -> (u64, f64) {
    let mut reader = store.request();
    let request = SummaryRequest::parse(&Query::parse(&format!("type={t}")).unwrap(), NOW).unwrap();
    let pending = Pending::read(&mut reader, t).unwrap();
    let window = window_aggregate(&mut reader, &request, &pending).unwrap();
    (window.count, window.sum)
}

/// Every id a full listing of `t` returns, page by page.
fn listed(store: &MemoryStore, t: &str) -> Vec<String> {
    let mut reader = store.request();
    let mut request = ListRequest::parse(&Query::parse(&format!("type={t}&limit=97")).unwrap()).unwrap();
    let mut ids = Vec::new();
    loop {
        let page = list(&mut reader, &request, &[]).unwrap();
        ids.extend(page.metrics.iter().map(|m| m.id.clone()));
        match page.next {
            Some(next) => request.cursor = Some(Cursor::decode(&next.encode()).unwrap()),
            None => return ids,
        }
    }
}

#[test]
fn concurrent_ingests_are_each_counted_once_on_every_store() {
    for behaviour in BEHAVIOURS {
        let mut store = MemoryStore::with_swaps(behaviour);
        store.real_sleep = true;
        let threads = 8;
        let per_thread = 150;
        let acknowledged = Arc::new(Mutex::new(BTreeMap::new()));
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let (mut kv, acknowledged) = (store.request(), acknowledged.clone());
                std::thread::spawn(move || {
                    for i in 0..per_thread {
                        // Every fifth metric carries a client id that every thread posts.
                        let shared = i % 5 == 0;
                        let id = if shared { format!("shared-{i}") } else { format!("t{thread}-{i}") };
                        let value = i as f64;
                        let m = metric(&id, "load", value, NOW - (i as i64 % 90) * 1_000);
                        match ingest(&mut kv, &m, shared, thread * 7 + i, None).unwrap() {
                            Ingested::Stored { fold, .. } => {
                                if let Some(Err(e)) = fold {
                                    panic!("{behaviour:?}: fold failed: {e}");
                                }
                                // A shared id may be stored by whichever of its posts appends first;
                                // the others that were under way at the time say stored too.
                                let earlier = acknowledged.lock().unwrap().insert(id, value);
                                assert!(earlier.is_none() || shared, "stored twice");
                            }
                            Ingested::Duplicate => assert!(shared),
                            Ingested::Conflict => panic!("same content reported as a conflict"),
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        let acknowledged = acknowledged.lock().unwrap().clone();
        let expected = (threads * per_thread * 4 / 5 + per_thread / 5) as u64;
        assert_eq!(acknowledged.len() as u64, expected, "{behaviour:?}");
        let sum: f64 = acknowledged.values().sum();
        assert_eq!(totals(&store, "load"), (expected, sum), "{behaviour:?}");
        let mut ids = listed(&store, "load");
        assert_eq!(ids.len() as u64, expected, "{behaviour:?}: the listing has each metric once");
        ids.sort();
        assert!(ids.iter().cloned().eq(acknowledged.keys().cloned()));
        // Folding what is left changes no answer.
        let mut kv = store.request();
        fold_all(&mut kv, "load", None).unwrap();
        assert_eq!(totals(&store, "load"), (expected, sum), "{behaviour:?}");
        assert_eq!(listed(&store, "load").len() as u64, expected);
    }
}

/// Posts `count` metrics one after another; the request for metric `dies_at`
/// dies after `writes` writes. Returns what the clients were told was stored.
fn run_with_a_crash(behaviour: SwapBehaviour, with_ids: bool, dies_at: usize, writes: usize) -> (MemoryStore, BTreeMap<String, f64>, Option<String>) {
    let store = MemoryStore::with_swaps(behaviour);
    let mut acknowledged = BTreeMap::new();
    let mut lost_request = None;
    for i in 0..200 {
        let m = metric(&format!("m{i}"), "crash", i as f64, NOW - (i as i64 % 7) * 1_000);
        let mut kv = store.request();
        if i == dies_at {
            kv.writes_left = Some(writes);
        }
        match ingest(&mut kv, &m, with_ids, i % 3, None) {
            Ok(Ingested::Stored { .. }) => {
                acknowledged.insert(m.id.clone(), m.value);
            }
            Ok(other) => panic!("{other:?}"),
            Err(StoreError::Store(_)) if i == dies_at => {
                lost_request = Some(m.id.clone());
                if with_ids {
                    // The client retries; the id makes that safe.
                    let mut retry = store.request();
                    match ingest(&mut retry, &m, true, 0, None).unwrap() {
                        Ingested::Stored { .. } | Ingested::Duplicate => {
                            acknowledged.insert(m.id.clone(), m.value);
                        }
                        Ingested::Conflict => panic!("a retry is not a conflict"),
                    }
                }
            }
            Err(e) => panic!("{e}"),
        }
    }
    (store, acknowledged, lost_request)
}

#[test]
fn a_request_that_dies_after_any_write_loses_nothing_acknowledged_and_counts_nothing_twice() {
    for behaviour in BEHAVIOURS {
        for with_ids in [false, true] {
            // The 64th append to shard 0 (metric 189) folds: die at every write of that request.
            for writes in 0..40 {
                let (store, acknowledged, lost) = run_with_a_crash(behaviour, with_ids, 189, writes);
                let (count, sum) = totals(&store, "crash");
                let acked_sum: f64 = acknowledged.values().sum();
                let ids: HashSet<String> = listed(&store, "crash").into_iter().collect();
                for id in acknowledged.keys() {
                    assert!(ids.contains(id), "{behaviour:?} ids={with_ids} writes={writes}: {id} lost");
                }
                // The dead request's metric may or may not have landed, but once at
                // most; with an id, its retry stored it wherever the first attempt died.
                let extra = count - acknowledged.len() as u64;
                assert!(extra <= 1, "{behaviour:?} ids={with_ids} writes={writes}: {extra} extra");
                if with_ids {
                    assert_eq!(extra, 0, "{behaviour:?} writes={writes}: the retry stored it, once");
                    assert_eq!(acknowledged.len(), 200, "{behaviour:?} writes={writes}: every id stored");
                }
                if extra == 1 {
                    let lost = lost.clone().expect("only the dead request can add an unacknowledged metric");
                    assert!(ids.contains(&lost) && sum == acked_sum + 189.0);
                } else {
                    assert_eq!(sum, acked_sum);
                }
                assert_eq!(ids.len() as u64, count, "the listing agrees with the count");
                // Later folds repair what the dead one left half done.
                let mut kv = store.request();
                fold_all(&mut kv, "crash", None).unwrap();
                assert_eq!(totals(&store, "crash"), (count, sum), "{behaviour:?} ids={with_ids} writes={writes}");
                if lost.is_none() {
                    break;
                }
            }
        }
    }
}

#[test]
fn a_re_posted_id_with_other_content_is_a_conflict_and_stores_nothing() {
    let mut kv = MemoryStore::default();
    let first = metric("order-1", "orders", 3.0, NOW);
    assert!(matches!(ingest(&mut kv, &first, true, 0, None).unwrap(), Ingested::Stored { .. }));
    assert_eq!(ingest(&mut kv, &first, true, 5, None).unwrap(), Ingested::Duplicate);
    for changed in [metric("order-1", "orders", 4.0, NOW), metric("order-1", "orders", 3.0, NOW - 1), metric("order-1", "other", 3.0, NOW)] {
        assert_eq!(ingest(&mut kv, &changed, true, 0, None).unwrap(), Ingested::Conflict, "{changed:?}");
    }
    // A retry of the original still answers as a duplicate after the conflicts.
    assert_eq!(ingest(&mut kv, &first, true, 0, None).unwrap(), Ingested::Duplicate);
    assert_eq!(totals(&kv, "orders"), (1, 3.0));
    assert_eq!(totals(&kv, "other"), (0, 0.0));
}

#[test]
fn writes_per_metric_stay_near_one() {
    for behaviour in BEHAVIOURS {
        let store = MemoryStore::with_swaps(behaviour);
        let mut writes = 0;
        let n = 16 * 64 * 4;
        for i in 0..n {
            // 500 metrics a second, as a busy type under `spin up` would see.
            let m = metric(&format!("m{i}"), "busy", 1.0, NOW + (i as i64 * 2));
            let mut kv = store.request();
            ingest(&mut kv, &m, false, i, None).unwrap();
            writes += kv.writes;
        }
        let per_metric = writes as f64 / n as f64;
        assert!(per_metric < 1.25, "{behaviour:?}: {per_metric:.3} writes per metric");
    }
}

#[test]
fn the_store_error_of_a_dead_request_is_reported() {
    let mut kv = MemoryStore::default();
    kv.writes_left = Some(0);
    assert!(ingest(&mut kv, &metric("a", "t", 1.0, NOW), false, 0, None).is_err());
    assert!(kv.increment("x", 1).is_err());
}


#[test]
fn a_batch_writes_each_shard_once_and_keeps_ids_idempotent() {
    use analytics_core::ingest::ingest_batch;
    for behaviour in BEHAVIOURS {
        let store = MemoryStore::with_swaps(behaviour);
        // 500 metrics without ids, 20 with ids, one id twice (same content), one twice with other content.
        let mut items: Vec<(Metric, bool)> = (0..500).map(|i| (metric(&format!("a{i}"), "batch", 1.0, NOW - (i % 3) * 1_000), false)).collect();
        items.extend((0..20).map(|i| (metric(&format!("id-{i}"), "batch", 2.0, NOW), true)));
        items.push((metric("id-3", "batch", 2.0, NOW), true));
        items.push((metric("id-4", "batch", 9.0, NOW), true));
        let mut kv = store.request();
        let outcome = ingest_batch(&mut kv, &items, 7, None);
        let stored = outcome.iter().filter(|o| matches!(o, Ok(Ingested::Stored { .. }))).count();
        assert_eq!(stored, 520, "{behaviour:?}");
        assert_eq!(outcome[520], Ok(Ingested::Duplicate));
        assert_eq!(outcome[521], Ok(Ingested::Conflict));
        // 20 claims, one append to the id-less shard, at most 16 for the ids, then the folds.
        assert!(kv.writes < 20 + 1 + 16 + 40, "{behaviour:?}: {} writes", kv.writes);
        assert_eq!(totals(&store, "batch"), (520, 540.0), "{behaviour:?}");
        // The same batch again: every id is a duplicate, nothing is stored twice.
        let again: Vec<(Metric, bool)> = items[500..520].to_vec();
        let outcome = ingest_batch(&mut store.request(), &again, 8, None);
        assert!(outcome.iter().all(|o| *o == Ok(Ingested::Duplicate)), "{outcome:?}");
        assert_eq!(totals(&store, "batch"), (520, 540.0));
        assert_eq!(listed(&store, "batch").len(), 520);
    }
}

/// A first post of an id stalls before each of its operations in turn
/// (claim, append, fold...). Meanwhile its client retries (the retry stores
/// the metric) and enough other metrics arrive in the same shard to fold it
/// several times over, past what the shard remembers of trimmed ids. When
/// the first post resumes, it must add nothing: the metric is counted and
/// listed once.
#[test]
fn a_first_post_that_resumes_after_its_retry_and_many_folds_adds_nothing() {
    use analytics_core::journal::{shard_of_id, FOLD_EVERY, TRIMMED_MEMORY};
    for behaviour in BEHAVIOURS {
        for stalled_at in 0..8 {
            let store = MemoryStore::with_swaps(behaviour);
            let slow = metric("order-7", "orders", 7.0, NOW);
            let shard = shard_of_id(&slow.id);
            let others = TRIMMED_MEMORY + 2 * FOLD_EVERY;
            // The shard exists already: stalls while a key is being created
            // are `kv::update`'s concern (and its tests').
            ingest(&mut store.request(), &metric("filler-first", "orders", 1.0, NOW - 999), false, shard, None).unwrap();
            let mut first = store.request();
            let (background, retry) = (store.clone(), slow.clone());
            first.stall_before(stalled_at, move || {
                let outcome = ingest(&mut background.request(), &retry, true, 0, None);
                // Before the claim, the retry is the first post; after it, a re-post
                // (a duplicate: the id was posted before) that stores the metric.
                assert!(matches!(outcome, Ok(Ingested::Stored { .. } | Ingested::Duplicate)), "{outcome:?}");
                for i in 0..others {
                    let m = metric(&format!("filler-{i}"), "orders", 1.0, NOW - 1_000 - i as i64);
                    ingest(&mut background.request(), &m, false, shard, None).unwrap();
                }
            });
            let outcome = ingest(&mut first, &slow, true, 0, None).unwrap();
            if first.stall_pending() {
                assert!(stalled_at > 2, "{behaviour:?}: the post ended after {stalled_at} operations");
                break;
            }
            assert!(matches!(outcome, Ingested::Stored { .. } | Ingested::Duplicate), "{behaviour:?} at {stalled_at}: {outcome:?}");
            let expected = (others as u64 + 2, others as f64 + 8.0);
            assert_eq!(totals(&store, "orders"), expected, "{behaviour:?}, stalled before operation {stalled_at}");
            let listed = listed(&store, "orders");
            assert_eq!(listed.iter().filter(|id| *id == "order-7").count(), 1, "{behaviour:?} at {stalled_at}");
            assert_eq!(listed.len() as u64, expected.0);
            assert_eq!(ingest(&mut store.request(), &slow, true, 3, None).unwrap(), Ingested::Duplicate);
        }
    }
}

/// Every point at which the first post of an id can die leaves an id that
/// a retry stores, once: nothing is ever stuck "in progress".
#[test]
fn an_id_whose_first_post_died_anywhere_is_stored_by_its_retry() {
    for behaviour in BEHAVIOURS {
        for writes in 0..12 {
            let store = MemoryStore::with_swaps(behaviour);
            // A shard close to folding, so the dying post's writes include a fold's.
            for i in 0..63 {
                let m = metric(&format!("before-{i}"), "pay", 1.0, NOW - i * 1_000);
                ingest(&mut store.request(), &m, false, analytics_core::journal::shard_of_id("pay-1"), None).unwrap();
            }
            let m = metric("pay-1", "pay", 5.0, NOW);
            let mut dying = store.request();
            dying.writes_left = Some(writes);
            let died = ingest(&mut dying, &m, true, 0, None).is_err();
            let retried = ingest(&mut store.request(), &m, true, 0, None).unwrap();
            if died {
                assert!(matches!(retried, Ingested::Stored { .. } | Ingested::Duplicate), "{behaviour:?} {writes}: {retried:?}");
            } else {
                assert_eq!(retried, Ingested::Duplicate);
            }
            assert_eq!(totals(&store, "pay"), (64, 68.0), "{behaviour:?}, died after {writes} writes");
            assert_eq!(listed(&store, "pay").iter().filter(|id| *id == "pay-1").count(), 1);
            if !died {
                break;
            }
        }
    }
}

/// Two folds of one shard overlap when more items reach it while the first
/// runs: one folds the shard as it read it (64 items), another the shard
/// grown to 128, or both the same snapshot. One stalls before each of its
/// operations in turn while the others run whole. Whoever wins
/// each second's aggregate, every metric is counted and listed once, every
/// entry chunk stored is listed by its second (so retention can find it),
/// and no metric is stored in two chunks (PostgreSQL keeps each chunk's
/// metrics as rows of `analytics_metrics`).
#[test]
fn overlapping_folds_of_a_shard_store_each_metric_in_one_listed_chunk() {
    use analytics_core::aggregate::Aggregate;
    use analytics_core::entries::Chunk;
    use analytics_core::fold::fold;
    use analytics_core::journal::Journal;
    use analytics_core::keys::journal_key;
    let (t, shard) = ("overlap", 5);
    // Spread over 5 seconds, so each second gets items from both folds.
    fn journal(t: &str, prefix: &str, items: usize) -> Journal {
        let mut journal = Journal::default();
        for i in 0..items {
            journal.append(metric(&format!("{prefix}-{i}"), t, i as f64, NOW - (i % 5) as i64 * 1_000));
        }
        journal
    }
    let snapshot = move |items: usize| journal(t, "m", items);
    // The stalled fold's items, and the folds that run whole meanwhile.
    let cases: [(usize, &[usize]); 5] = [(64, &[128]), (128, &[64]), (128, &[128]), (96, &[128]), (128, &[64, 128])];
    for behaviour in BEHAVIOURS {
        for (stalled, others) in cases {
            for stalled_at in 0..40 {
                let store = MemoryStore::with_swaps(behaviour);
                let key = journal_key(t, shard);
                // Another shard's fold created the aggregates: stalls while a key
                // is being created are `kv::update`'s concern (and its tests').
                let other_shard = journal(t, "other", 5);
                store.load([(journal_key(t, shard + 1), other_shard.encode())]);
                fold(&mut store.request(), t, shard + 1, &other_shard, None).unwrap();
                store.load([(key.clone(), snapshot(128).encode())]);
                let mut first = store.request();
                let background = store.clone();
                first.stall_before(stalled_at, move || {
                    for &other in others {
                        fold(&mut background.request(), t, shard, &snapshot(other), None).unwrap();
                    }
                });
                fold(&mut first, t, shard, &snapshot(stalled), None).unwrap();
                let case = format!("{behaviour:?}: {stalled} items stalled before operation {stalled_at}, {others:?} meanwhile");
                if first.stall_pending() {
                    // The first fold ended before that operation; run the others after it.
                    for &other in others {
                        fold(&mut store.request(), t, shard, &snapshot(other), None).unwrap();
                    }
                }
                // Whatever the two left, the next fold of the whole shard completes it.
                fold(&mut store.request(), t, shard, &Journal::decode(&key, &store.value(&key).unwrap()).unwrap(), None).unwrap();
                assert_eq!(totals(&store, t), (133, (0..128).chain(0..5).sum::<usize>() as f64), "{case}");
                let mut ids = listed(&store, t);
                ids.sort();
                ids.dedup();
                assert_eq!(ids.len(), 133, "{case}: listed once each");
                let values = store.snapshot();
                let listed_chunks: HashSet<String> = values
                    .iter()
                    .filter(|(k, _)| k.starts_with(&format!("agg:{t}:s:")))
                    .flat_map(|(k, v)| {
                        let second: i64 = k.rsplit(':').next().unwrap().parse().unwrap();
                        Aggregate::decode(v).unwrap().chunks.into_iter().map(move |c| c.key(t, second))
                    })
                    .collect();
                let mut stored = Vec::new();
                for (k, v) in values.iter().filter(|(k, _)| k.starts_with("ent:")) {
                    assert!(listed_chunks.contains(k), "{case}: chunk {k} is listed by no aggregate");
                    stored.extend(Chunk::decode(k, v).unwrap().items.into_iter().map(|(_, m)| m.id));
                }
                stored.sort();
                let total = stored.len();
                stored.dedup();
                assert_eq!((total, stored.len()), (133, 133), "{case}: every metric in exactly one chunk");
            }
        }
    }
}
