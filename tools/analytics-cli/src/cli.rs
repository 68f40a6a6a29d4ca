//! Command-line arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::batch::MAX_BATCH_ITEMS;
use crate::export::MAX_PAGE;
use crate::export_files::ExportFormat;
use crate::input::Format;
use crate::mapping::Mapping;
use crate::timestamps::{TimestampFormat, Zone};
use crate::type_names::TypeRule;

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
    /// Export stored metrics to Parquet, NDJSON or CSV through GET /api/metrics/list.
    ///
    /// Run the same command again after an interruption and it goes on where
    /// it stopped. Exit code: 0 written, 2 stopped (the partial files stay).
    Export(ExportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The file: CSV with a header row (timestamp,value,type; optional id,user_id;
    /// other columns become properties) or NDJSON (one metric object per line).
    pub file: PathBuf,

    /// The API's base URL (not needed with --dry-run).
    #[arg(long, value_name = "URL", required_unless_present = "dry_run")]
    pub url: Option<String>,

    /// Print the first metrics the file makes and every row the CLI would
    /// refuse (with its line and column), and send nothing.
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub columns: ColumnArgs,

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

/// How a CSV file's columns become metrics (by default: `timestamp`, `value`,
/// `type`, optional `id` and `user_id`, every other column a property).
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Column mapping (CSV)")]
pub struct ColumnArgs {
    /// The column holding each row's time.
    #[arg(long, value_name = "NAME")]
    pub timestamp_column: Option<String>,

    /// How it is written: rfc3339 (default, sent as it is), unix (seconds),
    /// unix_ms, or a strftime pattern such as "%b %d %Y" or "%d/%m/%Y %H:%M".
    #[arg(long, value_name = "FORMAT")]
    pub timestamp_format: Option<TimestampFormat>,

    /// The zone of timestamps written without an offset: UTC (default), an
    /// offset such as +05:30, or an IANA name such as Europe/Paris.
    #[arg(long, value_name = "ZONE")]
    pub timezone: Option<Zone>,

    /// The column(s) holding values (repeat it, or separate with commas).
    /// With several, each row makes one metric per column, whose type is the
    /// column's name (after --type-prefix).
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub value_column: Vec<String>,

    /// One type for every metric.
    #[arg(long = "type", value_name = "TYPE", conflicts_with = "type_column")]
    pub metric_type: Option<String>,

    /// The column holding each row's type.
    #[arg(long, value_name = "NAME")]
    pub type_column: Option<String>,

    /// Put before every type (e.g. `stock.`).
    #[arg(long, value_name = "PREFIX")]
    pub type_prefix: Option<String>,

    /// Refuse rows whose type cell (or a value column whose name) is not a
    /// valid type, instead of making it one (`Fossil Fuels` -> `Fossil_Fuels`:
    /// each run of other characters becomes `_`, dropped at either end; cut
    /// to 100 characters; a name with nothing left is refused either way).
    #[arg(long)]
    pub strict_types: bool,

    /// The column holding the user id.
    #[arg(long, value_name = "NAME")]
    pub user_column: Option<String>,

    /// The column holding each metric's id (default `id`; rows without one
    /// get an id from their line and content, so a re-run stores nothing twice).
    #[arg(long, value_name = "NAME")]
    pub id_column: Option<String>,

    /// The columns that become properties (default: every column not used
    /// otherwise; give an empty list for none).
    #[arg(long, value_name = "NAMES", value_delimiter = ',', num_args = 0..)]
    pub property_columns: Option<Vec<String>>,
}

impl ColumnArgs {
    /// The options as a [`Mapping`].
    pub fn mapping(&self) -> Mapping {
        Mapping {
            timestamp_column: self.timestamp_column.clone(),
            timestamp_format: self.timestamp_format.clone(),
            timezone: self.timezone,
            value_columns: self.value_column.iter().map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect(),
            metric_type: self.metric_type.clone(),
            type_column: self.type_column.clone(),
            type_prefix: self.type_prefix.clone(),
            user_column: self.user_column.clone(),
            id_column: self.id_column.clone(),
            property_columns: self
                .property_columns
                .as_ref()
                .map(|columns| columns.iter().map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect()),
            type_rule: if self.strict_types { TypeRule::Strict } else { TypeRule::Normalize },
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The file to write (`<FILE>.partial.*` hold an unfinished export).
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,

    /// The API's base URL.
    #[arg(long, value_name = "URL")]
    pub url: String,

    /// parquet (typed columns, UTC timestamps), ndjson (as the API lists
    /// them) or csv (id,type,timestamp,value,user_id,properties).
    #[arg(long, value_enum, default_value = "parquet")]
    pub format: ExportFormat,

    /// Only these types (repeat it, or separate with commas); default all.
    #[arg(long = "type", value_name = "TYPE", value_delimiter = ',')]
    pub types: Vec<String>,

    /// Metrics at or after this instant (RFC 3339 or Unix seconds).
    #[arg(long, value_name = "INSTANT")]
    pub from: Option<String>,

    /// Metrics before this instant (default: every one, those dated in the
    /// future too; the bound is the end of year 9998).
    #[arg(long, value_name = "INSTANT")]
    pub to: Option<String>,

    /// Metrics per request.
    #[arg(long, default_value_t = MAX_PAGE, value_parser = clap::value_parser!(u16).range(1..=MAX_PAGE as i64))]
    pub page_size: u16,

    /// An API key with the `read` scope (needed when the API runs with
    /// `auth = "required"`); also read from ANALYTICS_API_KEY.
    #[arg(long, value_name = "KEY", env = "ANALYTICS_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Seconds one request may take before it is retried.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
}
