//! The import: one thread reads and batches the file, `concurrency` threads
//! send batches, and the calling thread reports results in file order.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::batch::{Batch, Batcher, MAX_BATCH_BYTES};
use crate::input::{count_lines, detect_format, CsvRows, Format, InputError, NdjsonRows, Row, Rows};
use crate::mapping::Mapping;
use crate::progress::Progress;
use crate::report::{self, Report};
use crate::retry::Policy;
use crate::sender::{Counters, Outcome, SendError, Sender};
use crate::transport::Transport;

pub struct Options {
    pub file: PathBuf,
    pub format: Option<Format>,
    /// Where CSV columns go.
    pub mapping: Mapping,
    pub batch_size: usize,
    pub concurrency: usize,
    /// Default: `<FILE>.rejected.csv`.
    pub report: Option<PathBuf>,
    pub policy: Policy,
}

/// How the import went.
#[derive(Debug, Default)]
pub struct Summary {
    /// Metrics read from the file (with a result, unless the import stopped
    /// early): one per row, unless several value columns are mapped.
    pub rows: u64,
    /// The file's rows those came from.
    pub source_rows: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub elapsed: Duration,
    pub requests: u64,
    pub rate_limited: u64,
    pub retries: u64,
    pub splits: u64,
    pub in_progress_resends: u64,
    /// The report, when this run wrote one.
    pub report: Option<PathBuf>,
    /// Names from the file that were made into types, in a line (see [`crate::type_names`]).
    pub renamed_types: Option<String>,
    /// Why the import stopped early.
    pub fatal: Option<String>,
}

impl Summary {
    /// 0: everything stored (now or before); 1: some rows rejected; 2: stopped early.
    pub fn exit_code(&self) -> u8 {
        match (&self.fatal, self.rejected) {
            (Some(_), _) => 2,
            (None, 0) => 0,
            (None, _) => 1,
        }
    }

    /// `read 100000 rows: 99950 accepted, 0 duplicates, 50 rejected in 12.3 s (8130 rows/s); ...`
    pub fn line(&self) -> String {
        let seconds = self.elapsed.as_secs_f64();
        let done = self.accepted + self.duplicates + self.rejected;
        let rate = if seconds > 0.0 { done as f64 / seconds } else { 0.0 };
        let (read, unit) = match self.source_rows {
            rows if rows == self.rows => (format!("{rows} rows"), "rows"),
            rows => (format!("{rows} rows as {} metrics", self.rows), "metrics"),
        };
        let mut line = format!(
            "read {read}: {} accepted, {} duplicates, {} rejected in {seconds:.1} s ({rate:.0} {unit}/s); {} requests, {} rate-limit waits, {} retries",
            self.accepted, self.duplicates, self.rejected, self.requests, self.rate_limited, self.retries
        );
        if self.splits > 0 {
            line.push_str(&format!(", {} batches halved", self.splits));
        }
        if self.in_progress_resends > 0 {
            line.push_str(&format!(", {} rows re-sent while in progress", self.in_progress_resends));
        }
        if self.fatal.is_some() && done < self.rows {
            line.push_str(&format!("; stopped with {} rows without a result (re-run to finish)", self.rows - done));
        }
        line
    }
}

enum Event {
    Batch(Result<Outcome, SendError>),
    /// The reader is done: how many batches it made, or why it stopped;
    /// and the names it made into types, in a line.
    ReadDone(Result<u64, InputError>, Option<String>),
}

/// Opens the file and checks its header (errors here are fatal before anything is sent).
fn open(options: &Options) -> anyhow::Result<(Box<dyn Rows + Send>, u64)> {
    let path = &options.file;
    let format = detect_format(path, options.format)?;
    let open = || File::open(path).with_context(|| format!("opening {}", path.display()));
    let lines = count_lines(open()?).with_context(|| format!("reading {}", path.display()))?;
    let input = BufReader::with_capacity(256 * 1024, open()?);
    Ok(match format {
        Format::Csv => {
            let rows = CsvRows::new(input, &options.mapping).with_context(|| path.display().to_string())?;
            let per_row = options.mapping.value_columns.len().max(1) as u64;
            (Box::new(rows), lines.saturating_sub(1) * per_row)
        }
        Format::Ndjson if !options.mapping.is_default() => return Err(InputError::MappingForNdjson.into()),
        Format::Ndjson => (Box::new(NdjsonRows::new(input)), lines),
    })
}

