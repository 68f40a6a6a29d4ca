//! What a page of `GET /api/metrics/list` reads, counted: store calls, keys
//! and bytes per page, for 1, 20 and 200 types sharing 50 000 metrics over
//! a week (a skewed spread: a few busy types, a long tail of quiet ones whose
//! journals hold most of their metrics unfolded), for the first page and for
//! pages deep in the walk. Bytes are counted twice: as a store that reads
//! only the asked head of a value (the Redis store spoken to directly) and as
//! one that reads whole values (Spin's key-value store).
//!
//! `cargo test --release -p analytics-core --test listing_cost -- --nocapture`
//! prints the table with native times.

use std::time::Instant;

use analytics_core::ingest::{ingest, types, Ingested};
use analytics_core::kv::{Reader, StoreError};
use analytics_core::listing::{list, Cursor, ListRequest, JOURNAL_HEAD};
use analytics_core::memory_store::MemoryStore;
use analytics_core::metric::Metric;
use analytics_core::query::Query;

const NOW: i64 = 1_771_416_000_500;
const WEEK_MS: i64 = 7 * 86_400_000;
const METRICS: usize = 50_000;

/// What one page read.
#[derive(Debug, Clone, Copy, Default)]
struct Reads {
    calls: usize,
    keys: usize,
    journal_keys: usize,
    bytes: usize,
    /// Bytes by kind: journal heads read first, heads read again longer,
    /// journal shards read whole, the listing index, aggregates, entry
    /// chunks (keys included).
    by_kind: [usize; 6],
}

impl Reads {
    /// Bytes beyond the first read of the journals: what the walk itself costs.
    fn walk_bytes(&self) -> usize {
        self.bytes - self.by_kind[0]
    }

    fn walk_keys(&self) -> usize {
        self.keys - self.journal_keys
    }
}

/// How a store answers a read of heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    /// Only the asked bytes (the Redis store spoken to directly: GETRANGE).
    CutsHeads,
    /// Whole values (Spin's key-value store).
    Whole,
}

/// A reader that counts what it reads, answering heads as `store` does.
struct Counting<'a> {
    inner: &'a mut MemoryStore,
    store: Store,
    reads: Reads,
}

impl Counting<'_> {
    fn count(&mut self, keys: &[String], values: &[Option<Vec<u8>>], heads: usize) {
        let first = self.reads.calls == 0;
        self.reads.calls += 1;
        self.reads.keys += keys.len();
        self.reads.journal_keys += keys.iter().filter(|k| k.starts_with("jrn:")).count();
        for (i, (key, value)) in keys.iter().zip(values).enumerate() {
            let read = key.len() + value.as_ref().map_or(0, Vec::len);
            self.reads.bytes += read;
            let kind = match key.split(':').next() {
                Some("jrn") if i < heads && first => 0,
                Some("jrn") if i < heads => 1,
                Some("jrn") => 2,
                Some("lst") => 3,
                Some("agg") => 4,
                _ => 5,
            };
            self.reads.by_kind[kind] += read;
        }
    }
}

impl Reader for Counting<'_> {
    fn get_many(&mut self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let values = self.inner.get_many(keys)?;
        self.count(keys, &values, 0);
        Ok(values)
    }

    fn get_many_heads(&mut self, keys: &[String], heads: usize, bytes: usize) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut values = self.inner.get_many(keys)?;
        if self.store == Store::CutsHeads {
            for value in values.iter_mut().take(heads).flatten() {
                value.truncate(bytes);
            }
        }
        self.count(keys, &values, heads);
        Ok(values)
    }
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// 50 000 metrics over the week before `NOW`, posted one by one in time
/// order (so shards fold as they fill), over `types` types drawn with
/// weights 1/rank: with 200 types the busiest gets ~9 % and the quietest
/// ~0.05 % (about 25 metrics, all of them still in its journal).
fn scenario(type_count: usize) -> (MemoryStore, Vec<(i64, String)>) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ type_count as u64);
    let weights: Vec<f64> = (1..=type_count).map(|rank| 1.0 / rank as f64).collect();
    let total: f64 = weights.iter().sum();
    let mut cumulative = Vec::new();
    let mut sum = 0.0;
    for w in &weights {
        sum += w / total;
        cumulative.push(sum);
    }
    let mut stamps: Vec<i64> = (0..METRICS).map(|_| NOW - 1 - rng.below(WEEK_MS as u64) as i64).collect();
    stamps.sort_unstable();
    let mut store = MemoryStore::default();
    let mut expected = Vec::new();
    let (mut folds, mut indexed) = (0, 0);
    for (i, ts) in stamps.into_iter().enumerate() {
        let u = (rng.below(1 << 30) as f64) / (1u64 << 30) as f64;
        let t = cumulative.iter().position(|c| u < *c).unwrap_or(type_count - 1);
        let id = format!("01K{ts:013}{i:010}");
        let mut metric = Metric::new(id.clone(), format!("type_{t:03}"), (rng.below(10_000) as f64) / 10.0, ts);
        if i % 2 == 0 {
            metric.user_id = Some(format!("user-{}", rng.below(500)));
        }
        if let Ingested::Stored { fold: Some(Ok(folded)), .. } = ingest(&mut store, &metric, false, rng.below(16) as usize, None).unwrap() {
            (folds, indexed) = (folds + 1, indexed + folded.indexed);
        }
        expected.push((ts, id));
    }
    expected.sort_by(|a, b| b.cmp(a));
    let per_metric = store.writes as f64 / METRICS as f64;
    let share = indexed as f64 / store.writes as f64;
    println!(
        "{type_count:>3} types: {per_metric:.3} writes a metric, {folds} folds, {indexed} of the writes the listing index's ({:.2} a fold, {:.2} % of all)",
        indexed as f64 / folds.max(1) as f64,
        share * 100.0
    );
    // At most a write per type and hour with data: next to nothing of what folds write.
    assert!(share < 0.01, "{indexed} index writes of {}", store.writes);
    (store, expected)
}

