//! What every component shares to talk to the Spin platform. Components stay
//! thin: parse the request, call `analytics-core`, and use these to read
//! variables, touch the key-value store and Redis, call out, and respond.

pub mod clock;
pub mod config;
pub mod counters;
pub mod gate;
pub mod handler;
pub mod http_out;
pub mod kv;
pub mod pg_store;
pub mod redis;
pub mod redis_store;
pub mod respond;
pub mod scoped;
pub mod sse;
pub mod store;
pub mod trace;

pub use analytics_core as core;
