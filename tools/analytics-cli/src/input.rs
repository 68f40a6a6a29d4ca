//! Reading CSV or NDJSON rows, one at a time, into the metric objects the
//! batch endpoint takes.
//!
//! Nothing here decides whether a metric is valid: the server does, and its
//! messages end up in the report. Only a row that cannot be sent at all (a CSV
//! row with the wrong number of fields, text that is not UTF-8, a line that is
//! not a JSON object) is rejected here, with the same report format.

use std::collections::VecDeque;
use std::io::{BufRead, Read};
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::{Number, Value};

use crate::id;
use crate::mapping::{CsvLayout, Mapping, MappingError};
use crate::reply::Rejection;
use crate::type_names::Renames;

/// Error code of rows refused before sending (the server's codes are otherwise used).
pub const INVALID_CSV: &str = "invalid_csv";
pub const INVALID_JSON: &str = "invalid_json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Ndjson,
}

const MAP_HINT: &str = "; --timestamp-column, --value-column, --type-column or --type map other names";

/// A problem with the file as a whole: the import cannot start or go on.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot tell the format of {0} from its extension (.csv, .ndjson, .jsonl): give --format csv|ndjson")]
    UnknownFormat(String),
    #[error("the file is empty: a CSV file needs a header row (timestamp,value,type,...)")]
    NoHeader,
    #[error("missing required column{}: {} (the header has: {}){}", if .missing.len() == 1 { "" } else { "s" }, .missing.join(", "), .header.join(", "), MAP_HINT)]
    MissingColumns { missing: Vec<String>, header: Vec<String> },
    #[error("column `{0}` appears twice in the header")]
    DuplicateColumn(String),
    #[error("the header row is not UTF-8 text")]
    HeaderNotUtf8,
    #[error("reading the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("reading the CSV file: {0}")]
    Csv(#[from] csv::Error),
    // Transparent: the message is the mapping error's, said once (not again as its source).
    #[error(transparent)]
    Mapping(#[from] MappingError),
    #[error("the column options (--timestamp-column and the others) apply to CSV files; an NDJSON line is sent as it is")]
    MappingForNdjson,
}

/// The format given, or else the one the file's extension names.
pub fn detect_format(path: &Path, given: Option<Format>) -> Result<Format, InputError> {
    if let Some(format) = given {
        return Ok(format);
    }
    let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("csv") => Ok(Format::Csv),
        Some("ndjson" | "jsonl") => Ok(Format::Ndjson),
        _ => Err(InputError::UnknownFormat(path.display().to_string())),
    }
}

/// One metric object to send: its line in the file (for the report) and its JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub line: u64,
    pub json: String,
}

/// A row as read: ready to send, or refused here.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    Item(Item),
    Rejected(u64, Rejection),
}

impl Row {
    /// The file line the row starts on.
    pub fn line(&self) -> u64 {
        match self {
            Row::Item(item) => item.line,
            Row::Rejected(line, _) => *line,
        }
    }
}

/// A stream of rows.
pub trait Rows {
    fn next_row(&mut self) -> Result<Option<Row>, InputError>;

    /// The names from the file made into types so far (see [`crate::type_names`]).
    fn renames(&self) -> Option<&Renames> {
        None
    }
}

// ---------------------------------------------------------------- CSV

/// A property cell as JSON: a finite number, `true`/`false` (any case), a
/// string, or nothing for an empty cell.
pub fn typed(text: &str) -> Option<Value> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return None;
    }
    if let Some(n) = number(trimmed) {
        return Some(Value::Number(n));
    }
    if trimmed.eq_ignore_ascii_case("true") {
        return Some(Value::Bool(true));
    }
    if trimmed.eq_ignore_ascii_case("false") {
        return Some(Value::Bool(false));
    }
    Some(Value::String(text.to_string()))
}

/// A finite number: integers stay integers (`42`, not `42.0`); `NaN` and
/// `inf`, which Rust would parse, are not numbers here.
pub fn number(text: &str) -> Option<Number> {
    let text = text.trim();
    if let Ok(i) = text.parse::<i64>() {
        return Some(Number::from(i));
    }
    if let Ok(u) = text.parse::<u64>() {
        return Some(Number::from(u));
    }
    // Only digits, sign, point and exponent: keeps out "inf", "NaN", "infinity".
    if !text.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E')) {
        return None;
    }
    text.parse::<f64>().ok().filter(|f| f.is_finite()).and_then(Number::from_f64)
}

