//! Listing metrics newest first, a page at a time.
//!
//! One type: the walk goes down its bucket hierarchy (eras → blocks → days
//! → hours → minutes → seconds) through the aggregates' child marks to the
//! seconds' entry chunks, so a page costs O(limit + buckets visited) and
//! never a scan of the store. Metrics not yet folded come from the journal
//! shards, read first (see [`crate::pending`]); one that was folded in
//! between is found twice and kept once.
//!
//! Every type ([`Merge`]): one merge across the types, in rounds. The first
//! round reads the head of every journal shard (the header and its items'
//! seconds, [`crate::journal::Stamps`]) and the root of the all-types index
//! ([`crate::list_index`]) in one call; then each round expands, in one
//! call, the newest buckets of any type (the index's blocks and days, a
//! type's hours, minutes and seconds, a second's chunks) and the journal
//! shards whose items can land on the page, as many as the aggregates'
//! counts say the page needs, until every bucket and shard left holds only
//! metrics older than the page. So a page reads the buckets near it, not a
//! page of every type.

use std::collections::{HashMap, HashSet};

use crate::aggregate::Aggregate;
use crate::api_error::ApiError;
use crate::entries::{Chunk, ChunkRef};
use crate::journal::{Journal, Stamps, SHARDS};
use crate::keys::{bucket_key, journal_key, list_block_key, list_day_key, total_key, LIST_ROOT_KEY};
use crate::kv::{Reader, StoreError};
use crate::list_index::{decode_block, Day, Root};
use crate::metric::{validate_type, Metric};
use crate::pending::{journal_keys, Pending};
use crate::query::Query;
use crate::time::{parse_timestamp, Bucket, Level, MS_PER_SECOND};

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1_000;

/// Where the previous page stopped: the last metric returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub timestamp_ms: i64,
    pub id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}.{}", self.timestamp_ms, self.id)
    }

    pub fn decode(text: &str) -> Option<Cursor> {
        let (ts, id) = text.split_once('.')?;
        let timestamp_ms = ts.parse().ok()?;
        (!id.is_empty()).then(|| Cursor { timestamp_ms, id: id.to_string() })
    }

    fn of(metric: &Metric) -> Cursor {
        Cursor { timestamp_ms: metric.timestamp_ms, id: metric.id.clone() }
    }

    /// Whether `metric` comes after this cursor in newest-first order.
    fn precedes(&self, metric: &Metric) -> bool {
        (metric.timestamp_ms, metric.id.as_str()) < (self.timestamp_ms, self.id.as_str())
    }
}

/// A validated list request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRequest {
    pub metric_type: Option<String>,
    pub limit: usize,
    /// Inclusive lower bound, ms.
    pub from_ms: i64,
    /// Exclusive upper bound, ms.
    pub to_ms: i64,
    pub cursor: Option<Cursor>,
}

impl ListRequest {
    pub fn parse(query: &Query) -> Result<ListRequest, ApiError> {
        let metric_type = match query.get("type") {
            None | Some("") => None,
            Some(t) => {
                validate_type(t).map_err(|m| ApiError::bad_request("type", m))?;
                Some(t.to_string())
            }
        };
        let limit = match query.get("limit") {
            None => DEFAULT_LIMIT,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => return Err(ApiError::bad_request("limit", format!("must be a whole number from 1 to {MAX_LIMIT}"))),
            },
        };
        let bound = |name: &str| -> Result<Option<i64>, ApiError> {
            query.get(name).map(|t| parse_timestamp(t).map_err(|m| ApiError::bad_request(name, m))).transpose()
        };
        let from_ms = bound("from")?.unwrap_or(i64::MIN);
        let to_ms = bound("to")?.unwrap_or(i64::MAX);
        if from_ms >= to_ms {
            return Err(ApiError::bad_request("to", "must be later than from"));
        }
        let cursor = match query.get("cursor") {
            None => None,
            Some(text) => Some(Cursor::decode(text).ok_or_else(|| {
                ApiError::bad_request("cursor", "is not a cursor this API returned (take it from X-Next-Cursor)")
            })?),
        };
        Ok(ListRequest { metric_type, limit, from_ms, to_ms, cursor })
    }

    /// Whether `metric` belongs on a page of this request (an erased one never does).
    fn admits(&self, metric: &Metric) -> bool {
        !metric.is_erased()
            && metric.timestamp_ms >= self.from_ms
            && metric.timestamp_ms < self.to_ms
            && self.cursor.as_ref().is_none_or(|c| c.precedes(metric))
    }

    /// The newest instant (ms, exclusive) a page can contain.
    fn upper_ms(&self) -> i64 {
        match &self.cursor {
            Some(c) => self.to_ms.min(c.timestamp_ms.saturating_add(1)),
            None => self.to_ms,
        }
    }
}

/// One page, and the cursor for the next one if there is more.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub metrics: Vec<Metric>,
    pub next: Option<Cursor>,
}

/// Newest-first order.
fn newest_first(a: &Metric, b: &Metric) -> std::cmp::Ordering {
    (b.timestamp_ms, &b.id).cmp(&(a.timestamp_ms, &a.id))
}

/// Aggregates under `keys`, `None` where missing.
fn read_aggregates(reader: &mut dyn Reader, keys: &[String]) -> Result<Vec<Option<Aggregate>>, StoreError> {
    let values = reader.get_many(keys)?;
    keys.iter()
        .zip(values)
        .map(|(key, value)| value.map(|bytes| Aggregate::decode(&bytes).map_err(|e| StoreError::corrupt(key, e))).transpose())
        .collect()
}

