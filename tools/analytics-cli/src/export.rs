//! `export`: the stored metrics, page by page through the list API, into a file.
//!
//! Pages are appended to a spool (`<OUTPUT>.partial.ndjson`) and, after each
//! page, a checkpoint (`<OUTPUT>.partial.json`) records the next cursor and
//! the spool's length. Run again with the same options, an interrupted export
//! cuts the spool back to its last checkpoint and goes on from that cursor.
//! When the walk is done the spool becomes the output in the chosen format
//! (see [`crate::export_files`]) and both are removed. Memory holds one page.
//!
//! # What an export holds
//!
//! Metrics with `from <= timestamp < to`. Without `--to` the bound is the
//! latest instant the API's queries take ([`END_OF_TIME`], the end of year
//! 9998), not the time the export started: the API accepts timestamps up to
//! `max_clock_skew_seconds` (at most 365 days) ahead of its clock, and an
//! export run as a backup must hold those too. Without `--from`, from 1970.
//!
//! While metrics keep arriving, the export is consistent in this sense:
//!
//! - every metric acknowledged by the API before the export started (its
//!   first run, for a resumed one) is in it exactly once, unless it was
//!   erased or passed `raw_retention_days` before its page was read (the
//!   list API no longer returns those; summaries still count them);
//! - a metric acknowledged while the export runs may be in it or not: it is
//!   when the walk (newest timestamp first, type by type) has not passed its
//!   place yet and its type had metrics when the export started;
//! - no metric is in it twice, across interruptions too: each page starts
//!   strictly after the previous page's last `(timestamp, id)` (the list
//!   API's cursor), and a resumed run cuts the spool back to the checkpoint
//!   that saved that cursor.
//!
//! The bound and the types to walk are fixed when an export starts and saved
//! in the checkpoint, so a resumed export walks the same set.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use analytics_core::time::{format_timestamp, parse_instant};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::export_files::{self, ExportFormat};
use crate::progress::Progress;
use crate::reply::snippet;
use crate::retry::{backoff, wait_after_429, Attempts, Policy};
use crate::transport::{Fetch, Response};

/// Metrics a page holds at most (the list API's own limit).
pub const MAX_PAGE: u16 = 1_000;

/// The upper bound of an export without `--to`: the latest instant the
/// list, summary and top-types endpoints all take (year 9998's last
/// millisecond), far past any timestamp the API accepts (its clock plus
/// `max_clock_skew_seconds`, at most 365 days).
pub const END_OF_TIME: &str = "9998-12-31T23:59:59.999Z";

/// `--from` / `--to` as the list API takes them: RFC 3339 or Unix seconds
/// (which the list API itself does not read) in, RFC 3339 out.
pub fn instant(text: &str) -> Result<String, String> {
    parse_instant(text).map(format_timestamp)
}

/// What to export, and where.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub output: PathBuf,
    pub format: ExportFormat,
    pub walk: Walk,
    pub page_size: u16,
    pub policy: Policy,
}

/// The options that decide which metrics are exported (a resumed export must
/// have the same).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Walk {
    /// Empty: every type, in one walk.
    pub types: Vec<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// Where a walk stands, saved after every page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Checkpoint {
    walk: Walk,
    /// `to`, or [`END_OF_TIME`]: saved so that a resumed walk has the same
    /// bound as the run that started it (one started by an older version
    /// saved its start time here, and keeps it).
    until: String,
    /// The types walked one after the other: the walk's own, or every type
    /// with metrics in the window as the API named them when the export
    /// started; empty: one walk over every type at once.
    types: Vec<String>,
    /// Which of those types is being read (`types.len()`, or 1 for the walk
    /// over every type, when the walk is done).
    part: usize,
    cursor: Option<String>,
    rows: u64,
    /// The spool's length after the last page written.
    bytes: u64,
}

/// How the export went.
#[derive(Debug, Default)]
pub struct ExportSummary {
    pub rows: u64,
    pub pages: u64,
    /// Rows already in the spool from an interrupted run.
    pub resumed_at: Option<u64>,
    pub rate_limit_waits: u64,
    pub retries: u64,
    pub elapsed: Duration,
    /// Time spent writing the output from the spool.
    pub convert_elapsed: Duration,
    pub output_bytes: u64,
}

