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
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "key-value records",
    statements: &[
        // Every record the core's key-value algorithms keep (journal shards,
        // aggregates, entry chunks, claims, API keys, users, retention, the
        // listing index, cached answers): the same bytes as in Spin's
        // key-value store, under the same keys.
        "CREATE TABLE IF NOT EXISTS analytics_kv (key text PRIMARY KEY, value bytea NOT NULL)",
    ],
}];

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

    /// `$1`: key. Row: value.
    pub const GET: &str = "SELECT value FROM analytics_kv WHERE key = $1";

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
}
