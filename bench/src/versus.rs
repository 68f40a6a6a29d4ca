//! The runtimes side by side: real Spin, the host's Spin-like and fast
//! modes, and the peer, each scenario of the `stores` part beside the probes
//! that say what its store calls cost; and the targets that compare them.

use std::fmt::Write as _;

use crate::host::RedisKind;
use crate::report::{Backend, Row, Scenario, Section, Store, Target, BUSY_PERCENT};

/// The table's rows, in order.
const SCENARIOS: &[Scenario] = &[
    Scenario::Floor,
    Scenario::ReadProbe,
    Scenario::WriteProbe,
    Scenario::RedisReadProbe,
    Scenario::RedisWriteProbe,
    Scenario::PgReadProbe,
    Scenario::PgUpsertProbe,
    Scenario::Ingest,
    Scenario::SummaryCached,
    Scenario::Mixed,
];

/// The table's columns, in order (those without rows are left out).
fn columns() -> Vec<Section> {
    let mut out = Vec::new();
    for store in [Store::Real, Store::Spin, Store::Fast] {
        for backend in [Backend::Sqlite, Backend::Redis, Backend::KvRedis, Backend::Postgres] {
            out.push(Section { store, backend, redis: RedisKind::External });
        }
    }
    out.push(Section { store: Store::Peer, backend: Backend::Sqlite, redis: RedisKind::External });
    out
}

fn find(rows: &[Row], section: Section, scenario: Scenario) -> Option<&Row> {
    rows.iter().find(|r| r.section == section && r.scenario == scenario)
}

/// The peer's row of `scenario` (the peer has one section).
fn peer(rows: &[Row], scenario: Scenario) -> Option<&Row> {
    rows.iter().find(|r| r.section.store == Store::Peer && r.scenario == scenario)
}

fn short_label(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::Floor => "floor (hello)",
        Scenario::ReadProbe => "probe: 1 key-value read",
        Scenario::WriteProbe => "probe: 1 key-value write",
        Scenario::RedisReadProbe => "probe: connect + GET",
        Scenario::RedisWriteProbe => "probe: connect + INCR",
        Scenario::PgReadProbe => "probe: pg SELECT by key",
        Scenario::PgUpsertProbe => "probe: pg upsert",
        Scenario::Ingest => "POST /api/metrics",
        Scenario::SummaryCached => "summary, cached",
        Scenario::Mixed => "1 write : 9 summaries",
        _ => "",
    }
}

/// The probes a section's store calls are measured against: one write and
/// one read on Spin's key-value store, one command on a new connection
/// to the Redis spoken to directly, or one upsert and one read by primary
/// key on a pooled PostgreSQL connection.
fn probes(backend: Backend) -> (Scenario, Scenario) {
    match backend {
        Backend::Redis => (Scenario::RedisWriteProbe, Scenario::RedisReadProbe),
        Backend::Postgres => (Scenario::PgUpsertProbe, Scenario::PgReadProbe),
        Backend::Sqlite | Backend::KvRedis => (Scenario::WriteProbe, Scenario::ReadProbe),
    }
}

/// What the mixed load would reach if a write cost exactly the write probe
/// and a summary the read probe: `10 / (1/write + 9/read)`.
pub fn probe_ideal(write_per_second: f64, read_per_second: f64) -> f64 {
    10.0 / (1.0 / write_per_second + 9.0 / read_per_second)
}

/// The table: req/s per runtime and store (p99 for the writes), and each
/// section's rows as a share of its probes.
pub fn render(rows: &[Row]) -> String {
    let columns: Vec<Section> = columns().into_iter().filter(|c| rows.iter().any(|r| r.section == *c)).collect();
    if columns.iter().all(|c| c.store != Store::Real) && columns.iter().all(|c| c.store != Store::Peer) {
        return String::new();
    }
    let mut s = String::new();
    let _ = writeln!(s, "\nRuntimes side by side (req/s; p99 ms in brackets for writes):");
    let _ = write!(s, "{:<26}", "");
    for c in &columns {
        let _ = write!(s, " {:>18}", c.name().trim_end_matches("/external"));
    }
    let _ = writeln!(s);
    for &scenario in SCENARIOS {
        if columns.iter().all(|c| find(rows, *c, scenario).is_none()) {
            continue;
        }
        let _ = write!(s, "{:<26}", short_label(scenario));
        for c in &columns {
            let cell = match find(rows, *c, scenario) {
                Some(r) if matches!(scenario, Scenario::Ingest | Scenario::Mixed | Scenario::WriteProbe | Scenario::RedisWriteProbe | Scenario::PgUpsertProbe) => {
                    format!("{:.0} ({:.0})", r.requests_per_second, r.p99_ms)
                }
                Some(r) => format!("{:.0}", r.requests_per_second),
                None => "-".into(),
            };
            let _ = write!(s, " {cell:>18}");
        }
        let _ = writeln!(s);
    }
    let mut shares = Vec::new();
    for c in columns.iter().filter(|c| c.store != Store::Peer) {
        let (write, read) = probes(c.backend);
        let (Some(w), Some(r)) = (find(rows, *c, write), find(rows, *c, read)) else { continue };
        let share = |scenario, probe: &Row| find(rows, *c, scenario).map(|x| x.requests_per_second / probe.requests_per_second.max(1e-9));
        let ideal = probe_ideal(w.requests_per_second, r.requests_per_second);
        let mixed = find(rows, *c, Scenario::Mixed).map(|m| m.requests_per_second / ideal);
        let fmt = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.2}"));
        shares.push(format!(
            "  {:<22} ingest {} x write probe, cached {} x read probe, mixed {} x probe ideal ({ideal:.0})",
            c.name().trim_end_matches("/external"),
            fmt(share(Scenario::Ingest, w)),
            fmt(share(Scenario::SummaryCached, r)),
            fmt(mixed),
        ));
    }
    if !shares.is_empty() {
        let _ = writeln!(s, "Against the probes of the same runtime and store:\n{}", shares.join("\n"));
    }
    s
}