impl ExportSummary {
    /// `exported 1000000 rows to m.parquet (31.2 MB) in 42.0 s (23810 rows/s); ...`
    pub fn line(&self, output: &Path) -> String {
        let seconds = self.elapsed.as_secs_f64();
        let fresh = self.rows - self.resumed_at.unwrap_or(0);
        let rate = if seconds > 0.0 { fresh as f64 / seconds } else { 0.0 };
        let mut line = format!(
            "exported {} rows to {} ({:.1} MB) in {seconds:.1} s ({rate:.0} rows/s); {} pages, {} rate-limit waits, {} retries; writing the file took {:.1} s",
            self.rows,
            output.display(),
            self.output_bytes as f64 / 1e6,
            self.pages,
            self.rate_limit_waits,
            self.retries,
            self.convert_elapsed.as_secs_f64()
        );
        if let Some(rows) = self.resumed_at {
            line.push_str(&format!("; resumed after {rows} rows"));
        }
        line
    }
}

/// What to do with the answer to a page request: a plain function, tested without a server.
#[derive(Debug, PartialEq)]
enum PageDecision {
    Page,
    RateLimited(Duration),
    Unavailable(Duration),
    Fatal(String),
}

fn decide(answer: &Result<Response, String>, attempts: Attempts, policy: &Policy) -> PageDecision {
    let unavailable = |message: String| {
        if attempts.unavailable + 1 >= policy.max_unavailable {
            PageDecision::Fatal(format!("giving up after {} attempts; last: {message}", attempts.unavailable + 1))
        } else {
            PageDecision::Unavailable(backoff(attempts.unavailable, policy))
        }
    };
    let response = match answer {
        Err(e) => return unavailable(format!("no answer from the server: {e}")),
        Ok(r) => r,
    };
    match response.status {
        200 => PageDecision::Page,
        429 if attempts.rate_limited + 1 >= policy.max_rate_limited => {
            PageDecision::Fatal(format!("still rate limited after {} waits in a row", attempts.rate_limited + 1))
        }
        429 => PageDecision::RateLimited(wait_after_429(response.retry_after.as_deref(), &response.body, policy)),
        502..=504 => unavailable(format!("the server answered {}: {}", response.status, snippet(&response.body))),
        401 | 403 => PageDecision::Fatal(format!(
            "the server answered {}: {}; export needs a key with the `read` scope (--api-key or ANALYTICS_API_KEY)",
            response.status,
            snippet(&response.body)
        )),
        status => PageDecision::Fatal(format!("unexpected answer {status}: {}", snippet(&response.body))),
    }
}

/// GETs `path` until it answers 200, waiting out 429s and backing off on 5xx.
fn get_page(source: &dyn Fetch, path: &str, policy: &Policy, summary: &mut ExportSummary) -> anyhow::Result<Response> {
    let mut attempts = Attempts::default();
    loop {
        let answer = source.get(path);
        match decide(&answer, attempts, policy) {
            PageDecision::Page => return answer.map_err(anyhow::Error::msg),
            PageDecision::RateLimited(wait) => {
                attempts.rate_limited += 1;
                summary.rate_limit_waits += 1;
                std::thread::sleep(wait);
            }
            PageDecision::Unavailable(wait) => {
                attempts.unavailable += 1;
                summary.retries += 1;
                std::thread::sleep(wait);
            }
            PageDecision::Fatal(message) => anyhow::bail!("GET {path}: {message}"),
        }
    }
}

/// `/api/metrics/list?...` for one page of `part`.
fn list_path(checkpoint: &Checkpoint, page_size: u16) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("limit", &page_size.to_string());
    if let Some(metric_type) = checkpoint.types.get(checkpoint.part) {
        query.append_pair("type", metric_type);
    }
    if let Some(from) = &checkpoint.walk.from {
        query.append_pair("from", from);
    }
    query.append_pair("to", &checkpoint.until);
    if let Some(cursor) = &checkpoint.cursor {
        query.append_pair("cursor", cursor);
    }
    format!("/api/metrics/list?{}", query.finish())
}

/// Types the top-types endpoint returns at most: with that many there may be more.
const TOP_TYPES: usize = 100;

fn encode(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

fn get_json(source: &dyn Fetch, path: &str) -> Option<Value> {
    let response = source.get(path).ok().filter(|r| r.status == 200)?;
    serde_json::from_slice(&response.body).ok()
}

fn from_or_epoch(walk: &Walk) -> String {
    walk.from.clone().unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string())
}

