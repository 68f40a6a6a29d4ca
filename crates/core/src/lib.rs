//! The I/O-free core of the Resilient Analytics API. Everything here is a
//! plain function or a small state machine that takes time as a parameter, so
//! it is tested without a clock, a server or a store.

pub mod aggregate;
pub mod api_keys;
pub mod auth;
pub mod api_error;
pub mod app_metrics;
pub mod batch;
pub mod breaker;
pub mod config;
pub mod entries;
pub mod erasure;
pub mod expiry;
pub mod fold;
pub mod hll;
pub mod ingest;
pub mod journal;
pub mod keys;
pub mod kv;
pub mod list_index;
pub mod listing;
pub mod memory_store;
pub mod metric;
pub mod pending;
pub mod postgres;
pub mod query;
pub mod rate_limit;
pub mod retention;
pub mod sketch;
pub mod stats;
pub mod stream;
pub mod summary;
pub mod summary_cache;
pub mod time;
pub mod watermarks;

pub use api_error::{ApiError, FieldError};
