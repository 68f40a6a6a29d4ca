"""Compares what the API says with what a file says.

    python compare.py imported <base URL> <read key> stocks|weather <csv file>
        The data set's own numbers, per type as the CLI's mapping names them,
        against the API's all-time summary of each type.
    python compare.py exported <base URL> <read key> <parquet file> <csv file>
        DuckDB's count, sum, min and max per type of an `analytics-cli export`
        (Parquet, then CSV) against the API's all-time summary of each type.

Exits non-zero on the first difference.
"""

import csv
import json
import math
import sys
import urllib.parse
import urllib.request


def fail(what):
    sys.exit(f"compare.py: {what}")


def summary(base, key, metric_type):
    query = urllib.parse.urlencode({"type": metric_type, "period": "all"})
    request = urllib.request.Request(f"{base}/api/metrics/summary?{query}", headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def same(metric_type, mine, api, source):
    """mine: (count, sum, min, max) from the file."""
    count, total, low, high = mine
    theirs = (api["count"], api["sum"], api["min_value"], api["max_value"])
    if count != theirs[0] or not math.isclose(total, theirs[1], rel_tol=1e-12, abs_tol=1e-9) or (low, high) != theirs[2:]:
        fail(f"{metric_type}: {source} says count {count} sum {total} min {low} max {high}; the API says {theirs}")


def data_set(name, path):
    """Per type: the values the CLI's mapping makes of the file."""
    values = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if name == "stocks":
                values.setdefault(f"stock.{row['symbol']}", []).append(float(row["price"]))
            else:
                for column in ("precipitation", "temp_max", "temp_min", "wind"):
                    values.setdefault(f"seattle.{column}", []).append(float(row[column]))
    return values


def imported(base, key, name, path):
    values = data_set(name, path)
    for metric_type, vs in sorted(values.items()):
        same(metric_type, (len(vs), math.fsum(vs), min(vs), max(vs)), summary(base, key, metric_type), path)
    print(f"{name}: {sum(map(len, values.values()))} metrics in {len(values)} types match the API's summaries")


def exported(base, key, parquet, csv_path):
    import duckdb

    con = duckdb.connect()
    schema = {column: kind for column, kind, *_ in con.sql(f"DESCRIBE SELECT * FROM read_parquet('{parquet}')").fetchall()}
    expected = {"id": "VARCHAR", "type": "VARCHAR", "timestamp": "TIMESTAMP WITH TIME ZONE", "value": "DOUBLE"}
    for column, kind in expected.items():
        if schema.get(column) != kind:
            fail(f"{parquet}: column {column} is {schema.get(column)}, not {kind}; the schema is {schema}")
    query = (
        "SELECT type, count(*) AS n, sum(value) AS sum, min(value) AS min, max(value) AS max, "
        "min(timestamp) AS first, max(timestamp) AS last FROM read_parquet('{}') GROUP BY type ORDER BY type"
    )
    print(query.format(parquet))
    con.sql(query.format(parquet)).show(max_width=200)
    rows = con.sql(query.format(parquet)).fetchall()
    for metric_type, n, total, low, high, _, _ in rows:
        same(metric_type, (n, total, low, high), summary(base, key, metric_type), parquet)
    unique = con.sql(f"SELECT count(*) = count(DISTINCT id) FROM read_parquet('{parquet}')").fetchall()[0][0]
    if not unique:
        fail(f"{parquet}: an id appears twice")
    from_csv = con.sql(f"SELECT type, count(*), sum(value) FROM read_csv('{csv_path}') GROUP BY type ORDER BY type").fetchall()
    if [(t, n) for t, n, _ in from_csv] != [(t, n) for t, n, *_ in rows]:
        fail(f"{csv_path} and {parquet} hold different counts per type")
    print(f"exported: {sum(r[1] for r in rows)} metrics in {len(rows)} types; DuckDB's count, sum, min and max match the API's summaries (Parquet and CSV)")


def main():
    if len(sys.argv) == 6 and sys.argv[1] == "imported":
        imported(*sys.argv[2:])
    elif len(sys.argv) == 6 and sys.argv[1] == "exported":
        exported(*sys.argv[2:])
    else:
        fail(__doc__)


if __name__ == "__main__":
    main()
