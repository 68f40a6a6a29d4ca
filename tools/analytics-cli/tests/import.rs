//! End to end: the `analytics-cli` binary against the real `spin-host`, with
//! a rate limit of 20 requests per second so that 429s are waited out.
//!
//! 100 000 rows (50 of them bad, at known lines) are imported, imported
//! again (nothing stored twice), and a third file is imported with the CLI
//! killed after a second and run again (counts exact).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::{rfc3339, Host};

const ROWS: usize = 100_000;
const TYPES: [&str; 4] = ["cpu_usage", "memory_usage", "disk_io", "net_rx"];

/// What a generated file should give.
struct Expected {
    types: Vec<String>,
    good: BTreeMap<String, u64>,
    bad_lines: BTreeSet<u64>,
}

impl Expected {
    fn good_total(&self) -> u64 {
        self.good.values().sum()
    }
}

/// splitmix64: a reproducible file without a `rand` dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// `rows` rows over the last 7 days, types `<prefix><type>`, user ids and
/// three extra columns (one sometimes empty); one row in 2 000 is bad in one
/// of five ways (the server rejects four, the CLI one).
fn generate(path: &Path, rows: usize, prefix: &str, seed: u64) -> Expected {
    let types: Vec<String> = TYPES.iter().map(|t| format!("{prefix}{t}")).collect();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    let mut rng = Rng(seed);
    let mut good: BTreeMap<String, u64> = types.iter().map(|t| (t.clone(), 0)).collect();
    let mut bad_lines = BTreeSet::new();
    let mut text = String::with_capacity(rows * 80);
    text.push_str("timestamp,value,type,user_id,region,cores,spot\n");
    for i in 0..rows {
        let line = i as u64 + 2;
        let metric_type = &types[(rng.next() % types.len() as u64) as usize];
        let timestamp = rfc3339(now - 120 - rng.next() % (7 * 86_400 - 600));
        let value = format!("{:.2}", (rng.next() % 100_000) as f64 / 100.0);
        let region = ["eu-west", "us-east", "ap-south"][(rng.next() % 3) as usize];
        let cores = 1 << (rng.next() % 5);
        let spot = if i % 3 == 0 { "" } else if rng.next() & 1 == 0 { "true" } else { "false" };
        let user = rng.next() % 5_000;
        let (timestamp, value, metric_type, extra) = if i % 2_000 == 1_234 {
            bad_lines.insert(line);
            match (i / 2_000) % 5 {
                0 => (timestamp, "abc".to_string(), metric_type.as_str(), ""),
                1 => (timestamp, value, "", ""),
                2 => ("yesterday".to_string(), value, metric_type.as_str(), ""),
                3 => (timestamp, "NaN".to_string(), metric_type.as_str(), ""),
                _ => (timestamp, value, metric_type.as_str(), ",one field too many"),
            }
        } else {
            *good.get_mut(metric_type).expect("type") += 1;
            (timestamp, value, metric_type.as_str(), "")
        };
        let _ = writeln!(text, "{timestamp},{value},{metric_type},user-{user},{region},{cores},{spot}{extra}");
    }
    std::fs::write(path, text).expect("writing the CSV");
    Expected { types, good, bad_lines }
}

/// The numbers of the CLI's summary line.
#[derive(Debug)]
struct Stats {
    rows: u64,
    accepted: u64,
    duplicates: u64,
    rejected: u64,
    rate_limit_waits: u64,
}

/// The number right before `word` in `line`.
fn number_before(line: &str, word: &str) -> f64 {
    let at = line.find(word).unwrap_or_else(|| panic!("no `{word}` in {line}"));
    let number = line[..at].trim_end().rsplit([' ', '(', ':']).next().unwrap_or_default();
    number.parse().unwrap_or_else(|_| panic!("no number before `{word}` in {line}"))
}

