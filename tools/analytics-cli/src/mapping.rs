//! Where each CSV column goes: the `--*-column` options resolved against a
//! file's header, and one record turned into metric objects.
//!
//! With no options a file needs `timestamp`, `value` and `type` columns (and
//! may have `id`, `user_id`); every other column becomes a property. The
//! options name other columns, give a constant type, or make a wide file
//! (several value columns) into one metric per value column.
//!
//! The CLI checks the cells it converts (values must be numbers; timestamps
//! must match `--timestamp-format`; types are made valid, see
//! [`crate::type_names`]), naming the column; the server judges the rest.

use analytics_core::metric::validate_type;
use serde_json::{Map, Value};

use crate::id;
use crate::input::{number, typed, InputError, Item, Row, INVALID_CSV};
use crate::reply::Rejection;
use crate::timestamps::{self, TimestampFormat, Zone};
use crate::type_names::{self, Renames, TypeNameError, TypeRule};

/// The column options of `import`, as given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mapping {
    pub timestamp_column: Option<String>,
    pub timestamp_format: Option<TimestampFormat>,
    pub timezone: Option<Zone>,
    /// Several: one metric per column and row, each column its own type.
    pub value_columns: Vec<String>,
    pub metric_type: Option<String>,
    pub type_column: Option<String>,
    pub type_prefix: Option<String>,
    pub user_column: Option<String>,
    pub id_column: Option<String>,
    /// `None`: every column not otherwise used.
    pub property_columns: Option<Vec<String>>,
    /// How names from the file (type cells, value column names) become types.
    pub type_rule: TypeRule,
}

impl Mapping {
    /// Whether any column option differs from the default layout (the type
    /// rule is not one: it has nothing to act on in an NDJSON file).
    pub fn is_default(&self) -> bool {
        Mapping { type_rule: TypeRule::default(), ..self.clone() } == Mapping::default()
    }
}

/// A mapping that cannot apply to a header, or options that contradict each other.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MappingError {
    #[error("--type gives every metric one type, but {0} value columns each make their own type (drop --type, and use --type-prefix to name them)")]
    ConstantTypeForManyColumns(usize),
    #[error("--type-column gives each row one type, but {0} value columns each make their own type (drop --type-column, and use --type-prefix to name them)")]
    TypeColumnForManyColumns(usize),
    #[error("the type `{metric_type}` {message}")]
    BadType { metric_type: String, message: String },
    #[error("value column `{column}`: {error}; rename the column{}", if matches!(.error, TypeNameError::Invalid { .. }) { ", or drop --strict-types" } else { "" })]
    ColumnType { column: String, error: TypeNameError },
    #[error(transparent)]
    Prefix(TypeNameError),
    #[error("value columns `{first}` and `{second}` would both make the type `{metric_type}`: rename one of them")]
    SameType { first: String, second: String, metric_type: String },
    #[error("column `{0}` is used twice (as {1} and as {2})")]
    ColumnUsedTwice(String, &'static str, &'static str),
}

/// What a record's metric type comes from.
#[derive(Debug, Clone, PartialEq)]
enum TypeSource {
    Column(usize),
    /// Known from the options alone (a constant, or the value column's name).
    Fixed,
}

/// One value column and, when the type is fixed, the type its metrics get.
#[derive(Debug, Clone, PartialEq)]
struct ValueColumn {
    index: usize,
    metric_type: Option<String>,
}

/// A header with a mapping applied: column indexes for every part of a metric.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvLayout {
    timestamp: usize,
    timestamp_format: TimestampFormat,
    zone: Zone,
    values: Vec<ValueColumn>,
    type_source: TypeSource,
    type_prefix: String,
    type_rule: TypeRule,
    /// Value column names the rule changed (a wide file's types), for the dry run.
    renamed_columns: Renames,
    id: Option<usize>,
    user_id: Option<usize>,
    /// Each a key of `properties`; a `properties` column holding a JSON object is merged in.
    properties: Vec<(usize, String)>,
    names: Vec<String>,
}

