//! The export's output files, written from the spool of listed metrics (one
//! JSON object per line, as the list API returns them), streamed in batches
//! so memory stays bounded whatever the export's size.
//!
//! - `ndjson`: the spool itself.
//! - `csv`: `id,type,timestamp,value,user_id,properties` (properties as one
//!   JSON object; `import` reads such a file back).
//! - `parquet`: typed columns, `timestamp` a UTC timestamp in milliseconds,
//!   `properties` JSON text; Snappy-compressed row groups.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use arrow_array::builder::{Float64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Parquet,
    Ndjson,
    Csv,
}

/// Rows per Arrow batch, and per Parquet row group.
const BATCH_ROWS: usize = 64 * 1024;
const ROW_GROUP_ROWS: usize = 256 * 1024;

/// One listed metric, as the list API writes it.
#[derive(Debug, Deserialize)]
struct Listed {
    id: String,
    #[serde(rename = "type")]
    metric_type: String,
    value: f64,
    timestamp: String,
    user_id: Option<String>,
    properties: Option<Value>,
}

impl Listed {
    fn timestamp_ms(&self) -> anyhow::Result<i64> {
        let parsed = chrono::DateTime::parse_from_rfc3339(&self.timestamp)
            .with_context(|| format!("metric {}: `{}` is not an RFC 3339 timestamp", self.id, self.timestamp))?;
        Ok(parsed.timestamp_millis())
    }

    fn properties_text(&self) -> Option<String> {
        self.properties.as_ref().filter(|p| !p.is_null()).map(Value::to_string)
    }
}

/// Writes `output` from `spool` (through a temporary file, so an output that
/// exists is whole); returns its size in bytes.
pub fn write(format: ExportFormat, spool: &Path, output: &Path) -> anyhow::Result<u64> {
    let temporary = {
        let mut name = output.as_os_str().to_os_string();
        name.push(".partial.out");
        PathBuf::from(name)
    };
    match format {
        // The spool is already the file.
        ExportFormat::Ndjson => fs::copy(spool, &temporary).map(|_| ()).with_context(|| format!("writing {}", temporary.display()))?,
        ExportFormat::Csv => write_csv(spool, &temporary)?,
        ExportFormat::Parquet => write_parquet(spool, &temporary)?,
    }
    fs::rename(&temporary, output).with_context(|| format!("writing {}", output.display()))?;
    Ok(fs::metadata(output)?.len())
}

/// The spool's metrics, one at a time.
fn read_spool(spool: &Path) -> anyhow::Result<impl Iterator<Item = anyhow::Result<Listed>>> {
    let file = File::open(spool).with_context(|| format!("opening {}", spool.display()))?;
    Ok(BufReader::with_capacity(1 << 20, file).lines().enumerate().map(|(i, line)| {
        let line = line?;
        serde_json::from_str::<Listed>(&line).with_context(|| format!("line {} of the listed metrics is not a metric", i + 1))
    }))
}

fn write_csv(spool: &Path, output: &Path) -> anyhow::Result<()> {
    let file = File::create(output).with_context(|| format!("creating {}", output.display()))?;
    let mut writer = csv::Writer::from_writer(BufWriter::with_capacity(1 << 20, file));
    writer.write_record(["id", "type", "timestamp", "value", "user_id", "properties"])?;
    for metric in read_spool(spool)? {
        let metric = metric?;
        let value = metric.value.to_string();
        let properties = metric.properties_text().unwrap_or_default();
        writer.write_record([
            metric.id.as_str(),
            &metric.metric_type,
            &metric.timestamp,
            &value,
            metric.user_id.as_deref().unwrap_or(""),
            &properties,
        ])?;
    }
    writer.into_inner().map_err(|e| anyhow::anyhow!("writing {}: {}", output.display(), e.error()))?.flush()?;
    Ok(())
}

/// The Parquet schema of exported metrics.
pub fn schema() -> Schema {
    Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("type", DataType::Utf8, false),
        Field::new("timestamp", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
        Field::new("value", DataType::Float64, false),
        Field::new("user_id", DataType::Utf8, true),
        Field::new("properties", DataType::Utf8, true),
    ])
}

/// Column builders for one batch.
struct Columns {
    id: StringBuilder,
    metric_type: StringBuilder,
    timestamp: TimestampMillisecondBuilder,
    value: Float64Builder,
    user_id: StringBuilder,
    properties: StringBuilder,
    rows: usize,
}

impl Columns {
    fn new() -> Columns {
        Columns {
            id: StringBuilder::new(),
            metric_type: StringBuilder::new(),
            timestamp: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            value: Float64Builder::new(),
            user_id: StringBuilder::new(),
            properties: StringBuilder::new(),
            rows: 0,
        }
    }

