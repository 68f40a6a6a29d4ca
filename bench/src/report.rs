//! Results: one row per scenario and section (how the host keeps the store,
//! which Redis), the ratios against the floor, the targets with PASS/MISS,
//! printed as a table and saved as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::host::RedisKind;
use crate::seed::SeedStats;

/// How the section's host keeps the key-value store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Store {
    /// SQLite, a request's writes in one transaction (`--store-mode fast`).
    Fast,
    /// SQLite as Spin keeps it, a durable transaction per write (`--store-mode spin`).
    Spin,
    /// The Spin CLI itself (`spin up`, from `SPIN_BIN`), on the same files.
    Real,
    /// A redis-server shared by replicas (runtime config `type = "redis"`).
    RedisKv,
    /// The FastAPI + Redis implementation of the same API, side by side.
    Peer,
}

/// Where the app keeps its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// Spin's key-value store on SQLite (the default).
    Sqlite,
    /// Spin's key-value store on a redis-server (runtime config `type = "redis"`).
    KvRedis,
    /// A redis-server the app talks to directly (`store_backend = "redis"`).
    Redis,
    /// A PostgreSQL server through Spin's pooled outbound connections
    /// (`store_backend = "postgres"`).
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::KvRedis => "kv-redis",
            Backend::Redis => "redis",
            Backend::Postgres => "postgres",
        }
    }
}

/// The conditions a group of rows was measured under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Section {
    pub store: Store,
    pub backend: Backend,
    pub redis: RedisKind,
}

impl Section {
    pub fn name(&self) -> String {
        let store = match self.store {
            Store::Fast => "fast",
            Store::Spin => "spin",
            Store::Real => "real-spin",
            Store::RedisKv => "replicas",
            Store::Peer => return "peer".into(),
        };
        format!("{store}/{}/{}", self.backend.name(), self.redis.name())
    }
}

/// The scenarios, in the order they run within one section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    Floor,
    /// The probe fixture making one key-value write (an increment) per request.
    WriteProbe,
    /// The probe fixture making one key-value read per request.
    ReadProbe,
    /// The probe fixture opening a Redis connection and sending one `INCR`.
    RedisWriteProbe,
    /// The probe fixture opening a Redis connection and sending one `GET`.
    RedisReadProbe,
    /// The probe fixture sending one PostgreSQL upsert (`INSERT … ON
    /// CONFLICT … DO UPDATE … RETURNING`) on a pooled connection.
    PgUpsertProbe,
    /// The probe fixture sending one PostgreSQL `SELECT` by primary key.
    PgReadProbe,
    Ingest,
    SummaryCached,
    List,
    /// Batches of [`BATCH_SIZE`] metrics; its rate is in metrics per second.
    IngestBatch,
    /// One metric posted for every nine summaries of its type.
    Mixed,
    SummaryUncachedSmall,
    SummaryUncachedLarge,
    BreakerOpen,
    /// Ingest and uncached summaries against one and two replicas.
    IngestOneReplica,
    IngestTwoReplicas,
    SummaryOneReplica,
    SummaryTwoReplicas,
}

/// What one scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub section: Section,
    pub scenario: Scenario,
    /// What was sent, e.g. `GET /api/metrics/list?type=bench_1000000&limit=100`.
    pub request: String,
    pub seconds: f64,
    /// Answers that were the expected one.
    pub ok: u64,
    /// Expected answers per second.
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Unexpected answers and failed requests.
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    /// Largest VmRSS of the host sampled during the scenario.
    pub host_rss_max_mb: f64,
    /// The host's VmHWM (peak since it started) at the end of the scenario.
    pub host_hwm_mb: f64,
    /// CPU used during the scenario, in % of one core (200 % = both cores here).
    pub host_cpu_percent: f64,
    pub client_cpu_percent: f64,
    pub redis_server_cpu_percent: Option<f64>,
    /// CPU used by everything else on the machine meanwhile (other users of the shared cores).
    pub other_cpu_percent: f64,
    /// Scenario-specific figures: cache answers and upstream calls of the
    /// mixed scenario, Redis round trips and connections per ingest.
    pub extra: BTreeMap<String, f64>,
}

