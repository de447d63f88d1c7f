"""Client-side helpers shared by the embedded-cluster conformance tests (tests/cluster/).

Official clients built from the cluster's kubeconfig, unique namespaces, pod-manifest builders,
Status-body checks and polling helpers (deadlines, never sleeps).
"""

import json
import sys
import tempfile
import uuid

import kubernetes
import requests
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from tests.waiting import wait_for

PY = "python"  # the node agent puts this machine's Python environment on PATH
# ConfigMaps a cluster puts in every namespace (kube-root-ca.crt everywhere; OpenShift's fork of
# kube-controller-manager in ../shared/kube adds openshift-service-ca.crt): a test that counts the
# namespace's ConfigMaps selects its own with this field selector
OWN = "metadata.name!=kube-root-ca.crt,metadata.name!=openshift-service-ca.crt"


def status_body(exc):
    """The parsed `Status` body of an ApiException (sync or async client)."""
    return json.loads(exc.body)


def assert_status(exc, code, reason):
    """Assert an ApiException carries a proper Kubernetes Status object; return it as a dict."""
    assert exc.status == code, (exc.status, exc.body)
    body = status_body(exc)
    assert body["kind"] == "Status", body
    assert body["apiVersion"] == "v1", body
    assert body["status"] == "Failure", body
    assert body["reason"] == reason, body
    assert body["code"] == code, body
    assert isinstance(body.get("message"), str) and body["message"], body
    return body


def py_container(script, *args, name="main", env=None, ports=None, mounts=None,
                 resources=None, working_dir=None):
    c = {"name": name, "image": "python:3.11", "command": [PY], "args": ["-c", script, *args]}
    if env:
        c["env"] = env
    if ports:
        c["ports"] = [{"containerPort": p} for p in ports]
    if mounts:
        c["volumeMounts"] = mounts
    if resources:
        c["resources"] = resources
    if working_dir:
        c["workingDir"] = working_dir
    return c


def py_pod(name, script, *args, restart="Never", labels=None, volumes=None, grace=None,
           node_selector=None, host_access=False, **container_kw):
    """A pod manifest running `python -c script args...`. ``host_access``: the test reads the
    pod's files and process ids on this machine (root, hostPID, this machine's temporary directory
    as a hostPath volume at its own path), as a node-level debug pod would."""
    spec = {"restartPolicy": restart, "containers": [py_container(script, *args, **container_kw)]}
    volumes = list(volumes or [])
    if host_access:
        spec.update(hostPID=True, securityContext={"runAsUser": 0})
        volumes.append({"name": "host-tmp", "hostPath": {"path": tempfile.gettempdir()}})
        spec["containers"][0].setdefault("volumeMounts", []).append(
            {"name": "host-tmp", "mountPath": tempfile.gettempdir()})
    if volumes:
        spec["volumes"] = volumes
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    if node_selector:
        spec["nodeSelector"] = node_selector
    meta = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


# a tiny HTTP server: binds sys.argv[1]:sys.argv[2], answers with $POD_NAME
HTTP_SERVER = (
    "import http.server, os, sys\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        body = os.environ.get('POD_NAME', '?').encode()\n"
    "        self.send_response(200); self.send_header('Content-Length', str(len(body)))\n"
    "        self.end_headers(); self.wfile.write(body)\n"
    "    def log_message(self, *a): pass\n"
    "http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()\n"
)
SLEEP_FOREVER = "import time\nwhile True: time.sleep(1)"
POD_NAME_ENV = {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}


def condition(pod, ctype):
    for c in (pod.status.conditions or []) if pod.status else []:
        if c.type == ctype:
            return c.status
    return None


