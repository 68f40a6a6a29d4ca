//! The PostgreSQL store's schema and statements, as plain text and pure
//! functions (`store_backend = "postgres"`; the shell that sends them is
//! `analytics-platform`'s `pg_store`).
//!
//! Plain PostgreSQL 15+, no extension. The app creates and migrates its
//! tables itself, on first use: a statement that finds a table missing
//! (SQLSTATE `42P01`) runs [`migrate_statement`] and is sent again. The
//! migration is one `DO` block, so it is one statement and one
//! transaction: it takes a transaction-scoped advisory lock first (replicas
//! that start together queue behind it), applies each version not yet in
//! `analytics_schema_version`, and records it. A process that dies half way
//! leaves nothing behind, and running it again changes nothing.

/// One schema version: statements applied together, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub statements: &'static [&'static str],
}

/// The table recording which versions are applied.
pub const VERSION_TABLE: &str = "analytics_schema_version";

/// The advisory lock every migration takes (any fixed number: it only has
/// to be the same for every replica of this app).
pub const MIGRATION_LOCK: i64 = 0x616e_616c_7974_6963; // "analytic"

/// Every version, oldest first. Never edit an applied one: add the next.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "key-value records",
        statements: &[
            // The records the core's key-value algorithms keep that have no
            // table of their own (journal shards, claims, API keys, users,
            // retention, the listing index, cached answers): the same bytes
            // as in Spin's key-value store, under the same keys.
            "CREATE TABLE IF NOT EXISTS analytics_kv (key text PRIMARY KEY, value bytea NOT NULL)",
        ],
    },
    Migration {
        version: 2,
        name: "raw metrics and rollups as tables",
        statements: &[
            // Every folded metric, one row each, partitioned by month of its
            // timestamp (partitions are created on first use; retention drops
            // whole ones). `chunk` is the entry chunk (the key of the fold
            // that wrote it) and `pos` its place there: the algorithms read
            // and write whole chunks.
            "CREATE TABLE IF NOT EXISTS analytics_metrics (\
               project text NOT NULL, type text NOT NULL, timestamp timestamptz NOT NULL, id text NOT NULL, \
               value double precision NOT NULL, user_id text, properties jsonb, \
               chunk text NOT NULL, pos integer NOT NULL, seq bigint NOT NULL) PARTITION BY RANGE (timestamp)",
            "CREATE INDEX IF NOT EXISTS analytics_metrics_chunk ON analytics_metrics (chunk)",
            "CREATE INDEX IF NOT EXISTS analytics_metrics_series ON analytics_metrics (project, type, timestamp)",
            // One row per aggregate: a bucket of a level (s, m, h, d, b for 64
            // days, e for 4 096 days) or all time, with its numbers as
            // columns and its quantile sketch (DDSketch) and distinct users
            // (HyperLogLog) beside them; `state` is the rest of the record
            // (per-shard watermarks, children, entry chunks).
            "CREATE TABLE IF NOT EXISTS analytics_rollups (\
               key text PRIMARY KEY, project text NOT NULL, type text NOT NULL, level text NOT NULL, bucket_start timestamptz, \
               count bigint NOT NULL, sum double precision NOT NULL, min double precision NOT NULL, max double precision NOT NULL, \
               latest_at timestamptz, latest_value double precision NOT NULL, \
               sketch bytea, users bytea, state bytea NOT NULL)",
            "CREATE INDEX IF NOT EXISTS analytics_rollups_series ON analytics_rollups (project, type, level, bucket_start)",
        ],
    },
];

/// The one statement that brings the schema up to date.
pub fn migrate_statement(migrations: &[Migration]) -> String {
    let mut sql = String::from("DO $migrate$\nBEGIN\n");
    sql.push_str(&format!("  PERFORM pg_advisory_xact_lock({MIGRATION_LOCK});\n"));
    sql.push_str(&format!(
        "  CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());\n"
    ));
    for m in migrations {
        sql.push_str(&format!("  IF NOT EXISTS (SELECT 1 FROM {VERSION_TABLE} WHERE version = {}) THEN\n", m.version));
        for statement in m.statements {
            sql.push_str("    ");
            sql.push_str(statement.trim().trim_end_matches(';'));
            sql.push_str(";\n");
        }
        sql.push_str(&format!(
            "    INSERT INTO {VERSION_TABLE} (version, name) VALUES ({}, '{}');\n  END IF;\n",
            m.version,
            m.name.replace('\'', "''")
        ));
    }
    sql.push_str("END\n$migrate$");
    sql
}

