#!/usr/bin/env python3
"""Validates the Helm chart helm/weir with Helm itself, as far as this machine allows.

1. `helm lint` of the chart (Helm v4's own linter, from the helm-sdkpy wheel's library).
2. `helm install` of the chart with several sets of values against a stand-in Kubernetes
   API server (below, on loopback): Helm renders the templates, maps every kind through the
   server's discovery and sends each manifest; the stand-in keeps what it is sent.
3. Every manifest of a built-in kind is validated against the Kubernetes OpenAPI schemas
   (kubernetes-validate, strict: unknown fields are errors); the prometheus-operator kinds
   are checked by hand (ServiceMonitor's port, PrometheusRule's rules equal to
   grafana/prometheus/weir-rules.yml).
4. Cross-references: every volume mount has its volume, every Secret key weir.toml reads is
   in the Secret, the Services' target ports are the container's ports, probes ask /health
   and /ready; with several replicas, the shared claim mounted where weir.toml's [cluster]
   state_dir points and the pod's name as the replica's; with kafka.brokers, init.sql
   reading them.
5. `replicas > 1` without a shared volume is refused with the chart's message.

Not validated: scheduling, pulling the image, admission by a real cluster.

Writes each install's manifests under OUT/<case>/ (weir.toml, init.sql, secret values) for the Rust
test that loads the rendered weir.toml with Weir's own configuration loader.

    HELM_SDK_LIB=/path/libhelm_sdkpy.so python3 helm/check_chart.py OUT
"""

import base64
import ctypes
import json
import os
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import kubernetes_validate
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART = os.path.join(ROOT, "helm", "weir")
KUBERNETES = "1.33.0"

# The stand-in's discovery: group/version → (resource, kind, namespaced).
RESOURCES = {
    "v1": [
        ("configmaps", "ConfigMap", True),
        ("secrets", "Secret", True),
        ("services", "Service", True),
        ("persistentvolumeclaims", "PersistentVolumeClaim", True),
        ("pods", "Pod", True),
        ("namespaces", "Namespace", False),
    ],
    "apps/v1": [("statefulsets", "StatefulSet", True)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "monitoring.coreos.com/v1": [
        ("servicemonitors", "ServiceMonitor", True),
        ("prometheusrules", "PrometheusRule", True),
    ],
}
RESOURCE_NAMES = {name for group in RESOURCES.values() for name, _, _ in group}


class StandIn(BaseHTTPRequestHandler):
    """Answers what `helm install` asks: version, discovery, lookups (nothing exists), and
    creates (kept in `self.server.created`)."""

    def log_message(self, *args):
        pass

    def reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/version":
            major, minor, _ = KUBERNETES.split(".")
            return self.reply(200, {"major": major, "minor": minor, "gitVersion": "v" + KUBERNETES})
        if path == "/api":
            return self.reply(200, {"kind": "APIVersions", "versions": ["v1"]})
        if path == "/apis":
            groups = []
            for gv in RESOURCES:
                if "/" in gv:
                    group, version = gv.split("/")
                    v = {"groupVersion": gv, "version": version}
                    groups.append({"name": group, "versions": [v], "preferredVersion": v})
            return self.reply(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        for gv, resources in RESOURCES.items():
            if path == ("/api/v1" if gv == "v1" else "/apis/" + gv):
                verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
                return self.reply(200, {
                    "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                    "resources": [
                        {"name": n, "singularName": "", "namespaced": ns, "kind": k, "verbs": verbs}
                        for n, k, ns in resources
                    ],
                })
        if path.rstrip("/").split("/")[-1] in RESOURCE_NAMES:
            return self.reply(200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": []})
        self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                         "reason": "NotFound", "code": 404})

    def read_body(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if "json" not in (self.headers.get("Content-Type") or ""):
            return None  # Helm's own release record (protobuf): answered, not kept
        return json.loads(raw or b"{}")

    def do_POST(self):
        obj = self.read_body()
        if obj is None:
            obj = {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "release"}}
        else:
            self.server.created.append(json.loads(json.dumps(obj)))
        obj.setdefault("metadata", {})["resourceVersion"] = "1"
        self.reply(201, obj)

    def do_PUT(self):
        obj = self.read_body() or {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "release"}}
        obj.setdefault("metadata", {})["resourceVersion"] = "2"
        self.reply(200, obj)