    fn push(&mut self, metric: &Listed) -> anyhow::Result<()> {
        self.timestamp.append_value(metric.timestamp_ms()?);
        self.id.append_value(&metric.id);
        self.metric_type.append_value(&metric.metric_type);
        self.value.append_value(metric.value);
        self.user_id.append_option(metric.user_id.as_deref());
        self.properties.append_option(metric.properties_text());
        self.rows += 1;
        Ok(())
    }

    /// The rows so far as a batch; the builders start again empty.
    fn finish(&mut self, schema: &Arc<Schema>) -> anyhow::Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.id.finish()),
            Arc::new(self.metric_type.finish()),
            Arc::new(self.timestamp.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.user_id.finish()),
            Arc::new(self.properties.finish()),
        ];
        self.rows = 0;
        Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
    }
}

fn write_parquet(spool: &Path, output: &Path) -> anyhow::Result<()> {
    let schema = Arc::new(schema());
    let file = File::create(output).with_context(|| format!("creating {}", output.display()))?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let mut writer = ArrowWriter::try_new(BufWriter::with_capacity(1 << 20, file), Arc::clone(&schema), Some(properties))?;
    let mut columns = Columns::new();
    for metric in read_spool(spool)? {
        columns.push(&metric?)?;
        if columns.rows == BATCH_ROWS {
            writer.write(&columns.finish(&schema)?)?;
        }
    }
    if columns.rows > 0 {
        writer.write(&columns.finish(&schema)?)?;
    }
    writer.close()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, TimestampMillisecondType};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn spool(dir: &Path, n: usize) -> PathBuf {
        let path = dir.join("spool.ndjson");
        let mut text = String::new();
        for i in 0..n {
            let extra = if i % 2 == 0 { format!(r#","user_id":"u-{i}","properties":{{"region":"eu","n":{i}}}"#) } else { String::new() };
            text.push_str(&format!(r#"{{"id":"m-{i}","type":"cpu","value":{i}.5,"timestamp":"2000-01-01T00:00:{:02}.250Z"{extra}}}"#, i % 60));
            text.push('\n');
        }
        fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn parquet_holds_typed_columns_over_several_batches() {
        let dir = tempfile::tempdir().unwrap();
        let n = BATCH_ROWS + 10;
        let output = dir.path().join("m.parquet");
        let bytes = write(ExportFormat::Parquet, &spool(dir.path(), n), &output).unwrap();
        assert_eq!(bytes, fs::metadata(&output).unwrap().len());
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&output).unwrap()).unwrap();
        assert_eq!(reader.schema().as_ref(), &schema());
        let batches: Vec<RecordBatch> = reader.build().unwrap().map(Result::unwrap).collect();
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), n);
        let first = &batches[0];
        assert_eq!(first.column(0).as_string::<i32>().value(2), "m-2");
        assert_eq!(first.column(2).as_primitive::<TimestampMillisecondType>().value(2), 946_684_802_250);
        assert_eq!(first.column(3).as_primitive::<Float64Type>().value(2), 2.5);
        assert_eq!(first.column(4).as_string::<i32>().value(2), "u-2");
        assert!(first.column(4).is_null(1));
        assert_eq!(first.column(5).as_string::<i32>().value(2), r#"{"n":2,"region":"eu"}"#);
        assert!(!dir.path().join("m.parquet.partial.out").exists());
    }

    #[test]
    fn csv_and_ndjson() {
        let dir = tempfile::tempdir().unwrap();
        let spool = spool(dir.path(), 2);
        let csv = dir.path().join("m.csv");
        write(ExportFormat::Csv, &spool, &csv).unwrap();
        assert_eq!(
            fs::read_to_string(&csv).unwrap(),
            "id,type,timestamp,value,user_id,properties\n\
             m-0,cpu,2000-01-01T00:00:00.250Z,0.5,u-0,\"{\"\"n\"\":0,\"\"region\"\":\"\"eu\"\"}\"\n\
             m-1,cpu,2000-01-01T00:00:01.250Z,1.5,,\n"
        );
        let ndjson = dir.path().join("m.ndjson");
        write(ExportFormat::Ndjson, &spool, &ndjson).unwrap();
        assert_eq!(fs::read(&ndjson).unwrap(), fs::read(&spool).unwrap());
    }

    #[test]
    fn a_spool_that_is_not_metrics_is_an_error_not_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool.ndjson");
        fs::write(&spool, "{\"id\":\"m\"}\n").unwrap();
        let output = dir.path().join("m.parquet");
        let err = write(ExportFormat::Parquet, &spool, &output).unwrap_err();
        assert!(format!("{err:#}").contains("line 1 of the listed metrics"), "{err:#}");
        assert!(!output.exists());
    }
}
