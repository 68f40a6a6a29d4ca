#!/usr/bin/env bash
# Tools users already have, against the live API: starts
# target/release/spin-host on a free loopback port with `auth = "required"`,
# then
#   1. generates a Python client (openapi-python-client) and TypeScript types
#      (openapi-typescript, used through openapi-fetch) from the live
#      /openapi.json and drives each through client.py / client.ts: keys,
#      one metric, a batch, a summary and a series, typed, and a 400, 403,
#      404, 409 and 422 caught as the one error type (`Error`); prints how
#      many models the Python client has, and fails if any error response
#      got a model of its own;
#   2. imports two public data sets as they are published (vega-datasets'
#      stocks.csv and seattle-weather.csv) with analytics-cli's column
#      mapping, after a --dry-run of each and of a broken copy, and compares
#      every type's count, sum, min and max with the API's summaries;
#   3. exports everything with `analytics-cli export` (Parquet, CSV, NDJSON)
#      and compares DuckDB's aggregates per type with the API's summaries.
# Exits non-zero on any difference; the host is stopped either way.
#
#   ecosystem/check.sh
#
# Needs the host, the components and analytics-cli built (`cargo xtask test`
# builds all three), Python >= 3.11, Node.js >= 18 with npm and, the first
# time only, PyPI and npm: the pinned tools in ecosystem/requirements.txt and
# ecosystem/package-lock.json go into target/ecosystem-venv and
# target/ecosystem-node, reused while those files are unchanged.
#
# Environment: PYTHON (default python3), SPIN_HOST, ANALYTICS_CLI (binaries).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
here="$root/ecosystem"
python="${PYTHON:-python3}"
host="${SPIN_HOST:-$root/target/release/spin-host}"
cli="${ANALYTICS_CLI:-$root/target/release/analytics-cli}"
venv="$root/target/ecosystem-venv"
node_dir="$root/target/ecosystem-node"
started=$SECONDS

say() { echo "ecosystem/check.sh: $*" >&2; }
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    say "needs Python >= 3.11 (set PYTHON=/path/to/python3.11+)"
    exit 2
fi
if ! command -v npm >/dev/null 2>&1; then
    say "needs Node.js and npm (apt-get install -y nodejs npm)"
    exit 2
fi
for binary in "$host" "$cli"; do
    if [ ! -x "$binary" ]; then
        say "no $binary; build it with: cargo build --release -p spin-host -p analytics-cli"
        exit 2
    fi
done

if [ ! -x "$venv/bin/openapi-python-client" ] || ! cmp -s "$here/requirements.txt" "$venv/.requirements"; then
    echo "setting up $venv (pinned tools from ecosystem/requirements.txt)"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$venv/.requirements"
fi
if [ ! -d "$node_dir/node_modules" ] || ! cmp -s "$here/package-lock.json" "$node_dir/package-lock.json"; then
    echo "setting up $node_dir (pinned packages from ecosystem/package-lock.json)"
    mkdir -p "$node_dir"
    cp "$here/package.json" "$here/package-lock.json" "$node_dir/"
    (cd "$node_dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
data="$node_dir/node_modules/vega-datasets/data"

state="$(mktemp -d "${TMPDIR:-/tmp}/ecosystem-check.XXXXXX")"
host_pid=""
cleanup() {
    if [ -n "$host_pid" ] && kill -0 "$host_pid" 2>/dev/null; then
        kill "$host_pid" 2>/dev/null || true
        wait "$host_pid" 2>/dev/null || true
    fi
    rm -rf "$state"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
admin_token="admin-$RANDOM$RANDOM$RANDOM"
cd "$root"
"$host" up -f spin.toml --listen "127.0.0.1:$port" --state-dir "$state/store" --quiet --redis embedded \
    --variable auth=required \
    --variable admin_token="$admin_token" \
    --variable rate_limit_requests=1000000 \
    --variable external_service_latency_ms=0 \
    --variable external_service_failure_rate=0 \
    >"$state/host.log" 2>&1 &
host_pid=$!
fetch() { "$python" -c 'import sys, urllib.request; sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1], timeout=10).read())' "$1"; }
for _ in $(seq 600); do
    kill -0 "$host_pid" 2>/dev/null || break
    fetch "$base/health" >/dev/null 2>&1 && break
    sleep 0.1
done
if ! fetch "$base/health" >/dev/null 2>&1; then
    say "the host did not answer GET /health on $base within 60 s; its log:"
    cat "$state/host.log" >&2
    exit 1
fi
echo "host up on $base with auth = required ($((SECONDS - started)) s)"
fetch "$base/openapi.json" >"$state/openapi.json"

echo "== 1. clients generated from the live /openapi.json"
"$venv/bin/openapi-python-client" generate --path "$state/openapi.json" --meta none \
    --output-path "$state/python/analytics_client" >"$state/generate.log" 2>&1 || { cat "$state/generate.log" >&2; exit 1; }
# One model per file (and __init__.py). Every error response is the one
# `Error` schema, so none may have a per-operation copy such as
# create_key_response_400.py (194 models when each pinned its `error` code).
models="$state/python/analytics_client/models"
model_count="$(find "$models" -maxdepth 1 -name '*.py' ! -name __init__.py | wc -l)"
copies="$(find "$models" -maxdepth 1 -regextype posix-extended -regex '.*_response_[45][0-9]{2}(_.*)?\.py' -printf '%f\n' | sort)"
for model in error.py error_code.py; do
    [ -f "$models/$model" ] || { say "the Python client has no $model"; exit 1; }
done
if [ -n "$copies" ]; then
    say "error responses with models of their own (each should be \$ref: '#/components/schemas/Error'):"
    echo "$copies" >&2
    exit 1
fi
echo "python client: $model_count models generated; every error response is the one model, Error (its code an ErrorCode)"
"$venv/bin/python" "$here/client.py" "$state/python" "$base" "$admin_token" eco.python "$state/keys.json"
ingest_key="$("$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["ingest"])' "$state/keys.json")"
read_key="$("$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["read"])' "$state/keys.json")"

