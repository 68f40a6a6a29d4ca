#!/usr/bin/env bash
# Offline structural check of the deployment files: deploy/*.yaml (Kubernetes
# schemas, the SpinApp schema in deploy/schema/, kustomize), docker-compose.yml
# (compose-spec schema) and the wiring of both: the metrics store `default`
# on the durable Redis, `redis_url` on the losable one, never the same server.
# Then the monitoring files (deploy/monitoring.py): the alert rules in
# deploy/prometheus/ (`promtool check rules`, `promtool test rules`), the
# PrometheusRule made from them (its CRD's schema, the same rules), and the
# Grafana dashboard in deploy/grafana/ (its JSON and PromQL, and every metric
# it names seen in a live host's /metrics and --metrics-listen).
#
#   deploy/check.sh              # run the checks (one line each; exit 1 on failure)
#   deploy/check.sh --self-test  # break copies of the files; each break must be caught
#   deploy/check.sh --write-prometheus-rule   # regenerate deploy/prometheus-rule.yaml
#
# Needs Python >= 3.11 and, the first time only, PyPI: the pinned tools in
# deploy/check-requirements.txt go into a virtual environment at $VENV
# (default target/deploy-check-venv; relative paths are from the repo root),
# reused while that file is unchanged. No cluster, Docker or network after that.
# The monitoring checks also need promtool (Debian: apt-get install -y
# prometheus; `cargo xtask test` installs it), redis-server, and the host and
# components built (`cargo xtask build && cargo build --release -p spin-host`).
# Environment: VENV, PYTHON (default python3), K8S_VERSION (default 1.30),
# KUBECTL (a kubectl to use instead of the pinned one), PROMTOOL (default:
# promtool on PATH), SPIN_HOST (default target/release/spin-host).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-target/deploy-check-venv}"
case "$venv" in /*) ;; *) venv="$root/$venv" ;; esac
python="${PYTHON:-python3}"
reqs="$root/deploy/check-requirements.txt"

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "deploy/check.sh: needs Python >= 3.11 (set PYTHON=/path/to/python3.11+)" >&2
    exit 2
fi

if [ -z "${PROMTOOL:-}" ] && ! command -v promtool >/dev/null 2>&1; then
    echo "deploy/check.sh: needs promtool (apt-get install -y prometheus, or set PROMTOOL=/path/to/promtool)" >&2
    exit 2
fi

stamp="$venv/.deploy-check-requirements"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$reqs" "$stamp"; then
    echo "setting up $venv (pinned tools from deploy/check-requirements.txt)"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$reqs"
    cp "$reqs" "$stamp"
fi

# check.py imports monitoring.py: leave no __pycache__ in the work tree.
export PYTHONDONTWRITEBYTECODE=1
exec "$venv/bin/python" "$root/deploy/check.py" --root "$root" "$@"
