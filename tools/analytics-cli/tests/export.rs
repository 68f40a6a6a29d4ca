//! End to end: `analytics-cli export` against the real `spin-host`. With
//! its defaults an export holds every metric the API holds: the export's
//! count, sum, min and max of each type equal the API's all-time summary,
//! metrics dated up to `max_clock_skew_seconds` ahead included.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::{rfc3339, Host};

/// count, sum, min, max of one type.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Totals {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Totals {
    fn of(values: &[f64]) -> Totals {
        let fold = |f: fn(f64, f64) -> f64, start: f64| values.iter().copied().fold(start, f);
        Totals { count: values.len() as u64, sum: values.iter().sum(), min: fold(f64::min, f64::INFINITY), max: fold(f64::max, f64::NEG_INFINITY) }
    }

    /// From `GET /api/metrics/summary?type=…` (no period: all time).
    fn from_summary(summary: &Value) -> Totals {
        let number = |field: &str| summary[field].as_f64().unwrap_or_else(|| panic!("no {field} in {summary}"));
        Totals { count: summary["count"].as_u64().expect("count"), sum: number("sum"), min: number("min_value"), max: number("max_value") }
    }
}

#[test]
fn a_default_export_holds_every_metric_the_api_holds_future_dated_ones_too() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("state dir");
    let host = Host::start(&state, dir.path().join("host.log"));

    // Per type: two 100 s ahead (inside the default skew of 300 s), ten in
    // the last hour, two years ago, one decades ago. Values are multiples of
    // 0.25, so every sum is exact in any order; the extremes sit in the future.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    let types = ["exp.cpu", "exp.mem", "exp.disk"];
    let mut posted: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut future_ids = BTreeSet::new();
    let mut batch = Vec::new();
    for (t, metric_type) in types.iter().enumerate() {
        let mut add = |n: usize, timestamp: u64, value: f64| {
            let id = format!("{metric_type}-{n}");
            if timestamp > now {
                future_ids.insert(id.clone());
            }
            batch.push(json!({"id": id, "type": metric_type, "timestamp": rfc3339(timestamp), "value": value}));
            posted.entry(metric_type).or_default().push(value);
        };
        let base = 10.0 * (t + 1) as f64;
        add(0, now + 100, base + 1_000.25);
        add(1, now + 100, base - 1_000.75);
        for i in 0..10u64 {
            add(2 + i as usize, now - 60 - i * 300, base + i as f64 * 0.25);
        }
        add(12, now - 2 * 365 * 86_400, base + 7.5);
        add(13, now - 3 * 365 * 86_400 - 17, base - 2.25);
        add(14, 1_000_000_000 + t as u64, base + 0.5); // 2001
    }
    let answer = host.post_batch(&Value::Array(batch));
    assert_eq!(answer["accepted"], json!(45), "{answer}");

    // What the API says it holds: the all-time summary of each type.
    for metric_type in types {
        assert_eq!(Totals::from_summary(&host.summary(metric_type)), Totals::of(&posted[metric_type]), "{metric_type}: the summary");
    }

    let output = dir.path().join("backup.ndjson");
    let run = Command::new(env!("CARGO_BIN_EXE_analytics-cli"))
        .args(["export", "--format", "ndjson", "--page-size", "4", "--url", &host.url, "-o"])
        .arg(&output)
        .stdin(Stdio::null())
        .output()
        .expect("running analytics-cli");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    eprintln!("{}", stdout.trim());

    let text = std::fs::read_to_string(&output).expect("the export");
    let metrics: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("an NDJSON line")).collect();
    let ids: Vec<&str> = metrics.iter().map(|m| m["id"].as_str().expect("id")).collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a metric exported twice");
    let missing: Vec<&String> = future_ids.iter().filter(|id| !unique.contains(id.as_str())).collect();
    assert!(missing.is_empty(), "future-dated metrics left out: {missing:?}");
    let mut exported: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for m in &metrics {
        exported.entry(m["type"].as_str().expect("type")).or_default().push(m["value"].as_f64().expect("value"));
    }
    assert_eq!(exported.keys().copied().collect::<Vec<_>>(), { let mut t = types.to_vec(); t.sort(); t });
    for metric_type in types {
        let summary = Totals::from_summary(&host.summary(metric_type));
        assert_eq!(Totals::of(&exported[metric_type]), summary, "{metric_type}: the export against the API's all-time summary");
    }
}