/// Lists a page: of the request's type if it names one, else across `types`.
pub fn list(reader: &mut dyn Reader, request: &ListRequest, types: &[String]) -> Result<Page, StoreError> {
    let found = match &request.metric_type {
        Some(metric_type) => one_type(reader, request, metric_type)?,
        None => all_types(reader, request, types)?,
    };
    Ok(page_of(found, request))
}

/// The page among `found` (admitted metrics, maybe repeated).
fn page_of(mut found: Vec<Metric>, request: &ListRequest) -> Page {
    found.sort_by(newest_first);
    let mut seen = HashSet::new();
    found.retain(|m| seen.insert(m.id.clone()));
    found.truncate(request.limit + 1);
    let next = (found.len() > request.limit).then(|| {
        found.truncate(request.limit);
        found.last().map(Cursor::of)
    });
    Page { metrics: found, next: next.flatten() }
}

/// One type's journal, then its walk.
fn one_type(reader: &mut dyn Reader, request: &ListRequest, metric_type: &str) -> Result<Vec<Metric>, StoreError> {
    let pending = Pending::read(reader, metric_type)?;
    let mut found: Vec<Metric> = pending.items.into_iter().map(|item| item.metric).filter(|m| request.admits(m)).collect();
    found.extend(TypeWalk { reader, request, metric_type, wanted: request.limit + 1 }.run()?);
    Ok(found)
}

/// Every type's: the merge reading journal heads, and if a shard it needed
/// was folded between its head and its items, once more reading whole
/// shards (then nothing it needs can move).
fn all_types(reader: &mut dyn Reader, request: &ListRequest, types: &[String]) -> Result<Vec<Metric>, StoreError> {
    if let Merged::Page(found) = Merge::new(&mut *reader, request, types).run(Journals::Heads)? {
        return Ok(found);
    }
    match Merge::new(reader, request, types).run(Journals::Whole)? {
        Merged::Page(found) => Ok(found),
        Merged::Raced => Err(StoreError::Store("a journal shard changed under a listing that read it whole".into())),
    }
}

/// Bytes of each journal shard an all-types page reads first: the header
/// and the seconds of the shard's newest items (15 to 40 of them), enough to
/// tell whether its items can land on the page without reading them.
pub const JOURNAL_HEAD: usize = 64;
/// The longest head read again to list a shard's items' seconds.
const RELIST_HEAD_MAX: usize = 1_024;

/// How the merge reads journal shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Journals {
    /// Their heads first, then whole the shards whose items may land on the page.
    Heads,
    /// Whole at once.
    Whole,
}

enum Merged {
    Page(Vec<Metric>),
    /// A shard was folded between the read of its head and of its items.
    Raced,
}

/// Something the merge may read, holding metrics older than `bound`.
#[derive(Debug)]
struct Node {
    /// Exclusive: every metric it holds is older (and within the request).
    bound: i64,
    /// Inclusive: no metric it holds is older.
    start: i64,
    /// How many admitted metrics it likely holds, and where.
    estimate: Estimate,
    kind: Kind,
}

/// What a node likely holds.
#[derive(Debug)]
enum Estimate {
    /// Anything (an index entry, a type's all-time aggregate not read yet).
    Unknown,
    /// This many (from the aggregates' counts: an upper bound but for
    /// erasure), spread evenly over the node's span.
    Spread(f64),
    /// A journal shard's items: one at the start (ms) of each second listed,
    /// and `rest` unlisted ones spread over `rest_span`.
    Stamps { seconds: Vec<i64>, rest: f64, rest_span: (i64, i64) },
}

/// How many of `count` metrics spread evenly over `[start, end)` lie at or after `at`.
fn spread_from(count: f64, (start, end): (i64, i64), at: i64) -> f64 {
    let lower = start.max(at);
    if end <= lower {
        return 0.0;
    }
    count * (end as f64 - lower as f64) / (end as f64 - start as f64)
}

#[derive(Debug)]
enum Kind {
    /// `lst:b:{block}`: its days.
    Block(i64),
    /// `lst:d:{day}`: its types' hours.
    Day(i64),
    /// A type (by its index in `types`) the index does not cover: its all-time aggregate.
    Total(usize),
    /// A type's aggregate of a bucket: its children, or a second's chunks.
    Bucket(usize, Bucket),
    /// A second's entry chunks.
    Chunks(usize, i64, Vec<ChunkRef>),
    /// A journal shard whose items may land on the page: `whole` when read
    /// whole already, else read now and checked against `folded_through`.
    /// `unlisted`: items whose seconds the head read did not hold; the first
    /// time it is chosen such a shard's head is read again, long enough to
    /// list them (a few bytes an item, not its items).
    Shard { metric_type: usize, shard: usize, folded_through: u64, whole: Option<Vec<u8>>, unlisted: Option<u64> },
}

impl Node {
    /// Expected metrics at or after `at`.
    fn expected_from(&self, at: i64) -> f64 {
        if self.bound <= self.start.max(at) {
            return 0.0;
        }
        match &self.estimate {
            Estimate::Unknown => f64::INFINITY,
            Estimate::Spread(count) => spread_from(*count, (self.start, self.bound), at),
            // An item counts when the middle of its second is.
            Estimate::Stamps { seconds, rest, rest_span } => {
                seconds.iter().filter(|s| **s + MS_PER_SECOND / 2 >= at).count() as f64 + spread_from(*rest, *rest_span, at)
            }
        }
    }
}

/// Start and end (exclusive) of a bucket, in ms.
fn span(bucket: Bucket) -> (i64, i64) {
    let start = bucket.start_second().saturating_mul(MS_PER_SECOND);
    (start, start.saturating_add(bucket.level.seconds() * MS_PER_SECOND))
}

