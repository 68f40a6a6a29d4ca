//! What `--store-mode spin` adds so the host predicts real Spin: besides
//! Spin's store behaviour (`key_value::sqlite_spin`, `key_value::redis_spin`)
//! and a Redis connection per guest `open`, the CPU Spin's own request path
//! spends that this host does not (its HTTP trigger, per-request factor
//! state, tracing) and its per-call host-interface overhead.
//!
//! The defaults are calibrated against Spin 4.0.2 measured side by side with
//! this host on the same 2-core machine (wrk, 2 threads × 32 connections):
//! the hello floor, ingest, cached summaries and the mixed load on both of
//! Spin's stores (README, "Performance"). They are CPU, burnt on the worker
//! thread serving the request, so they compete for cores as Spin's do.

use std::time::{Duration, Instant};

/// Extra CPU per request, per host call, per operation of Spin's SQLite
/// store (spent on the store's one connection, so other operations wait for
/// it as they wait for Spin's lock) and per new Redis connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpinCosts {
    pub request: Duration,
    pub host_call: Duration,
    pub store_op: Duration,
    pub connect: Duration,
}

impl SpinCosts {
    /// Calibrated defaults (see the module documentation).
    pub const CALIBRATED: SpinCosts = SpinCosts {
        request: Duration::from_micros(250),
        host_call: Duration::from_micros(6),
        store_op: Duration::from_micros(120),
        connect: Duration::from_micros(170),
    };
}

/// Keeps this thread busy for `time`, as work would (a sleep would let the
/// core serve others, which Spin's CPU does not).
pub fn burn(time: Duration) {
    if time.is_zero() {
        return;
    }
    let start = Instant::now();
    while start.elapsed() < time {
        std::hint::spin_loop();
    }
}

/// Parses `request=250us,host-call=12us,store-op=0,connect=0` (microseconds;
/// any part may be left out).
pub fn parse(text: &str) -> Result<SpinCosts, String> {
    let mut costs = SpinCosts::CALIBRATED;
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').ok_or_else(|| format!("`{part}` is not NAME=MICROSECONDS"))?;
        let micros: u64 = value
            .trim()
            .trim_end_matches("us")
            .parse()
            .map_err(|_| format!("`{value}` is not a whole number of microseconds"))?;
        match name.trim() {
            "request" => costs.request = Duration::from_micros(micros),
            "host-call" => costs.host_call = Duration::from_micros(micros),
            "store-op" => costs.store_op = Duration::from_micros(micros),
            "connect" => costs.connect = Duration::from_micros(micros),
            other => return Err(format!("unknown cost `{other}`; use request, host-call, store-op and connect")),
        }
    }
    Ok(costs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_parse_with_defaults_for_what_is_left_out() {
        assert_eq!(parse("").unwrap(), SpinCosts::CALIBRATED);
        let costs = parse("request=100us, host-call=3, connect=7").unwrap();
        assert_eq!((costs.request, costs.host_call), (Duration::from_micros(100), Duration::from_micros(3)));
        assert_eq!((costs.store_op, costs.connect), (SpinCosts::CALIBRATED.store_op, Duration::from_micros(7)));
        assert!(parse("requests=1").is_err());
        assert!(parse("request=fast").is_err());
    }

    #[test]
    fn burning_takes_the_time_asked() {
        let start = Instant::now();
        burn(Duration::from_micros(300));
        assert!(start.elapsed() >= Duration::from_micros(300));
    }
}