impl CsvLayout {
    /// Maps the header row; names are matched exactly after trimming spaces
    /// (and a UTF-8 byte order mark on the first).
    pub fn new<S: AsRef<str>>(header: &[S], mapping: &Mapping) -> Result<CsvLayout, InputError> {
        let names = clean_names(header)?;
        let find = |wanted: &str| names.iter().position(|n| n == wanted);
        let or_default = |given: &Option<String>, default: &str| given.clone().unwrap_or_else(|| default.to_string());

        let timestamp_name = or_default(&mapping.timestamp_column, "timestamp");
        let value_names =
            if mapping.value_columns.is_empty() { vec!["value".to_string()] } else { mapping.value_columns.clone() };
        let wide = value_names.len() > 1;
        if wide && mapping.metric_type.is_some() {
            return Err(MappingError::ConstantTypeForManyColumns(value_names.len()).into());
        }
        if wide && mapping.type_column.is_some() {
            return Err(MappingError::TypeColumnForManyColumns(value_names.len()).into());
        }
        // The type column is required unless the type is given or made from value columns.
        let type_name = match (&mapping.metric_type, &mapping.type_column) {
            (None, Some(column)) => Some(column.clone()),
            (None, None) if !wide && mapping.type_prefix.is_none() => Some("type".to_string()),
            _ => None,
        };

        let mut required: Vec<&str> = vec![&timestamp_name];
        required.extend(value_names.iter().map(String::as_str));
        required.extend(type_name.as_deref());
        required.extend(mapping.user_column.as_deref());
        required.extend(mapping.id_column.as_deref());
        if let Some(columns) = &mapping.property_columns {
            required.extend(columns.iter().map(String::as_str));
        }
        let mut missing: Vec<String> = required.iter().filter(|w| find(w).is_none()).map(|w| w.to_string()).collect();
        missing.dedup();
        if !missing.is_empty() {
            return Err(InputError::MissingColumns { missing, header: names });
        }
        let index = |name: &str| find(name).unwrap_or_default();

        let prefix = mapping.type_prefix.clone().unwrap_or_default();
        type_names::check_prefix(&prefix).map_err(MappingError::Prefix)?;
        let mut renamed_columns = Renames::new("value column names");
        let mut values = Vec::with_capacity(value_names.len());
        for name in &value_names {
            let metric_type = match (&mapping.metric_type, &type_name) {
                // A type written in the options is used as it is: fixing it silently would hide a typo.
                (Some(constant), _) => {
                    let metric_type = format!("{prefix}{constant}");
                    validate_type(&metric_type).map_err(|message| MappingError::BadType { metric_type: metric_type.clone(), message })?;
                    Some(metric_type)
                }
                (None, None) => {
                    let metric_type = type_names::make_type(&prefix, name, mapping.type_rule)
                        .map_err(|error| MappingError::ColumnType { column: name.clone(), error })?;
                    if type_names::changed(&prefix, name, &metric_type) {
                        renamed_columns.note(name, &metric_type);
                    }
                    // Two columns of one type would mix their series (and their given ids).
                    if let Some(k) = values.iter().position(|v: &ValueColumn| v.metric_type.as_ref() == Some(&metric_type)) {
                        return Err(MappingError::SameType { first: value_names[k].clone(), second: name.clone(), metric_type }.into());
                    }
                    Some(metric_type)
                }
                (None, Some(_)) => None,
            };
            values.push(ValueColumn { index: index(name), metric_type });
        }

        let mut used: Vec<(&str, &'static str)> = vec![(timestamp_name.as_str(), "the timestamp")];
        used.extend(value_names.iter().map(|n| (n.as_str(), "a value")));
        used.extend(type_name.as_deref().map(|n| (n, "the type")));
        let id_name = mapping.id_column.clone().or_else(|| find("id").map(|_| "id".to_string()));
        let user_name = mapping.user_column.clone().or_else(|| find("user_id").map(|_| "user_id".to_string()));
        used.extend(id_name.as_deref().map(|n| (n, "the id")));
        used.extend(user_name.as_deref().map(|n| (n, "the user id")));
        for (i, (name, role)) in used.iter().enumerate() {
            if let Some((_, other)) = used[..i].iter().find(|(n, _)| n == name) {
                return Err(MappingError::ColumnUsedTwice(name.to_string(), other, role).into());
            }
        }
        let properties = match &mapping.property_columns {
            Some(columns) => columns.iter().map(|n| (index(n), n.clone())).collect(),
            None => names
                .iter()
                .enumerate()
                .filter(|(_, n)| !n.is_empty() && !used.iter().any(|(u, _)| u == n) && !is_spare_default(n, mapping))
                .map(|(i, n)| (i, n.clone()))
                .collect(),
        };
        Ok(CsvLayout {
            timestamp: index(&timestamp_name),
            timestamp_format: mapping.timestamp_format.clone().unwrap_or(TimestampFormat::AsIs),
            zone: mapping.timezone.unwrap_or_default(),
            values,
            type_source: match &type_name {
                Some(name) => TypeSource::Column(index(name)),
                None => TypeSource::Fixed,
            },
            type_prefix: prefix,
            type_rule: mapping.type_rule,
            renamed_columns,
            id: id_name.as_deref().map(index),
            user_id: user_name.as_deref().map(index),
            properties,
            names,
        })
    }

    /// A fresh record of the type cells the rule changes, for [`CsvLayout::convert`]
    /// (with the value column names it changed already in, for a wide file).
    pub fn renames(&self) -> Renames {
        match self.type_source {
            TypeSource::Column(i) => Renames::new(format!("column `{}`", self.names[i])),
            TypeSource::Fixed => self.renamed_columns.clone(),
        }
    }

    /// The metric objects of one record at `line` (one per value column), or
    /// the reasons it cannot be sent, naming the column. A type cell the rule
    /// changed is noted in `renames`.
    pub fn convert(&self, line: u64, fields: &[&[u8]], renames: &mut Renames) -> Vec<Row> {
        let reject = |message: String| vec![Row::Rejected(line, Rejection::new(INVALID_CSV, message))];
        if fields.len() != self.names.len() {
            return reject(format!("the row has {} fields, the header has {}", fields.len(), self.names.len()));
        }
        let mut cells = Vec::with_capacity(fields.len());
        for (i, field) in fields.iter().enumerate() {
            match std::str::from_utf8(field) {
                Ok(text) => cells.push(text),
                Err(_) => return reject(format!("column `{}` is not UTF-8 text", self.names[i])),
            }
        }
        let cell = |i: usize| Some(cells[i]).filter(|c| !c.trim().is_empty());
        let column = |i: usize| &self.names[i];

        let mut shared = Map::new();
        // An empty timestamp or type is left out: the server answers "is required".
        if let Some(text) = cell(self.timestamp) {
            match timestamps::convert(text, &self.timestamp_format, self.zone) {
                Ok(timestamp) => shared.insert("timestamp".into(), Value::String(timestamp)),
                Err(message) => return reject(format!("column `{}`: {message}", column(self.timestamp))),
            };
        }
        if let TypeSource::Column(i) = self.type_source {
            if let Some(text) = cell(i) {
                let name = text.trim();
                match type_names::make_type(&self.type_prefix, name, self.type_rule) {
                    Ok(metric_type) => {
                        if type_names::changed(&self.type_prefix, name, &metric_type) {
                            renames.note(name, &metric_type);
                        }
                        shared.insert("type".into(), Value::String(metric_type));
                    }
                    Err(e) => return reject(format!("column `{}`: {e}", column(i))),
                }
            }
        }
        if let Some(text) = self.user_id.and_then(cell) {
            shared.insert("user_id".into(), Value::String(text.trim().to_string()));
        }
        let properties = self.properties(&cells);
        if !properties.is_empty() {
            shared.insert("properties".into(), Value::Object(properties));
        }
        let given_id = self.id.and_then(cell).map(str::trim);

        let wide = self.values.len() > 1;
        self.values
            .iter()
            .map(|value| {
                let name = column(value.index);
                let number = match cell(value.index) {
                    None => return Row::Rejected(line, Rejection::new(INVALID_CSV, format!("column `{name}` is empty"))),
                    Some(text) => match number(text) {
                        Some(n) => n,
                        None => {
                            let message = format!("column `{name}`: `{}` is not a number", text.trim());
                            return Row::Rejected(line, Rejection::new(INVALID_CSV, message));
                        }
                    },
                };
                let mut metric = shared.clone();
                metric.insert("value".into(), Value::Number(number));
                if let Some(metric_type) = &value.metric_type {
                    metric.insert("type".into(), Value::String(metric_type.clone()));
                }
                let id = match (given_id, wide) {
                    (Some(given), false) => given.to_string(),
                    // The type keeps one row's metrics apart, and is in the id's character set.
                    (Some(given), true) => format!("{given}:{}", value.metric_type.as_deref().unwrap_or(name)),
                    (None, false) => id::from_fields(line, fields.iter().copied()),
                    (None, true) => id::from_fields(line, fields.iter().copied().chain([name.as_bytes()])),
                };
                metric.insert("id".into(), Value::String(id));
                Row::Item(Item { line, json: Value::Object(metric).to_string() })
            })
            .collect()
    }

    fn properties(&self, cells: &[&str]) -> Map<String, Value> {
        let mut properties = Map::new();
        for (i, name) in &self.properties {
            let Some(value) = typed(cells[*i]) else { continue };
            // What `export --format csv` writes: the metric's properties as one JSON object.
            if name == "properties" {
                if let Ok(Value::Object(object)) = serde_json::from_str::<Value>(cells[*i]) {
                    properties.extend(object);
                    continue;
                }
            }
            properties.insert(name.clone(), value);
        }
        properties
    }
}

/// `id` and `user_id` columns are not properties even when other columns
/// were named for those roles (they would only repeat them).
fn is_spare_default(name: &str, mapping: &Mapping) -> bool {
    (name == "id" && mapping.id_column.is_some()) || (name == "user_id" && mapping.user_column.is_some())
}

fn clean_names<S: AsRef<str>>(header: &[S]) -> Result<Vec<String>, InputError> {
    let names: Vec<String> = header
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let n = n.as_ref();
            let n = if i == 0 { n.trim_start_matches('\u{feff}') } else { n };
            n.trim().to_string()
        })
        .collect();
    if names.iter().all(|n| n.is_empty()) {
        return Err(InputError::NoHeader);
    }
    for (i, name) in names.iter().enumerate() {
        if !name.is_empty() && names[..i].contains(name) {
            return Err(InputError::DuplicateColumn(name.clone()));
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn layout(header: &str, mapping: &Mapping) -> Result<CsvLayout, InputError> {
        CsvLayout::new(&header.split(',').collect::<Vec<_>>(), mapping)
    }

    fn metrics(layout: &CsvLayout, line: u64, record: &str) -> Vec<Result<Value, String>> {
        metrics_noting(layout, line, record, &mut layout.renames())
    }

    fn metrics_noting(layout: &CsvLayout, line: u64, record: &str, renames: &mut Renames) -> Vec<Result<Value, String>> {
        let fields: Vec<&[u8]> = record.split(',').map(str::as_bytes).collect();
        layout
            .convert(line, &fields, renames)
            .into_iter()
            .map(|row| match row {
                Row::Item(item) => {
                    assert_eq!(item.line, line);
                    Ok(serde_json::from_str(&item.json).unwrap())
                }
                Row::Rejected(l, r) => {
                    assert_eq!(l, line);
                    Err(r.message)
                }
            })
            .collect()
    }

    fn without_id(mut metric: Value) -> Value {
        metric.as_object_mut().unwrap().remove("id");
        metric
    }

    #[test]
    fn a_long_file_like_stocks_csv() {
        let mapping = Mapping {
            timestamp_column: Some("date".into()),
            timestamp_format: Some("%b %d %Y".parse().unwrap()),
            value_columns: vec!["price".into()],
            type_column: Some("symbol".into()),
            type_prefix: Some("stock.".into()),
            ..Mapping::default()
        };
        let layout = layout("symbol,date,price", &mapping).unwrap();
        let got = metrics(&layout, 2, "MSFT,Jan 1 2000,39.81");
        let metric = got[0].clone().unwrap();
        assert!(metric["id"].as_str().unwrap().starts_with("imp-2-"));
        assert_eq!(without_id(metric), json!({"timestamp": "2000-01-01T00:00:00.000Z", "type": "stock.MSFT", "value": 39.81}));
        assert_eq!(metrics(&layout, 3, "MSFT,Jan 32 2000,1"), vec![Err("column `date`: `Jan 32 2000` does not match the format `%b %d %Y`".into())]);
        assert_eq!(metrics(&layout, 4, "MSFT,Feb 1 2000,n/a"), vec![Err("column `price`: `n/a` is not a number".into())]);
    }

    #[test]
    fn a_wide_file_like_seattle_weather_csv_makes_a_type_per_value_column() {
        let mapping = Mapping {
            timestamp_column: Some("date".into()),
            timestamp_format: Some("%Y-%m-%d".parse().unwrap()),
            timezone: Some("America/Los_Angeles".parse().unwrap()),
            value_columns: vec!["precipitation".into(), "temp_max".into(), "temp_min".into(), "wind".into()],
            type_prefix: Some("seattle.".into()),
            ..Mapping::default()
        };
        let layout = layout("date,precipitation,temp_max,temp_min,wind,weather", &mapping).unwrap();
        let got: Vec<Value> = metrics(&layout, 2, "2012-01-01,0.0,12.8,5.0,4.7,drizzle").into_iter().map(Result::unwrap).collect();
        assert_eq!(got.len(), 4);
        let types: Vec<&str> = got.iter().map(|m| m["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["seattle.precipitation", "seattle.temp_max", "seattle.temp_min", "seattle.wind"]);
        assert_eq!(without_id(got[1].clone()), json!({
            "timestamp": "2012-01-01T08:00:00.000Z", "type": "seattle.temp_max", "value": 12.8, "properties": {"weather": "drizzle"}
        }));
        let ids: std::collections::BTreeSet<&str> = got.iter().map(|m| m["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), 4, "one row's metrics have their own ids");
        // The same row again gives the same ids: a re-run stores nothing twice.
        let again: Vec<Value> = metrics(&layout, 2, "2012-01-01,0.0,12.8,5.0,4.7,drizzle").into_iter().map(Result::unwrap).collect();
        assert_eq!(again, got);
        // One bad cell costs only its own metric.
        let partial = metrics(&layout, 3, "2012-01-02,10.9,,2.8,4.5,rain");
        assert_eq!(partial.iter().filter(|m| m.is_ok()).count(), 3);
        assert_eq!(partial[1], Err("column `temp_max` is empty".into()));
    }

    #[test]
    fn given_ids_users_constant_types_and_chosen_properties() {
        let mapping = Mapping {
            value_columns: vec!["ms".into()],
            metric_type: Some("latency".into()),
            user_column: Some("who".into()),
            id_column: Some("request".into()),
            property_columns: Some(vec!["route".into()]),
            timestamp_column: Some("at".into()),
            timestamp_format: Some(TimestampFormat::UnixMs),
            ..Mapping::default()
        };
        let narrow = layout("at,request,who,route,ms,ignored", &mapping).unwrap();
        assert_eq!(metrics(&narrow, 2, "946684800000,r-1,u-7,/home,12,x")[0], Ok(json!({
            "timestamp": "2000-01-01T00:00:00.000Z", "id": "r-1", "user_id": "u-7", "type": "latency", "value": 12,
            "properties": {"route": "/home"}
        })));
        let wide = Mapping { value_columns: vec!["a".into(), "b".into()], id_column: Some("id".into()), ..Mapping::default() };
        let wide_layout = layout("timestamp,id,a,b", &Mapping { type_prefix: None, ..wide }).unwrap();
        let ids: Vec<Value> = metrics(&wide_layout, 2, "2026-01-01T00:00:00Z,row-9,1,2").into_iter().map(|m| m.unwrap()["id"].clone()).collect();
        assert_eq!(ids, [json!("row-9:a"), json!("row-9:b")]);
    }

    #[test]
    fn type_cells_are_made_into_types_and_each_change_is_noted() {
        let mapping = Mapping {
            timestamp_column: Some("year".into()),
            timestamp_format: Some("%Y-%m-%d".parse().unwrap()),
            value_columns: vec!["net_generation".into()],
            type_column: Some("source".into()),
            type_prefix: Some("iowa.".into()),
            ..Mapping::default()
        };
        let loose = layout("year,source,net_generation", &mapping).unwrap();
        let strict = layout("year,source,net_generation", &Mapping { type_rule: TypeRule::Strict, ..mapping }).unwrap();
        let layout = loose;
        let mut renames = layout.renames();
        let types = |record: &str, renames: &mut Renames| -> Result<Value, String> {
            metrics_noting(&layout, 2, record, renames).remove(0).map(|m| m["type"].clone())
        };
        assert_eq!(types("2001-01-01,Fossil Fuels,35361", &mut renames), Ok(json!("iowa.Fossil_Fuels")));
        assert_eq!(types("2001-01-01, Nuclear Energy ,3853", &mut renames), Ok(json!("iowa.Nuclear_Energy")));
        assert_eq!(types("2002-01-01,Fossil Fuels,35991", &mut renames), Ok(json!("iowa.Fossil_Fuels")));
        assert_eq!(types("2001-01-01,Renewables,1437", &mut renames), Ok(json!("iowa.Renewables")));
        assert_eq!(
            types("2001-01-01,%,1", &mut renames),
            Err("column `source`: `%` has no letter, digit, '_', '.' or '-' to make a type of".into())
        );
        let pairs: Vec<(&str, &str)> = renames.pairs().collect();
        assert_eq!(pairs, [("Fossil Fuels", "iowa.Fossil_Fuels"), ("Nuclear Energy", "iowa.Nuclear_Energy")], "only changed names");
        assert_eq!(renames.origin, "column `source`");

        // The ids come from the cells as written, so --strict-types does not change them.
        let made = metrics(&layout, 3, "2001-01-01,Fossil Fuels,35361").remove(0).unwrap();
        assert_eq!(
            metrics(&strict, 3, "2001-01-01,Fossil Fuels,35361"),
            vec![Err("column `source`: the type `iowa.Fossil Fuels` may contain only letters, digits, '_', '.' and '-' \
                      (without --strict-types it would be `iowa.Fossil_Fuels`)".into())]
        );
        let kept = metrics(&strict, 3, "2001-01-01,Renewables,1437").remove(0).unwrap();
        assert_eq!(kept["type"], "iowa.Renewables");
        let fields: [&[u8]; 3] = [b"2001-01-01", b"Fossil Fuels", b"35361"];
        assert_eq!(made["id"], id::from_fields(3, fields.into_iter()), "the id is the cells' own");
    }

    #[test]
    fn value_column_names_are_made_into_types_once_for_the_file() {
        let mapping = Mapping {
            value_columns: vec!["max temp".into(), "min temp (°C)".into(), "wind".into()],
            type_prefix: Some("w.".into()),
            id_column: Some("id".into()),
            ..Mapping::default()
        };
        let wide = layout("timestamp,id,max temp,min temp (°C),wind", &mapping).unwrap();
        let got: Vec<Value> = metrics(&wide, 2, "2026-01-01T00:00:00Z,r1,1,2,3").into_iter().map(Result::unwrap).collect();
        let types: Vec<&str> = got.iter().map(|m| m["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["w.max_temp", "w.min_temp_C", "w.wind"]);
        assert_eq!(got[0]["id"], "r1:w.max_temp", "a given id with the type as made");
        let renames = wide.renames();
        let pairs: Vec<(&str, &str)> = renames.pairs().collect();
        assert_eq!(pairs, [("max temp", "w.max_temp"), ("min temp (°C)", "w.min_temp_C")]);
        let same = Mapping { value_columns: vec!["a b".into(), "a/b".into()], type_prefix: Some("p.".into()), ..Mapping::default() };
        assert_eq!(
            layout("timestamp,a b,a/b", &same).unwrap_err().to_string(),
            "value columns `a b` and `a/b` would both make the type `p.a_b`: rename one of them"
        );
    }

    #[test]
    fn the_default_layout_is_what_it_always_was() {
        let layout = layout("timestamp,value,type,id,user_id,region,properties", &Mapping::default()).unwrap();
        let got = metrics(&layout, 2, r#"2026-11-30T10:00:00Z,85.5,cpu,c-1,u-1,eu,{"a":1}"#);
        assert_eq!(got[0], Ok(json!({
            "timestamp": "2026-11-30T10:00:00Z", "value": 85.5, "type": "cpu", "id": "c-1", "user_id": "u-1",
            "properties": {"region": "eu", "a": 1}
        })));
    }

    #[test]
    fn options_that_cannot_apply_are_refused_before_anything_is_sent() {
        let message = |header: &str, mapping: Mapping| layout(header, &mapping).unwrap_err().to_string();
        assert_eq!(
            message("symbol,date,price", Mapping::default()),
            "missing required columns: timestamp, value, type (the header has: symbol, date, price); \
             --timestamp-column, --value-column, --type-column or --type map other names"
        );
        let two = vec!["a".to_string(), "b".to_string()];
        assert!(message("timestamp,a,b", Mapping { value_columns: two.clone(), metric_type: Some("t".into()), ..Mapping::default() })
            .starts_with("--type gives every metric one type, but 2 value columns"));
        assert!(message("timestamp,a,b,k", Mapping { value_columns: two, type_column: Some("k".into()), ..Mapping::default() })
            .starts_with("--type-column gives each row one type"));
        let strict = Mapping { value_columns: vec!["max temp".into(), "min".into()], type_rule: TypeRule::Strict, ..Mapping::default() };
        assert_eq!(
            message("timestamp,max temp,min", strict),
            "value column `max temp`: the type `max temp` may contain only letters, digits, '_', '.' and '-' \
             (without --strict-types it would be `max_temp`); rename the column, or drop --strict-types"
        );
        assert_eq!(
            message("timestamp,%,min", Mapping { value_columns: vec!["%".into(), "min".into()], ..Mapping::default() }),
            "value column `%`: `%` has no letter, digit, '_', '.' or '-' to make a type of; rename the column"
        );
        assert_eq!(
            message("timestamp,value,k", Mapping { type_column: Some("k".into()), type_prefix: Some("my data.".into()), ..Mapping::default() }),
            "--type-prefix `my data.` may contain only letters, digits, '_', '.' and '-'"
        );
        assert_eq!(
            message("timestamp,value", Mapping { metric_type: Some("cpu usage".into()), ..Mapping::default() }),
            "the type `cpu usage` may contain only letters, digits, '_', '.' and '-'"
        );
        assert_eq!(
            message("timestamp,value,type", Mapping { timestamp_column: Some("value".into()), ..Mapping::default() }),
            "column `value` is used twice (as the timestamp and as a value)"
        );
        assert!(message("timestamp,value,type", Mapping { property_columns: Some(vec!["region".into()]), ..Mapping::default() })
            .starts_with("missing required column: region"));
    }
}