/// The newest-first merge of every type's journal and buckets.
struct Merge<'a> {
    reader: &'a mut dyn Reader,
    request: &'a ListRequest,
    types: &'a [String],
    by_name: HashMap<&'a str, usize>,
    root: Root,
    wanted: usize,
    upper: i64,
    frontier: Vec<Node>,
    /// Admitted metrics, newest first after each [`Merge::prune`].
    found: Vec<Metric>,
    seen: HashSet<String>,
}

impl<'a> Merge<'a> {
    fn new(reader: &'a mut dyn Reader, request: &'a ListRequest, types: &'a [String]) -> Merge<'a> {
        Merge {
            reader,
            request,
            types,
            by_name: types.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect(),
            root: Root::default(),
            wanted: request.limit + 1,
            upper: request.upper_ms(),
            frontier: Vec::new(),
            found: Vec::new(),
            seen: HashSet::new(),
        }
    }

    fn run(mut self, journals: Journals) -> Result<Merged, StoreError> {
        // The journals first: an item not in them then is in the index and
        // the aggregates by the time those are read.
        let mut keys: Vec<String> = self.types.iter().flat_map(|t| journal_keys(t)).collect();
        let shards = keys.len();
        keys.push(LIST_ROOT_KEY.to_string());
        let values = match journals {
            Journals::Heads => self.reader.get_many_heads(&keys, shards, JOURNAL_HEAD)?,
            Journals::Whole => self.reader.get_many(&keys)?,
        };
        let values = complete(&keys, values)?;
        let mut values = values.into_iter();
        for (i, key) in keys[..shards].iter().enumerate() {
            if let Some(bytes) = values.next().flatten() {
                self.add_shard(i / SHARDS, i % SHARDS, key, bytes, journals == Journals::Whole)?;
            }
        }
        self.root = Root::decode(values.next().flatten().as_deref())?;
        for (i, metric_type) in self.types.iter().enumerate() {
            if !self.root.is_indexed(metric_type) {
                // Folded before the index existed: walked down its own buckets.
                self.frontier.push(Node { bound: self.upper, start: self.request.from_ms, estimate: Estimate::Unknown, kind: Kind::Total(i) });
            }
        }
        for block in std::mem::take(&mut self.root.blocks) {
            self.push_bucket(Bucket { level: Level::Block, index: block }, None, Kind::Block(block));
        }
        loop {
            self.prune();
            if self.frontier.is_empty() {
                return Ok(Merged::Page(self.found));
            }
            let chosen = self.choose();
            if !self.expand(chosen)? {
                return Ok(Merged::Raced);
            }
        }
    }

    fn admit(&mut self, metric: Metric) {
        if self.request.admits(&metric) && self.seen.insert(metric.id.clone()) {
            self.found.push(metric);
        }
    }

    /// Adds a node for `bucket` where it overlaps the request, its estimate
    /// (for the whole bucket) cut to the overlap.
    fn push_bucket(&mut self, bucket: Bucket, estimate: Option<f64>, kind: Kind) {
        let (start, end) = span(bucket);
        let (lower, bound) = (start.max(self.request.from_ms), end.min(self.upper));
        if lower < bound {
            let share = (bound as f64 - lower as f64) / (end as f64 - start as f64);
            let estimate = estimate.map_or(Estimate::Unknown, |e| Estimate::Spread(e * share));
            self.frontier.push(Node { bound, start: lower, estimate, kind });
        }
    }

    /// A journal shard as first read: a node if its items may land on a
    /// page of the request.
    fn add_shard(&mut self, metric_type: usize, shard: usize, key: &str, bytes: Vec<u8>, read_whole: bool) -> Result<(), StoreError> {
        let stamps = Journal::read_stamps(key, &bytes)?;
        // A store that reads whole values gave it whole (a cut head is
        // exactly `JOURNAL_HEAD` bytes and never decodes).
        let whole = read_whole || bytes.len() != JOURNAL_HEAD || Journal::decode(key, &bytes).is_ok();
        let unlisted = (!stamps.complete()).then_some(stamps.items - stamps.newest_first.len() as u64);
        self.push_shard(Kind::Shard { metric_type, shard, folded_through: stamps.header.folded_through, whole: whole.then_some(bytes), unlisted }, &stamps);
        Ok(())
    }

    /// Adds a node for a journal shard whose items may land on a page of
    /// the request: their seconds say so, and unlisted ones lie between the
    /// oldest and the last one listed.
    fn push_shard(&mut self, kind: Kind, stamps: &Stamps) {
        let (from, upper) = (self.request.from_ms, self.upper);
        let start_of = |s: i64| s.saturating_mul(MS_PER_SECOND);
        let end_of = |s: i64| s.saturating_add(1).saturating_mul(MS_PER_SECOND);
        let seconds: Vec<i64> = stamps.newest_first.iter().filter(|s| start_of(**s) < upper && end_of(**s) > from).map(|s| start_of(*s)).collect();
        let mut bound = seconds.first().map(|s| s.saturating_add(MS_PER_SECOND).min(upper));
        let mut start = seconds.last().map(|s| (*s).max(from));
        let (mut rest, mut rest_span) = (0.0, (from, from));
        if !stamps.complete() {
            let lower = stamps.oldest.map_or(from, |s| start_of(s).max(from));
            let higher = stamps.newest_first.last().map_or(upper, |s| end_of(*s).min(upper));
            if lower < higher {
                bound = Some(bound.map_or(higher, |b| b.max(higher)));
                start = Some(start.map_or(lower, |s| s.min(lower)));
                (rest, rest_span) = ((stamps.items - stamps.newest_first.len() as u64) as f64, (lower, higher));
            }
        }
        if let (Some(bound), Some(start)) = (bound, start) {
            self.frontier.push(Node { bound, start, estimate: Estimate::Stamps { seconds, rest, rest_span }, kind });
        }
    }

    /// Keeps the `wanted` newest metrics found and drops every node that
    /// holds only older ones.
    fn prune(&mut self) {
        self.found.sort_by(newest_first);
        if self.found.len() >= self.wanted {
            self.found.truncate(self.wanted);
            let cutoff = self.found[self.wanted - 1].timestamp_ms;
            // A node bounded at the cutoff holds only older metrics; one
            // past it may hold one at the cutoff with a greater id.
            self.frontier.retain(|n| n.bound > cutoff);
        }
    }

    /// Takes the nodes to read this round: the newest ones (all of them must
    /// be read), then on down while what is found and expected of those
    /// taken falls short of the page.
    fn choose(&mut self) -> Vec<Node> {
        self.frontier.sort_by_key(|n| std::cmp::Reverse(n.bound));
        let top = self.frontier[0].bound;
        let mut count = self.frontier.iter().take_while(|n| n.bound == top).count();
        while count < self.frontier.len() {
            let at = self.frontier[count].bound;
            let ahead = self.found.partition_point(|m| m.timestamp_ms >= at) as f64;
            let expected: f64 = self.frontier[..count].iter().map(|n| n.expected_from(at)).sum();
            if ahead + expected >= self.wanted as f64 {
                break;
            }
            count += 1;
        }
        self.frontier.drain(..count).collect()
    }

    /// Reads `nodes` in one call (and the longer heads of shards with
    /// unlisted items in a second) and adds what they hold. `false` if a
    /// journal shard was folded since its head was read.
    fn expand(&mut self, nodes: Vec<Node>) -> Result<bool, StoreError> {
        let (relist, nodes): (Vec<Node>, Vec<Node>) =
            nodes.into_iter().partition(|n| matches!(n.kind, Kind::Shard { whole: None, unlisted: Some(_), .. }));
        if !self.relist(relist)? {
            return Ok(false);
        }
        let mut keys = Vec::new();
        let mut spans = Vec::with_capacity(nodes.len());
        for node in &nodes {
            let first = keys.len();
            match &node.kind {
                Kind::Block(block) => keys.push(list_block_key(*block)),
                Kind::Day(day) => keys.push(list_day_key(*day)),
                Kind::Total(t) => keys.push(total_key(&self.types[*t])),
                Kind::Bucket(t, bucket) => keys.push(bucket_key(&self.types[*t], *bucket)),
                Kind::Chunks(t, second, chunks) => keys.extend(chunks.iter().map(|c| c.key(&self.types[*t], *second))),
                Kind::Shard { whole: Some(_), .. } => {}
                Kind::Shard { metric_type, shard, .. } => keys.push(journal_key(&self.types[*metric_type], *shard)),
            }
            spans.push(first..keys.len());
        }
        let values = if keys.is_empty() { Vec::new() } else { complete(&keys, self.reader.get_many(&keys)?)? };
        for (node, span) in nodes.into_iter().zip(spans) {
            if !self.open(node, &keys[span.clone()], &values[span])? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Reads again, long enough to list every item's second, the heads of
    /// the shards `nodes`, and puts them back with what they say.
    fn relist(&mut self, nodes: Vec<Node>) -> Result<bool, StoreError> {
        let shards: Vec<(usize, usize, u64, u64)> = nodes
            .iter()
            .filter_map(|n| match n.kind {
                Kind::Shard { metric_type, shard, folded_through, unlisted: Some(unlisted), .. } => Some((metric_type, shard, folded_through, unlisted)),
                _ => None,
            })
            .collect();
        if shards.is_empty() {
            return Ok(true);
        }
        let keys: Vec<String> = shards.iter().map(|(t, shard, _, _)| journal_key(&self.types[*t], *shard)).collect();
        // The header, the count and the oldest, then about 3 bytes a second
        // (deltas under 24 days); a head still cut is read whole next time.
        let most = shards.iter().map(|(_, _, _, unlisted)| *unlisted).max().unwrap_or(0);
        let bytes = (JOURNAL_HEAD as u64 + 3 * most).min(RELIST_HEAD_MAX as u64) as usize;
        let values = complete(&keys, self.reader.get_many_heads(&keys, keys.len(), bytes)?)?;
        for ((key, value), (metric_type, shard, folded_through, _)) in keys.iter().zip(values).zip(shards) {
            let Some(bytes_read) = value else { return Ok(false) };
            let stamps = Journal::read_stamps(key, &bytes_read)?;
            if stamps.header.folded_through > folded_through {
                return Ok(false);
            }
            let whole = bytes_read.len() != bytes || Journal::decode(key, &bytes_read).is_ok();
            // Listed this time or not, it is not read again but whole.
            self.push_shard(Kind::Shard { metric_type, shard, folded_through, whole: whole.then_some(bytes_read), unlisted: None }, &stamps);
        }
        Ok(true)
    }

    /// Adds what `node` holds, from its values.
    fn open(&mut self, node: Node, keys: &[String], values: &[Option<Vec<u8>>]) -> Result<bool, StoreError> {
        let value = values.first().and_then(Option::as_deref);
        match node.kind {
            Kind::Block(block) => {
                let days = decode_block(&keys[0], value)?;
                let first = Bucket { level: Level::Block, index: block }.child(0).map_or(0, |d| d.index);
                for position in (0..64).rev().filter(|p| days & (1u64 << p) != 0) {
                    let day = first + position;
                    self.push_bucket(Bucket { level: Level::Day, index: day }, None, Kind::Day(day));
                }
            }
            Kind::Day(day) => {
                for (name, hours) in Day::decode(&keys[0], value)?.types {
                    // A type marked after the root was read is walked as before the index.
                    let Some(&t) = self.by_name.get(name.as_str()).filter(|_| self.root.is_indexed(&name)) else { continue };
                    for hour in (0..24).rev().filter(|h| hours & (1u32 << h) != 0) {
                        let bucket = Bucket { level: Level::Hour, index: day * 24 + hour };
                        self.push_bucket(bucket, None, Kind::Bucket(t, bucket));
                    }
                }
            }
            Kind::Total(t) => {
                let Some(total) = decode_aggregate(&keys[0], value)? else { return Ok(true) };
                let each = total.count as f64 / total.tops.len().max(1) as f64;
                for &top in total.tops.iter().rev() {
                    let bucket = Bucket { level: Level::TOP, index: top };
                    self.push_bucket(bucket, Some(each), Kind::Bucket(t, bucket));
                }
            }
            Kind::Bucket(t, bucket) => {
                let Some(aggregate) = decode_aggregate(&keys[0], value)? else { return Ok(true) };
                if bucket.level == Level::Second {
                    let count = Some(aggregate.count as f64);
                    self.push_bucket(bucket, count, Kind::Chunks(t, bucket.index, aggregate.chunks));
                    return Ok(true);
                }
                let each = aggregate.count as f64 / aggregate.children.count_ones().max(1) as f64;
                for child in aggregate.children_descending().filter_map(|p| bucket.child(p)) {
                    self.push_bucket(child, Some(each), Kind::Bucket(t, child));
                }
            }
            Kind::Chunks(_, _, chunks) => {
                for ((key, value), reference) in keys.iter().zip(values).zip(&chunks) {
                    // A chunk past the retention period may be gone already.
                    if let Some(bytes) = value {
                        for metric in reference.metrics(Chunk::decode(key, bytes)?) {
                            self.admit(metric);
                        }
                    }
                }
            }
            Kind::Shard { metric_type, shard, folded_through, whole, .. } => {
                let key = journal_key(&self.types[metric_type], shard);
                let Some(bytes) = whole.as_deref().or(value) else { return Ok(false) };
                let journal = Journal::decode(&key, bytes)?;
                if journal.folded_through > folded_through {
                    return Ok(false);
                }
                for metric in journal.items {
                    self.admit(metric);
                }
            }
        }
        Ok(true)
    }
}

/// `values` if there is one for each key.
fn complete(keys: &[String], values: Vec<Option<Vec<u8>>>) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
    if values.len() == keys.len() {
        Ok(values)
    } else {
        Err(StoreError::Store(format!("{} values for {} keys", values.len(), keys.len())))
    }
}

fn decode_aggregate(key: &str, value: Option<&[u8]>) -> Result<Option<Aggregate>, StoreError> {
    value.map(|bytes| Aggregate::decode(bytes).map_err(|e| StoreError::corrupt(key, e))).transpose()
}

/// The walk down one type's buckets.
struct TypeWalk<'a> {
    reader: &'a mut dyn Reader,
    request: &'a ListRequest,
    metric_type: &'a str,
    wanted: usize,
}

fn overlaps(bucket: Bucket, from_ms: i64, to_ms: i64) -> bool {
    let start = bucket.start_second().saturating_mul(MS_PER_SECOND);
    let end = start.saturating_add(bucket.level.seconds() * MS_PER_SECOND);
    start < to_ms && end > from_ms
}

impl TypeWalk<'_> {
    fn run(mut self) -> Result<Vec<Metric>, StoreError> {
        let Some(total) = read_aggregates(self.reader, &[total_key(self.metric_type)])?.pop().flatten() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let (from, upper) = (self.request.from_ms, self.request.upper_ms());
        for &top in total.tops.iter().rev() {
            let bucket = Bucket { level: Level::TOP, index: top };
            if !overlaps(bucket, from, upper) {
                continue;
            }
            if let Some(aggregate) = read_aggregates(self.reader, &[bucket_key(self.metric_type, bucket)])?.pop().flatten() {
                self.descend(bucket, &aggregate, &mut out)?;
            }
            if out.len() >= self.wanted {
                break;
            }
        }
        Ok(out)
    }