impl Row {
    pub fn label(&self, small: u64, large: u64) -> String {
        match self.scenario {
            Scenario::Floor => "floor (hello)".into(),
            Scenario::WriteProbe => "probe: 1 key-value write".into(),
            Scenario::ReadProbe => "probe: 1 key-value read".into(),
            Scenario::RedisWriteProbe => "probe: connect + INCR".into(),
            Scenario::RedisReadProbe => "probe: connect + GET".into(),
            Scenario::PgUpsertProbe => "probe: 1 pg upsert".into(),
            Scenario::PgReadProbe => "probe: 1 pg SELECT by key".into(),
            Scenario::Ingest => "ingest POST".into(),
            Scenario::SummaryCached => "summary cached (HIT)".into(),
            Scenario::List => "list first page (100)".into(),
            Scenario::SummaryUncachedSmall => format!("summary uncached @{}", count_label(small)),
            Scenario::SummaryUncachedLarge => format!("summary uncached @{}", count_label(large)),
            Scenario::BreakerOpen => "summary, breaker open".into(),
            Scenario::Mixed => "1 write : 9 summaries".into(),
            Scenario::IngestBatch => format!("ingest, {BATCH_SIZE}/batch (metrics)"),
            Scenario::IngestOneReplica => "ingest, 1 replica".into(),
            Scenario::IngestTwoReplicas => "ingest, 2 replicas".into(),
            Scenario::SummaryOneReplica => "summary uncached, 1 replica".into(),
            Scenario::SummaryTwoReplicas => "summary uncached, 2 replicas".into(),
        }
    }
}

fn count_label(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// A target from the issue, checked against one section's rows.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub section: Section,
    pub name: String,
    pub measured: String,
    pub pass: bool,
    /// Other processes used more than [`BUSY_PERCENT`] of a core during a
    /// scenario this target reads: the verdict says little about the API.
    pub busy_machine: bool,
}

/// CPU use by other processes (% of one core) above which a scenario ran on a busy machine.
pub const BUSY_PERCENT: f64 = 25.0;

/// A host's complaints, from its log.
#[derive(Debug, Clone, Serialize)]
pub struct HostLog {
    pub section: Section,
    pub host: String,
    pub error_lines: u64,
    pub warning_lines: u64,
    /// A few distinct lines, for a first look.
    pub samples: Vec<String>,
}

/// Everything a run produced; what goes to `bench/results/<unix-time>.json`.
#[derive(Debug, Serialize)]
pub struct Run {
    pub unix_time: u64,
    pub git_commit: String,
    pub quick: bool,
    pub seconds_per_scenario: f64,
    pub warmup_seconds: f64,
    pub connections: usize,
    pub client_threads: usize,
    pub cpus: usize,
    pub load_average_at_start: String,
    pub load_average_at_end: String,
    pub small_metrics: u64,
    pub large_metrics: u64,
    pub seeding: SeedStats,
    pub seed_copy_seconds: f64,
    pub rows: Vec<Row>,
    pub targets: Vec<Target>,
    /// Bytes per metric on disk and the fold's cost ([`crate::disk`]).
    pub disk: Vec<crate::disk::DiskRow>,
    pub host_logs: Vec<HostLog>,
    pub notes: Vec<String>,
}

const MB: f64 = 1024.0 * 1024.0;

pub fn mb(bytes: u64) -> f64 {
    bytes as f64 / MB
}

fn find(rows: &[Row], section: Section, scenario: Scenario) -> Option<&Row> {
    rows.iter().find(|r| r.section == section && r.scenario == scenario)
}

/// A scenario's throughput over the floor's, same section.
pub fn vs_floor(rows: &[Row], row: &Row) -> Option<f64> {
    let floor = find(rows, row.section, Scenario::Floor)?;
    (floor.requests_per_second > 0.0).then(|| row.requests_per_second / floor.requests_per_second)
}

/// Metrics per batch in the batch scenario.
pub const BATCH_SIZE: usize = 500;
/// Batched ingest over single-metric ingest, in metrics per second.
pub const BATCH_TARGET: f64 = 10.0;

/// Single-metric ingests per second under Spin's store costs (the target).
pub const SPIN_INGEST_TARGET: f64 = 300.0;
/// Two replicas over one, ingest throughput.
pub const REPLICA_SCALING_TARGET: f64 = 1.6;

