//! `POST /api/metrics` bodies: any bytes are a metric or a 4xx naming why.
#![no_main]

use analytics_core::metric::{parse_new_metric, TimeLimits, MAX_ABS_VALUE};
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_771_416_000_000;

fuzz_target!(|body: &[u8]| {
    let limits = TimeLimits { now_ms: NOW, max_clock_skew_seconds: 300, retention_days: 30 };
    match parse_new_metric(body, &limits) {
        Ok(metric) => {
            assert!(metric.value.is_finite() && metric.value.abs() <= MAX_ABS_VALUE);
            assert!(metric.timestamp_ms <= NOW + 300_000 && metric.timestamp_ms >= NOW - 30 * 86_400_000);
            assert!(!metric.metric_type.is_empty());
        }
        Err(e) => assert!((400..500).contains(&e.status), "{} for {:?}", e.status, String::from_utf8_lossy(body)),
    }
});