/// What a dry run found.
#[derive(Debug, Default, PartialEq)]
pub struct DryRun {
    pub rows: u64,
    pub metrics: u64,
    pub refused: u64,
}

/// Metrics shown by a dry run; refused rows are all shown, up to `DRY_RUN_REFUSALS`.
pub const DRY_RUN_METRICS: u64 = 10;
pub const DRY_RUN_REFUSALS: u64 = 100;

/// Reads the whole file as the import would and writes to `out` the first
/// metrics it makes, the rows it would refuse (line, column, why) and every
/// name from the file it made into a type (up to [`crate::type_names::Renames::LIMIT`]);
/// sends nothing.
pub fn dry_run(options: &Options, out: &mut dyn std::io::Write) -> anyhow::Result<DryRun> {
    let (mut rows, _) = open(options)?;
    let mut found = DryRun::default();
    let mut last_line = 0;
    while let Some(row) = rows.next_row()? {
        let line = row.line();
        // A wide row makes several metrics from one line.
        if line != last_line {
            found.rows += 1;
            last_line = line;
        }
        match row {
            Row::Item(item) => {
                found.metrics += 1;
                if found.metrics <= DRY_RUN_METRICS {
                    writeln!(out, "line {}: {}", item.line, item.json)?;
                }
            }
            Row::Rejected(line, rejection) => {
                found.refused += 1;
                if found.refused <= DRY_RUN_REFUSALS {
                    writeln!(out, "line {line}: refused: {}", rejection.message)?;
                }
            }
        }
    }
    if found.refused > DRY_RUN_REFUSALS {
        writeln!(out, "... and {} more refused", found.refused - DRY_RUN_REFUSALS)?;
    }
    for line in rows.renames().map(|r| r.listing()).unwrap_or_default() {
        writeln!(out, "{line}")?;
    }
    Ok(found)
}

