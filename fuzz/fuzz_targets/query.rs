//! Query strings of every reading endpoint (summary, list with its cursor,
//! series, active users, top types, retention): a request or a 400.
#![no_main]

use analytics_core::listing::{Cursor, ListRequest};
use analytics_core::query::Query;
use analytics_core::retention::RetentionRequest;
use analytics_core::stats::{ActiveUsersRequest, SeriesRequest, TopTypesRequest};
use analytics_core::summary::SummaryRequest;
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_771_416_000_000;

fn four_hundred<T>(result: Result<T, analytics_core::ApiError>) {
    if let Err(e) = result {
        assert!((400..500).contains(&e.status), "{}: {}", e.status, e.message);
    }
}

fuzz_target!(|text: &str| {
    let _ = Cursor::decode(text);
    let query = match Query::parse(text) {
        Ok(query) => query,
        Err(e) => return assert!((400..500).contains(&e.status)),
    };
    if let Ok(summary) = SummaryRequest::parse(&query, NOW) {
        // Any window decomposes into a bounded number of buckets.
        if let Some(window) = summary.window {
            assert!(window.buckets().len() <= 2 * (63 + 63 + 23 + 59 + 59) + 800);
        }
    }
    four_hundred(SummaryRequest::parse(&query, NOW));
    four_hundred(ListRequest::parse(&query));
    if let Ok(series) = SeriesRequest::parse(&query, NOW) {
        assert!(series.starts.len() <= 1_000);
    }
    four_hundred(SeriesRequest::parse(&query, NOW));
    four_hundred(ActiveUsersRequest::parse(&query, NOW));
    four_hundred(TopTypesRequest::parse(&query, NOW));
    four_hundred(RetentionRequest::parse(&query, NOW));
});
