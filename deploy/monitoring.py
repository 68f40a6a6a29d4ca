"""Checks of the monitoring files, run by deploy/check.py:

- deploy/prometheus/alerts.yml: `promtool check rules`, and its unit tests
  (alerts_test.yml) with `promtool test rules`; every alert must have a test
  that fires it and one that does not;
- deploy/prometheus-rule.yaml: alerts.yml as a PrometheusRule, byte for byte
  what `deploy/check.sh --write-prometheus-rule` writes; its memory alert
  names the SpinApp's container (its schema check is in check.py);
- deploy/grafana/*.json: each parses, has the `datasource` variable every
  panel uses, and every panel's PromQL parses (promtool, one recording rule
  per expression);
- the metrics the dashboard and the alerts name exist: a live spin-host with
  two real Redis servers is driven through every counter's path (ingest,
  duplicate, rejection, rate limit, summaries, upstream failure and the
  breaker opening, then the store's Redis stopped), and the names in its
  app's /metrics and its --metrics-listen are compared with theirs.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

ALERTS = "deploy/prometheus/alerts.yml"
ALERTS_TEST = "deploy/prometheus/alerts_test.yml"
PROMETHEUS_RULE = "deploy/prometheus-rule.yaml"
CRD = "deploy/schema/monitoring.coreos.com_prometheusrules.yaml"
GRAFANA = "deploy/grafana"
# Grafana's interval variables, replaced by a duration for parsing.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
# Metrics the alerts read from elsewhere than this project: the kubelet's
# cAdvisor (SpinKube's memory).
EXTERNAL_METRICS = re.compile(r"^container_")


class Failed(Exception):
    pass


def require(cond, msg):
    if not cond:
        raise Failed(msg)


def promtool_path() -> str | None:
    return os.environ.get("PROMTOOL") or shutil.which("promtool")


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    tool = promtool_path()
    require(tool, "no promtool: apt-get install -y prometheus (or set PROMTOOL=/path/to/promtool)")
    return subprocess.run([tool, *args], capture_output=True, text=True, cwd=cwd)


# ------------------------------------------------------------ the rules


def load_yaml(path: Path):
    with open(path) as f:
        return yaml.safe_load(f)


def alert_rules(root: Path) -> list[dict]:
    groups = (load_yaml(root / ALERTS) or {}).get("groups") or []
    return [r for g in groups for r in g.get("rules") or [] if "alert" in r]


def check_rules(root: Path):
    def run():
        out = promtool("check", "rules", str(root / ALERTS))
        require(out.returncode == 0, (out.stdout + out.stderr).strip())
        m = re.search(r"SUCCESS: (\d+) rules found", out.stdout)
        return f"{m.group(1) if m else '?'} rules, promtool {promtool_version()}"
    return [(f"promtool check rules {ALERTS}", run)]


def test_rules(root: Path):
    def run():
        out = promtool("test", "rules", str(root / ALERTS_TEST))
        require(out.returncode == 0, (out.stdout + out.stderr).strip())
        tests = (load_yaml(root / ALERTS_TEST) or {}).get("tests") or []
        # A quiet test is one in which the alert never fires (a firing
        # test's "not yet" case before its `for:` has passed does not count).
        fired, quiet = set(), set()
        for t in tests:
            cases = t.get("alert_rule_test") or []
            for name in {c.get("alertname") for c in cases}:
                mine = [c for c in cases if c.get("alertname") == name]
                (fired if any(c.get("exp_alerts") for c in mine) else quiet).add(name)
        names = [r["alert"] for r in alert_rules(root)]
        gaps = [f"{n}: no test that fires it" for n in names if n not in fired]
        gaps += [f"{n}: no test where it stays quiet" for n in names if n not in quiet]
        require(not gaps, "\n".join(gaps))
        return f"{len(tests)} tests pass; each of the {len(names)} alerts fired and not fired"
    return [(f"promtool test rules {ALERTS_TEST}", run)]


_promtool_version = None


def promtool_version() -> str:
    global _promtool_version
    if _promtool_version is None:
        out = promtool("--version")
        m = re.search(r"version (\S+)", out.stdout + out.stderr)
        _promtool_version = m.group(1) if m else "?"
    return _promtool_version


# ------------------------------------------------------ the PrometheusRule

RULE_HEADER = """\
# Generated from deploy/prometheus/alerts.yml by `deploy/check.sh --write-prometheus-rule`;
# deploy/check.sh fails when the two differ. Edit alerts.yml, then regenerate.
#
# The alert rules for prometheus-operator (kube-prometheus-stack installs
# it). Not in kustomization.yaml, because clusters without its CRD would
# refuse the whole `kubectl apply -k deploy/`; apply it on its own:
#   kubectl apply -f deploy/prometheus-rule.yaml
# A Prometheus picks it up when its ruleSelector matches these labels:
# kube-prometheus-stack's default wants `release: <its Helm release>`, e.g.
#   kubectl label prometheusrule resilient-analytics release=kube-prometheus-stack
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: resilient-analytics
  labels:
    app.kubernetes.io/name: resilient-analytics
    app.kubernetes.io/part-of: resilient-analytics