class Kube:
    """The sync official client bound to one embedded cluster, plus polling helpers."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig_path))
        self.core = k8s.CoreV1Api(self.api)
        self.storage = k8s.StorageV1Api(self.api)
        self.custom = k8s.CustomObjectsApi(self.api)
        self.namespaces = []

    def close(self):
        self.api.close()

    def remove_namespaces(self):
        """Remove what the module made: its pods at once (on the real backend the session's node
        is shared, and a pod left running would hold its GPUs from the hub tests after it), then
        its namespaces."""
        for name in self.namespaces:
            try:
                self.core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
                self.core.delete_namespace(name)
            except Exception:  # noqa: BLE001 - a cluster the module stopped itself, a namespace gone
                break

    # --- plumbing -------------------------------------------------------------------------
    def namespace(self, prefix="t"):
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.core.create_namespace({"metadata": {"name": name}})
        self.namespaces.append(name)
        # pods can be made once the namespace's default ServiceAccount exists (a real cluster's
        # controller makes it a moment after the namespace)
        wait_for(lambda: self.core.list_namespaced_service_account(name, field_selector="metadata.name=default").items,
                 timeout=30, message=f"the default ServiceAccount of {name}")
        return name

    def raw(self, method, path, **kw):
        """A plain HTTP request to the API server (same credentials as the client)."""
        cfg = self.api.configuration
        headers = dict(kw.pop("headers", {}) or {})
        token = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
        if token:
            headers.setdefault("Authorization", token)
        verify = cfg.ssl_ca_cert if cfg.verify_ssl and cfg.ssl_ca_cert else False
        cert = (cfg.cert_file, cfg.key_file) if cfg.cert_file else None
        return requests.request(method, cfg.host.rstrip("/") + path, headers=headers,
                                verify=verify, cert=cert, timeout=kw.pop("timeout", 30), **kw)

    def to_dict(self, obj):
        return self.api.sanitize_for_serialization(obj)

    def error(self, fn, *args, **kw):
        """Call fn expecting an ApiException; return it."""
        try:
            fn(*args, **kw)
        except ApiException as e:
            return e
        raise AssertionError(f"{getattr(fn, '__name__', fn)} succeeded, an API error was expected")

    # --- pods -----------------------------------------------------------------------------
    def create_pod(self, ns, manifest):
        return self.core.create_namespaced_pod(ns, manifest)

    def wait_pod(self, ns, name, predicate, timeout=30, message=None):
        holder = {}

        def check():
            holder["pod"] = self.core.read_namespaced_pod(name, ns)
            return predicate(holder["pod"])

        try:
            wait_for(check, timeout=timeout, interval=0.05,
                     message=message or f"pod {ns}/{name} condition")
        except BaseException:
            pod = holder.get("pod")
            sys.stderr.write(f"last seen pod {ns}/{name}: {pod and self.to_dict(pod.status)}\n")
            raise
        return holder["pod"]

    def wait_phase(self, ns, name, phase, timeout=30):
        return self.wait_pod(ns, name, lambda p: p.status is not None and p.status.phase == phase,
                             timeout=timeout, message=f"pod {ns}/{name} phase {phase}")

    def wait_ready(self, ns, name, timeout=30):
        return self.wait_pod(ns, name, lambda p: condition(p, "Ready") == "True", timeout=timeout,
                             message=f"pod {ns}/{name} Ready")

    def wait_gone(self, read, *args, timeout=30):
        def gone():
            try:
                read(*args)
            except ApiException as e:
                if e.status == 404:
                    return True
                raise
            return False

        wait_for(gone, timeout=timeout, interval=0.05, message=f"{read.__name__}{args} gone")

    def events(self, ns, name, kind="Pod"):
        return self.core.list_namespaced_event(
            ns, field_selector=f"involvedObject.name={name},involvedObject.kind={kind}"
        ).items

    def wait_event(self, ns, name, reason, kind="Pod", timeout=30):
        holder = {}

        def check():
            for ev in self.events(ns, name, kind):
                if ev.reason == reason:
                    holder["ev"] = ev
                    return True
            return False

        wait_for(check, timeout=timeout, interval=0.05,
                 message=f"event {reason} for {kind} {ns}/{name}")
        return holder["ev"]

    def log(self, ns, name):
        return self.core.read_namespaced_pod_log(name, ns)




def http_get(url, timeout=5):
    """GET without any proxy settings from the environment; returns (status, body text)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/")
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def pid_alive(pid):
    """True while process `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")
