//! Files `analytics-cli import` reads (CSV and NDJSON): rows or per-row
//! rejections, never a crash.
#![no_main]

use analytics_cli::input::{CsvRows, NdjsonRows, Rows};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut rows) = CsvRows::new(data) {
        for _ in 0..10_000 {
            match rows.next_row() {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
    let mut rows = NdjsonRows::new(data);
    for _ in 0..10_000 {
        match rows.next_row() {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
});