spec:
"""


def prometheus_rule_text(alerts_text: str) -> str:
    """alerts.yml under `spec:`, its leading comment left out, indented two
    spaces (block scalars keep their relative indentation, so the YAML means
    the same)."""
    lines = alerts_text.splitlines()
    start = next((i for i, l in enumerate(lines) if l.strip() and not l.startswith("#")), len(lines))
    body = "\n".join(("  " + l) if l.strip() else "" for l in lines[start:])
    return RULE_HEADER + body + "\n"


def write_prometheus_rule(root: Path) -> Path:
    path = root / PROMETHEUS_RULE
    path.write_text(prometheus_rule_text((root / ALERTS).read_text()))
    return path


def prometheus_rule_checks(root: Path, spinapp_name):
    def same():
        expected = prometheus_rule_text((root / ALERTS).read_text())
        actual = (root / PROMETHEUS_RULE).read_text()
        require(actual == expected,
                f"differs from {ALERTS}: run `deploy/check.sh --write-prometheus-rule` (and edit alerts.yml, not this file)")
        spec = yaml.safe_load(actual)["spec"]
        require(spec == load_yaml(root / ALERTS), "spec.groups does not mean the same as alerts.yml")
        return f"equals {ALERTS} ({len(alert_rules(root))} alerts)"

    def container():
        name = spinapp_name()
        named = sorted({m for r in alert_rules(root) for m in re.findall(r'\bcontainer="([^"]*)"', str(r["expr"]))})
        require(named, "no alert selects the SpinApp's container (the memory alert on SpinKube)")
        require(named == [name], f'alerts select container {named}, but spin-operator names the container after the SpinApp: "{name}"')
        return f'the memory alert reads cAdvisor for container "{name}", the SpinApp\'s'

    return [(f"prometheus-rule {PROMETHEUS_RULE}", same), ("alerts SpinApp container", container)]


def crd_json_schema(root: Path) -> dict:
    """The CRD's openAPIV3Schema as a JSON Schema (2020-12), as strict as
    `kubectl apply --validate=strict`: unknown fields are errors (unless the
    CRD preserves them), apiVersion and kind must be the CRD's, and metadata
    is checked as the API server checks ObjectMeta's name and maps."""
    docs = [d for d in yaml.safe_load_all((root / CRD).read_text()) if d]
    require(len(docs) == 1 and docs[0].get("kind") == "CustomResourceDefinition", f"{CRD}: not one CRD")
    crd = docs[0]["spec"]
    version = next(v for v in crd["versions"] if v.get("storage"))

    def convert(node):
        if isinstance(node, list):
            return [convert(n) for n in node]
        if not isinstance(node, dict):
            return node
        out = {k: convert(v) for k, v in node.items() if not k.startswith("x-kubernetes-") and k != "description"}
        if isinstance(out.get("pattern"), str):
            out["pattern"] = ecma_pattern(out["pattern"])
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out

    schema = convert(version["schema"]["openAPIV3Schema"])
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["properties"]["apiVersion"] = {"const": f"{crd['group']}/{version['name']}"}
    schema["properties"]["kind"] = {"const": crd["names"]["kind"]}
    string_map = {"type": "object", "additionalProperties": {"type": "string"}}
    schema["properties"]["metadata"] = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "maxLength": 253,
                     "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"},
            "namespace": {"type": "string"},
            "labels": string_map,
            "annotations": string_map,
        },
    }
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
    return schema