/// CSV rows, streamed with the `csv` crate (quoted fields may span lines; a
/// row's line is the line it starts on, the header being line 1).
pub struct CsvRows<R: Read> {
    reader: csv::Reader<Tee<R>>,
    lines: Arc<Mutex<LineCounter>>,
    layout: CsvLayout,
    record: csv::ByteRecord,
    /// Metrics of the last record not yet handed out (a wide row makes several).
    ready: VecDeque<Row>,
    renames: Renames,
}

impl<R: Read> CsvRows<R> {
    /// Reads the header and applies `mapping` to it.
    pub fn new(input: R, mapping: &Mapping) -> Result<CsvRows<R>, InputError> {
        let lines = Arc::new(Mutex::new(LineCounter::default()));
        let tee = Tee { inner: input, lines: Arc::clone(&lines) };
        let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(tee);
        let header = reader.byte_headers()?.clone();
        if header.is_empty() {
            return Err(InputError::NoHeader);
        }
        let names: Vec<&str> =
            header.iter().map(std::str::from_utf8).collect::<Result<_, _>>().map_err(|_| InputError::HeaderNotUtf8)?;
        let layout = CsvLayout::new(&names, mapping)?;
        let renames = layout.renames();
        Ok(CsvRows { reader, lines, layout, record: csv::ByteRecord::new(), ready: VecDeque::new(), renames })
    }
}

impl<R: Read> Rows for CsvRows<R> {
    fn next_row(&mut self) -> Result<Option<Row>, InputError> {
        while self.ready.is_empty() {
            if !self.reader.read_byte_record(&mut self.record)? {
                return Ok(None);
            }
            let offset = self.record.position().map(|p| p.byte()).unwrap_or(0);
            let line = match self.lines.lock() {
                Ok(mut lines) => lines.line_at(offset),
                Err(_) => 0,
            };
            let fields: Vec<&[u8]> = self.record.iter().collect();
            self.ready.extend(self.layout.convert(line, &fields, &mut self.renames));
        }
        Ok(self.ready.pop_front())
    }

    fn renames(&self) -> Option<&Renames> {
        Some(&self.renames)
    }
}

/// Line numbers for CSV records. The `csv` crate's own `Position::line` skips
/// blank lines and miscounts after `\r\n`, but its byte offsets are right
/// (they point just past the previous record), so lines are counted here from
/// the bytes the reader pulled, which are kept only until counted: the memory
/// is the reader's buffer plus one record.
#[derive(Default)]
struct LineCounter {
    /// Bytes read by the parser and not yet counted; `pending[0]` is at `offset`.
    pending: VecDeque<u8>,
    offset: u64,
    /// Line breaks before `offset`.
    breaks: u64,
}

impl LineCounter {
    /// The 1-based line of the record whose position is `offset`: the first
    /// line at or after it that is not blank.
    fn line_at(&mut self, offset: u64) -> u64 {
        let skip = offset.saturating_sub(self.offset).min(self.pending.len() as u64) as usize;
        self.breaks += self.pending.drain(..skip).filter(|&b| b == b'\n').count() as u64;
        self.offset += skip as u64;
        while let Some(&b) = self.pending.front() {
            if b != b'\n' && b != b'\r' {
                break;
            }
            self.breaks += u64::from(b == b'\n');
            self.offset += 1;
            self.pending.pop_front();
        }
        self.breaks + 1
    }
}

/// Passes reads through, keeping a copy for the line counter.
struct Tee<R> {
    inner: R,
    lines: Arc<Mutex<LineCounter>>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Ok(mut lines) = self.lines.lock() {
            lines.pending.extend(&buf[..n]);
        }
        Ok(n)
    }
}

// ---------------------------------------------------------------- NDJSON