fn request(query: &str, cursor: Option<&(i64, String)>) -> ListRequest {
    let mut request = ListRequest::parse(&Query::parse(query).unwrap()).unwrap();
    request.cursor = cursor.map(|(ts, id)| Cursor::decode(&format!("{ts}.{id}")).unwrap());
    request
}

/// One page after `position` (the first page when `None`), checked against
/// `expected`, with what it read and how long it took (ms).
fn page(store: &MemoryStore, kind: Store, query: &str, expected: &[(i64, String)], position: Option<usize>) -> (Reads, f64) {
    let mut handle = store.request();
    let registered = types(&mut handle).unwrap();
    let request = request(query, position.map(|p| &expected[p]));
    let mut counting = Counting { inner: &mut handle, store: kind, reads: Reads::default() };
    let started = Instant::now();
    let page = list(&mut counting, &request, &registered).unwrap();
    let elapsed = started.elapsed().as_secs_f64() * 1_000.0;
    let start = position.map_or(0, |p| p + 1);
    let want: Vec<&str> = expected[start..].iter().take(request.limit).map(|(_, id)| id.as_str()).collect();
    let got: Vec<&str> = page.metrics.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(got, want, "{query} after {position:?}");
    (counting.reads, elapsed)
}

/// The first page, and pages 10 % and 60 % of the way through the walk.
const DEPTHS: [(&str, Option<usize>); 3] = [("first", None), ("10 %", Some(METRICS / 10)), ("60 %", Some(METRICS * 6 / 10))];

/// A page of `query` at each depth, printed a row each.
fn measure(label: &str, store: &MemoryStore, kind: Store, query: &str, expected: &[(i64, String)]) -> Vec<Reads> {
    DEPTHS
        .iter()
        .map(|(depth, position)| {
            let (reads, ms) = page(store, kind, query, expected, *position);
            println!(
                "{label:<13} {kind:<9?} {depth:>5}  calls {:>3}  keys {:>5} (journal {:>5})  bytes {:>8}  [heads, relisted, shards, index, aggregates, chunks] {:?}  {ms:.2} ms",
                reads.calls, reads.keys, reads.journal_keys, reads.bytes, reads.by_kind
            );
            reads
        })
        .collect()
}

/// A page of every type reads about what a page of one type does, however
/// many types there are: no more store calls, at most twice the keys and
/// 2.5 times the bytes, save the first read of every journal shard's head
/// (16 a type, at most `JOURNAL_HEAD` bytes each: the one part that grows
/// with the types), and 5 times the bytes with it. Merging a page of each
/// type, as listings did before the index, read 2 300–2 700 calls and
/// 2.3 MB a page at 200 types (23 times the single type's bytes).
#[test]
fn a_page_of_all_types_costs_about_a_single_type_page() {
    let (one, one_expected) = scenario(1);
    let single = measure("one type", &one, Store::CutsHeads, "type=type_000&limit=100", &one_expected);
    for kind in [Store::CutsHeads, Store::Whole] {
        measure("1 type, all", &one, kind, "limit=100", &one_expected);
    }
    drop(one);
    for type_count in [20, 200] {
        let (store, expected) = scenario(type_count);
        for kind in [Store::CutsHeads, Store::Whole] {
            let all = measure(&format!("{type_count} types, all"), &store, kind, "limit=100", &expected);
            for ((depth, _), (all, single)) in DEPTHS.iter().zip(all.iter().zip(&single)) {
                let at = format!("{type_count} types, {kind:?}, {depth} page");
                assert!(all.calls <= single.calls, "{at}: {} calls against {}", all.calls, single.calls);
                assert!(all.walk_keys() <= 2 * single.walk_keys(), "{at}: {} keys against {}", all.walk_keys(), single.walk_keys());
                // A store of whole values gives every journal whole: its unfolded metrics, all types'.
                if kind == Store::CutsHeads {
                    let heads = all.by_kind[0];
                    assert!(heads <= 16 * type_count * (JOURNAL_HEAD + 16), "{at}: {heads} bytes of journal heads");
                    // The page's newest metrics wait unfolded in many shards, each read whole.
                    assert!(all.walk_bytes() * 2 <= 5 * single.bytes, "{at}: {} bytes against {}", all.walk_bytes(), single.bytes);
                    assert!(all.bytes <= 5 * single.bytes, "{at}: {} bytes in all against {}", all.bytes, single.bytes);
                }
            }
        }
    }
}