def ecma_pattern(pattern: str) -> str:
    """A CRD pattern (Go's RE2) as JSON Schema's ECMA 262 dialect: RE2's
    `(?i)` flag, which ECMA lacks, becomes [xX] classes for ASCII letters."""
    if "(?i)" not in pattern:
        return pattern
    out, in_class, escaped = [], False, False
    for c in pattern.replace("(?i)", ""):
        if escaped:
            out.append(c)
            escaped = False
        elif c == "\\":
            out.append(c)
            escaped = True
        elif c in "[]":
            in_class = c == "["
            out.append(c)
        elif c.isascii() and c.isalpha() and not in_class:
            out.append(f"[{c.lower()}{c.upper()}]")
        else:
            out.append(c)
    return "".join(out)


# ------------------------------------------------------------ PromQL names

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
            "bool", "offset", "start", "end", "inf", "nan"}
LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
TOKEN = re.compile(r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<variable>\$\{?\w+\}?)
  | (?P<number>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[a-zA-Z]*)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<punct>.)
""", re.VERBOSE | re.DOTALL)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are
    not keywords, functions or aggregations (followed by `(`, `by` or
    `without`), label names in `{...}`, or label lists after by/on/...."""
    tokens = [(m.lastgroup, m.group()) for m in TOKEN.finditer(expr) if m.lastgroup != "space"]
    names, braces, i = set(), 0, 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if text == "{":
            braces += 1
        elif text == "}":
            braces -= 1
        elif kind == "ident" and braces == 0:
            word = text.lower()
            if word in LABEL_LISTS and following == "(":
                # Skip the label list: up to its closing parenthesis.
                while i < len(tokens) and tokens[i][1] != ")":
                    i += 1
            elif word not in KEYWORDS and following not in ("(",) and following.lower() not in ("by", "without"):
                names.add(text)
        i += 1
    return names


PATTERN_EXAMPLES = [("^(?i)(abort|warn)?$", "^([aA][bB][oO][rR][tT]|[wW][aA][rR][nN])?$"),
                    (r"^(0|(([0-9]+)y)?)$", r"^(0|(([0-9]+)y)?)$"), (r"(?i)\d[a-c]x", r"\d[a-c][xX]")]

EXTRACTOR_EXAMPLES = [
    ('sum by (route) (rate(spin_host_http_requests_total{status=~"5..", route!="/health"}[5m]))',
     {"spin_host_http_requests_total"}),
    ("histogram_quantile(0.95, sum by (le) (rate(a_bucket[$__rate_interval]))) > 0.5", {"a_bucket"}),
    ("sum without (instance) (x) / on (job) group_left (le) y offset 5m", {"x", "y"}),
    ('max(a{state="half_open"}) + 2 * max(a{state="open"}) and b unless c or d', {"a", "b", "c", "d"}),
    ('label_replace(up{job="x"}, "dst", "$1", "src", "(.*)")', {"up"}),
    ("topk(5, sum(rate(c_total[1m])) by (route))", {"c_total"}),
    ('1 - (sum(rate(m{cache="miss"}[30m])) / sum(rate(m[30m]))) < 0.7', {"m"}),
]


