//! `analytics-cli`: bulk import of CSV or NDJSON metrics into the Resilient
//! Analytics API through `POST /api/metrics/batch`, and export of stored
//! metrics to Parquet, NDJSON or CSV through `GET /api/metrics/list`.
//!
//! The parts that decide things are plain functions (`input`, `mapping`,
//! `timestamps`, `type_names`, `id`, `batch`, `reply`, `retry`); `sender`, `import` and
//! `export` are the loops around them, `export_files` writes the files and
//! `transport` makes the HTTP calls.

pub mod batch;
pub mod cli;
pub mod export;
pub mod export_files;
pub mod id;
pub mod import;
pub mod input;
pub mod mapping;
pub mod progress;
pub mod reply;
pub mod report;
pub mod retry;
pub mod sender;
pub mod timestamps;
pub mod transport;
pub mod type_names;

#[cfg(test)]
mod fake_server;