/// The issues' targets, for each section that ran.
pub fn targets(rows: &[Row], large: u64, small: u64) -> Vec<Target> {
    let mut out = Vec::new();
    let mut sections: Vec<Section> = Vec::new();
    for r in rows {
        if !sections.contains(&r.section) {
            sections.push(r.section);
        }
    }
    // Real Spin has its own targets (`crate::versus`).
    for section in sections.into_iter().filter(|s| s.store != Store::Real) {
        let row = |scenario| find(rows, section, scenario);
        let busy = |read: &[Option<&Row>]| read.iter().flatten().any(|r| r.other_cpu_percent > BUSY_PERCENT);
        let mut push = |name: String, measured: String, pass: bool, busy_machine: bool| {
            out.push(Target { section, name, measured, pass, busy_machine })
        };
        let floor = row(Scenario::Floor);
        if let Some(r) = row(Scenario::SummaryCached).and_then(|r| vs_floor(rows, r)) {
            let name = "cached summary >= 0.6 x floor throughput";
            push(name.into(), format!("{r:.2} x"), r >= 0.6, busy(&[floor, row(Scenario::SummaryCached)]));
        }
        match (section.store, row(Scenario::Ingest)) {
            (Store::Spin, Some(ingest)) => push(
                format!("ingest >= {SPIN_INGEST_TARGET:.0} metrics/s (Spin's store costs)"),
                format!("{:.0} metrics/s", ingest.requests_per_second),
                ingest.requests_per_second >= SPIN_INGEST_TARGET,
                busy(&[row(Scenario::Ingest)]),
            ),
            (_, Some(ingest)) => {
                if let Some(r) = vs_floor(rows, ingest) {
                    push("ingest >= 0.3 x floor throughput".into(), format!("{r:.2} x"), r >= 0.3, busy(&[floor, Some(ingest)]));
                }
            }
            _ => {}
        }
        if let (Some(probe), Some(ingest)) = (row(Scenario::WriteProbe), row(Scenario::Ingest)) {
            let r = ingest.requests_per_second / probe.requests_per_second.max(1e-9);
            push(
                "ingest >= 90 % of one key-value write per request".into(),
                format!("{:.0} % ({:.0} / {:.0} req/s)", r * 100.0, ingest.requests_per_second, probe.requests_per_second),
                r >= 0.9,
                busy(&[Some(probe), Some(ingest)]),
            );
        }
        if let (Some(single), Some(batch)) = (row(Scenario::Ingest), row(Scenario::IngestBatch)) {
            let r = batch.requests_per_second / single.requests_per_second.max(1e-9);
            push(
                format!("batches of {BATCH_SIZE} >= {BATCH_TARGET} x single ingest (metrics/s)"),
                format!("{r:.1} x ({:.0} / {:.0} metrics/s)", batch.requests_per_second, single.requests_per_second),
                r >= BATCH_TARGET,
                busy(&[Some(single), Some(batch)]),
            );
        }
        if let Some((mixed, calls)) = row(Scenario::Mixed).and_then(|m| Some((m, *m.extra.get("upstream_calls")?))) {
            let allowed = mixed.extra.get("upstream_calls_allowed").copied().unwrap_or(0.0);
            push(
                "mixed: upstream calls <= 1 per type per context TTL".into(),
                format!("{calls:.0} calls (allowed {allowed:.0}), cache hit rate {:.0} %", mixed.extra.get("cache_hit_rate").copied().unwrap_or(0.0) * 100.0),
                calls <= allowed,
                false,
            );
        }
        if let (Some(one), Some(two)) = (row(Scenario::IngestOneReplica), row(Scenario::IngestTwoReplicas)) {
            let r = two.requests_per_second / one.requests_per_second.max(1e-9);
            push(
                format!("2 replicas >= {REPLICA_SCALING_TARGET} x 1 replica ingest"),
                format!("{r:.2} x ({:.0} / {:.0} metrics/s)", two.requests_per_second, one.requests_per_second),
                r >= REPLICA_SCALING_TARGET,
                busy(&[Some(one), Some(two)]),
            );
        }
        let small_row = row(Scenario::SummaryUncachedSmall);
        let large_row = row(Scenario::SummaryUncachedLarge);
        if let (Some(s), Some(l)) = (small_row, large_row) {
            let r = if s.p50_ms > 0.0 { l.p50_ms / s.p50_ms } else { f64::INFINITY };
            push(
                format!("uncached summary p50 @{} <= 1.5 x @{}", count_label(large), count_label(small)),
                format!("{r:.2} x ({:.2} / {:.2} ms)", l.p50_ms, s.p50_ms),
                r <= 1.5,
                busy(&[small_row, large_row]),
            );
        }
        if let Some(f) = floor {
            push(
                "floor >= 10000 req/s with p99 < 10 ms".into(),
                format!("{:.0} req/s, p99 {:.2} ms", f.requests_per_second, f.p99_ms),
                f.requests_per_second >= 10_000.0 && f.p99_ms < 10.0,
                busy(&[floor]),
            );
        }
        if matches!(section.store, Store::RedisKv | Store::Peer) {
            continue;
        }
        let peak = rows
            .iter()
            .filter(|r| r.section == section)
            .map(|r| r.host_rss_max_mb.max(r.host_hwm_mb))
            .fold(0.0, f64::max);
        push("host RSS <= 150 MB (VmRSS max and VmHWM)".into(), format!("{peak:.1} MB"), peak <= 150.0, false);
    }
    out
}

