//! `POST /api/metrics/batch` bodies, as a JSON array and as NDJSON: any
//! bytes are items (each a metric or a 4xx) or a 4xx for the whole batch.
#![no_main]

use analytics_core::batch::{parse_batch, BatchFormat};
use analytics_core::metric::TimeLimits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let limits = TimeLimits::at(1_771_416_000_000, 300);
    for format in [BatchFormat::Json, BatchFormat::Ndjson] {
        match parse_batch(body, format, &limits) {
            Ok(items) => {
                for item in items {
                    if let Err(e) = item {
                        assert!((400..500).contains(&e.status), "item: {}", e.status);
                    }
                }
            }
            Err(e) => assert!((400..500).contains(&e.status), "batch: {}", e.status),
        }
    }
});