fn stats(output: &Output) -> Stats {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().find(|l| l.starts_with("read ")).unwrap_or_else(|| {
        panic!("no summary line:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr))
    });
    Stats {
        rows: number_before(line, " rows:") as u64,
        accepted: number_before(line, " accepted") as u64,
        duplicates: number_before(line, " duplicates") as u64,
        rejected: number_before(line, " rejected") as u64,
        rate_limit_waits: number_before(line, " rate-limit waits") as u64,
    }
}

fn cli(file: &Path, url: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_analytics-cli"));
    command.arg("import").arg(file).args(["--url", url]).args(extra).stdin(Stdio::null());
    command
}

fn run(file: &Path, url: &str, extra: &[&str]) -> (i32, Stats) {
    let output = cli(file, url, extra).output().expect("running analytics-cli");
    let code = output.status.code().unwrap_or(-1);
    let stats = stats(&output);
    eprintln!("{}: exit {code}, {stats:?}\n{}", file.display(), String::from_utf8_lossy(&output.stdout).trim());
    (code, stats)
}

/// The `line` column of a report.
fn report_lines(file: &Path) -> BTreeSet<u64> {
    let mut name = file.as_os_str().to_os_string();
    name.push(".rejected.csv");
    let mut reader = csv::Reader::from_path(PathBuf::from(name)).expect("the report");
    reader.records().map(|r| r.expect("a report row")[0].parse().expect("a line number")).collect()
}

#[test]
fn imports_100k_rows_once_even_when_rerun_or_interrupted() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("state dir");
    let host = Host::start(&state, dir.path().join("host.log"));

    // 1. The whole file: the bad rows rejected, every good one stored.
    let first = dir.path().join("metrics.csv");
    let expected = generate(&first, ROWS, "", 1);
    assert_eq!(expected.bad_lines.len(), 50);
    let (code, once) = run(&first, &host.url, &[]);
    assert_eq!(code, 1, "some rows rejected");
    assert_eq!((once.rows, once.accepted, once.duplicates, once.rejected), (ROWS as u64, expected.good_total(), 0, 50));
    assert_eq!(report_lines(&first), expected.bad_lines);
    assert_eq!(host.counts(&expected.types), expected.good);

    // 2. Again, two requests at a time: all duplicates, nothing stored twice.
    let (code, twice) = run(&first, &host.url, &["--concurrency", "2"]);
    assert_eq!(code, 1, "the same bad rows");
    assert_eq!((twice.accepted, twice.duplicates, twice.rejected), (0, expected.good_total(), 50));
    assert_eq!(report_lines(&first), expected.bad_lines);
    assert_eq!(host.counts(&expected.types), expected.good);

    // 3. One row per request, four at a time: far over 20 requests a second,
    // so the CLI must wait out 429s, and still store each row once.
    let small = dir.path().join("small.csv");
    let probe = generate(&small, 60, "probe.", 3);
    assert!(probe.bad_lines.is_empty());
    let (code, limited) = run(&small, &host.url, &["--batch-size", "1", "--concurrency", "4"]);
    assert_eq!((code, limited.accepted), (0, 60));
    assert!(limited.rate_limit_waits > 0, "no 429 was waited out: {limited:?}");
    assert_eq!(host.counts(&probe.types), probe.good);

    // 4. NDJSON, sent as is (with ids added where missing), twice.
    let ndjson = dir.path().join("metrics.ndjson");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    let mut text = String::new();
    for i in 0..300u64 {
        let id = if i % 2 == 0 { format!(r#""id": "nd-{i}", "#) } else { String::new() };
        let _ = writeln!(text, r#"{{{id}"timestamp": "{}", "value": {i}.5, "type": "ndjson.cpu", "properties": {{"n": {i}}}}}"#, rfc3339(now - 60 - i));
    }
    text.push('\n'); // line 301, blank: skipped
    text.push_str("[1, 2]\n"); // line 302: not an object, refused by the CLI
    text.push_str(r#"{"timestamp": "yesterday", "value": 1, "type": "ndjson.cpu"}"#); // line 303
    std::fs::write(&ndjson, text).expect("writing the NDJSON");
    for (round, (accepted, duplicates)) in [(300, 0), (0, 300)].into_iter().enumerate() {
        let (code, stats) = run(&ndjson, &host.url, &["--batch-size", "128"]);
        assert_eq!((code, stats.rows, stats.accepted, stats.duplicates, stats.rejected), (1, 302, accepted, duplicates, 2), "round {round}");
        assert_eq!(report_lines(&ndjson), BTreeSet::from([302, 303]));
        assert_eq!(host.count("ndjson.cpu"), 300);
    }

    // 5. Killed after about a second, then run to the end: exact counts.
    let resumed = dir.path().join("resumed.csv");
    let expected = generate(&resumed, ROWS, "resume.", 2);
    let mut killed = cli(&resumed, &host.url, &[]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawning analytics-cli");
    let since = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    while host.counts(&expected.types).values().sum::<u64>() == 0 {
        assert!(since.elapsed() < Duration::from_secs(30), "nothing was stored in 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    killed.kill().expect("killing analytics-cli");
    let status = killed.wait().expect("waiting for analytics-cli");
    assert!(!status.success(), "the first run was not interrupted: {status}");
    let partial: u64 = host.counts(&expected.types).values().sum();
    assert!(partial > 0 && partial < expected.good_total(), "{partial} of {} stored before the kill", expected.good_total());
    let (code, rest) = run(&resumed, &host.url, &[]);
    assert_eq!(code, 1);
    assert_eq!(rest.accepted + rest.duplicates, expected.good_total());
    assert!(rest.duplicates >= partial, "{rest:?}: {partial} were stored before the kill");
    assert_eq!(report_lines(&resumed), expected.bad_lines);
    assert_eq!(host.counts(&expected.types), expected.good);

    let waits = once.rate_limit_waits + twice.rate_limit_waits + limited.rate_limit_waits + rest.rate_limit_waits;
    eprintln!("{waits} rate-limit waits in all; {:.1} s in all; {partial} rows stored before the kill", started.elapsed().as_secs_f64());
}

#[test]
fn a_file_without_the_required_columns_is_fatal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bad.csv");
    std::fs::write(&file, "time,value,kind\n2026-11-30T10:00:00Z,1,cpu\n").expect("writing");
    // No server is needed: the header is checked before anything is sent.
    let output = cli(&file, "http://127.0.0.1:9", &[]).output().expect("running analytics-cli");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("missing required columns: timestamp, type"), "{stderr}");
    let usage = cli(&file, "http://127.0.0.1:9", &["--batch-size", "5000"]).output().expect("running analytics-cli");
    assert_eq!(usage.status.code(), Some(2), "usage errors exit 2");
}

/// The shape of vega-datasets' `iowa-electricity.csv` (17 years of three
/// sources, named with spaces), and one row whose source has no character a
/// type may hold. Lines 2–18 are `Fossil Fuels`, 19–35 `Nuclear Energy`,
/// 36–52 `Renewables`, 53 the bad one.
fn iowa_like(path: &Path) {
    let mut text = String::from("year,source,net_generation\n");
    for (s, source) in ["Fossil Fuels", "Nuclear Energy", "Renewables"].iter().enumerate() {
        for year in 2001..=2017 {
            let _ = writeln!(text, "{year}-01-01,{source},{}", 1_000 * (s + 1) + year % 100);
        }
    }
    text.push_str("2017-01-01,%%,1\n");
    std::fs::write(path, text).expect("writing the CSV");
}

#[test]
fn a_type_column_with_spaced_names_imports_under_the_types_the_rule_makes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("state dir");
    let host = Host::start(&state, dir.path().join("host.log"));
    let file = dir.path().join("iowa.csv");
    iowa_like(&file);
    let mapping = ["--timestamp-column", "year", "--timestamp-format", "%Y-%m-%d", "--value-column", "net_generation"];
    let mapping: Vec<&str> = mapping.into_iter().chain(["--type-column", "source", "--type-prefix", "iowa."]).collect();
    let types: Vec<String> = ["iowa.Fossil_Fuels", "iowa.Nuclear_Energy", "iowa.Renewables"].map(String::from).to_vec();

    // The dry run shows what each changed name becomes, and the row it refuses.
    let mut dry = Command::new(env!("CARGO_BIN_EXE_analytics-cli"));
    let dry = dry.arg("import").arg(&file).arg("--dry-run").args(&mapping).output().expect("running analytics-cli");
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert_eq!(dry.status.code(), Some(1), "{stdout}");
    for expected in [
        "line 53: refused: column `source`: `%%` has no letter, digit, '_', '.' or '-' to make a type of",
        "types made from column `source` (2 names changed; --strict-types refuses them instead):",
        "  `Fossil Fuels` -> `iowa.Fossil_Fuels`",
        "  `Nuclear Energy` -> `iowa.Nuclear_Energy`",
        "dry run: 52 rows make 51 metrics; 1 refused by the CLI",
    ] {
        assert!(stdout.contains(expected), "no `{expected}` in:\n{stdout}");
    }
    assert!(!stdout.contains("`Renewables` ->"), "a valid name is not listed as changed:\n{stdout}");

    // --strict-types: as before the rule, the spaced names are refused (here, by the CLI).
    let mut strict = mapping.clone();
    strict.push("--strict-types");
    let (code, refused) = run(&file, &host.url, &strict);
    assert_eq!((code, refused.rows, refused.accepted, refused.rejected), (1, 52, 17, 35));
    assert_eq!(report_lines(&file), (2..=35).chain([53]).collect());
    assert_eq!(host.counts(&types), BTreeMap::from([(types[0].clone(), 0), (types[1].clone(), 0), (types[2].clone(), 17)]));

    // By default every row with a name imports; the ids are the rows' own, so
    // the 17 stored by the strict run are duplicates, not stored twice.
    let (code, made) = run(&file, &host.url, &mapping);
    assert_eq!((code, made.rows, made.accepted, made.duplicates, made.rejected), (1, 52, 34, 17, 1));
    assert_eq!(report_lines(&file), BTreeSet::from([53]));
    assert_eq!(host.counts(&types), types.iter().map(|t| (t.clone(), 17)).collect());
}