/// Every type with metrics in the window and how many, when the API can name
/// them all (fewer than [`TOP_TYPES`]).
fn types_in_window(source: &dyn Fetch, walk: &Walk, until: &str) -> Option<Vec<(String, u64)>> {
    let limit = TOP_TYPES.to_string();
    let top = get_json(source, &format!("/api/stats/top-types?{}", encode(&[("limit", &limit), ("from", &from_or_epoch(walk)), ("to", until)])))?;
    let types: Vec<(String, u64)> =
        top["types"].as_array()?.iter().filter_map(|t| Some((t["type"].as_str()?.to_string(), t["count"].as_u64()?))).collect();
    (types.len() < TOP_TYPES).then_some(types)
}

/// The types to walk one by one: a walk over every type at once reads a
/// page's worth from each type for every page, so one type at a time is
/// far cheaper whenever the API can name them all.
fn parts(source: &dyn Fetch, walk: &Walk, until: &str) -> Vec<String> {
    if !walk.types.is_empty() {
        return walk.types.clone();
    }
    let mut types: Vec<String> = types_in_window(source, walk, until).unwrap_or_default().into_iter().map(|(t, _)| t).collect();
    types.sort();
    types
}

/// The number of metrics the walk will find, as far as the summaries tell
/// (erased metrics are counted there and not listed): for the progress bar only.
fn estimate(source: &dyn Fetch, walk: &Walk, until: &str) -> Option<u64> {
    if walk.types.is_empty() {
        return Some(types_in_window(source, walk, until)?.iter().map(|(_, n)| n).sum());
    }
    let from = from_or_epoch(walk);
    walk.types
        .iter()
        .map(|t| get_json(source, &format!("/api/metrics/summary?{}", encode(&[("type", t), ("from", &from), ("to", until)])))?["count"].as_u64())
        .sum()
}

fn partial_path(output: &Path, extension: &str) -> PathBuf {
    let mut name = output.as_os_str().to_os_string();
    name.push(format!(".partial.{extension}"));
    PathBuf::from(name)
}

fn save(checkpoint: &Checkpoint, path: &Path) -> anyhow::Result<()> {
    let temporary = partial_path(path, "tmp");
    fs::write(&temporary, serde_json::to_vec(checkpoint)?).with_context(|| format!("writing {}", temporary.display()))?;
    fs::rename(&temporary, path).with_context(|| format!("writing {}", path.display()))
}

/// The checkpoint to go on from, with the spool opened and cut to it; a new
/// one when there is none, or it was for other options, or the spool is shorter
/// than it says (then the export starts over, with a note).
fn resume_or_start(
    options: &ExportOptions,
    source: &dyn Fetch,
    spool_path: &Path,
    checkpoint_path: &Path,
    progress: &Progress,
) -> anyhow::Result<(Checkpoint, File)> {
    let saved: Option<Checkpoint> = fs::read(checkpoint_path).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok());
    if let Some(checkpoint) = saved {
        let spool = OpenOptions::new().read(true).write(true).open(spool_path);
        match spool {
            Ok(mut spool) if checkpoint.walk == options.walk && spool.metadata()?.len() >= checkpoint.bytes => {
                spool.set_len(checkpoint.bytes)?;
                spool.seek(SeekFrom::End(0))?;
                return Ok((checkpoint, spool));
            }
            _ => progress.println(&format!(
                "note: the unfinished export in {} had other options (or lost its data): starting over",
                spool_path.display()
            )),
        }
    }
    // Not "now": metrics dated up to max_clock_skew_seconds ahead are stored too.
    let until = options.walk.to.clone().unwrap_or_else(|| END_OF_TIME.to_string());
    let checkpoint = Checkpoint {
        walk: options.walk.clone(),
        types: parts(source, &options.walk, &until),
        until,
        part: 0,
        cursor: None,
        rows: 0,
        bytes: 0,
    };
    let spool = File::create(spool_path).with_context(|| format!("creating {}", spool_path.display()))?;
    save(&checkpoint, checkpoint_path)?;
    Ok((checkpoint, spool))
}

