//! Values read back from the key-value store and Redis: whatever bytes a
//! key holds (a bug, another version, a hand edit), decoding answers with
//! a value or an error, never a crash.
#![no_main]

use analytics_core::aggregate::Aggregate;
use analytics_core::breaker::Breaker;
use analytics_core::entries::Chunk;
use analytics_core::journal::Journal;
use analytics_core::kv::decode_counter;
use analytics_core::pending::Pending;
use analytics_core::summary_cache::CachedContext;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(journal) = Journal::decode("k", bytes) {
        let _ = journal.numbered().count();
        let _ = journal.holds("x");
    }
    let _ = Journal::read_header("k", bytes);
    if let Ok(aggregate) = Aggregate::decode(bytes) {
        let _ = aggregate.sketch.quantile(0.99);
        let _ = aggregate.unique_users();
        let _ = Aggregate::merged(&[aggregate.clone(), aggregate]);
    }
    let _ = Chunk::decode("k", bytes);
    let _ = decode_counter(bytes);
    let _ = CachedContext::decode(bytes);
    let _ = Breaker::decode(Some(bytes));
    let keys: Vec<String> = (0..2).map(|i| format!("jrn:t:{i}")).collect();
    let _ = Pending::decode(&keys, &[Some(bytes.to_vec()), None]);
});