/// SQLSTATEs that mean "the schema is not (fully) there yet": undefined
/// table, undefined column, undefined function.
pub fn needs_migration(sqlstate: &str) -> bool {
    matches!(sqlstate, "42P01" | "42703" | "42883")
}

/// `($1, $2), ($3, $4), …`: `rows` tuples of `columns` parameters, numbered
/// from `$first`.
pub fn values_placeholders(rows: usize, columns: usize, first: usize) -> String {
    (0..rows)
        .map(|r| {
            let cells: Vec<String> = (0..columns).map(|c| format!("${}", first + r * columns + c)).collect();
            format!("({})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The key-value records' statements.
pub mod kv {
    /// `$1`: keys (text[]). Rows: key, value; missing keys have no row.
    /// One statement, so one snapshot.
    pub const GET_MANY: &str = "SELECT key, value FROM analytics_kv WHERE key = ANY($1::text[])";

    /// `$1`: keys (text[]); `$2`: how many of the first keys are read only
    /// in part; `$3`: how many bytes of those.
    pub const GET_MANY_HEADS: &str = "SELECT k.key, CASE WHEN k.n <= $2::bigint THEN substring(v.value FROM 1 FOR $3::integer) ELSE v.value END \
         FROM unnest($1::text[]) WITH ORDINALITY AS k(key, n) JOIN analytics_kv v ON v.key = k.key";

    /// `$1`: keys (text[]).
    pub const DELETE_MANY: &str = "DELETE FROM analytics_kv WHERE key = ANY($1::text[])";

    /// `$1`: key, `$2`: delta. Counters are decimal text (as on Redis,
    /// which `kv::decode_counter` reads). Returns the new value.
    pub const INCREMENT: &str = "INSERT INTO analytics_kv AS t (key, value) VALUES ($1, convert_to(($2::bigint)::text, 'UTF8')) \
         ON CONFLICT (key) DO UPDATE SET value = convert_to((convert_from(t.value, 'UTF8')::bigint + $2::bigint)::text, 'UTF8') \
         RETURNING convert_from(t.value, 'UTF8')::bigint";

    /// `$1`: key. One row: the value, NULL when the key is missing (a
    /// query must return a row: see [`super::records::READ`]).
    pub const GET: &str = "SELECT t.value FROM (VALUES (1)) AS one(x) LEFT JOIN analytics_kv t ON t.key = $1";

    /// `$1`: key, `$2`: new value, `$3`: the value expected. Affects one
    /// row when it swapped.
    pub const SWAP: &str = "UPDATE analytics_kv SET value = $2 WHERE key = $1 AND value = $3";

    /// `$1`: key, `$2`: value, written only if the key is missing. Affects
    /// one row when it created the key.
    pub const CREATE: &str = "INSERT INTO analytics_kv (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING";

    /// Writes `rows` (key, value) pairs, last one wins; parameters are the
    /// keys and values in turn. The pairs must have distinct keys (one
    /// statement cannot update a row twice): see [`super::last_per_key`].
    pub fn set_many(rows: usize) -> String {
        format!(
            "INSERT INTO analytics_kv (key, value) VALUES {} ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            super::values_placeholders(rows, 2, 1)
        )
    }
}

/// The pairs with the last value given for each key, in first-seen order.
pub fn last_per_key(entries: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    let mut out: Vec<(&str, &[u8])> = Vec::with_capacity(entries.len());
    let mut index = std::collections::HashMap::new();
    for (key, value) in entries {
        match index.get(key.as_str()) {
            Some(&i) => out[i] = (key.as_str(), value.as_slice()),
            None => {
                index.insert(key.as_str(), out.len());
                out.push((key.as_str(), value.as_slice()));
            }
        }
    }
    out
}

/// Which table a record of the core's key-value layout lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    /// `analytics_kv`.
    Kv,
    /// An entry chunk (`ent:…`): its metrics as rows of `analytics_metrics`.
    Chunk { project: &'a str, metric_type: &'a str, second: i64 },
    /// An aggregate (`agg:…`): a row of `analytics_rollups`. `start_second`
    /// is `None` for the all-time one.
    Rollup { project: &'a str, metric_type: &'a str, level: &'a str, start_second: Option<i64> },
}

/// Where `key` is kept. Keys outside the default project start with
/// `p:{project}:` (`auth::project_prefix`); type names hold no `:`.
pub fn classify(key: &str) -> Record<'_> {
    let (project, rest) = match key.strip_prefix("p:").and_then(|r| r.split_once(':')) {
        Some((project, rest)) => (project, rest),
        None => (crate::auth::DEFAULT_PROJECT, key),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    match parts.as_slice() {
        ["ent", metric_type, second, shard, through] if shard.parse::<u16>().is_ok() && through.parse::<u64>().is_ok() => match second.parse() {
            Ok(second) => Record::Chunk { project, metric_type, second },
            Err(_) => Record::Kv,
        },
        ["agg", metric_type, "all"] => Record::Rollup { project, metric_type, level: "all", start_second: None },
        ["agg", metric_type, tag, index] => {
            let level = crate::time::Level::ALL.into_iter().find(|l| l.tag().to_string() == *tag);
            match (level, index.parse::<i64>()) {
                (Some(level), Ok(index)) => Record::Rollup {
                    project,
                    metric_type,
                    level: tag,
                    start_second: index.checked_mul(level.seconds()),
                },
                _ => Record::Kv,
            }
        }
        _ => Record::Kv,
    }
}

/// One metric of an entry chunk, as a row of `analytics_metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    pub chunk: String,
    pub pos: i32,
    pub seq: i64,
    pub project: String,
    pub metric_type: String,
    pub timestamp_ms: i64,
    pub id: String,
    pub value: f64,
    pub user_id: Option<String>,
    pub properties: Option<String>,
}

/// The rows of entry chunk `key` (its stored bytes).
pub fn chunk_rows(key: &str, bytes: &[u8]) -> Result<Vec<MetricRow>, crate::kv::StoreError> {
    let Record::Chunk { project, .. } = classify(key) else {
        return Err(crate::kv::StoreError::corrupt(key, "not an entry chunk's key"));
    };
    let chunk = crate::entries::Chunk::decode(key, bytes)?;
    Ok(chunk
        .items
        .into_iter()
        .enumerate()
        .map(|(pos, (seq, m))| MetricRow {
            chunk: key.to_string(),
            pos: pos as i32,
            seq: seq as i64,
            project: project.to_string(),
            metric_type: m.metric_type,
            timestamp_ms: m.timestamp_ms,
            id: m.id,
            value: m.value,
            user_id: m.user_id,
            properties: m.properties,
        })
        .collect())
}

/// `properties` as the metric held it: compact JSON with sorted keys, as
/// the ingest wrote it (jsonb hands back its own spacing and key order).
pub fn normalize_properties(text: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(text).ok().map(|v| v.to_string())
}

/// A chunk's bytes again from its rows (in `pos` order).
pub fn chunk_from_rows(rows: Vec<MetricRow>) -> Vec<u8> {
    let items = rows
        .into_iter()
        .map(|r| {
            let metric = crate::metric::Metric {
                id: r.id,
                metric_type: r.metric_type,
                value: r.value,
                timestamp_ms: r.timestamp_ms,
                user_id: r.user_id,
                properties: r.properties.as_deref().and_then(normalize_properties),
            };
            (r.seq as u64, metric)
        })
        .collect();
    crate::entries::Chunk { items }.encode()
}

/// An aggregate as a row of `analytics_rollups`.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupRow {
    pub project: String,
    pub metric_type: String,
    pub level: String,
    pub start_second: Option<i64>,
    pub count: i64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub latest_ms: Option<i64>,
    pub latest_value: f64,
    /// The DDSketch, and the HyperLogLog of users, each encoded alone;
    /// `None` (both) when the record does not decode: `state` then holds
    /// all of it, as stored.
    pub sketch: Option<Vec<u8>>,
    pub users: Option<Vec<u8>>,
    pub state: Vec<u8>,
}

/// Splits aggregate `key`'s bytes into its row; `None` if `key` is no aggregate's.
pub fn rollup_row(key: &str, bytes: &[u8]) -> Option<RollupRow> {
    let Record::Rollup { project, metric_type, level, start_second } = classify(key) else {
        return None;
    };
    let mut row = RollupRow {
        project: project.to_string(),
        metric_type: metric_type.to_string(),
        level: level.to_string(),
        start_second,
        count: 0,
        sum: 0.0,
        min: 0.0,
        max: 0.0,
        latest_ms: None,
        latest_value: 0.0,
        sketch: None,
        users: None,
        state: bytes.to_vec(),
    };
    if let Ok(mut aggregate) = crate::aggregate::Aggregate::decode(bytes) {
        row.count = aggregate.count.min(i64::MAX as u64) as i64;
        (row.sum, row.min, row.max, row.latest_value) = (aggregate.sum, aggregate.min, aggregate.max, aggregate.latest_value);
        row.latest_ms = (aggregate.count > 0).then_some(aggregate.latest_ms);
        let sketch = std::mem::take(&mut aggregate.sketch);
        let users = aggregate.users.take();
        row.sketch = Some(postcard::to_allocvec(&sketch).unwrap_or_default());
        // `users` is optional in the record: its column holds the Option.
        row.users = Some(postcard::to_allocvec(&users).unwrap_or_default());
        row.state = aggregate.encode();
    }
    Some(row)
}

/// The aggregate's bytes again from its row's `state`, `sketch` and `users`.
pub fn rollup_bytes(state: &[u8], sketch: Option<&[u8]>, users: Option<&[u8]>) -> Result<Vec<u8>, String> {
    let (Some(sketch), Some(users)) = (sketch, users) else {
        return Ok(state.to_vec());
    };
    let mut aggregate = crate::aggregate::Aggregate::decode(state).map_err(|e| e.to_string())?;
    aggregate.sketch = postcard::from_bytes(sketch).map_err(|e| format!("sketch: {e}"))?;
    aggregate.users = postcard::from_bytes(users).map_err(|e| format!("users: {e}"))?;
    Ok(aggregate.encode())
}

/// A month partition of `analytics_metrics`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Partition {
    pub year: i32,
    pub month: u32,
}

impl Partition {
    /// The month holding the instant `ms`.
    pub fn of(ms: i64) -> Partition {
        use chrono::Datelike;
        let date = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
        Partition { year: date.year(), month: date.month() }
    }

    /// `analytics_metrics_y2026m12`: names sort as the months do (years 0–9999).
    pub fn name(&self) -> String {
        format!("analytics_metrics_y{:04}m{:02}", self.year, self.month)
    }

    fn next(&self) -> Partition {
        if self.month == 12 {
            Partition { year: self.year + 1, month: 1 }
        } else {
            Partition { year: self.year, month: self.month + 1 }
        }
    }

    fn start(&self) -> String {
        format!("{:04}-{:02}-01 00:00:00+00", self.year, self.month)
    }
}

/// One statement creating `partitions` if missing, under the migration
/// lock (two requests creating the same month do not collide).
pub fn create_partitions_statement(partitions: &[Partition]) -> String {
    let mut sql = format!("DO $partitions$\nBEGIN\n  PERFORM pg_advisory_xact_lock({MIGRATION_LOCK});\n");
    for p in partitions {
        sql.push_str(&format!(
            "  CREATE TABLE IF NOT EXISTS {} PARTITION OF analytics_metrics FOR VALUES FROM ('{}') TO ('{}');\n",
            p.name(),
            p.start(),
            p.next().start()
        ));
    }
    sql.push_str("END\n$partitions$");
    sql
}

/// One statement run after the retention sweep deleted chunks, the oldest
/// in month `swept`: it drops every month partition before `swept` (all
/// their metrics are older than that chunk, so past the horizon, whatever
/// their type or project) and `swept` itself once it is empty (locked
/// first, so a fold writing into it cannot interleave; a later write to a
/// dropped month creates it again).
pub fn drop_expired_partitions_statement(swept: &Partition) -> String {
    let name = swept.name();
    format!(
        "DO $drop$\nDECLARE old text;\nBEGIN\n  PERFORM pg_advisory_xact_lock({MIGRATION_LOCK});\n  \
         FOR old IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
         WHERE p.relname = 'analytics_metrics' AND c.relname <= '{name}' ORDER BY 1 LOOP\n    \
         IF old < '{name}' THEN\n      EXECUTE format('DROP TABLE IF EXISTS %I', old);\n    ELSE\n      \
         EXECUTE format('LOCK TABLE %I IN ACCESS EXCLUSIVE MODE', old);\n      \
         IF NOT EXISTS (SELECT 1 FROM analytics_metrics WHERE timestamp >= '{}' AND timestamp < '{}') THEN\n        \
         EXECUTE format('DROP TABLE IF EXISTS %I', old);\n      END IF;\n    END IF;\n  END LOOP;\nEND\n$drop$",
        swept.start(),
        swept.next().start()
    )
}

/// SQLSTATE of "no partition of relation … found for row".
pub const NO_PARTITION: &str = "23514";

/// The rows and record statements.
pub mod records {
    /// Reads records of every table in one statement (one snapshot).
    /// `$1` key-value keys (text[]), of which the first `$2` only their
    /// first `$3` bytes; `$4` rollup keys; `$5` chunk keys. Columns:
    /// kind (0 key-value, 1 rollup, 2 metric, [`PADDING`]), key, value or
    /// state, sketch, users, seq, ms, id, value, user_id, properties, pos,
    /// type.
    ///
    /// It ends with one padding row, so it never returns no row: Spin
    /// 4.0.2's `query` never answers a statement that returns none (it
    /// waits for the first row to learn the columns).
    pub const READ: &str = "SELECT 0::integer AS kind, k.key, CASE WHEN k.n <= $2::bigint THEN substring(v.value FROM 1 FOR $3::integer) ELSE v.value END AS bytes, \
           NULL::bytea AS sketch, NULL::bytea AS users, NULL::bigint AS seq, NULL::bigint AS ms, NULL::text AS id, NULL::double precision AS value, \
           NULL::text AS user_id, NULL::text AS properties, NULL::integer AS pos, NULL::text AS type \
         FROM unnest($1::text[]) WITH ORDINALITY AS k(key, n) JOIN analytics_kv v ON v.key = k.key \
         UNION ALL SELECT 1, key, state, sketch, users, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM analytics_rollups WHERE key = ANY($4::text[]) \
         UNION ALL SELECT 2, chunk, NULL, NULL, NULL, seq, (extract(epoch FROM timestamp) * 1000)::bigint, id, value, user_id, properties::text, pos, type \
           FROM analytics_metrics WHERE chunk = ANY($5::text[]) \
         UNION ALL SELECT -1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL";

    /// The kind of [`READ`]'s padding row, which holds no record.
    pub const PADDING: i64 = -1;

    /// Parameters per metric row: chunk, pos, seq, project, type, ms, id,
    /// value, user_id, properties.
    pub const METRIC_COLUMNS: usize = 10;
    /// Parameters per rollup row: key, project, type, level, start second,
    /// count, sum, min, max, latest ms, latest value, sketch, users, state.
    pub const ROLLUP_COLUMNS: usize = 14;

    fn metric_values(rows: usize, first: usize) -> String {
        (0..rows)
            .map(|r| {
                let p = |c: usize| first + r * METRIC_COLUMNS + c;
                format!(
                    "(${}, ${}::integer, ${}::bigint, ${}, ${}, timestamptz 'epoch' + ${}::bigint * interval '1 millisecond', ${}, ${}::double precision, ${}::text, ${}::text::jsonb)",
                    p(0), p(1), p(2), p(3), p(4), p(5), p(6), p(7), p(8), p(9)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn rollup_values(rows: usize, first: usize) -> String {
        (0..rows)
            .map(|r| {
                let p = |c: usize| first + r * ROLLUP_COLUMNS + c;
                format!(
                    "(${}, ${}, ${}, ${}, timestamptz 'epoch' + ${}::bigint * interval '1 second', ${}::bigint, ${}::double precision, ${}::double precision, ${}::double precision, \
                     timestamptz 'epoch' + ${}::bigint * interval '1 millisecond', ${}::double precision, ${}::bytea, ${}::bytea, ${}::bytea)",
                    p(0), p(1), p(2), p(3), p(4), p(5), p(6), p(7), p(8), p(9), p(10), p(11), p(12), p(13)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    const ROLLUP_SET: &str = "count = EXCLUDED.count, sum = EXCLUDED.sum, min = EXCLUDED.min, max = EXCLUDED.max, \
         latest_at = EXCLUDED.latest_at, latest_value = EXCLUDED.latest_value, sketch = EXCLUDED.sketch, users = EXCLUDED.users, state = EXCLUDED.state";

    /// One statement writing `kv` key-value pairs, `rollups` rollup rows,
    /// and replacing the metrics of `chunks` chunks by `metrics` rows.
    /// Parameters in that order: pairs (key, value); rollup rows; the
    /// chunks' keys (text[], only if `chunks > 0`); metric rows.
    pub fn write(kv: usize, rollups: usize, chunks: usize, metrics: usize) -> String {
        let mut parts = Vec::new();
        let mut next = 1;
        if kv > 0 {
            parts.push(format!(
                "INSERT INTO analytics_kv (key, value) VALUES {} ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                super::values_placeholders(kv, 2, next)
            ));
            next += kv * 2;
        }
        if rollups > 0 {
            parts.push(format!(
                "INSERT INTO analytics_rollups (key, project, type, level, bucket_start, count, sum, min, max, latest_at, latest_value, sketch, users, state) \
                 VALUES {} ON CONFLICT (key) DO UPDATE SET {ROLLUP_SET}",
                rollup_values(rollups, next)
            ));
            next += rollups * ROLLUP_COLUMNS;
        }
        if chunks > 0 {
            // A chunk written again (a repeated fold, an erasure) replaces
            // its rows: the delete and the insert share the statement's snapshot.
            parts.push(format!("DELETE FROM analytics_metrics WHERE chunk = ANY(${next}::text[])"));
            next += 1;
        }
        if metrics > 0 {
            parts.push(format!(
                "INSERT INTO analytics_metrics (chunk, pos, seq, project, type, timestamp, id, value, user_id, properties) VALUES {}",
                metric_values(metrics, next)
            ));
        }
        chain(parts)
    }

    /// One statement deleting records: `$1` key-value keys, `$2` rollup
    /// keys, `$3` chunk keys (all text[]).
    pub const DELETE: &str = "WITH a AS (DELETE FROM analytics_kv WHERE key = ANY($1::text[])), \
         b AS (DELETE FROM analytics_rollups WHERE key = ANY($2::text[])) \
         DELETE FROM analytics_metrics WHERE chunk = ANY($3::text[])";

    /// `$1` key. Row: state, sketch, users.
    pub const GET_ROLLUP: &str = "SELECT state, sketch, users FROM analytics_rollups WHERE key = $1";

    /// Compare-and-swap of a rollup. `$1` key, `$2` count, `$3` sum,
    /// `$4` min, `$5` max, `$6` latest ms, `$7` latest value, `$8` sketch,
    /// `$9` users, `$10` state; then the state, sketch and users expected
    /// (`$11`–`$13`). Affects one row when it swapped.
    pub const SWAP_ROLLUP: &str = "UPDATE analytics_rollups SET count = $2::bigint, sum = $3::double precision, min = $4::double precision, \
         max = $5::double precision, latest_at = timestamptz 'epoch' + $6::bigint * interval '1 millisecond', latest_value = $7::double precision, \
         sketch = $8::bytea, users = $9::bytea, state = $10::bytea \
         WHERE key = $1 AND state = $11::bytea AND sketch IS NOT DISTINCT FROM $12::bytea AND users IS NOT DISTINCT FROM $13::bytea";

    /// Creates a rollup only if its key is missing (parameters as [`write`]).
    pub fn create_rollup() -> String {
        format!(
            "INSERT INTO analytics_rollups (key, project, type, level, bucket_start, count, sum, min, max, latest_at, latest_value, sketch, users, state) \
             VALUES {} ON CONFLICT (key) DO NOTHING",
            rollup_values(1, 1)
        )
    }

    /// Data-modifying statements as one: all but the last as CTEs.
    fn chain(parts: Vec<String>) -> String {
        match parts.split_last() {
            None => "SELECT 1".to_string(),
            Some((last, rest)) => {
                let ctes: Vec<String> = rest.iter().enumerate().map(|(i, p)| format!("w{i} AS ({p})")).collect();
                if ctes.is_empty() {
                    last.clone()
                } else {
                    format!("WITH {} {last}", ctes.join(", "))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_ascending_and_unique() {
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].version < pair[1].version, "{} then {}", pair[0].version, pair[1].version);
        }
        assert_eq!(MIGRATIONS[0].version, 1);
    }

    #[test]
    fn the_migration_is_one_locked_idempotent_statement() {
        let sql = migrate_statement(MIGRATIONS);
        let lock = sql.find("pg_advisory_xact_lock").expect("takes the lock");
        let first_change = sql.find("CREATE TABLE").expect("creates tables");
        assert!(lock < first_change, "the lock comes before any change");
        assert!(sql.starts_with("DO $migrate$") && sql.ends_with("$migrate$"));
        for m in MIGRATIONS {
            assert!(sql.contains(&format!("WHERE version = {}) THEN", m.version)), "version {} is guarded", m.version);
            assert!(sql.contains(&format!("VALUES ({}, '", m.version)), "version {} is recorded", m.version);
        }
        // Every table is created only if missing, so a half-applied schema
        // from before the version table existed is no error either.
        assert_eq!(sql.matches("CREATE TABLE ").count(), sql.matches("CREATE TABLE IF NOT EXISTS").count());
    }

    #[test]
    fn names_are_quoted_for_sql() {
        let m = [Migration { version: 9, name: "it's", statements: &["SELECT 1;"] }];
        let sql = migrate_statement(&m);
        assert!(sql.contains("'it''s'"));
        assert!(sql.contains("    SELECT 1;\n"), "one semicolon per statement: {sql}");
    }

    #[test]
    fn placeholders_number_rows_then_columns() {
        assert_eq!(values_placeholders(2, 2, 1), "($1, $2), ($3, $4)");
        assert_eq!(values_placeholders(1, 3, 4), "($4, $5, $6)");
        assert_eq!(values_placeholders(0, 2, 1), "");
        assert!(kv::set_many(2).contains("VALUES ($1, $2), ($3, $4) ON CONFLICT"));
    }

    #[test]
    fn a_key_given_twice_keeps_its_last_value_once() {
        let entries = vec![("a".to_string(), vec![1]), ("b".to_string(), vec![2]), ("a".to_string(), vec![3])];
        assert_eq!(last_per_key(&entries), vec![("a", &[3u8][..]), ("b", &[2u8][..])]);
    }

    #[test]
    fn missing_schema_is_recognised_by_sqlstate() {
        assert!(needs_migration("42P01"));
        assert!(needs_migration("42703"));
        assert!(!needs_migration("23505"), "a unique violation is not a schema problem");
        assert!(!needs_migration("40001"));
    }

    #[test]
    fn keys_go_to_their_tables() {
        assert_eq!(classify("jrn:cpu:3"), Record::Kv);
        assert_eq!(classify("claim:ent:x"), Record::Kv);
        assert_eq!(classify("ent:cpu:1700000000:3:77"), Record::Chunk { project: "default", metric_type: "cpu", second: 1_700_000_000 });
        assert_eq!(classify("p:acme:ent:cpu:5:0:1"), Record::Chunk { project: "acme", metric_type: "cpu", second: 5 });
        assert_eq!(classify("agg:cpu:all"), Record::Rollup { project: "default", metric_type: "cpu", level: "all", start_second: None });
        assert_eq!(classify("p:acme:agg:cpu:h:2"), Record::Rollup { project: "acme", metric_type: "cpu", level: "h", start_second: Some(7_200) });
        assert_eq!(classify("agg:cpu:x:2"), Record::Kv, "an unknown level stays a plain record");
        assert_eq!(classify("ent:cpu:notanumber:1:2"), Record::Kv);
    }

    #[test]
    fn a_chunk_round_trips_through_its_rows() {
        use crate::metric::Metric;
        let mut with_user = Metric::new("b", "cpu", -2.25, 1_700_000_000_123);
        with_user.user_id = Some("u1".into());
        with_user.properties = Some(r#"{"a":1.5,"plan":"pro"}"#.into());
        let chunk = crate::entries::Chunk { items: vec![(4, Metric::new("a", "cpu", 1.5, 1_700_000_000_000)), (9, with_user)] };
        let key = "p:acme:ent:cpu:1700000000:3:9";
        let mut rows = chunk_rows(key, &chunk.encode()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[1].project.as_str(), rows[1].pos, rows[1].seq, rows[1].user_id.as_deref()), ("acme", 1, 9, Some("u1")));
        // jsonb hands properties back with its own spacing and key order.
        rows[1].properties = Some(r#"{"plan": "pro", "a": 1.5}"#.into());
        assert_eq!(chunk_from_rows(rows), chunk.encode());
        assert!(chunk_rows("jrn:cpu:1", &chunk.encode()).is_err());
    }

    #[test]
    fn a_rollup_splits_into_columns_and_joins_again() {
        use crate::metric::Metric;
        let mut aggregate = crate::aggregate::Aggregate::default();
        for (i, v) in [3.0, 1.0, 7.5].into_iter().enumerate() {
            let mut m = Metric::new(format!("m{i}"), "cpu", v, 60_000 + i as i64);
            m.user_id = Some(format!("u{i}"));
            aggregate.record_metric(&m);
        }
        let bytes = aggregate.encode();
        let row = rollup_row("agg:cpu:m:1", &bytes).unwrap();
        assert_eq!((row.count, row.sum, row.min, row.max, row.latest_ms, row.latest_value), (3, 11.5, 1.0, 7.5, Some(60_002), 7.5));
        assert_eq!((row.level.as_str(), row.start_second), ("m", Some(60)));
        assert!(row.state.len() < bytes.len(), "the sketch and users are out of the state");
        assert_eq!(rollup_bytes(&row.state, row.sketch.as_deref(), row.users.as_deref()).unwrap(), bytes);
        // A record that does not decode is kept whole.
        let odd = rollup_row("agg:cpu:all", b"\x01junk").unwrap();
        assert_eq!((odd.sketch, odd.state.as_slice()), (None, &b"\x01junk"[..]));
        assert_eq!(rollup_bytes(b"\x01junk", None, None).unwrap(), b"\x01junk");
        assert!(rollup_row("jrn:cpu:1", &bytes).is_none());
    }

    #[test]
    fn partitions_are_months_named_in_order() {
        let p = Partition::of(1_796_000_000_000); // 2026-11-30
        assert_eq!(p.name(), "analytics_metrics_y2026m11");
        assert!(Partition { year: 2026, month: 12 }.name() < Partition { year: 2027, month: 1 }.name());
        let sql = create_partitions_statement(&[Partition { year: 2026, month: 12 }]);
        assert!(sql.contains("FROM ('2026-12-01 00:00:00+00') TO ('2027-01-01 00:00:00+00')"), "{sql}");
        assert!(sql.contains("pg_advisory_xact_lock"));
        let drop = drop_expired_partitions_statement(&p);
        assert!(drop.contains("IF old < 'analytics_metrics_y2026m11' THEN"), "{drop}");
        assert!(drop.contains("timestamp >= '2026-11-01 00:00:00+00' AND timestamp < '2026-12-01 00:00:00+00'"), "{drop}");
    }

    #[test]
    fn one_write_statement_numbers_its_parameters_in_order() {
        let sql = records::write(1, 1, 1, 2);
        assert!(sql.starts_with("WITH w0 AS (INSERT INTO analytics_kv"), "{sql}");
        assert!(sql.contains("VALUES ($1, $2)"));
        assert!(sql.contains("($3, $4, $5, $6, timestamptz 'epoch' + $7::bigint"));
        assert!(sql.contains("DELETE FROM analytics_metrics WHERE chunk = ANY($17::text[])"));
        assert!(sql.contains("$36::text, $37::text::jsonb)"), "{sql}");
        assert!(!sql.contains("$38"));
        assert_eq!(records::write(2, 0, 0, 0), "INSERT INTO analytics_kv (key, value) VALUES ($1, $2), ($3, $4) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value");
    }
}
