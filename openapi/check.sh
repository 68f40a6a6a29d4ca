#!/usr/bin/env bash
# Tests the OpenAPI document (openapi/openapi.yaml, served as /openapi.json)
# against the live API: starts target/release/spin-host on a free loopback
# port with a fresh state directory and embedded Redis, then runs
# schemathesis with every check (no 5xx; status codes, content types,
# headers and bodies as documented; schema-valid requests accepted and
# schema-violating ones refused with a documented 4xx; 405 with `Allow` for
# other methods). Exits non-zero on any failure; the host is stopped either way.
#
#   openapi/check.sh
#
# Needs the host and the components built (`cargo xtask test` builds both;
# else `cargo xtask build && cargo build --release -p spin-host`), Python
# >= 3.11 and, the first time only, PyPI: the pinned tools in
# openapi/requirements.txt go into a virtual environment at $VENV (default
# target/openapi-venv; relative paths are from the repo root), reused while
# that file is unchanged. Settings for schemathesis, and the hooks it loads,
# are in openapi/schemathesis.toml and openapi/schemathesis_hooks.py.
#
# Environment: VENV, PYTHON (default python3), SPIN_HOST (the host binary),
# MAX_EXAMPLES (test cases per operation and phase, default 200),
# SEED (schemathesis' seed, to replay a run; it prints the one it used).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-target/openapi-venv}"
case "$venv" in /*) ;; *) venv="$root/$venv" ;; esac
python="${PYTHON:-python3}"
reqs="$root/openapi/requirements.txt"
host="${SPIN_HOST:-$root/target/release/spin-host}"
max_examples="${MAX_EXAMPLES:-200}"
started=$SECONDS

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "openapi/check.sh: needs Python >= 3.11 (set PYTHON=/path/to/python3.11+)" >&2
    exit 2
fi
if [ ! -x "$host" ]; then
    echo "openapi/check.sh: no host at $host; build it with: cargo build --release -p spin-host" >&2
    exit 2
fi

stamp="$venv/.openapi-check-requirements"
if [ ! -x "$venv/bin/st" ] || ! cmp -s "$reqs" "$stamp"; then
    echo "setting up $venv (pinned tools from openapi/requirements.txt)"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$reqs"
    cp "$reqs" "$stamp"
fi

state="$(mktemp -d "${TMPDIR:-/tmp}/openapi-check.XXXXXX")"
host_pid=""
st_pid=""
stop() {
    if [ -n "$1" ] && kill -0 "$1" 2>/dev/null; then
        kill "$1" 2>/dev/null || true
        wait "$1" 2>/dev/null || true
    fi
}
stop_host() {
    stop "$host_pid"
    host_pid=""
}
cleanup() {
    stop "$st_pid"
    stop_host
    rm -rf "$state"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port="$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
# The simulator's settings can be changed only with this token, which the
# schemathesis config sends (and leaves out, to see the 401).
export OPENAPI_CHECK_ADMIN_TOKEN="check-$RANDOM$RANDOM"

# A rate limit no run reaches (429 is documented, not provoked); an
# upstream that answers at once and never fails, so summaries stay fast;
# event streams that end after their first summary (each would otherwise
# stay open a minute, and schemathesis reads a body to its end).
cd "$root"
"$host" up -f spin.toml --listen "127.0.0.1:$port" --state-dir "$state/store" --quiet --redis embedded \
    --variable rate_limit_requests=1000000 \
    --variable external_service_latency_ms=0 \
    --variable external_service_failure_rate=0 \
    --variable admin_token="$OPENAPI_CHECK_ADMIN_TOKEN" \
    --variable stream_lifetime_seconds=0 \
    >"$state/host.log" 2>&1 &
host_pid=$!

ready=""
for _ in $(seq 600); do
    if ! kill -0 "$host_pid" 2>/dev/null; then
        break
    fi
    if "$venv/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$base/" 2>/dev/null; then
        ready=1
        break
    fi
    sleep 0.1
done
if [ -z "$ready" ]; then
    echo "openapi/check.sh: the host did not answer GET / on $base within 60 s; its log:" >&2
    cat "$state/host.log" >&2
    exit 1
fi
echo "host up on $base ($((SECONDS - started)) s)"

# Hypothesis' own caches go with the tools, not into the work tree.
export HYPOTHESIS_STORAGE_DIRECTORY="$venv/hypothesis"

# One worker: schemathesis' generator is not thread-safe on every Python
# 3.11 ("AST constructor recursion depth mismatch"), and the host has the
# other core.
st_run() {
    local args=("$venv/bin/st" --config-file "$root/openapi/schemathesis.toml" run "$base/openapi.json"
        --checks all --max-examples "$max_examples" --request-timeout 30 --workers 1 --no-color)
    if [ -n "${SEED:-}" ]; then
        args+=(--seed "$SEED")
    fi
    # In the background and waited for, so a signal stops the check at once.
    "${args[@]}" "$@" &
    st_pid=$!
    local rc=0
    wait "$st_pid" || rc=$?
    st_pid=""
    return "$rc"
}

status=0
# 1. Everything but changing the simulator, whose random settings (up to a
#    minute of latency) would slow every summary after them.
echo "schemathesis: every operation but PUT /api/simulator/config"
st_run --exclude-operation-id setSimulatorConfig || status=1
# 2. The simulator's settings, last.
echo "schemathesis: /api/simulator/config"
st_run --include-path /api/simulator/config || status=1

stop_host
if [ "$status" -ne 0 ]; then
    echo "openapi/check.sh: FAILED ($((SECONDS - started)) s)" >&2
    exit 1
fi
echo "openapi/check.sh: passed ($((SECONDS - started)) s)"