class Helm:
    def __init__(self, library):
        self.lib = ctypes.CDLL(library)
        self.lib.helm_sdkpy_last_error.restype = ctypes.c_char_p
        self.lib.helm_sdkpy_config_create.argtypes = [ctypes.c_char_p] * 4 + [ctypes.POINTER(ctypes.c_void_p)]
        self.lib.helm_sdkpy_lint.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p)]
        self.lib.helm_sdkpy_install.argtypes = [ctypes.c_void_p] + [ctypes.c_char_p] * 5 + [ctypes.POINTER(ctypes.c_char_p)]

    def config(self, kubeconfig=None):
        handle = ctypes.c_void_p()
        rc = self.lib.helm_sdkpy_config_create(
            b"weir", kubeconfig.encode() if kubeconfig else None, None, b"{}", ctypes.byref(handle))
        if rc != 0:
            raise RuntimeError("helm config: %s" % self.lib.helm_sdkpy_last_error())
        return handle

    def lint(self):
        out = ctypes.c_char_p()
        rc = self.lib.helm_sdkpy_lint(self.config(), CHART.encode(), ctypes.byref(out))
        if rc != 0:
            raise RuntimeError("helm lint: %s" % self.lib.helm_sdkpy_last_error())
        return json.loads(out.value)

    def install(self, values):
        """Renders and sends the chart to a fresh stand-in server; returns what it was sent,
        or raises with Helm's error."""
        server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
        server.created = []
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with tempfile.TemporaryDirectory() as d:
                kubeconfig = os.path.join(d, "kubeconfig")
                with open(kubeconfig, "w") as f:
                    yaml.safe_dump({
                        "apiVersion": "v1", "kind": "Config", "current-context": "stand-in",
                        "clusters": [{"name": "stand-in", "cluster": {"server": "http://127.0.0.1:%d" % server.server_address[1]}}],
                        "users": [{"name": "stand-in", "user": {"token": "stand-in"}}],
                        "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "stand-in", "namespace": "weir"}}],
                    }, f)
                out = ctypes.c_char_p()
                options = {"wait": False, "timeout_seconds": 60, "server_side_apply": "false",
                           "disable_openapi_validation": True}
                rc = self.lib.helm_sdkpy_install(
                    self.config(kubeconfig), b"weir", CHART.encode(), json.dumps(values).encode(),
                    None, json.dumps(options).encode(), ctypes.byref(out))
                if rc != 0:
                    raise RuntimeError(self.lib.helm_sdkpy_last_error().decode())
                return server.created
        finally:
            server.shutdown()


def by_kind(objects, kind, name=None):
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    if not found:
        raise AssertionError("no %s %s rendered" % (kind, name or ""))
    return found


