//! `analytics-cli`: bulk import of CSV or NDJSON metrics into the Resilient
//! Analytics API through `POST /api/metrics/batch`.
//!
//! The parts that decide things are plain functions (`input`, `id`, `batch`,
//! `reply`, `retry`); `sender` and `import` are the loops around them and
//! `transport` the one HTTP call.

pub mod batch;
pub mod cli;
pub mod id;
pub mod import;
pub mod input;
pub mod progress;
pub mod reply;
pub mod report;
pub mod retry;
pub mod sender;
pub mod transport;

#[cfg(test)]
mod fake_server;