/// Runs the export (or the rest of an interrupted one).
pub fn run(options: &ExportOptions, source: &dyn Fetch, progress: &mut Progress) -> anyhow::Result<ExportSummary> {
    let start = Instant::now();
    let spool_path = partial_path(&options.output, "ndjson");
    let checkpoint_path = partial_path(&options.output, "json");
    let (mut checkpoint, spool) = resume_or_start(options, source, &spool_path, &checkpoint_path, progress)?;
    let mut summary = ExportSummary { resumed_at: (checkpoint.rows > 0).then_some(checkpoint.rows), ..ExportSummary::default() };
    let parts = checkpoint.types.len().max(1);
    let total = estimate(source, &checkpoint.walk, &checkpoint.until).unwrap_or(0);
    let mut spool = BufWriter::with_capacity(1 << 20, spool);
    while checkpoint.part < parts {
        let path = list_path(&checkpoint, options.page_size.clamp(1, MAX_PAGE));
        let response = get_page(source, &path, &options.policy, &mut summary)?;
        let metrics: Vec<Value> = serde_json::from_slice(&response.body)
            .with_context(|| format!("GET {path}: the page is not a JSON array: {}", snippet(&response.body)))?;
        for metric in &metrics {
            serde_json::to_writer(&mut spool, metric)?;
            spool.write_all(b"\n")?;
        }
        spool.flush().with_context(|| format!("writing {}", spool_path.display()))?;
        checkpoint.rows += metrics.len() as u64;
        checkpoint.bytes = spool.get_ref().stream_position()?;
        match response.next_cursor {
            Some(cursor) if !metrics.is_empty() => checkpoint.cursor = Some(cursor),
            _ => {
                checkpoint.part += 1;
                checkpoint.cursor = None;
            }
        }
        save(&checkpoint, &checkpoint_path)?;
        summary.pages += 1;
        progress.update(checkpoint.rows, total);
    }
    drop(spool);
    summary.rows = checkpoint.rows;
    summary.elapsed = start.elapsed();
    let converting = Instant::now();
    summary.output_bytes = export_files::write(options.format, &spool_path, &options.output)?;
    summary.convert_elapsed = converting.elapsed();
    // The output is whole: what led to it can go.
    let _ = fs::remove_file(&spool_path);
    let _ = fs::remove_file(&checkpoint_path);
    progress.finish();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// A list API over `metrics` (newest first, by id as the cursor) that
    /// fails the way it is told to.
    struct FakeList {
        metrics: Vec<Value>,
        /// Answers to give before the real one, by request number.
        script: Mutex<BTreeMap<usize, Result<Response, String>>>,
        requests: Mutex<Vec<String>>,
    }

    impl FakeList {
        fn new(n: usize) -> FakeList {
            let metrics = (0..n)
                .rev()
                .map(|i| serde_json::json!({"id": format!("m{i:05}"), "type": "cpu", "value": i, "timestamp": "2026-01-01T00:00:00.000Z"}))
                .collect();
            FakeList { metrics, script: Mutex::new(BTreeMap::new()), requests: Mutex::new(Vec::new()) }
        }

        /// `n` metrics of the types `t0`, `t1`, ... in turn.
        fn of_types(n: usize, types: usize) -> FakeList {
            let mut list = FakeList::new(n);
            for (i, m) in list.metrics.iter_mut().enumerate() {
                m["type"] = serde_json::json!(format!("t{}", i % types));
            }
            list
        }
    }

    impl Fetch for FakeList {
        fn get(&self, path: &str) -> Result<Response, String> {
            let mut requests = self.requests.lock().unwrap();
            requests.push(path.to_string());
            if let Some(answer) = self.script.lock().unwrap().remove(&(requests.len() - 1)) {
                return answer;
            }
            let query: BTreeMap<String, String> = form_urlencoded::parse(path.split_once('?').unwrap_or_default().1.as_bytes()).into_owned().collect();
            let limit: usize = query.get("limit").map_or(0, |l| l.parse().unwrap());
            // `from <= timestamp < to`, as the API has it.
            let bound = |name: &str| query.get(name).map(|t| parse_instant(t).unwrap());
            let (from, to) = (bound("from").unwrap_or(i64::MIN), bound("to").unwrap_or(i64::MAX));
            let within = |m: &&Value| (from..to).contains(&parse_instant(m["timestamp"].as_str().unwrap()).unwrap());
            if path.starts_with("/api/stats/top-types?") {
                let mut counts: BTreeMap<String, u64> = BTreeMap::new();
                for m in self.metrics.iter().filter(within) {
                    *counts.entry(m["type"].as_str().unwrap().to_string()).or_default() += 1;
                }
                let types: Vec<Value> =
                    counts.into_iter().take(limit).map(|(t, n)| serde_json::json!({"type": t, "count": n})).collect();
                return Ok(Response { status: 200, retry_after: None, next_cursor: None, body: serde_json::to_vec(&serde_json::json!({"types": types})).unwrap() });
            }
            if !path.starts_with("/api/metrics/list?") {
                return Ok(Response { status: 404, retry_after: None, next_cursor: None, body: Vec::new() });
            }
            let of_type: Vec<&Value> =
                self.metrics.iter().filter(within).filter(|m| query.get("type").is_none_or(|t| m["type"] == t.as_str())).collect();
            let after = query.get("cursor").map(|c| of_type.iter().position(|m| m["id"] == c.as_str()).unwrap() + 1).unwrap_or(0);
            let page: Vec<Value> = of_type.iter().skip(after).take(limit).map(|m| (*m).clone()).collect();
            let next = (after + limit < of_type.len()).then(|| page.last().unwrap()["id"].as_str().unwrap().to_string());
            Ok(Response { status: 200, retry_after: None, next_cursor: next, body: serde_json::to_vec(&page).unwrap() })
        }
    }

    fn options(dir: &Path) -> ExportOptions {
        ExportOptions {
            output: dir.join("out.ndjson"),
            format: ExportFormat::Ndjson,
            walk: Walk { types: vec!["cpu".into()], from: None, to: Some("2026-02-01T00:00:00Z".into()) },
            page_size: 7,
            policy: Policy { backoff_start: Duration::ZERO, default_retry_after: Duration::ZERO, ..Policy::default() },
        }
    }

    fn ids(path: &Path) -> Vec<String> {
        fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_string()).collect()
    }

    fn status(status: u16, body: &str) -> Result<Response, String> {
        Ok(Response { status, retry_after: Some("0".into()), next_cursor: None, body: body.as_bytes().to_vec() })
    }

    #[test]
    fn walks_every_page_through_waits_and_failures() {
        let dir = tempfile::tempdir().unwrap();
        let list = FakeList::new(50);
        // Request 0 is the estimate; then a 429, a reset and a 503 on the way.
        list.script.lock().unwrap().extend([
            (2, status(429, "{}")),
            (4, Err("connection reset".into())),
            (5, status(503, "{}")),
        ]);
        let options = options(dir.path());
        let summary = run(&options, &list, &mut Progress::Hidden).unwrap();
        assert_eq!((summary.rows, summary.pages, summary.rate_limit_waits, summary.retries), (50, 8, 1, 2));
        let expected: Vec<String> = (0..50).rev().map(|i| format!("m{i:05}")).collect();
        assert_eq!(ids(&options.output), expected);
        assert!(!partial_path(&options.output, "ndjson").exists() && !partial_path(&options.output, "json").exists());
        let first = &list.requests.lock().unwrap()[1];
        assert_eq!(first, "/api/metrics/list?limit=7&type=cpu&to=2026-02-01T00%3A00%3A00Z");
    }

    #[test]
    fn an_interrupted_export_goes_on_from_its_last_page() {
        let dir = tempfile::tempdir().unwrap();
        let options = options(dir.path());
        let list = FakeList::new(50);
        // The fourth page is refused for good: the run stops with three pages spooled.
        list.script.lock().unwrap().insert(4, status(400, r#"{"error":"bad_request"}"#));
        let err = run(&options, &list, &mut Progress::Hidden).unwrap_err();
        assert!(err.to_string().contains("unexpected answer 400"), "{err:#}");
        assert!(!options.output.exists());
        // A half-written page after the checkpoint, as a kill would leave it.
        let spool = partial_path(&options.output, "ndjson");
        fs::OpenOptions::new().append(true).open(&spool).unwrap().write_all(b"{\"id\":\"m000").unwrap();
        let summary = run(&options, &list, &mut Progress::Hidden).unwrap();
        assert_eq!((summary.rows, summary.resumed_at), (50, Some(21)));
        let expected: Vec<String> = (0..50).rev().map(|i| format!("m{i:05}")).collect();
        assert_eq!(ids(&options.output), expected, "each metric once, in order");
        let requests = list.requests.lock().unwrap();
        assert!(requests.iter().filter(|r| r.contains("cursor=m00029")).count() == 2, "resumed at the saved cursor: {requests:?}");
    }

    #[test]
    fn other_options_start_over() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = options(dir.path());
        let list = FakeList::new(20);
        list.script.lock().unwrap().insert(2, status(400, "{}"));
        assert!(run(&options, &list, &mut Progress::Hidden).is_err());
        options.walk.from = Some("2025-01-01T00:00:00Z".into());
        let summary = run(&options, &list, &mut Progress::Hidden).unwrap();
        assert_eq!((summary.rows, summary.resumed_at), (20, None));
        assert_eq!(ids(&options.output).len(), 20);
    }

    #[test]
    fn every_type_is_walked_on_its_own_when_the_api_can_name_them_all() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = options(dir.path());
        options.walk.types.clear();
        let list = FakeList::of_types(30, 3);
        let summary = run(&options, &list, &mut Progress::Hidden).unwrap();
        assert_eq!(summary.rows, 30);
        let mut ids = ids(&options.output);
        ids.sort();
        assert_eq!(ids, (0..30).map(|i| format!("m{i:05}")).collect::<Vec<_>>(), "each metric once");
        let requests = list.requests.lock().unwrap();
        let walked: Vec<&String> = requests.iter().filter(|r| r.starts_with("/api/metrics/list?")).collect();
        assert!(walked.iter().all(|r| r.contains("&type=t")), "{walked:?}");
        assert_eq!(walked.len(), 6, "two pages of 7 for each type's 10: {walked:?}");
    }

    #[test]
    fn too_many_types_to_name_are_walked_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = options(dir.path());
        options.walk.types.clear();
        // Top-types names 100 of them: there may be more.
        let list = FakeList::of_types(300, 120);
        let summary = run(&options, &list, &mut Progress::Hidden).unwrap();
        assert_eq!(summary.rows, 300);
        let requests = list.requests.lock().unwrap();
        assert!(requests.iter().filter(|r| r.starts_with("/api/metrics/list?")).all(|r| !r.contains("type=")), "{requests:?}");
    }

    #[test]
    fn without_to_the_walk_reaches_past_any_timestamp_the_api_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = options(dir.path());
        options.walk = Walk { types: Vec::new(), from: None, to: None };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        let mut list = FakeList::of_types(6, 2);
        // Newest first: 365 days ahead (the most max_clock_skew_seconds allows), 100 s ahead, now, years ago.
        let ahead = [365 * 86_400_000, 100_000, 0, -10 * 365 * 86_400_000, -20 * 365 * 86_400_000, -30 * 365 * 86_400_000];
        for (m, offset) in list.metrics.iter_mut().zip(ahead) {
            m["timestamp"] = serde_json::json!(format_timestamp(now + offset));
        }
        let summary = run(&options, &list, &mut Progress::Hidden).unwrap();
        assert_eq!(summary.rows, 6, "every metric, future-dated ones too");
        let mut ids = ids(&options.output);
        ids.sort();
        assert_eq!(ids, (0..6).map(|i| format!("m{i:05}")).collect::<Vec<_>>());
        let requests = list.requests.lock().unwrap();
        assert!(requests.iter().all(|r| r.contains("to=9998-12-31T23%3A59%3A59.999Z")), "{requests:?}");
    }

    #[test]
    fn the_bound_without_to_is_the_latest_the_api_takes_and_instants_become_rfc_3339() {
        assert_eq!(END_OF_TIME, format_timestamp(analytics_core::time::LATEST_QUERY_MS));
        // The list API reads its bounds as timestamps, the others as instants: both take it.
        assert!(analytics_core::time::parse_timestamp(END_OF_TIME).is_ok() && parse_instant(END_OF_TIME).is_ok());
        assert_eq!(instant("1767225600").unwrap(), "2026-01-01T00:00:00Z");
        assert_eq!(instant("1767225600.5").unwrap(), "2026-01-01T00:00:00.500Z");
        assert_eq!(instant("2026-01-01T01:00:00+01:00").unwrap(), "2026-01-01T00:00:00Z");
        assert!(instant("yesterday").is_err());
        assert!(instant("9999-06-01T00:00:00Z").is_err());
    }

    #[test]
    fn refusals_say_what_is_needed() {
        let policy = Policy::default();
        let first = Attempts::default();
        let forbidden = decide(&status(403, r#"{"error":"forbidden"}"#), first, &policy);
        assert!(matches!(&forbidden, PageDecision::Fatal(m) if m.contains("`read` scope")), "{forbidden:?}");
        assert_eq!(decide(&status(200, "[]"), first, &policy), PageDecision::Page);
        let tired = Attempts { unavailable: policy.max_unavailable - 1, rate_limited: 0 };
        assert!(matches!(decide(&Err("refused".into()), tired, &policy), PageDecision::Fatal(m) if m.contains("giving up")));
    }
}