/// Runs the import. `Err` when it could not start (file, header); a run that
/// stopped part way returns its summary with `fatal` set.
pub fn run(options: &Options, transport: &dyn Transport, progress: &mut Progress) -> anyhow::Result<Summary> {
    let (mut rows, estimate) = open(options)?;
    let start = Instant::now();
    let concurrency = options.concurrency.max(1);
    let counters = Counters::default();
    let abort = AtomicBool::new(false);
    let size_hint = AtomicUsize::new(options.batch_size.max(1));
    let rows_read = AtomicU64::new(0);
    let source_rows = AtomicU64::new(0);
    let mut report = Report::new(options.report.clone().unwrap_or_else(|| report::default_path(&options.file)));
    let mut summary = Summary::default();
    let log = progress.printer();

    std::thread::scope(|scope| {
        let (jobs, job_queue) = mpsc::sync_channel::<Batch>(concurrency);
        let job_queue = Arc::new(Mutex::new(job_queue));
        let (events, results) = mpsc::channel::<Event>();

        let reader_events = events.clone();
        let (abort, rows_read, source_rows) = (&abort, &rows_read, &source_rows);
        scope.spawn(move || {
            let mut batcher = Batcher::new(options.batch_size, MAX_BATCH_BYTES);
            let mut made = 0u64;
            let mut last_line = 0;
            let result = loop {
                if abort.load(Ordering::Relaxed) {
                    break Ok(made);
                }
                let full = match rows.next_row() {
                    Ok(Some(row)) => {
                        rows_read.fetch_add(1, Ordering::Relaxed);
                        // A wide row makes several metrics from one line.
                        if row.line() != last_line {
                            last_line = row.line();
                            source_rows.fetch_add(1, Ordering::Relaxed);
                        }
                        batcher.push(row)
                    }
                    Ok(None) => match batcher.finish() {
                        Some(last) => {
                            made += u64::from(jobs.send(last).is_ok());
                            break Ok(made);
                        }
                        None => break Ok(made),
                    },
                    Err(e) => break Err(e),
                };
                if let Some(batch) = full {
                    if jobs.send(batch).is_err() {
                        break Ok(made);
                    }
                    made += 1;
                }
            };
            let renamed = rows.renames().and_then(|r| r.brief());
            let _ = reader_events.send(Event::ReadDone(result, renamed));
        });

        let log: &(dyn Fn(String) + Sync) = &*log;
        for _ in 0..concurrency {
            let (job_queue, events) = (Arc::clone(&job_queue), events.clone());
            let sender = Sender { transport, policy: &options.policy, counters: &counters, abort, size_hint: &size_hint, log };
            scope.spawn(move || loop {
                let job = match job_queue.lock() {
                    Ok(queue) => queue.recv(),
                    Err(_) => return,
                };
                let Ok(batch) = job else { return };
                let result = sender.send_batch(batch);
                let stop = result.is_err();
                if events.send(Event::Batch(result)).is_err() || stop {
                    return;
                }
            });
        }
        drop((events, job_queue));

        // Results arrive in any order; they are reported in file order.
        let mut waiting: BTreeMap<u64, Outcome> = BTreeMap::new();
        let (mut next, mut batches) = (0u64, None);
        let fail = |summary: &mut Summary, message: String| {
            summary.fatal.get_or_insert(message);
            abort.store(true, Ordering::Relaxed);
        };
        loop {
            match results.recv_timeout(Duration::from_millis(250)) {
                Ok(Event::Batch(Ok(outcome))) => {
                    waiting.insert(outcome.seq, outcome);
                    while let Some(outcome) = waiting.remove(&next) {
                        next += 1;
                        if let Err(e) = record(&mut summary, &mut report, progress, outcome) {
                            fail(&mut summary, format!("writing the report: {e}"));
                        }
                    }
                }
                Ok(Event::Batch(Err(SendError::Fatal(message)))) => fail(&mut summary, message),
                Ok(Event::Batch(Err(SendError::Aborted))) => {}
                Ok(Event::ReadDone(read, renamed)) => {
                    summary.renamed_types = renamed;
                    match read {
                        Ok(made) => batches = Some(made),
                        Err(e) => fail(&mut summary, format!("{}: {e}", options.file.display())),
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // Every thread is gone: normal only once every batch is in.
                    if batches != Some(next) {
                        fail(&mut summary, "the import stopped before every batch had a result".to_string());
                    }
                    break;
                }
            }
            let done = summary.accepted + summary.duplicates + summary.rejected;
            progress.update(done, estimate.max(rows_read.load(Ordering::Relaxed)));
            if summary.fatal.is_some() || batches == Some(next) {
                // Stops the reader and the senders (they check between requests and while waiting).
                abort.store(true, Ordering::Relaxed);
                break;
            }
        }
        drop(results);
    });

    progress.finish();
    let flushed = report.flush();
    summary.rows = rows_read.load(Ordering::Relaxed);
    summary.source_rows = source_rows.load(Ordering::Relaxed);
    summary.elapsed = start.elapsed();
    summary.requests = counters.requests.load(Ordering::Relaxed);
    summary.rate_limited = counters.rate_limited.load(Ordering::Relaxed);
    summary.retries = counters.retries.load(Ordering::Relaxed);
    summary.splits = counters.splits.load(Ordering::Relaxed);
    summary.in_progress_resends = counters.in_progress_resends.load(Ordering::Relaxed);
    summary.report = report.created().then(|| report.path().to_path_buf());
    if let Err(e) = flushed {
        summary.fatal.get_or_insert(format!("writing {}: {e}", report.path().display()));
    }
    Ok(summary)
}

/// Adds one batch's results to the summary and its rejected rows to the report.
fn record(summary: &mut Summary, report: &mut Report, progress: &Progress, outcome: Outcome) -> std::io::Result<()> {
    summary.accepted += outcome.accepted;
    summary.duplicates += outcome.duplicates;
    summary.rejected += outcome.rejected.len() as u64;
    for warning in &outcome.warnings {
        progress.println(&format!("warning: {warning}"));
    }
    for (line, rejection) in &outcome.rejected {
        report.write(*line, rejection)?;
    }
    if !outcome.rejected.is_empty() {
        report.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_server::{accept_numbers, respond, Answer, FakeServer, Handler};
    use crate::transport::Http;

    fn fast() -> Policy {
        Policy {
            backoff_start: Duration::from_millis(10),
            backoff_max: Duration::from_millis(40),
            max_unavailable: 4,
            in_progress_pauses: vec![Duration::from_millis(10)],
            ..Policy::default()
        }
    }

    /// A CSV file of `rows` rows; rows whose index is in `bad` have value `abc`.
    fn csv_file(dir: &tempfile::TempDir, rows: usize, bad: &[usize]) -> PathBuf {
        let mut text = String::from("timestamp,value,type,user_id,region\n");
        for i in 0..rows {
            let value = if bad.contains(&i) { "abc".to_string() } else { i.to_string() };
            text.push_str(&format!("2026-11-30T10:00:00Z,{value},cpu,u{},eu\n", i % 3));
        }
        let path = dir.path().join("metrics.csv");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn import(server: &FakeServer, file: PathBuf, batch_size: usize, concurrency: usize) -> Summary {
        let options = Options { file, format: None, mapping: Mapping::default(), batch_size, concurrency, report: None, policy: fast() };
        let transport = Http::new(&server.url(), Duration::from_secs(5)).unwrap();
        run(&options, &transport, &mut Progress::Hidden).unwrap()
    }

    fn boxed(f: impl Fn(&crate::fake_server::Request) -> Answer + Send + Sync + 'static) -> Handler {
        Box::new(f)
    }

    #[test]
    fn posts_json_batches_and_reports_rejected_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = csv_file(&dir, 25, &[3, 19]);
        let server = FakeServer::start(vec![]);
        let summary = import(&server, file.clone(), 10, 1);
        assert_eq!((summary.rows, summary.accepted, summary.duplicates, summary.rejected), (25, 23, 0, 2));
        assert_eq!(summary.exit_code(), 1);
        let requests = server.requests();
        // Rows 3 and 19 are refused here, before sending: their batches carry 9.
        assert_eq!(requests.iter().map(|r| r.items().len()).collect::<Vec<_>>(), vec![9, 9, 5]);
        for r in &requests {
            assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/api/metrics/batch"));
            assert_eq!(r.header("content-type"), Some("application/json"));
        }
        let first = &requests[0].items()[0];
        assert_eq!(first["properties"], serde_json::json!({"region": "eu"}));
        assert_eq!(first["user_id"], "u0");
        let report = report::default_path(&file);
        assert_eq!(summary.report.as_deref(), Some(report.as_path()));
        let text = std::fs::read_to_string(&report).unwrap();
        assert_eq!(
            text,
            "line,error,message,details\n\
             5,invalid_csv,column `value`: `abc` is not a number,\n\
             21,invalid_csv,column `value`: `abc` is not a number,\n"
        );
        // The same ids on a second run, whatever the batch size.
        let again = FakeServer::start(vec![]);
        import(&again, file, 7, 2);
        let ids = |s: &FakeServer| {
            let mut ids: Vec<String> = s.requests().iter().flat_map(|r| r.items()).map(|m| m["id"].as_str().unwrap().to_string()).collect();
            ids.sort();
            ids
        };
        assert_eq!(ids(&server), ids(&again));
    }

    #[test]
    fn a_wide_file_counts_its_rows_and_the_metrics_they_make() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weather.csv");
        std::fs::write(&path, "date,temp,wind\n2012-01-01,12.8,4.7\n2012-01-02,10.6,x\n2012-01-03,11.7,2.3\n").unwrap();
        let mapping = Mapping {
            timestamp_column: Some("date".into()),
            timestamp_format: Some("%Y-%m-%d".parse().unwrap()),
            value_columns: vec!["temp".into(), "wind".into()],
            ..Mapping::default()
        };
        let options = Options { file: path, format: None, mapping, batch_size: 4, concurrency: 1, report: None, policy: fast() };
        let server = FakeServer::start(vec![]);
        let transport = Http::new(&server.url(), Duration::from_secs(5)).unwrap();
        let summary = run(&options, &transport, &mut Progress::Hidden).unwrap();
        assert_eq!((summary.source_rows, summary.rows, summary.accepted, summary.rejected), (3, 6, 5, 1));
        assert!(summary.line().starts_with("read 3 rows as 6 metrics: 5 accepted, 0 duplicates, 1 rejected"), "{}", summary.line());
        let types: Vec<String> = server.requests().iter().flat_map(|r| r.items()).map(|m| m["type"].as_str().unwrap().to_string()).collect();
        assert_eq!(types, ["temp", "wind", "temp", "temp", "wind"]);
    }

    #[test]
    fn names_made_into_types_are_listed_by_the_dry_run_and_named_after_an_import() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("iowa.csv");
        std::fs::write(
            &path,
            "year,source,net_generation\n2001-01-01,Fossil Fuels,35361\n2001-01-01,Nuclear Energy,3853\n\
             2001-01-01,Renewables,1437\n2002-01-01,Fossil Fuels,35991\n2002-01-01,%,1\n",
        )
        .unwrap();
        let mapping = Mapping {
            timestamp_column: Some("year".into()),
            timestamp_format: Some("%Y-%m-%d".parse().unwrap()),
            value_columns: vec!["net_generation".into()],
            type_column: Some("source".into()),
            ..Mapping::default()
        };
        let options = Options { file: path.clone(), format: None, mapping, batch_size: 10, concurrency: 1, report: None, policy: fast() };
        let mut out = Vec::new();
        let found = dry_run(&options, &mut out).unwrap();
        assert_eq!(found, DryRun { rows: 5, metrics: 4, refused: 1 });
        let text = String::from_utf8(out).unwrap();
        let tail: Vec<&str> = text.lines().skip(4).collect();
        assert_eq!(
            tail,
            [
                "line 6: refused: column `source`: `%` has no letter, digit, '_', '.' or '-' to make a type of",
                "types made from column `source` (2 names changed; --strict-types refuses them instead):",
                "  `Fossil Fuels` -> `Fossil_Fuels`",
                "  `Nuclear Energy` -> `Nuclear_Energy`",
            ],
            "{text}"
        );

        let server = FakeServer::start(vec![]);
        let transport = Http::new(&server.url(), Duration::from_secs(5)).unwrap();
        let summary = run(&options, &transport, &mut Progress::Hidden).unwrap();
        assert_eq!((summary.accepted, summary.rejected), (4, 1));
        let types: Vec<String> = server.requests().iter().flat_map(|r| r.items()).map(|m| m["type"].as_str().unwrap().to_string()).collect();
        assert_eq!(types, ["Fossil_Fuels", "Nuclear_Energy", "Renewables", "Fossil_Fuels"]);
        assert!(summary.renamed_types.as_deref().unwrap().starts_with("types made from column `source`: 2 name(s) changed"), "{:?}", summary.renamed_types);
        let report = std::fs::read_to_string(summary.report.unwrap()).unwrap();
        assert_eq!(report.lines().nth(1), Some("6,invalid_csv,\"column `source`: `%` has no letter, digit, '_', '.' or '-' to make a type of\","));
    }

    #[test]
    fn reports_the_lines_the_server_rejects() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.ndjson");
        let lines: Vec<String> = (0..6)
            .map(|i| {
                let value = if i == 4 { serde_json::json!("high") } else { serde_json::json!(i) };
                serde_json::json!({"type": "cpu", "value": value, "timestamp": "2026-11-30T10:00:00Z"}).to_string()
            })
            .collect();
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let server = FakeServer::start(vec![]);
        let summary = import(&server, path.clone(), 4, 1);
        assert_eq!((summary.rows, summary.accepted, summary.rejected), (6, 5, 1));
        // NDJSON lines go out as written: the server is the one that refuses.
        assert_eq!(server.requests().iter().map(|r| r.items().len()).collect::<Vec<_>>(), vec![4, 2]);
        let text = std::fs::read_to_string(report::default_path(&path)).unwrap();
        assert_eq!(
            text,
            "line,error,message,details\n5,validation_failed,invalid fields: value,\"value: must be a number, not a string\"\n"
        );
    }

    #[test]
    fn waits_out_429_and_resends_the_same_batch() {
        let dir = tempfile::tempdir().unwrap();
        let server = FakeServer::start(vec![
            boxed(|_| Answer::Respond {
                status: 429,
                headers: vec![("retry-after", "1".into())],
                body: r#"{"error":"rate_limited","retry_after_seconds":1}"#.into(),
            }),
            boxed(accept_numbers),
        ]);
        let start = Instant::now();
        let summary = import(&server, csv_file(&dir, 5, &[]), 500, 1);
        assert!(start.elapsed() >= Duration::from_secs(1), "Retry-After: 1 was not obeyed");
        assert_eq!((summary.accepted, summary.rate_limited, summary.requests, summary.exit_code()), (5, 1, 2, 0));
        let requests = server.requests();
        assert_eq!(requests[0].body, requests[1].body);
        assert!(summary.report.is_none() && !report::default_path(&dir.path().join("metrics.csv")).exists());
    }

    #[test]
    fn retries_503_and_dropped_connections() {
        let dir = tempfile::tempdir().unwrap();
        let server = FakeServer::start(vec![
            boxed(|_| respond(503, r#"{"error":"service_unavailable","message":"key-value store: down"}"#)),
            boxed(|_| Answer::Hang),
            boxed(accept_numbers),
        ]);
        let summary = import(&server, csv_file(&dir, 5, &[]), 500, 1);
        assert_eq!((summary.accepted, summary.retries, summary.exit_code()), (5, 2, 0));
        let requests = server.requests();
        assert_eq!(requests.len(), 3);
        assert!(requests.iter().all(|r| r.body == requests[0].body));
    }

    #[test]
    fn halves_batches_on_413() {
        let dir = tempfile::tempdir().unwrap();
        let too_large = |r: &crate::fake_server::Request| {
            if r.items().len() > 4 { respond(413, r#"{"error":"payload_too_large"}"#) } else { accept_numbers(r) }
        };
        let server = FakeServer::start((0..20).map(|_| boxed(too_large)).collect());
        let summary = import(&server, csv_file(&dir, 20, &[]), 10, 1);
        assert_eq!((summary.accepted, summary.splits, summary.exit_code()), (20, 2, 0));
        // 10 → 413, 5 → 413, then pieces of 2 (the size last known to pass), and the next batch goes out pre-split.
        let sizes: Vec<usize> = server.requests().iter().map(|r| r.items().len()).collect();
        assert_eq!(sizes, vec![10, 5, 2, 2, 1, 2, 2, 1, 2, 2, 2, 2, 2]);
    }

    #[test]
    fn stops_on_an_unexpected_answer() {
        let dir = tempfile::tempdir().unwrap();
        let server = FakeServer::start((0..5).map(|_| boxed(|_| respond(404, r#"{"error":"not_found"}"#))).collect());
        let summary = import(&server, csv_file(&dir, 30, &[]), 10, 1);
        assert_eq!(summary.exit_code(), 2);
        assert!(summary.fatal.as_deref().unwrap().contains("no batch endpoint"), "{:?}", summary.fatal);
        assert_eq!(server.requests().len(), 1);
        assert!(summary.line().contains("without a result"), "{}", summary.line());
    }

    #[test]
    fn gives_up_on_an_unreachable_server() {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let options = Options { file: csv_file(&dir, 3, &[]), format: None, mapping: Mapping::default(), batch_size: 10, concurrency: 1, report: None, policy: fast() };
        let transport = Http::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(5)).unwrap();
        let summary = run(&options, &transport, &mut Progress::Hidden).unwrap();
        assert_eq!((summary.exit_code(), summary.retries, summary.requests), (2, 3, 4));
        assert!(summary.fatal.unwrap().contains("giving up after 4 attempts"));
    }

    #[test]
    fn concurrent_batches_are_reported_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let bad: Vec<usize> = (0..200).filter(|i| i % 17 == 0).collect();
        let slow_first = |r: &crate::fake_server::Request| {
            // Earlier batches answer later, so results arrive out of order.
            let line = r.items().first().and_then(|m| m["value"].as_u64()).unwrap_or(0);
            std::thread::sleep(Duration::from_millis(60u64.saturating_sub(line / 4)));
            accept_numbers(r)
        };
        let server = FakeServer::start((0..40).map(|_| boxed(slow_first)).collect());
        let summary = import(&server, csv_file(&dir, 200, &bad), 10, 4);
        assert_eq!((summary.accepted, summary.rejected), (200 - bad.len() as u64, bad.len() as u64));
        let text = std::fs::read_to_string(summary.report.unwrap()).unwrap();
        let lines: Vec<u64> = text.lines().skip(1).map(|l| l.split(',').next().unwrap().parse().unwrap()).collect();
        assert_eq!(lines, bad.iter().map(|i| *i as u64 + 2).collect::<Vec<_>>());
    }

    #[test]
    fn refuses_a_file_without_the_required_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.csv");
        std::fs::write(&path, "time,value\n1,2\n").unwrap();
        let server = FakeServer::start(vec![]);
        let options = Options { file: path.clone(), format: None, mapping: Mapping::default(), batch_size: 10, concurrency: 1, report: None, policy: fast() };
        let transport = Http::new(&server.url(), Duration::from_secs(5)).unwrap();
        let err = run(&options, &transport, &mut Progress::Hidden).unwrap_err();
        assert!(format!("{err:#}").contains("missing required columns: timestamp, type"), "{err:#}");
        assert!(server.requests().is_empty());
    }
}