/// Issue 22's targets: real Spin against its probes and the peer, the
/// Spin-like mode against real Spin, fast mode against the peer.
pub fn targets(rows: &[Row]) -> Vec<Target> {
    let mut out = Vec::new();
    let busy = |read: &[Option<&Row>]| read.iter().flatten().any(|r| r.other_cpu_percent > BUSY_PERCENT);
    for section in columns() {
        let row = |scenario| find(rows, section, scenario);
        let mut push = |name: String, measured: String, pass: bool, busy_machine: bool| {
            out.push(Target { section, name, measured, pass, busy_machine })
        };
        let ratio = |a: &Row, b: &Row| a.requests_per_second / b.requests_per_second.max(1e-9);
        match section.store {
            Store::Real => {
                let (write, read) = probes(section.backend);
                let (ingest_share, ingest_probe) = match section.backend {
                    Backend::Sqlite => (0.9, "write"),
                    Backend::Postgres => (0.8, "upsert"),
                    _ => (0.8, "command"),
                };
                if let (Some(i), Some(w)) = (row(Scenario::Ingest), row(write)) {
                    let r = ratio(i, w);
                    push(
                        format!("ingest >= {ingest_share} x the one-{ingest_probe} probe, p99 <= 100 ms"),
                        format!("{r:.2} x ({:.0} / {:.0} req/s), p99 {:.0} ms", i.requests_per_second, w.requests_per_second, i.p99_ms),
                        r >= ingest_share && i.p99_ms <= 100.0,
                        busy(&[Some(i), Some(w)]),
                    );
                }
                if let (Some(c), Some(p)) = (row(Scenario::SummaryCached), row(read)) {
                    let r = ratio(c, p);
                    push(
                        "cached summary >= 0.8 x the one-read probe".into(),
                        format!("{r:.2} x ({:.0} / {:.0} req/s)", c.requests_per_second, p.requests_per_second),
                        r >= 0.8,
                        busy(&[Some(c), Some(p)]),
                    );
                }
                if let (Some(m), Some(w), Some(p)) = (row(Scenario::Mixed), row(write), row(read)) {
                    let ideal = probe_ideal(w.requests_per_second, p.requests_per_second);
                    let r = m.requests_per_second / ideal;
                    push(
                        "mixed >= 0.8 x the probe ideal 10/(1/write + 9/read)".into(),
                        format!("{r:.2} x ({:.0} / {ideal:.0} req/s)", m.requests_per_second),
                        r >= 0.8,
                        busy(&[Some(m), Some(w), Some(p)]),
                    );
                }
                if let (Some(m), Some(p)) = (row(Scenario::Mixed), peer(rows, Scenario::Mixed)) {
                    let r = ratio(m, p);
                    push(
                        "mixed >= 1.0 x the peer".into(),
                        format!("{r:.2} x ({:.0} / {:.0} req/s)", m.requests_per_second, p.requests_per_second),
                        r >= 1.0,
                        busy(&[Some(m), Some(p)]),
                    );
                }
            }
            Store::Spin => {
                let real = Section { store: Store::Real, ..section };
                for scenario in [Scenario::Floor, Scenario::Ingest, Scenario::SummaryCached, Scenario::Mixed] {
                    if let (Some(model), Some(truth)) = (row(scenario), find(rows, real, scenario)) {
                        let r = ratio(model, truth);
                        push(
                            format!("{} within +-30 % of real Spin", short_label(scenario)),
                            format!("{r:.2} x ({:.0} / {:.0} req/s)", model.requests_per_second, truth.requests_per_second),
                            (0.7..=1.3).contains(&r),
                            busy(&[Some(model), Some(truth)]),
                        );
                    }
                }
            }
            Store::Fast => {
                for (scenario, wanted) in [(Scenario::Ingest, 3.0), (Scenario::SummaryCached, 5.0), (Scenario::Mixed, 3.0)] {
                    if let (Some(ours), Some(theirs)) = (row(scenario), peer(rows, scenario)) {
                        let r = ratio(ours, theirs);
                        push(
                            format!("{} >= {wanted} x the peer", short_label(scenario)),
                            format!("{r:.2} x ({:.0} / {:.0} req/s)", ours.requests_per_second, theirs.requests_per_second),
                            r >= wanted,
                            busy(&[Some(ours), Some(theirs)]),
                        );
                    }
                }
            }
            Store::RedisKv | Store::Peer => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn row(store: Store, backend: Backend, scenario: Scenario, rps: f64, p99: f64) -> Row {
        Row {
            section: Section { store, backend, redis: RedisKind::External },
            scenario,
            request: String::new(),
            seconds: 10.0,
            ok: (rps * 10.0) as u64,
            requests_per_second: rps,
            p50_ms: p99 / 2.0,
            p90_ms: p99 / 2.0,
            p99_ms: p99,
            max_ms: p99,
            errors: 0,
            error_kinds: BTreeMap::new(),
            host_rss_max_mb: 50.0,
            host_hwm_mb: 50.0,
            host_cpu_percent: 100.0,
            client_cpu_percent: 10.0,
            redis_server_cpu_percent: None,
            other_cpu_percent: 0.0,
            extra: BTreeMap::new(),
        }
    }

    #[test]
    fn real_spin_on_postgres_is_held_to_the_pg_probes() {
        use Backend::*;
        use Scenario::*;
        let rows = vec![
            row(Store::Real, Postgres, PgUpsertProbe, 1_737.0, 40.0),
            row(Store::Real, Postgres, PgReadProbe, 2_357.0, 30.0),
            row(Store::Real, Postgres, Ingest, 1_400.0, 90.0),
            row(Store::Real, Postgres, SummaryCached, 1_800.0, 30.0),
            row(Store::Real, Postgres, Mixed, 1_700.0, 60.0),
        ];
        let t = targets(&rows);
        let verdict = |prefix: &str| t.iter().find(|t| t.section.backend == Postgres && t.name.starts_with(prefix)).map(|t| (t.pass, t.name.clone()));
        // 1 400 / 1 737 = 0.81, p99 90 ms.
        assert_eq!(verdict("ingest"), Some((true, "ingest >= 0.8 x the one-upsert probe, p99 <= 100 ms".into())));
        // 1 800 / 2 357 = 0.76.
        assert_eq!(verdict("cached").map(|v| v.0), Some(false));
        // ideal 10 / (1/1737 + 9/2357) = 2 273; 1 700 / 2 273 = 0.75.
        assert_eq!(verdict("mixed >= 0.8").map(|v| v.0), Some(false));
        assert!(render(&rows).contains("real-spin/postgres"), "{}", render(&rows));
    }

    #[test]
    fn the_probe_ideal_weighs_one_write_and_nine_reads() {
        assert!((probe_ideal(1_000.0, 9_000.0) - 5_000.0).abs() < 1e-9);
    }

    #[test]
    fn real_spin_is_held_to_its_probes_and_the_peer_and_the_model_to_real_spin() {
        use Backend::*;
        use Scenario::*;
        let rows = vec![
            row(Store::Real, Sqlite, WriteProbe, 1_000.0, 50.0),
            row(Store::Real, Sqlite, ReadProbe, 9_000.0, 5.0),
            row(Store::Real, Sqlite, Ingest, 950.0, 80.0),
            row(Store::Real, Sqlite, SummaryCached, 7_000.0, 9.0),
            row(Store::Real, Sqlite, Mixed, 4_100.0, 30.0),
            row(Store::Spin, Sqlite, Ingest, 1_300.0, 80.0),
            row(Store::Spin, Sqlite, SummaryCached, 7_500.0, 9.0),
            row(Store::Fast, Sqlite, SummaryCached, 20_000.0, 2.0),
            row(Store::Peer, Sqlite, SummaryCached, 3_000.0, 20.0),
            row(Store::Peer, Sqlite, Mixed, 4_200.0, 20.0),
        ];
        let t = targets(&rows);
        let verdict = |store, prefix: &str| {
            t.iter().find(|t| t.section.store == store && t.name.starts_with(prefix)).map(|t| t.pass)
        };
        assert_eq!(verdict(Store::Real, "ingest >= 0.9"), Some(true)); // 0.95, p99 80
        assert_eq!(verdict(Store::Real, "cached"), Some(false)); // 0.78
        assert_eq!(verdict(Store::Real, "mixed >= 0.8"), Some(true)); // 4 100 / 5 000
        assert_eq!(verdict(Store::Real, "mixed >= 1.0"), Some(false)); // 4 100 / 4 200
        assert_eq!(verdict(Store::Spin, "POST"), Some(false)); // 1.37
        assert_eq!(verdict(Store::Spin, "summary"), Some(true)); // 1.07
        assert_eq!(verdict(Store::Fast, "summary"), Some(true)); // 6.7
        assert_eq!(verdict(Store::Fast, "POST"), None);
        let table = render(&rows);
        assert!(table.contains("real-spin/sqlite") && table.contains("peer"), "{table}");
        assert!(table.contains("mixed 0.82 x probe ideal"), "{table}");
    }
}
