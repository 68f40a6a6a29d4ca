//! Time and randomness from WASI.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// 128 random bits from the runtime's secure source.
pub fn random_u128() -> u128 {
    let high = wasi::random::random::get_random_u64() as u128;
    let low = wasi::random::random::get_random_u64() as u128;
    (high << 64) | low
}

/// A uniform sample in `[0, 1)`.
pub fn random_unit() -> f64 {
    (wasi::random::random::get_random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Waits without burning CPU (the runtime parks the instance).
pub fn sleep_ms(ms: u64) {
    wasi::clocks::monotonic_clock::subscribe_duration(ms.saturating_mul(1_000_000)).block();
}