    /// Collects from the children of `bucket`, newest first: from a day
    /// down, each level's children in one batch; blocks and eras one child
    /// at a time, since one day may fill the page.
    fn descend(&mut self, bucket: Bucket, aggregate: &Aggregate, out: &mut Vec<Metric>) -> Result<(), StoreError> {
        let (from, upper) = (self.request.from_ms, self.request.upper_ms());
        let children: Vec<Bucket> = aggregate
            .children_descending()
            .filter_map(|p| bucket.child(p))
            .filter(|c| overlaps(*c, from, upper))
            .collect();
        if bucket.level > Level::Day {
            for child in children {
                if let Some(aggregate) = read_aggregates(self.reader, &[bucket_key(self.metric_type, child)])?.pop().flatten() {
                    self.descend(child, &aggregate, out)?;
                }
                if out.len() >= self.wanted {
                    break;
                }
            }
            return Ok(());
        }
        let keys: Vec<String> = children.iter().map(|c| bucket_key(self.metric_type, *c)).collect();
        let found = children.into_iter().zip(read_aggregates(self.reader, &keys)?);
        if bucket.level == Level::Minute {
            // Seconds: fetch the entries of as many seconds as the page still
            // needs at once; the cursor may hide some, so go on until it is full.
            let mut batch = Vec::new();
            let mut batch_count = 0;
            for (second, aggregate) in found {
                let Some(aggregate) = aggregate else { continue };
                batch_count += aggregate.count as usize;
                batch.push((second, aggregate));
                if out.len() + batch_count >= self.wanted {
                    self.collect_seconds(&batch, out)?;
                    if out.len() >= self.wanted {
                        return Ok(());
                    }
                    (batch, batch_count) = (Vec::new(), 0);
                }
            }
            return self.collect_seconds(&batch, out);
        }
        for (child, aggregate) in found {
            if let Some(aggregate) = aggregate {
                self.descend(child, &aggregate, out)?;
            }
            if out.len() >= self.wanted {
                break;
            }
        }
        Ok(())
    }