/// The table, the ratios and the targets, as printed.
pub fn render(run: &Run) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n{:<17} {:<28} {:>9} {:>8} {:>8} {:>7} {:>15} {:>5} {:>5} {:>5} {:>5} {:>7}",
        "store/redis", "scenario", "req/s", "p50 ms", "p99 ms", "errors", "RSS MB (HWM)", "host", "load", "redis", "other", "x floor"
    );
    for row in &run.rows {
        let ratio = vs_floor(&run.rows, row).map_or("-".to_string(), |r| format!("{r:.2}"));
        let _ = writeln!(
            s,
            "{:<17} {:<28} {:>9.0} {:>8.2} {:>8.2} {:>7} {:>15} {:>4.0}% {:>4.0}% {:>5} {:>6} {:>7}",
            row.section.name(),
            row.label(run.small_metrics, run.large_metrics),
            row.requests_per_second,
            row.p50_ms,
            row.p99_ms,
            row.errors,
            format!("{:.1} ({:.1})", row.host_rss_max_mb, row.host_hwm_mb),
            row.host_cpu_percent,
            row.client_cpu_percent,
            row.redis_server_cpu_percent.map_or("-".to_string(), |p| format!("{p:.0}%")),
            format!("{:.0}%{}", row.other_cpu_percent, if row.other_cpu_percent > BUSY_PERCENT { "!" } else { "" }),
            ratio,
        );
    }
    let _ = writeln!(
        s,
        "(CPU: % of one core during the scenario, {} cores: the host, the load generator, redis-server, and every other process on the machine; ! above {BUSY_PERCENT}%)",
        run.cpus
    );
    let with_extra: Vec<&Row> = run.rows.iter().filter(|r| !r.extra.is_empty()).collect();
    if !with_extra.is_empty() {
        let _ = writeln!(s, "\nDetails:");
        for row in with_extra {
            let figures: Vec<String> = row.extra.iter().map(|(k, v)| format!("{k} {v:.2}")).collect();
            let _ = writeln!(s, "  {} {}: {}", row.section.name(), row.label(run.small_metrics, run.large_metrics), figures.join(", "));
        }
    }
    let with_errors: Vec<&Row> = run.rows.iter().filter(|r| r.errors > 0).collect();
    if !with_errors.is_empty() {
        let _ = writeln!(s, "\nErrors:");
        for row in with_errors {
            let kinds: Vec<String> = row.error_kinds.iter().map(|(k, n)| format!("{n} x {k}")).collect();
            let _ = writeln!(s, "  {} {}: {}", row.section.name(), row.label(run.small_metrics, run.large_metrics), kinds.join(", "));
        }
    }
    let peer = |scenario| run.rows.iter().find(|r| r.section.store == Store::Peer && r.scenario == scenario);
    if peer(Scenario::Ingest).is_some() {
        let _ = writeln!(s, "\nAgainst the peer (same load generator, same machine, one after the other):");
        for row in run.rows.iter().filter(|r| r.section.store != Store::Peer) {
            if let Some(p) = peer(row.scenario).filter(|_| matches!(row.scenario, Scenario::Ingest | Scenario::SummaryCached | Scenario::Mixed)) {
                let _ = writeln!(
                    s,
                    "  {:<26} {:<22} {:>6.2} x the peer's req/s ({:.0} / {:.0}), p99 {:.2} x ({:.2} / {:.2} ms)",
                    row.section.name(),
                    format!("{:?}", row.scenario),
                    row.requests_per_second / p.requests_per_second.max(1e-9),
                    row.requests_per_second,
                    p.requests_per_second,
                    row.p99_ms / p.p99_ms.max(1e-9),
                    row.p99_ms,
                    p.p99_ms,
                );
            }
        }
    }
    if !run.disk.is_empty() {
        let _ = writeln!(s, "\nOn disk (natively through the core into SQLite, Spin's table):\n{}", crate::disk::render(&run.disk));
    }
    let _ = writeln!(s, "\nTargets:");
    for t in &run.targets {
        let verdict = if t.pass { "PASS" } else { "MISS" };
        let busy = if t.busy_machine { "  (busy machine: other processes took CPU meanwhile)" } else { "" };
        let _ = writeln!(s, "  {verdict}  {:<17} {:<52} {}{busy}", t.section.name(), t.name, t.measured);
    }
    let logs: Vec<&HostLog> = run.host_logs.iter().filter(|l| l.error_lines + l.warning_lines > 0).collect();
    if !logs.is_empty() {
        let _ = writeln!(s, "\nHost logs:");
        for log in logs {
            let _ = writeln!(
                s,
                "  {} {}: {} error and {} warning lines, e.g.",
                log.section.name(),
                log.host,
                log.error_lines,
                log.warning_lines
            );
            for line in &log.samples {
                let _ = writeln!(s, "    {line}");
            }
        }
    }
    if !run.notes.is_empty() {
        let _ = writeln!(s, "\nNotes:");
        for note in &run.notes {
            let _ = writeln!(s, "  - {note}");
        }
    }
    s
}

