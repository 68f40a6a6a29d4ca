//! The soak: the mixed load (one metric posted for every nine summaries of
//! its type, every answer exact) for many minutes against one host per
//! store mode, with the host's RSS, p99 and 5xx reported minute by minute.
//! Nothing should drift: RSS within 10 % after the warm-up minute, no 5xx.

use std::time::Duration;

use serde::Serialize;

use crate::host::{self, Host};
use crate::load::{self, Body, Expect, Plan};

/// One minute of the soak.
#[derive(Debug, Clone, Serialize)]
pub struct Minute {
    pub minute: usize,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Answers with a 5xx status.
    pub server_errors: u64,
    /// Every other unexpected answer or transport error.
    pub other_errors: u64,
    /// The host's resident memory at the end of the minute.
    pub rss_mb: f64,
}

/// A whole soak of one store mode.
#[derive(Debug, Clone, Serialize)]
pub struct Soak {
    pub store: String,
    pub minutes: Vec<Minute>,
    /// After the first (warm-up) minute: the largest RSS over the smallest.
    pub rss_spread: f64,
    /// The last five minutes' median p99 over the first five after warm-up.
    pub p99_drift: f64,
    pub server_errors: u64,
    pub metrics_posted: u64,
}

impl Soak {
    pub fn holds(&self) -> bool {
        self.rss_spread <= 1.10 && self.server_errors == 0
    }
}

/// Runs the mixed load on `host` for `minutes`, one measurement a minute.
pub async fn run(host: &mut Host, store: &str, minutes: usize, connections: usize) -> anyhow::Result<Soak> {
    let plan = Plan {
        addresses: vec![host.address()],
        method: "GET",
        path: "/api/metrics/summary?type=soak&period=hourly".into(),
        body: Body::Mixed { metric_type: "soak".into(), writes_every: 10 },
        expect: Expect::success(),
        connections,
        duration: Duration::from_secs(60),
        max_requests: 200_000 * 60,
        api_key: None,
    };
    let mut rows = Vec::with_capacity(minutes);
    let mut posted = 0;
    for minute in 1..=minutes {
        let outcome = load::run(&plan).await?;
        host.check_alive()?;
        let rss = host::proc_status(host.pid())?.rss;
        let server_errors: u64 = outcome.errors.iter().filter(|(kind, _)| kind.starts_with("status 5")).map(|(_, n)| n).sum();
        posted += outcome.writes;
        let ms = |q: f64| outcome.latency.value_at_quantile(q) as f64 / 1_000.0;
        let row = Minute {
            minute,
            requests_per_second: outcome.ok as f64 / outcome.elapsed.as_secs_f64(),
            p50_ms: ms(0.50),
            p99_ms: ms(0.99),
            max_ms: outcome.latency.max() as f64 / 1_000.0,
            server_errors,
            other_errors: outcome.error_count() - server_errors,
            rss_mb: crate::report::mb(rss),
        };
        println!(
            "bench: soak {store} minute {minute:>2}: {:>6.0} req/s, p99 {:>7.2} ms, {} 5xx, RSS {:.1} MB",
            row.requests_per_second, row.p99_ms, row.server_errors, row.rss_mb
        );
        rows.push(row);
    }
    let settled = &rows[1.min(rows.len() - 1)..];
    let rss = |f: fn(f64, f64) -> f64, start: f64| settled.iter().map(|m| m.rss_mb).fold(start, f);
    let median = |part: &[Minute]| {
        let mut p99: Vec<f64> = part.iter().map(|m| m.p99_ms).collect();
        p99.sort_by(f64::total_cmp);
        p99.get(p99.len() / 2).copied().unwrap_or(0.0)
    };
    let span = settled.len().min(5);
    Ok(Soak {
        store: store.to_string(),
        rss_spread: rss(f64::max, 0.0) / rss(f64::min, f64::MAX),
        p99_drift: median(&settled[settled.len() - span..]) / median(&settled[..span]).max(1e-9),
        server_errors: rows.iter().map(|m| m.server_errors).sum(),
        metrics_posted: posted,
        minutes: rows,
    })
}

/// Every soak, minute by minute, then the verdicts.
pub fn render(soaks: &[Soak]) -> String {
    let mut out = String::new();
    for soak in soaks {
        out.push_str(&format!("\nsoak, store {} (1 write : 9 summaries):\nminute   req/s   p50 ms   p99 ms    max ms  5xx  other  RSS MB\n", soak.store));
        for m in &soak.minutes {
            out.push_str(&format!(
                "{:>6} {:>7.0} {:>8.2} {:>8.2} {:>9.2} {:>4} {:>6} {:>7.1}\n",
                m.minute, m.requests_per_second, m.p50_ms, m.p99_ms, m.max_ms, m.server_errors, m.other_errors, m.rss_mb
            ));
        }
        out.push_str(&format!(
            "{}  RSS spread after minute 1: {:.3} (<= 1.10), 5xx: {}, p99 last 5 min / first 5: {:.2}, metrics posted: {}\n",
            if soak.holds() { "HOLDS" } else { "MISSED" },
            soak.rss_spread,
            soak.server_errors,
            soak.p99_drift,
            soak.metrics_posted
        ));
    }
    out
}