def helper_self_check() -> list[str]:
    """Where metric_names or ecma_pattern disagree with their examples (empty: none)."""
    return ([f"{expr!r}: {metric_names(expr)} != {want}" for expr, want in EXTRACTOR_EXAMPLES
             if metric_names(expr) != want]
            + [f"pattern {p!r}: {ecma_pattern(p)!r} != {want!r}" for p, want in PATTERN_EXAMPLES if ecma_pattern(p) != want])


# -------------------------------------------------------------- the dashboard


def dashboards(root: Path) -> list[Path]:
    return sorted((root / GRAFANA).glob("*.json"))


def panel_exprs(dashboard: dict) -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) for every query, panels in rows included."""
    out = []
    for panel in dashboard.get("panels") or []:
        for p in [panel, *(panel.get("panels") or [])]:
            for t in p.get("targets") or []:
                if p.get("type") != "row":
                    out.append((p.get("title", "?"), t.get("refId", "?"), t.get("expr", "")))
    return out


def grafana_expr(expr: str) -> str:
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    return expr


def dashboard_checks(root: Path, live_names):
    checks = []
    paths = dashboards(root)
    if not paths:
        checks.append((f"grafana {GRAFANA}", lambda: require(False, "no dashboard JSON")))

    for path in paths:
        rel = path.relative_to(root)

        def load(path=path):
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError as e:
                raise Failed(f"not JSON: {e}")

        def structure(load=load):
            d = load()
            variables = [v for v in (d.get("templating") or {}).get("list") or [] if v.get("name") == "datasource"]
            require(variables and variables[0].get("type") == "datasource" and variables[0].get("query") == "prometheus",
                    "needs a template variable `datasource` of type datasource, query prometheus")
            require(d.get("uid") and d.get("title"), "needs a uid and a title")
            panels = [p for top in d.get("panels") or [] for p in [top, *(top.get("panels") or [])]]
            ids = [p.get("id") for p in panels]
            require(len(ids) == len(set(ids)), f"panel ids repeat: {ids}")
            queries = 0
            for p in panels:
                if p.get("type") == "row":
                    continue
                title = p.get("title", "?")
                want = {"type": "prometheus", "uid": "${datasource}"}
                require(p.get("datasource") == want, f"panel {title!r}: datasource must be {want}")
                g = p.get("gridPos") or {}
                require(0 <= g.get("x", -1) and g.get("w", 0) > 0 and g["x"] + g["w"] <= 24,
                        f"panel {title!r}: gridPos {g} is outside the 24 columns")
                targets = p.get("targets") or []
                require(targets, f"panel {title!r}: no query")
                for t in targets:
                    require(t.get("datasource") == want, f"panel {title!r} {t.get('refId')}: datasource must be {want}")
                    require(str(t.get("expr", "")).strip(), f"panel {title!r} {t.get('refId')}: empty expr")
                    queries += 1
            return f"{len([p for p in panels if p.get('type') != 'row'])} panels, {queries} queries, `datasource` variable (prometheus)"

        def promql(load=load):
            d = load()
            rules = [{"record": f"dashboard:panel_{i}", "expr": grafana_expr(e)}
                     for i, (_, _, e) in enumerate(panel_exprs(d))]
            with tempfile.TemporaryDirectory() as tmp:
                f = Path(tmp) / "dashboard-rules.yml"
                f.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, sort_keys=False))
                out = promtool("check", "rules", str(f))
            if out.returncode != 0:
                text = out.stdout + out.stderr
                # promtool names the failing rule by its index: name the panel instead.
                where = sorted({panel_exprs(d)[int(n)][0] for n in re.findall(r"dashboard:panel_(\d+)", text)})
                raise Failed((f"panels {where}: " if where else "") + text.strip())
            return f"{len(rules)} expressions parse (promtool check rules, one recording rule each)"

        def names(load=load):
            d = load()
            wanted = {n: t for t, _, e in panel_exprs(d) for n in metric_names(grafana_expr(e))}
            live = live_names()
            missing = sorted(n for n in wanted if n not in live)
            require(not missing, "not in a live /metrics: " + ", ".join(f"{n} (panel {wanted[n]!r})" for n in missing))
            unused = sorted(n for n in live if n not in wanted and not n.endswith(("_sum", "_count")))
            return f"{len(wanted)} metrics, all in a live scrape" + (f" (not on it: {', '.join(unused)})" if unused else "")

        checks += [(f"grafana {rel}", structure), (f"grafana-promql {rel}", promql), (f"grafana-metrics {rel}", names)]
    return checks


def alert_metric_check(root: Path, live_names):
    def run():
        wanted = {n: r["alert"] for r in alert_rules(root) for n in metric_names(str(r["expr"]))}
        external = sorted(n for n in wanted if EXTERNAL_METRICS.match(n))
        missing = sorted(n for n in wanted if n not in live_names() and not EXTERNAL_METRICS.match(n))
        require(not missing, "not in a live /metrics: " + ", ".join(f"{n} ({wanted[n]})" for n in missing))
        return f"{len(wanted) - len(external)} metrics in a live scrape; from cAdvisor: {', '.join(external) or 'none'}"
    return [(f"alerts-metrics {ALERTS}", run)]


# ------------------------------------------------------------ a live host


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, probe, seconds: float, process: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            break
        try:
            if probe():
                return
        except OSError:
            pass
        time.sleep(0.1)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise Failed(f"{what} did not come up within {seconds:.0f} s" + (f"; its log:\n{tail}" if tail else ""))


def redis_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")


def call(method: str, url: str, body=None, headers=None) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def sample_names(text: str) -> set[str]:
    """Sample names of an exposition (a histogram's _bucket, _sum, _count; a
    counter's _total): what PromQL selects."""
    return {re.split(r"[{\s]", line, maxsplit=1)[0] for line in text.splitlines() if line and not line.startswith("#")}


def scrape_live_host(root: Path) -> tuple[set[str], list[str]]:
    """Drives a live spin-host through every counter's path and returns the
    sample names its two endpoints showed, and what it did."""
    host = os.environ.get("SPIN_HOST") or str(root / "target/release/spin-host")
    require(os.access(host, os.X_OK), f"no host at {host}: cargo xtask build && cargo build --release -p spin-host")
    redis_server = shutil.which("redis-server")
    require(redis_server, "no redis-server on PATH (apt-get install -y redis-server)")
    steps: list[str] = []
    processes: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="monitoring-check.") as tmp:
        tmp = Path(tmp)
        try:
            redis = {}
            for role in ("cache", "store"):
                port = free_port()
                processes.append(subprocess.Popen(
                    [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                redis[role] = (port, processes[-1])
                wait_for(f"redis-server ({role})", lambda port=port: redis_ping(port), 20, processes[-1])
            port, metrics_port = free_port(), free_port()
            base, host_metrics = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics"
            variables = {
                "redis_url": f"redis://127.0.0.1:{redis['cache'][0]}",
                "store_backend": "redis",
                "store_redis_url": f"redis://127.0.0.1:{redis['store'][0]}",
                # Each step is its own client (X-Forwarded-For), two posts a window each.
                "trust_forwarded_for": "true",
                "rate_limit_requests": "2",
                "external_service_latency_ms": "0",
                "external_service_failure_rate": "0",
                "external_context_ttl_seconds": "0",
                "circuit_breaker_failure_threshold": "1",
                "circuit_breaker_reset_timeout_seconds": "600",
            }
            log = tmp / "host.log"
            command = [host, "up", "-f", "spin.toml", "--listen", f"127.0.0.1:{port}",
                       "--metrics-listen", f"127.0.0.1:{metrics_port}", "--memory-limit", "1Gi",
                       "--state-dir", str(tmp / "store"), "--quiet", "--redis", "external"]
            for k, v in variables.items():
                command += ["--variable", f"{k}={v}"]
            with open(log, "w") as out:
                processes.append(subprocess.Popen(command, cwd=root, stdout=out, stderr=subprocess.STDOUT))
            wait_for("spin-host", lambda: call("GET", base + "/")[0] == 200, 60, processes[-1], log)

            def step(what, method, path, body=None, client="10.0.0.1", expect=None):
                status, text = call(method, base + path, body, {"x-forwarded-for": client})
                steps.append(f"{what}: {status}")
                require(expect is None or status in expect, f"{what}: {method} {path} answered {status}: {text[:300]}")

            at = (datetime.now(timezone.utc) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            metric = {"id": "live-1", "timestamp": at, "value": 1.5, "type": "live.cpu"}
            fresh = {k: v for k, v in metric.items() if k != "id"}
            step("ingest", "POST", "/api/metrics", metric, expect={201})
            step("duplicate", "POST", "/api/metrics", metric, expect={200})
            step("invalid", "POST", "/api/metrics", {"timestamp": "yesterday", "value": 1, "type": "x"}, client="10.0.0.2", expect={400, 422})
            for _ in range(3):
                step("rate limited", "POST", "/api/metrics", fresh, client="10.0.0.3")
            require(steps[-1].endswith("429"), f"the third post of a client was not rate limited: {steps}")
            step("summary (upstream up)", "GET", "/api/metrics/summary?type=live.cpu&period=all", expect={200})
            step("upstream fails", "PUT", "/api/simulator/config", {"failure_rate": 1.0, "latency_ms": 0}, expect={200})
            step("summary (breaker opens)", "GET", "/api/metrics/summary?type=live.other&period=all", expect={200})
            step("summary (short-circuited)", "GET", "/api/metrics/summary?type=live.third&period=all", expect={200})
            app = call("GET", base + "/metrics")[1]
            names = sample_names(app) | sample_names(call("GET", host_metrics)[1])
            require('analytics_circuit_breaker_state{state="open"} 1' in app, f"the breaker did not open:\n{app}")

            # The store's Redis goes away: a store failure, the store down, failed connections.
            store = redis["store"][1]
            store.terminate()
            store.wait(timeout=10)
            step("ingest, store down", "POST", "/api/metrics", dict(metric, id="live-2"), client="10.0.0.4", expect={503})
            app_down = call("GET", base + "/metrics")[1]
            host_down = call("GET", host_metrics)[1]
            names |= sample_names(app_down) | sample_names(host_down)
            require("analytics_key_value_up 0" in app_down, f"the store is down but /metrics says otherwise:\n{app_down}")
            require('spin_host_redis_connection_failures_total{role="guests"}' in host_down,
                    f"the store's Redis is down but the host counted no failed connection:\n{host_down}")
            return names, steps
        finally:
            for p in reversed(processes):
                if p.poll() is None:
                    p.terminate()
                    try:
                        p.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()


_live: dict = {}


def live_names_of(root: Path):
    """A function giving the live sample names, scraped once per process
    (the self-test reuses them for every broken copy; a failure is kept too)."""
    def names() -> set[str]:
        if not _live:
            try:
                _live["names"], _live["steps"] = scrape_live_host(root)
            except Exception as e:  # kept, so each check that needs it says why
                _live["error"] = e if isinstance(e, Failed) else Failed(f"{type(e).__name__}: {e}")
        if "error" in _live:
            raise Failed(f"live host: {_live['error']}")
        return _live["names"]
    return names


def checks(root: Path, live_root: Path, spinapp_name) -> list:
    live = live_names_of(live_root)
    return (check_rules(root) + test_rules(root) + prometheus_rule_checks(root, spinapp_name)
            + dashboard_checks(root, live) + alert_metric_check(root, live))