    /// Appends the admitted entries of consecutive `seconds` (newest first),
    /// read from the chunks their aggregates list.
    fn collect_seconds(&mut self, seconds: &[(Bucket, Aggregate)], out: &mut Vec<Metric>) -> Result<(), StoreError> {
        let chunks: Vec<_> = seconds.iter().flat_map(|(second, aggregate)| aggregate.chunks.iter().map(move |c| (second.index, *c))).collect();
        let keys: Vec<String> = chunks.iter().map(|(second, c)| c.key(self.metric_type, *second)).collect();
        let mut metrics = Vec::new();
        for ((key, value), (_, reference)) in keys.iter().zip(self.reader.get_many(&keys)?).zip(&chunks) {
            // A chunk past the retention period may be gone already.
            if let Some(bytes) = value {
                metrics.extend(reference.metrics(Chunk::decode(key, &bytes)?).filter(|m| self.request.admits(m)));
            }
        }
        metrics.sort_by(newest_first);
        out.extend(metrics);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{fold_all, ingest};
    use crate::kv::Kv;
    use crate::memory_store::MemoryStore;

    /// Stores `metric`, spreading metrics over the shards.
    fn ingest_into(store: &mut MemoryStore, metric: &Metric) {
        let shard = metric.id.len() + metric.timestamp_ms as usize;
        ingest(store, metric, false, shard, None).unwrap();
    }

    fn metric(i: usize, metric_type: &str, ts: i64) -> Metric {
        Metric::new(format!("id{i:05}"), metric_type, i as f64, ts)
    }

    fn request(query: &str) -> ListRequest {
        ListRequest::parse(&Query::parse(query).unwrap()).unwrap()
    }

    fn all_pages(store: &mut MemoryStore, query: &str, types: &[String]) -> Vec<Vec<String>> {
        let mut pages = Vec::new();
        let mut req = request(query);
        loop {
            let page = list(store, &req, types).unwrap();
            pages.push(page.metrics.iter().map(|m| m.id.clone()).collect());
            match page.next {
                Some(c) => req.cursor = Some(Cursor::decode(&c.encode()).unwrap()),
                None => return pages,
            }
        }
    }

    #[test]
    fn pages_walk_every_metric_newest_first_exactly_once() {
        let mut store = MemoryStore::default();
        let base = 1_771_416_000_000;
        let mut expected = Vec::new();
        // Spread over days, with several metrics sharing a millisecond.
        for i in 0..250 {
            let ts = base - (i as i64 / 3) * 7_777_777;
            ingest_into(&mut store, &metric(i, "cpu", ts));
            expected.push((ts, format!("id{i:05}")));
        }
        expected.sort_by(|a, b| b.cmp(a));
        let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();
        // Partly folded, then wholly.
        for _ in 0..2 {
            let pages = all_pages(&mut store, "type=cpu&limit=40", &[]);
            assert_eq!(pages.len(), 7);
            assert!(pages[..6].iter().all(|p| p.len() == 40));
            assert_eq!(pages.concat(), expected);
            fold_all(&mut store, "cpu", None).unwrap();
        }
    }

    #[test]
    fn a_page_boundary_inside_a_busy_minute_skips_nothing() {
        let mut store = MemoryStore::default();
        let base = 1_771_416_000_000;
        let mut expected = Vec::new();
        for i in 0..300 {
            let ts = base - (i as i64 % 20) * 1_000;
            ingest_into(&mut store, &metric(i, "busy", ts));
            expected.push((ts, format!("id{i:05}")));
        }
        fold_all(&mut store, "busy", None).unwrap();
        expected.sort_by(|a, b| b.cmp(a));
        let pages = all_pages(&mut store, "type=busy&limit=7", &[]);
        assert_eq!(pages.concat(), expected.into_iter().map(|(_, id)| id).collect::<Vec<_>>());
    }

    #[test]
    fn all_types_merge_and_bounds_apply() {
        let mut store = MemoryStore::default();
        let base = 1_771_416_000_000;
        for i in 0..30 {
            let t = if i % 2 == 0 { "cpu" } else { "mem" };
            ingest_into(&mut store, &metric(i, t, base + i as i64 * 1_000));
        }
        let types = vec!["cpu".to_string(), "mem".to_string()];
        let page = list(&mut store, &request("limit=5"), &types).unwrap();
        let ids: Vec<&str> = page.metrics.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["id00029", "id00028", "id00027", "id00026", "id00025"]);
        let bounded = request("from=2026-02-18T12:00:10Z&to=2026-02-18T12:00:12Z");
        let page = list(&mut store, &bounded, &types).unwrap();
        let ids: Vec<&str> = page.metrics.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["id00011", "id00010"]);
        assert_eq!(page.next, None);
    }

    #[test]
    fn a_first_page_reads_a_bounded_number_of_keys() {
        // One metric a minute; both stores hold every minute of the newest
        // day, so the walk is the same and only the history behind it grows.
        let base = 1_771_416_000_000;
        let reads = |n: usize| {
            let mut store = MemoryStore::default();
            for i in 0..n {
                ingest_into(&mut store, &metric(i, "cpu", base - i as i64 * 60_000));
            }
            store.reads = 0;
            list(&mut store, &request("type=cpu&limit=10"), &[]).unwrap();
            store.reads
        };
        let few = reads(3_000);
        assert_eq!(few, reads(20_000));
        assert!(few < 200, "{few} keys for a page of 10");
    }

    /// Reads heads as a store that reads only the asked bytes does (or whole,
    /// as Spin's key-value store does), and counts the merges begun (each
    /// first read asks for the index's root).
    struct Heads<'a> {
        store: &'a mut MemoryStore,
        cut: bool,
        merges: usize,
    }

    impl Reader for Heads<'_> {
        fn get_many(&mut self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
            self.merges += usize::from(keys.last().is_some_and(|k| k == LIST_ROOT_KEY));
            self.store.get_many(keys)
        }

        fn get_many_heads(&mut self, keys: &[String], heads: usize, bytes: usize) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
            let mut values = self.get_many(keys)?;
            for value in values.iter_mut().take(heads).flatten().filter(|_| self.cut) {
                value.truncate(bytes);
            }
            Ok(values)
        }
    }

    /// Every page of `query` across `types`, as ids; and the merges begun.
    fn every_page(store: &mut MemoryStore, cut: bool, query: &str, types: &[String]) -> (Vec<String>, usize) {
        let mut reader = Heads { store, cut, merges: 0 };
        let (mut ids, mut req) = (Vec::new(), request(query));
        loop {
            let page = list(&mut reader, &req, types).unwrap();
            assert!(page.metrics.len() <= req.limit);
            ids.extend(page.metrics.iter().map(|m| m.id.clone()));
            match page.next {
                Some(c) => req.cursor = Some(Cursor::decode(&c.encode()).unwrap()),
                None => return (ids, reader.merges),
            }
        }
    }

    /// Seven types at rates from one a minute to one a day over ten days,
    /// posted in time order, then a backfill of older ones (so journals hold
    /// items far apart), a user's metrics erased; some shards folded, most
    /// holding items. Returns the store, the types, and what a listing must
    /// show, newest first, as (timestamp, id).
    fn seven_types() -> (MemoryStore, Vec<String>, Vec<(i64, String)>) {
        let mut store = MemoryStore::default();
        let base = 1_771_416_000_000;
        let types: Vec<String> = ["a", "b.c", "d-e", "f_g", "h", "i", "j"].iter().map(|t| t.to_string()).collect();
        let mut all = Vec::new();
        for (k, t) in types.iter().enumerate() {
            let every = [60_000, 97_000, 600_000, 3_600_000, 7_200_000, 21_600_000, 86_400_000][k];
            let count = (10 * 86_400_000 / every).min(1_500) as usize;
            for i in 0..count {
                all.push(Metric::new(format!("{t}-{i:05}"), t.as_str(), i as f64, base - 10 * 86_400_000 + (i as i64) * every + k as i64));
            }
        }
        all.sort_by_key(|m| m.timestamp_ms);
        for (i, m) in all.iter_mut().enumerate() {
            if i % 97 == 0 {
                m.user_id = Some("gone".into());
            }
        }
        // Late arrivals of old metrics, one millisecond shared by several.
        for i in 0..90 {
            let t = &types[i % types.len()];
            all.push(Metric::new(format!("late-{i:03}"), t.as_str(), 1.0, base - 9 * 86_400_000 + (i as i64 / 3) * 3_333_333));
        }
        for (i, m) in all.iter().enumerate() {
            ingest(&mut store, m, false, i * 7 + m.timestamp_ms as usize, None).unwrap();
        }
        crate::erasure::visit(&mut store, "gone", &types, true).unwrap();
        let mut expected: Vec<(i64, String)> = all.iter().filter(|m| m.user_id.is_none()).map(|m| (m.timestamp_ms, m.id.clone())).collect();
        expected.sort_by(|a, b| b.cmp(a));
        (store, types, expected)
    }

    fn ids_between(expected: &[(i64, String)], from: i64, to: i64) -> Vec<String> {
        expected.iter().filter(|(ts, _)| (from..to).contains(ts)).map(|(_, id)| id.clone()).collect()
    }

    #[test]
    fn every_type_pages_exactly_once_newest_first_whether_journals_are_cut_or_whole() {
        let (mut store, types, expected) = seven_types();
        let folded = store.snapshot().keys().filter(|k| k.starts_with("ent:")).count();
        assert!(folded > 20 && store.snapshot().keys().filter(|k| k.starts_with("jrn:")).count() > 50, "some folded, many waiting");
        let all: Vec<String> = expected.iter().map(|(_, id)| id.clone()).collect();
        let (from, to) = (1_771_416_000_000 - 7 * 86_400_000 - 1_234, 1_771_416_000_000 - 2 * 86_400_000);
        let window = format!("limit=29&from={}&to={}", crate::time::format_timestamp(from), crate::time::format_timestamp(to));
        for cut in [true, false] {
            assert_eq!(every_page(&mut store, cut, "limit=37", &types).0, all, "cut heads: {cut}");
            assert_eq!(every_page(&mut store, cut, "limit=1000", &types).0, all);
            assert_eq!(every_page(&mut store, cut, &window, &types).0, ids_between(&expected, from, to));
        }
        // Folded completely, the same.
        for t in &types {
            fold_all(&mut store, t, None).unwrap();
        }
        assert_eq!(every_page(&mut store, true, "limit=37", &types).0, all);
    }

    #[test]
    fn types_folded_before_the_index_are_walked_down_their_own_buckets() {
        let (mut store, types, expected) = seven_types();
        let all: Vec<String> = expected.iter().map(|(_, id)| id.clone()).collect();
        // "a" as if folded before the index: out of the root, its hours left in the days.
        let mut root = Root::decode(store.value(LIST_ROOT_KEY).as_deref()).unwrap();
        root.indexed.retain(|t| t != "a");
        store.load([(LIST_ROOT_KEY.to_string(), root.encode())]);
        assert_eq!(every_page(&mut store, true, "limit=37", &types).0, all);
        // Every type, no index at all.
        let index: Vec<String> = store.snapshot().into_keys().filter(|k| k.starts_with("lst:")).collect();
        store.delete_many(&index).unwrap();
        assert_eq!(every_page(&mut store, true, "limit=37", &types).0, all);
        // Later folds do not index types folded before: they stay walked the
        // old way. Types never folded yet are indexed from their first fold.
        let (folded, unfolded): (Vec<String>, Vec<String>) = types.iter().cloned().partition(|t| store.value(&total_key(t)).is_some());
        assert!(!folded.is_empty() && !unfolded.is_empty());
        for t in &types {
            fold_all(&mut store, t, None).unwrap();
        }
        assert_eq!(Root::decode(store.value(LIST_ROOT_KEY).as_deref()).unwrap().indexed, unfolded);
        assert_eq!(every_page(&mut store, true, "limit=37", &types).0, all);
    }

    /// Every shard folded by another request before any one of a page's
    /// reads: the page is exact whenever that lands, and a shard found
    /// folded between its head and its items sends the page back to read
    /// whole journals (then nothing it needs can move).
    #[test]
    fn a_shard_folded_between_its_head_and_its_items_sends_the_page_back_to_whole_journals() {
        let (store, types, expected) = seven_types();
        let saved = store.snapshot();
        let first: Vec<String> = expected.iter().take(300).map(|(_, id)| id.clone()).collect();
        let mut restarted = 0;
        for operation in 1..14 {
            let store = MemoryStore::default();
            store.load(saved.clone());
            let mut handle = store.request();
            let (folder, names) = (store.request(), types.clone());
            handle.stall_before(operation, move || {
                let mut folder = folder;
                for t in &names {
                    fold_all(&mut folder, t, None).unwrap();
                }
            });
            let mut reader = Heads { store: &mut handle, cut: true, merges: 0 };
            let page = list(&mut reader, &request("limit=300"), &types).unwrap();
            assert_eq!(page.metrics.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), first, "folded before read {operation}");
            restarted += usize::from(reader.merges == 2);
        }
        assert!(restarted > 0, "some folds landed between a head and its items");
    }

    /// A fold that dies after any of its writes (the index's included)
    /// leaves every metric listed once, and so does its redo: here a fold
    /// of an indexed type bringing it a new block, day and hour, which only
    /// the index leads to.
    #[test]
    fn a_fold_that_dies_after_any_write_leaves_every_metric_listed() {
        let (mut store, types, mut expected) = seven_types();
        assert!(Root::decode(store.value(LIST_ROOT_KEY).as_deref()).unwrap().is_indexed("a"));
        let shard = 3;
        for i in 0..3 {
            let m = Metric::new(format!("older-{i}"), "a", 1.0, 1_771_416_000_000 - 70 * 86_400_000 + i * 60_000);
            ingest(&mut store, &m, false, shard, None).unwrap();
            expected.push((m.timestamp_ms, m.id));
        }
        expected.sort_by(|a, b| b.cmp(a));
        let all: Vec<String> = expected.iter().map(|(_, id)| id.clone()).collect();
        let key = journal_key("a", shard);
        let journal = Journal::decode(&key, &store.value(&key).unwrap()).unwrap();
        let saved = store.snapshot();
        let mut writes = 0;
        // Every write of the index's (they come first), then a sample of the rest.
        for dies_after in (1..=16).chain((17..).step_by(11)) {
            let store = MemoryStore::default();
            store.load(saved.clone());
            let mut dying = store.request();
            dying.writes_left = Some(dies_after);
            let done = crate::fold::fold(&mut dying, "a", shard, &journal, None).is_ok();
            writes = writes.max(dying.writes);
            let mut reader = store.request();
            assert_eq!(every_page(&mut reader, true, "limit=1000", &types).0, all, "died after write {dies_after}");
            crate::fold::fold(&mut store.request(), "a", shard, &journal, None).unwrap();
            assert_eq!(every_page(&mut reader, true, "limit=1000", &types).0, all, "redone after write {dies_after}");
            if done {
                break;
            }
        }
        assert!(writes > 5, "{writes} writes: the index's, the chunks, the aggregates, the trim");
    }

    #[test]
    fn a_page_of_every_type_reads_the_journal_shards_it_needs_not_every_one() {
        let (mut store, types, expected) = seven_types();
        let shards = store.snapshot().keys().filter(|k| k.starts_with("jrn:")).count();
        let mut reader = Heads { store: &mut store, cut: true, merges: 0 };
        let before = reader.store.reads;
        let page = list(&mut reader, &request("limit=5"), &types).unwrap();
        assert_eq!(page.metrics.len(), 5);
        assert_eq!(page.metrics[0].id, expected[0].1);
        // The heads of all, then a few whole, and a few buckets.
        let read = reader.store.reads - before;
        assert!(read < types.len() * SHARDS + 1 + 30, "{read} keys for a page of 5 over {shards} shards");
    }

    #[test]
    fn bad_parameters_are_400s() {
        for q in ["limit=0", "limit=1001", "limit=x", "type=a%20b", "from=nope", "cursor=junk", "from=2026-02-18T12:00:00Z&to=2026-02-18T11:00:00Z"] {
            assert_eq!(ListRequest::parse(&Query::parse(q).unwrap()).unwrap_err().status, 400, "{q}");
        }
    }
}