def check(objects, values, problems):
    """Appends to `problems` whatever is wrong with one install's manifests."""
    for o in objects:
        if o["apiVersion"].startswith("monitoring.coreos.com/"):
            continue
        try:
            kubernetes_validate.validate(o, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as e:
            problems.append("%s %s: %s at %s" % (o["kind"], o["metadata"]["name"], e.message, list(e.path)))
        except Exception as e:  # an unknown kind or version is a problem too
            problems.append("%s %s: %s" % (o["kind"], o["metadata"]["name"], e))
    sts = by_kind(objects, "StatefulSet")[0]
    pod = sts["spec"]["template"]["spec"]
    container = pod["containers"][0]
    volumes = {v["name"] for v in pod.get("volumes", [])}
    volumes |= {c["metadata"]["name"] for c in sts["spec"].get("volumeClaimTemplates", [])}
    for mount in container.get("volumeMounts", []):
        if mount["name"] not in volumes:
            problems.append("volume mount %s has no volume" % mount["name"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for svc in by_kind(objects, "Service"):
        for p in svc["spec"]["ports"]:
            if p["targetPort"] not in ports:
                problems.append("Service %s targets port %s, not the container's" % (svc["metadata"]["name"], p["targetPort"]))
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    if env.get("WEIR_PG_ADDR") != "0.0.0.0:%d" % ports["pgwire"] or env.get("WEIR_HTTP_ADDR") != "0.0.0.0:%d" % ports["http"]:
        problems.append("listen addresses %s/%s differ from the container ports %s" % (env.get("WEIR_PG_ADDR"), env.get("WEIR_HTTP_ADDR"), ports))
    for probe, path in [("livenessProbe", "/health"), ("readinessProbe", "/ready"), ("startupProbe", "/health")]:
        got = container[probe]["httpGet"]
        if got["path"] != path or got["port"] != "http":
            problems.append("%s asks %s on %s" % (probe, got["path"], got["port"]))
    selector = sts["spec"]["selector"]["matchLabels"]
    if any(sts["spec"]["template"]["metadata"]["labels"].get(k) != v for k, v in selector.items()):
        problems.append("the StatefulSet's selector does not match its pods")
    toml = by_kind(objects, "ConfigMap")[0]["data"]["weir.toml"]
    secret_name = values.get("auth", {}).get("existingSecret")
    if not secret_name:
        secret = by_kind(objects, "Secret")[0]
        keys = set(secret["data"])
        for key in ["admin-password", "admin-token", "read-token", "ingest-token"]:
            if key not in keys or not base64.b64decode(secret["data"][key]):
                problems.append("Secret has no %s" % key)
            if "/run/secrets/weir/%s" % key not in toml:
                problems.append("weir.toml does not read %s" % key)
    if values.get("metrics", {}).get("prometheusRule", {}).get("enabled"):
        rule = by_kind(objects, "PrometheusRule")[0]
        with open(os.path.join(ROOT, "grafana", "prometheus", "weir-rules.yml")) as f:
            shipped = yaml.safe_load(f)
        if rule["spec"] != shipped:
            problems.append("the PrometheusRule's rules differ from grafana/prometheus/weir-rules.yml")
    if values.get("replicas", 1) > 1 and not values.get("cluster", {}).get("sharedClaim"):
        if 'state_url = "%s/cluster"' % values["checkpoints"]["url"] not in toml:
            problems.append("weir.toml does not share the replicas' state under checkpoints.url")
    if values.get("replicas", 1) > 1 and values.get("cluster", {}).get("sharedClaim"):
        claim = values["cluster"]["sharedClaim"]
        shared = [v for v in pod["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName") == claim]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        if len(shared) != 1 or mounts.get(shared[0]["name"]) != "/var/lib/weir-shared":
            problems.append("the shared claim %s is not mounted at /var/lib/weir-shared" % claim)
        if 'state_dir = "/var/lib/weir-shared"' not in toml or "replicas = %d" % values["replicas"] not in toml:
            problems.append("weir.toml has no [cluster] for %d replicas on the shared volume" % values["replicas"])
        named = [e for e in container["env"] if e["name"] == "WEIR_CLUSTER__REPLICA"]
        if not named or named[0].get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "metadata.name":
            problems.append("the replica's name is not the pod's name")
    if values.get("kafka", {}).get("brokers"):
        init = by_kind(objects, "ConfigMap")[0]["data"].get("init.sql", "")
        if "brokers = '%s'" % values["kafka"]["brokers"] not in init or 'init_sql = "/etc/weir/init.sql"' not in toml:
            problems.append("init.sql does not read the Kafka brokers, or weir.toml does not run it")
    if values.get("metrics", {}).get("serviceMonitor", {}).get("enabled"):
        monitor = by_kind(objects, "ServiceMonitor")[0]
        if monitor["spec"]["endpoints"][0]["port"] != "http" or monitor["spec"]["endpoints"][0]["path"] != "/metrics":
            problems.append("the ServiceMonitor does not scrape /metrics on the http port")


CASES = {
    # helm install weir helm/weir
    "defaults": {},
    # Everything optional switched on, other ports, existing Secrets, no volume.
    "everything": {
        "service": {"pgPort": 5433, "httpPort": 9090, "type": "LoadBalancer"},
        "checkpoints": {"url": "s3://bucket/weir"},
        "s3": {"existingSecret": "weir-s3"},
        "tls": {"existingSecret": "weir-tls", "require": True},
        "auth": {"adminPassword": "given password", "readToken": "grafana-read-token-0123"},
        "persistence": {"enabled": False},
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
                    "prometheusRule": {"enabled": True}},
        "config": {"view_retention": "1 hour", "max_connections": 50},
        "podDisruptionBudget": {"enabled": False},
    },
    "existing-secret": {"auth": {"existingSecret": "weir-credentials"}},
    # The command: three replicas sharing a topic, state and history in S3.
    "cluster-s3": {
        "replicas": 3,
        "kafka": {"brokers": "kafka:9092"},
        "checkpoints": {"url": "s3://bucket/weir"},
        "s3": {"existingSecret": "weir-s3"},
    },
    # Three replicas on a shared volume.
    "cluster": {
        "replicas": 3,
        "cluster": {"sharedClaim": "weir-shared"},
        "kafka": {"brokers": "kafka:9092"},
        "checkpoints": {"url": "s3://bucket/weir"},
        "s3": {"existingSecret": "weir-s3"},
    },
}


def main():
    out_dir = sys.argv[1]
    helm = Helm(os.environ["HELM_SDK_LIB"])
    problems = []
    lint = helm.lint()
    for m in lint.get("Messages") or []:
        if m["Severity"] >= 2:  # warnings and errors
            problems.append("helm lint: %s: %s" % (m["Path"], m.get("Err")))
    print("helm lint: %d message(s), none above info" % len(lint.get("Messages") or []) if not problems else "helm lint failed")
    for case, values in CASES.items():
        objects = helm.install(values)
        before = len(problems)
        try:
            check(objects, values, problems)
        except (KeyError, IndexError, TypeError) as e:
            # A manifest without a field the checks read is a problem, not a traceback.
            problems.append("%s: a manifest lacks %r" % (case, e))
        d = os.path.join(out_dir, case)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "manifests.yaml"), "w") as f:
            yaml.safe_dump_all(objects, f)
        for key, text in by_kind(objects, "ConfigMap")[0]["data"].items():
            with open(os.path.join(d, key), "w") as f:
                f.write(text)
        for secret in [o for o in objects if o["kind"] == "Secret"]:
            for key, value in secret["data"].items():
                with open(os.path.join(d, key), "wb") as f:
                    f.write(base64.b64decode(value))
        kinds = sorted("%s/%s" % (o["kind"], o["metadata"]["name"]) for o in objects)
        print("%s: %d manifests (%s), %s" % (case, len(objects), ", ".join(kinds),
                                             "valid" if len(problems) == before else "INVALID"))
    try:
        helm.install({"replicas": 3})
        problems.append("replicas=3 without a shared volume was not refused")
    except RuntimeError as e:
        if "replicas > 1 needs a place every replica shares" not in str(e):
            problems.append("replicas=3 refused for another reason: %s" % e)
        else:
            print("replicas=3 without shared state: refused (%s)" % str(e).split("fail:")[-1].strip()[:80])
    for p in problems:
        print("PROBLEM:", p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
