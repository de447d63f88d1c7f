"""The hub's Kubernetes identity in a test cluster: exactly what z2jh gives it, plus our manifests.

z2jh's hub ServiceAccount, Role and RoleBinding are rendered by ``helm template`` from the chart
with our values (``helm-values/values.yaml``), our ``helm-values/manifests/rbac-hub.yaml`` is added
(moved to the namespace given), and a token for that ServiceAccount (TokenRequest) goes into a
kubeconfig. Nothing else is granted, so a request the hub makes beyond those rights is refused
there as it would be in production.
"""

import copy
import os
import subprocess
import urllib.error
from pathlib import Path

import yaml

from .realkube import PROJECT_ROOT, write_kubeconfig

HUB_ACCOUNT = "hub"


def z2jh_hub_rbac(chart_dir, namespace, values_files=(PROJECT_ROOT / "helm-values" / "values.yaml",),
                  release="hub", helm="helm"):
    """The chart's hub ServiceAccount, Role and RoleBinding as ``helm template`` renders them."""
    argv = [helm, "template", release, str(chart_dir), "--namespace", namespace,
            "--show-only", "templates/hub/serviceaccount.yaml", "--show-only", "templates/hub/rbac.yaml"]
    for values in values_files:
        argv += ["-f", str(values)]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def ptjaas_hub_rbac(namespace, account=HUB_ACCOUNT,
                    manifest=PROJECT_ROOT / "helm-values" / "manifests" / "rbac-hub.yaml"):
    """Our rbac-hub.yaml, its namespaced parts and subjects moved to ``namespace`` (cluster-wide
    bindings get the namespace in their name, so that several test namespaces can coexist)."""
    docs = []
    for doc in yaml.safe_load_all(Path(manifest).read_text()):
        if not doc:
            continue
        doc = copy.deepcopy(doc)
        if "namespace" in doc["metadata"]:
            doc["metadata"]["namespace"] = namespace
        for subject in doc.get("subjects") or []:
            subject["namespace"] = namespace
            subject["name"] = account
        if doc["kind"] == "ClusterRoleBinding":
            doc["metadata"]["name"] += f"-{namespace}"
        docs.append(doc)
    return docs


def _path(doc, namespace):
    group_version = doc["apiVersion"]
    base = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
    plural = {"ServiceAccount": "serviceaccounts", "Role": "roles", "RoleBinding": "rolebindings",
              "ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings"}[doc["kind"]]
    if doc["kind"].startswith("Cluster"):
        return f"{base}/{plural}"
    return f"{base}/namespaces/{namespace}/{plural}"


def grant_hub_rights(plane, namespace, chart_dir, state_dir, helm="helm", token_seconds=86400):
    """Create the hub's account and rights in ``namespace``; return the path of a kubeconfig that
    authenticates as that ServiceAccount (namespace ``namespace``)."""
    for doc in z2jh_hub_rbac(chart_dir, namespace, helm=helm) + ptjaas_hub_rbac(namespace):
        doc.setdefault("metadata", {}).pop("namespace", None) if doc["kind"].startswith("Cluster") else None
        try:
            plane.api("POST", _path(doc, namespace), doc)
        except urllib.error.HTTPError as e:
            if e.code != 409:
                raise RuntimeError(f"creating {doc['kind']} {doc['metadata']['name']}: {e.read()[:500]!r}") from None
    answer = plane.api("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{HUB_ACCOUNT}/token",
                       {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                        "spec": {"expirationSeconds": token_seconds}})
    path = os.path.join(state_dir, f"hub-{namespace}.kubeconfig")
    write_kubeconfig(path, plane.url, plane.pki.ca_file, token=answer["status"]["token"], namespace=namespace,
                     name=f"hub-{namespace}")
    return path


def account_name(namespace):
    """How the audit log names the hub's account."""
    return f"system:serviceaccount:{namespace}:{HUB_ACCOUNT}"


class HubBackend:
    """A namespace of a real cluster as a hub sees it: ``kubeconfig_path`` authenticates as the
    hub's ServiceAccount (z2jh's rights + ours), ``admin_kubeconfig_path`` as the cluster admin."""

    real = True

    def __init__(self, cluster, namespace, chart_dir, helm="helm"):
        self.cluster = cluster
        self.namespace = namespace
        self.url = cluster.url
        self.audit_log_path = cluster.audit_log_path
        self.admin_kubeconfig_path = cluster.kubeconfig_path
        plane = cluster.plane
        plane.api("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                 "metadata": {"name": namespace}})
        self.kubeconfig_path = grant_hub_rights(plane, namespace, chart_dir, cluster.state_dir, helm=helm)
        self.account = account_name(namespace)
        self.wait_for_default_account()

    def wait_for_default_account(self, timeout=60):
        """Pods can be made once the namespace's default ServiceAccount exists (the token
        controller makes it a moment after the namespace)."""
        import time
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.cluster.plane.api("GET", f"/api/v1/namespaces/{self.namespace}/serviceaccounts/default")
                return
            except urllib.error.HTTPError as e:
                if e.code != 404 or time.monotonic() > deadline:
                    raise
            time.sleep(0.1)