/// Writes `run` to `<dir>/<unix-time>.json`.
pub fn save(run: &Run, dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{}.json", run.unix_time));
    let text = serde_json::to_string_pretty(run).context("serialising the results")?;
    std::fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Counts the error and warning lines in a host's log.
pub fn scan_log(section: Section, host: &str, text: &str) -> HostLog {
    let mut log = HostLog { section, host: host.to_string(), error_lines: 0, warning_lines: 0, samples: Vec::new() };
    for line in text.lines() {
        let lower = line.to_ascii_lowercase();
        let kind = if lower.contains("error") || lower.contains("panic") || lower.contains("trap") {
            &mut log.error_lines
        } else if lower.contains("warning") || lower.contains("unavailable") || lower.contains("failed") {
            &mut log.warning_lines
        } else {
            continue;
        };
        *kind += 1;
        let short: String = line.chars().take(200).collect();
        if log.samples.len() < 3 && !log.samples.contains(&short) {
            log.samples.push(short);
        }
    }
    log
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(redis: RedisKind, scenario: Scenario, rps: f64, p50: f64, rss: f64) -> Row {
        Row {
            section: Section { store: Store::Fast, backend: Backend::Sqlite, redis },
            scenario,
            request: String::new(),
            seconds: 10.0,
            ok: (rps * 10.0) as u64,
            requests_per_second: rps,
            p50_ms: p50,
            p90_ms: p50,
            p99_ms: p50 * 2.0,
            max_ms: p50 * 3.0,
            errors: 0,
            error_kinds: BTreeMap::new(),
            host_rss_max_mb: rss,
            host_hwm_mb: rss,
            host_cpu_percent: 100.0,
            client_cpu_percent: 50.0,
            redis_server_cpu_percent: None,
            other_cpu_percent: 0.0,
            extra: BTreeMap::new(),
        }
    }

    #[test]
    fn targets_compare_with_the_floor_of_the_same_redis() {
        use RedisKind::*;
        let rows = vec![
            row(Embedded, Scenario::Floor, 20_000.0, 1.0, 50.0),
            row(Embedded, Scenario::SummaryCached, 13_000.0, 2.0, 60.0),
            row(Embedded, Scenario::Ingest, 5_000.0, 5.0, 70.0),
            row(Embedded, Scenario::SummaryUncachedSmall, 1_000.0, 4.0, 70.0),
            row(Embedded, Scenario::SummaryUncachedLarge, 900.0, 6.5, 160.0),
            row(External, Scenario::Floor, 10_000.0, 1.0, 50.0),
            row(External, Scenario::SummaryCached, 5_000.0, 2.0, 60.0),
        ];
        let t = targets(&rows, 1_000_000, 1_000);
        let verdict = |redis, prefix: &str| {
            let section = Section { store: Store::Fast, backend: Backend::Sqlite, redis };
            t.iter().find(|t| t.section == section && t.name.starts_with(prefix)).map(|t| t.pass)
        };
        assert_eq!(verdict(Embedded, "cached"), Some(true)); // 0.65
        assert_eq!(verdict(Embedded, "ingest"), Some(false)); // 0.25
        assert_eq!(verdict(Embedded, "uncached"), Some(false)); // 1.625
        assert_eq!(verdict(Embedded, "floor"), Some(true));
        assert_eq!(verdict(Embedded, "host RSS"), Some(false));
        assert_eq!(verdict(External, "cached"), Some(false)); // 0.5 of its own floor
        assert_eq!(verdict(External, "ingest"), None);
        assert!(t.iter().any(|t| t.name.contains("@1M <= 1.5 x @1k")));
        assert!(t.iter().all(|t| !t.busy_machine));
        let mut busy = rows.clone();
        busy[1].other_cpu_percent = 80.0;
        let t = targets(&busy, 1_000_000, 1_000);
        let flagged: Vec<&str> = t.iter().filter(|t| t.busy_machine).map(|t| t.name.as_str()).collect();
        assert_eq!(flagged, vec!["cached summary >= 0.6 x floor throughput"]);
    }

    #[test]
    fn spin_sections_and_replicas_have_their_own_targets() {
        let spin = Section { store: Store::Spin, backend: Backend::Sqlite, redis: RedisKind::Embedded };
        let kv = Section { store: Store::RedisKv, backend: Backend::KvRedis, redis: RedisKind::External };
        let mut rows = vec![
            Row { section: spin, ..row(RedisKind::Embedded, Scenario::Ingest, 320.0, 5.0, 70.0) },
            Row { section: kv, ..row(RedisKind::External, Scenario::IngestOneReplica, 1_000.0, 5.0, 70.0) },
            Row { section: kv, ..row(RedisKind::External, Scenario::IngestTwoReplicas, 1_500.0, 5.0, 70.0) },
        ];
        let mut mixed = Row { section: spin, ..row(RedisKind::Embedded, Scenario::Mixed, 2_000.0, 5.0, 70.0) };
        mixed.extra = BTreeMap::from([("upstream_calls".to_string(), 2.0), ("upstream_calls_allowed".to_string(), 1.0)]);
        rows.push(mixed);
        let t = targets(&rows, 1_000_000, 1_000);
        let verdict = |prefix: &str| t.iter().find(|t| t.name.starts_with(prefix)).map(|t| t.pass);
        assert_eq!(verdict("ingest >= 300"), Some(true));
        assert_eq!(verdict("2 replicas"), Some(false)); // 1.5 x
        assert_eq!(verdict("mixed"), Some(false));
        assert!(t.iter().all(|t| t.section != kv || !t.name.starts_with("host RSS")));
    }

    #[test]
    fn log_scan_counts_and_samples() {
        let log = scan_log(Section { store: Store::Fast, backend: Backend::Sqlite, redis: RedisKind::Embedded }, "app", "Serving\nerror: x trapped\nerror: x trapped\nwarning: y\n");
        assert_eq!((log.error_lines, log.warning_lines), (2, 1));
        assert_eq!(log.samples, vec!["error: x trapped".to_string(), "warning: y".to_string()]);
    }
}
