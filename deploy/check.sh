#!/usr/bin/env bash
# Offline structural check of the deployment files: deploy/*.yaml (Kubernetes
# schemas, the SpinApp schema in deploy/schema/, kustomize), docker-compose.yml
# (compose-spec schema) and the wiring of both: the metrics store `default`
# on the durable Redis, `redis_url` on the losable one, never the same server.
#
#   deploy/check.sh              # run the checks (one line each; exit 1 on failure)
#   deploy/check.sh --self-test  # break copies of the files; each break must be caught
#
# Needs Python >= 3.11 and, the first time only, PyPI: the pinned tools in
# deploy/check-requirements.txt go into a virtual environment at $VENV
# (default target/deploy-check-venv; relative paths are from the repo root),
# reused while that file is unchanged. No cluster, Docker or network after that.
# Environment: VENV, PYTHON (default python3), K8S_VERSION (default 1.30),
# KUBECTL (a kubectl to use instead of the pinned one).
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

stamp="$venv/.deploy-check-requirements"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$reqs" "$stamp"; then
    echo "setting up $venv (pinned tools from deploy/check-requirements.txt)"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$reqs"
    cp "$reqs" "$stamp"
fi

exec "$venv/bin/python" "$root/deploy/check.py" --root "$root" "$@"
