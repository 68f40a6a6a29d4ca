//! Command-line arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::batch::MAX_BATCH_ITEMS;
use crate::input::Format;

#[derive(Debug, Parser)]
#[command(name = "analytics-cli", version, about = "Tools for the Resilient Analytics API")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Import metrics from a CSV or NDJSON file through POST /api/metrics/batch.
    ///
    /// Rows without an id get one derived from their line number and content,
    /// so running the same file again (after an interruption, say) stores
    /// nothing twice. Exit code: 0 all stored (or already there), 1 some rows
    /// rejected (see the report), 2 the import could not run or stopped.
    Import(ImportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The file: CSV with a header row (timestamp,value,type; optional id,user_id;
    /// other columns become properties) or NDJSON (one metric object per line).
    pub file: PathBuf,

    /// The API's base URL.
    #[arg(long, value_name = "URL")]
    pub url: String,

    /// Rows per request (the server takes at most 1000 and 1 MiB).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u16).range(1..=MAX_BATCH_ITEMS as i64))]
    pub batch_size: u16,

    /// Where rejected rows go (CSV: line,error,message,details); created only
    /// when a row is rejected. Default: <FILE>.rejected.csv.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// The file's format; by default from its extension (.csv, .ndjson, .jsonl).
    #[arg(long, value_enum)]
    pub format: Option<Format>,

    /// Requests in flight at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,

    /// An API key with the `ingest` scope (needed when the API runs with
    /// `auth = "required"`); also read from ANALYTICS_API_KEY.
    #[arg(long, value_name = "KEY", env = "ANALYTICS_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Seconds one request may take before it is retried.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
}