/// One NDJSON line (without its line break) as a metric object: sent as it
/// is, with a derived `id` added when it has none (or a null one). `None` for
/// a blank line.
pub fn convert_ndjson_line(line: u64, raw: &[u8]) -> Option<Row> {
    let raw = raw.trim_ascii();
    if raw.is_empty() {
        return None;
    }
    let reject = |message: String| Some(Row::Rejected(line, Rejection::new(INVALID_JSON, message)));
    let Ok(text) = std::str::from_utf8(raw) else {
        return reject("the line is not UTF-8 text".to_string());
    };
    let object = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => object,
        Ok(other) => return reject(format!("the line must be a JSON object, not {}", json_kind(&other))),
        Err(e) => return reject(format!("the line is not valid JSON: {e}")),
    };
    let json = match object.get("id") {
        Some(Value::Null) => {
            let mut object = object;
            object.insert("id".into(), Value::String(id::from_line(line, raw)));
            Value::Object(object).to_string()
        }
        Some(_) => text.to_string(),
        None => {
            // Spliced in rather than re-serialised, so the rest is sent byte for byte.
            let id = Value::String(id::from_line(line, raw)).to_string();
            let inner = text[1..].trim_start();
            let separator = if inner.starts_with('}') { "" } else { "," };
            format!("{{\"id\":{id}{separator}{inner}")
        }
    };
    Some(Row::Item(Item { line, json }))
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// NDJSON lines, streamed; line numbers count every line, blank ones too.
pub struct NdjsonRows<R: BufRead> {
    input: R,
    line: u64,
    buffer: Vec<u8>,
}

impl<R: BufRead> NdjsonRows<R> {
    pub fn new(input: R) -> NdjsonRows<R> {
        NdjsonRows { input, line: 0, buffer: Vec::new() }
    }
}

impl<R: BufRead> Rows for NdjsonRows<R> {
    fn next_row(&mut self) -> Result<Option<Row>, InputError> {
        loop {
            self.buffer.clear();
            if self.input.read_until(b'\n', &mut self.buffer)? == 0 {
                return Ok(None);
            }
            self.line += 1;
            let raw = if self.line == 1 { self.buffer.strip_prefix("\u{feff}".as_bytes()).unwrap_or(&self.buffer) } else { &self.buffer };
            if let Some(row) = convert_ndjson_line(self.line, raw) {
                return Ok(Some(row));
            }
        }
    }
}