"$node_dir/node_modules/.bin/openapi-typescript" "$base/openapi.json" -o "$node_dir/api.d.ts" --silent
cp "$here/client.ts" "$here/tsconfig.json" "$node_dir/"
"$node_dir/node_modules/.bin/tsc" -p "$node_dir/tsconfig.json"
node "$node_dir/out/client.js" "$base" "$ingest_key" "$read_key" "$admin_token" eco.typescript

echo "== 2. public data sets imported with a column mapping"
stocks=(--timestamp-column date --timestamp-format "%b %d %Y" --value-column price --type-column symbol --type-prefix stock.)
weather=(--timestamp-column date --timestamp-format %Y-%m-%d --value-column precipitation,temp_max,temp_min,wind
    --type-prefix seattle. --property-columns weather)
dry_run() {
    local file="$1" expect="$2"
    shift 2
    local rc=0
    "$cli" import "$file" --dry-run "$@" >"$state/dry-run.txt" 2>&1 || rc=$?
    cat "$state/dry-run.txt"
    if [ "$rc" -ne "$expect" ]; then
        say "--dry-run of $file exited $rc, not $expect"
        exit 1
    fi
}
dry_run "$data/stocks.csv" 0 "${stocks[@]}"
# A broken copy: the dry run names the line and the column of each bad cell.
sed -e '3s/,36.35$/,n\/a/' -e '5s/^MSFT,Apr 1 2000/MSFT,April 31 2000/' "$data/stocks.csv" >"$state/stocks-broken.csv"
dry_run "$state/stocks-broken.csv" 1 "${stocks[@]}"
for expected in 'line 3' 'column `price`: `n/a` is not a number' 'line 5' 'column `date`'; do
    grep -qF "$expected" "$state/dry-run.txt" || { say "the dry run of a broken file does not say \`$expected\`"; exit 1; }
done
dry_run "$data/seattle-weather.csv" 0 "${weather[@]}"

"$cli" import "$data/stocks.csv" --url "$base" --api-key "$ingest_key" "${stocks[@]}"
"$cli" import "$data/seattle-weather.csv" --url "$base" --api-key "$ingest_key" "${weather[@]}"
# The same command again stores nothing twice.
"$cli" import "$data/stocks.csv" --url "$base" --api-key "$ingest_key" "${stocks[@]}" | tee "$state/again.txt"
grep -qF ' 0 accepted, 560 duplicates, 0 rejected' "$state/again.txt" || { say "a second import stored something"; exit 1; }
"$venv/bin/python" "$here/compare.py" imported "$base" "$read_key" stocks "$data/stocks.csv"
"$venv/bin/python" "$here/compare.py" imported "$base" "$read_key" weather "$data/seattle-weather.csv"

echo "== 3. export, read back with DuckDB"
for format in parquet csv ndjson; do
    ANALYTICS_API_KEY="$read_key" "$cli" export --url "$base" --format "$format" -o "$state/metrics.$format"
done
"$venv/bin/python" "$here/compare.py" exported "$base" "$read_key" "$state/metrics.parquet" "$state/metrics.csv"
lines="$(wc -l <"$state/metrics.ndjson")"
[ "$lines" -eq $((560 + 1461 * 4 + 22)) ] || { say "the NDJSON export holds $lines lines"; exit 1; }

echo "ecosystem/check.sh: passed ($((SECONDS - started)) s)"