/// Counts lines (for the progress total) without parsing; a file that does
/// not end with a line break still counts its last line.
pub fn count_lines(input: impl Read) -> std::io::Result<u64> {
    let mut input = input;
    let mut buffer = vec![0u8; 64 * 1024];
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let n = match input.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        lines += buffer[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        last = buffer[n - 1];
    }
    Ok(lines + u64::from(last != b'\n'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(row: &Row) -> (u64, Value) {
        match row {
            Row::Item(item) => (item.line, serde_json::from_str(&item.json).unwrap()),
            Row::Rejected(line, r) => panic!("line {line} rejected: {r:?}"),
        }
    }

    fn csv_header(text: &[u8]) -> Result<CsvRows<&[u8]>, InputError> {
        CsvRows::new(text, &Mapping::default())
    }

    fn csv_rows(text: &str) -> Vec<Row> {
        let mut rows = CsvRows::new(text.as_bytes(), &Mapping::default()).unwrap();
        let mut out = Vec::new();
        while let Some(row) = rows.next_row().unwrap() {
            out.push(row);
        }
        out
    }

    #[test]
    fn csv_rows_become_metrics_with_typed_properties() {
        let rows = csv_rows(
            "timestamp,value,type,user_id,region,ratio,ok,note\n\
             2026-11-30T10:00:00Z,85.5,cpu_usage,u-1,eu,0.25,true,hello world\n\
             2026-11-30T10:00:01Z,42,cpu_usage,,,-1e3,FALSE,\n",
        );
        let (line, first) = parse(&rows[0]);
        assert_eq!(line, 2);
        let id = first["id"].as_str().unwrap().to_string();
        assert!(id.starts_with("imp-2-"), "{id}");
        assert_eq!(
            first,
            json!({"timestamp": "2026-11-30T10:00:00Z", "value": 85.5, "type": "cpu_usage", "id": id, "user_id": "u-1",
                   "properties": {"region": "eu", "ratio": 0.25, "ok": true, "note": "hello world"}})
        );
        let (line, second) = parse(&rows[1]);
        assert_eq!(line, 3);
        assert_eq!(second["value"], json!(42));
        assert!(second.get("user_id").is_none(), "empty cells are left out");
        assert_eq!(second["properties"], json!({"ratio": -1000.0, "ok": false}));
    }

    #[test]
    fn csv_keeps_given_ids_checks_values_and_leaves_the_rest_to_the_server() {
        let rows = csv_rows("id,type,value,timestamp\nhost-7:42,cpu,1,yesterday\nhost-7:43,cpu,abc,now\n,,1,\n");
        assert_eq!(parse(&rows[0]).1, json!({"id": "host-7:42", "type": "cpu", "value": 1, "timestamp": "yesterday"}));
        assert_eq!(rows[1], Row::Rejected(3, Rejection::new(INVALID_CSV, "column `value`: `abc` is not a number")));
        let (_, empty) = parse(&rows[2]);
        let mut keys: Vec<&String> = empty.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, vec!["id", "value"], "required but empty: left out for the server to name");
    }

    #[test]
    fn csv_line_numbers_follow_the_file() {
        let lines = |text: &str| csv_rows(text).iter().map(|r| parse(r).0).collect::<Vec<u64>>();
        let rows = csv_rows("timestamp,value,type,note\nt,1,a,\"two\nlines\"\n\nt,2,a,x\r\nt,3,a,y");
        assert_eq!(parse(&rows[0]).1["properties"]["note"], json!("two\nlines"));
        assert_eq!(lines("timestamp,value,type,note\nt,1,a,\"two\nlines\"\n\nt,2,a,x\r\nt,3,a,y"), vec![2, 5, 6]);
        assert_eq!(lines("timestamp,value,type\r\nt,1,a\r\n\r\n\r\nt,2,a\r\n"), vec![2, 5]);
        assert_eq!(lines("\n\ntimestamp,value,type\n\nt,1,a\n\"t\n\n\",2,a\nt,3,a"), vec![5, 6, 9]);
        // Past the parser's 8 KiB buffer.
        let mut long = String::from("timestamp,value,type,note\n");
        for i in 0..2000 {
            long.push_str(&format!("t,{i},a,\"{}\"\n", if i % 7 == 0 { "x\ny" } else { "z" }));
        }
        let expected: Vec<u64> = (0..2000u64).scan(2, |line, i| { let l = *line; *line += if i % 7 == 0 { 2 } else { 1 }; Some(l) }).collect();
        assert_eq!(lines(&long), expected);
    }

    #[test]
    fn csv_rows_that_cannot_be_sent_are_rejected_here() {
        let mut text = b"timestamp,value,type\nt,1,a,extra\nt,1\nt,1,".to_vec();
        text.extend_from_slice(&[0xff, 0xfe]);
        text.push(b'\n');
        let mut rows = CsvRows::new(&text[..], &Mapping::default()).unwrap();
        let mut rejected = Vec::new();
        while let Some(row) = rows.next_row().unwrap() {
            match row {
                Row::Rejected(line, r) => rejected.push((line, r.error, r.message)),
                Row::Item(i) => panic!("sent {i:?}"),
            }
        }
        assert_eq!(rejected[0], (2, INVALID_CSV.into(), "the row has 4 fields, the header has 3".into()));
        assert_eq!(rejected[1].0, 3);
        assert_eq!(rejected[2], (4, INVALID_CSV.into(), "column `type` is not UTF-8 text".into()));
    }

    #[test]
    fn missing_required_columns_are_named() {
        let err = csv_header("user_id,Value,region\n1,2,3\n".as_bytes()).err().unwrap();
        assert_eq!(
            err.to_string(),
            "missing required columns: timestamp, value, type (the header has: user_id, Value, region); \
             --timestamp-column, --value-column, --type-column or --type map other names"
        );
        let err = csv_header("timestamp,value\n".as_bytes()).err().unwrap();
        assert!(err.to_string().starts_with("missing required column: type (the header has: timestamp, value);"), "{err}");
        assert!(matches!(csv_header("".as_bytes()).err().unwrap(), InputError::NoHeader));
        assert!(matches!(
            csv_header("timestamp,value,type,value\n".as_bytes()).err().unwrap(),
            InputError::DuplicateColumn(c) if c == "value"
        ));
        // A byte order mark and spaces around names are tolerated.
        assert!(csv_header("\u{feff}timestamp, value ,type\n".as_bytes()).is_ok());
    }

    #[test]
    fn typing_of_cells() {
        assert_eq!(typed(""), None);
        assert_eq!(typed("   "), None);
        assert_eq!(typed("12"), Some(json!(12)));
        assert_eq!(typed(" -0.5 "), Some(json!(-0.5)));
        assert_eq!(typed("1e3"), Some(json!(1000.0)));
        assert_eq!(typed("18446744073709551615"), Some(json!(18446744073709551615u64)));
        assert_eq!(typed("True"), Some(json!(true)));
        assert_eq!(typed("false"), Some(json!(false)));
        for text in ["NaN", "inf", "-infinity", "1e400", "0x10", "1,5", "12 apples", "yes"] {
            assert_eq!(typed(text), Some(json!(text)), "{text}");
        }
        assert_eq!(number("1e400"), None);
    }

    #[test]
    fn ndjson_lines_are_sent_as_is_with_an_id_added() {
        let line = br#"{"timestamp": "2026-11-30T10:00:00Z", "value": 1.50, "type": "cpu"}"#;
        let Some(Row::Item(item)) = convert_ndjson_line(4, line) else { panic!() };
        let expected_id = id::from_line(4, line);
        assert_eq!(item.json, format!(r#"{{"id":"{expected_id}","timestamp": "2026-11-30T10:00:00Z", "value": 1.50, "type": "cpu"}}"#));
        let given = br#" {"id": "mine", "value": 1, "extra": [1, 2]} "#;
        let Some(Row::Item(item)) = convert_ndjson_line(5, given) else { panic!() };
        assert_eq!(item.json.as_bytes(), given.trim_ascii());
        let (_, null_id) = parse(&convert_ndjson_line(6, br#"{"id": null, "value": 1}"#).unwrap());
        assert!(null_id["id"].as_str().unwrap().starts_with("imp-6-"));
        let (_, empty) = parse(&convert_ndjson_line(7, b"{ }").unwrap());
        assert!(empty["id"].is_string());
        assert_eq!(convert_ndjson_line(8, b"  \r"), None);
    }

    #[test]
    fn ndjson_lines_that_are_not_objects_are_rejected_here() {
        for (raw, message) in [
            (&b"[1, 2]"[..], "the line must be a JSON object, not an array"),
            (b"42", "the line must be a JSON object, not a number"),
            (b"\xff{}", "the line is not UTF-8 text"),
        ] {
            assert_eq!(convert_ndjson_line(9, raw), Some(Row::Rejected(9, Rejection::new(INVALID_JSON, message))));
        }
        let Some(Row::Rejected(9, r)) = convert_ndjson_line(9, b"{\"value\": ") else { panic!() };
        assert!(r.message.starts_with("the line is not valid JSON"), "{}", r.message);
    }

    #[test]
    fn ndjson_stream_counts_every_line() {
        let text = "\u{feff}{\"value\": 1}\n\n{\"value\": 2}\r\nnot json\n{\"value\": 3}";
        let mut rows = NdjsonRows::new(text.as_bytes());
        let mut lines = Vec::new();
        while let Some(row) = rows.next_row().unwrap() {
            lines.push(match row {
                Row::Item(i) => (i.line, true),
                Row::Rejected(line, _) => (line, false),
            });
        }
        assert_eq!(lines, vec![(1, true), (3, true), (4, false), (5, true)]);
    }

    #[test]
    fn format_from_flag_or_extension() {
        assert_eq!(detect_format(Path::new("a.CSV"), None).unwrap(), Format::Csv);
        assert_eq!(detect_format(Path::new("a.jsonl"), None).unwrap(), Format::Ndjson);
        assert_eq!(detect_format(Path::new("a.ndjson"), None).unwrap(), Format::Ndjson);
        assert_eq!(detect_format(Path::new("a.txt"), Some(Format::Csv)).unwrap(), Format::Csv);
        assert!(detect_format(Path::new("a.txt"), None).is_err());
    }

    #[test]
    fn counts_lines() {
        assert_eq!(count_lines(&b""[..]).unwrap(), 0);
        assert_eq!(count_lines(&b"a\nb\n"[..]).unwrap(), 2);
        assert_eq!(count_lines(&b"a\nb"[..]).unwrap(), 2);
    }
}
