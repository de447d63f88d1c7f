"""Data connections: credentials by reference, never read by the hub. Pure.

``c.PtjaasSpawner.data_connections`` (z2jh: ``hub.config.PtjaasSpawner.data_connections``)::

    {"warehouse": {"display_name": "Data warehouse", "description": "read-only analyst role",
                   "groups": ["vision"],
                   "secret": "warehouse-credentials",         # a Secret in the server's namespace
                   "env_from": True,                          # every key as an environment variable
                   "env": {"PGPASSWORD": "password"},         # or chosen keys, renamed
                   "files_at": "/etc/ptjaas/warehouse"},      # or the keys as read-only files
     "lake": {"identity_token": {"audience": "sts.amazonaws.com",       # workload identity: no Secret
                                 "path_env": "AWS_WEB_IDENTITY_TOKEN_FILE"}}}

A connection with ``identity_token`` mounts a projected, audience-bound, short-lived token of
the server's ServiceAccount (KubeSpawner's ``service_account``, z2jh's
``singleuser.serviceAccountName``; ``ptjaas team-manifests`` makes it in each team namespace
with ``automountServiceAccountToken: false``): cloud IAM federation (EKS IRSA, GKE and Azure
Workload Identity, a store that trusts the cluster's OIDC issuer) without a stored key. Only
servers started with such a connection get a token; the default stays no token in the pod.

A user ticks connections in the form or posts ``{"connections": ["warehouse"]}``; only those
their groups allow are accepted. The pod gets the Secret through ``envFrom``,
``secretKeyRef`` or a ``secret`` volume: the kubelet reads it, the hub only names it (its Role
needs no access to Secrets). A Secret that does not exist fails the start at once with a plain
message (``startfailure.container_problem``); ``ptjaas team-manifests --secret-stubs`` prints
empty Secrets for admins to fill.
"""

import re

from .sizes import groups_allow

MAX_CONNECTIONS = 20
TOKEN_SECONDS = 3600   # an identity token's lifetime unless the connection says
TOKEN_DIR = "/var/run/secrets/ptjaas"


class ConnectionRefused(ValueError):
    """A connection choice the user may not make; the message is shown to the user."""


def usable(connections: dict, user_groups) -> list:
    """The connection keys this user may tick, in the configured order."""
    return [key for key, c in (connections or {}).items() if groups_allow(c, user_groups)]


def chosen(connections: dict, user_groups, names) -> list:
    """The posted ``connections`` option checked: a list of at most ``MAX_CONNECTIONS`` distinct
    keys, each one the user may use. Raises ``ConnectionRefused`` naming what is refused."""
    if names is None:
        return []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConnectionRefused("Server option 'connections' must be a list of connection names.")
    if len(names) > MAX_CONNECTIONS:
        raise ConnectionRefused(f"Too many data connections ({len(names)}, at most {MAX_CONNECTIONS}).")
    allowed = usable(connections, user_groups)
    bad = [n for n in names if n not in allowed]
    if bad:
        offer = ", ".join(((connections[k].get("display_name") or k) for k in allowed)) or "none"
        raise ConnectionRefused(f"Data connection {bad[0][:40]!r} is not available to you. "
                               f"Connections you may use: {offer}.")
    return list(dict.fromkeys(names))


def pod_parts(connections: dict, names) -> dict:
    """What the pod gets for the chosen connections: ``env_from``, ``env`` (the notebook
    container's), ``volumes`` and ``volume_mounts``, as Kubernetes API dicts. Only names."""
    parts = {"env_from": [], "env": [], "volumes": [], "volume_mounts": []}
    for name in names:
        c = connections[name]
        if c.get("identity_token"):
            _add_identity_token(parts, name, c["identity_token"])
        secret = c.get("secret")
        if not secret:
            continue
        if c.get("env_from"):
            parts["env_from"].append({"secretRef": {"name": secret}})
        for var, key in (c.get("env") or {}).items():
            parts["env"].append({"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
        if c.get("files_at"):
            volume = f"connection-{name}"
            parts["volumes"].append({"name": volume, "secret": {"secretName": secret, "defaultMode": 0o440}})
            parts["volume_mounts"].append({"name": volume, "mountPath": c["files_at"], "readOnly": True})
    return parts


def _add_identity_token(parts, name, token):
    mount = token.get("mount_path") or f"{TOKEN_DIR}/{name}"
    volume = f"identity-{name}"
    parts["volumes"].append({"name": volume, "projected": {"defaultMode": 0o440, "sources": [
        {"serviceAccountToken": {"audience": token["audience"], "path": "token",
                                 "expirationSeconds": int(token.get("expiration_seconds") or TOKEN_SECONDS)}}]}})
    parts["volume_mounts"].append({"name": volume, "mountPath": mount, "readOnly": True})
    if token.get("path_env"):
        parts["env"].append({"name": token["path_env"], "value": f"{mount.rstrip('/')}/token"})


def service_account(name: str, namespace: str) -> dict:
    """The servers' ServiceAccount of a namespace (``ptjaas team-manifests``): no token in a pod
    unless a connection asks for one (``identity_token``)."""
    return {"apiVersion": "v1", "kind": "ServiceAccount", "automountServiceAccountToken": False,
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"app.kubernetes.io/managed-by": "ptjaas"}}}


def secret_stub(name: str, namespace: str, keys=()) -> dict:
    """An empty Secret for an admin to fill (``ptjaas team-manifests --secret-stubs``)."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "ptjaas", "ptjaas.io/connection": name}},
            "type": "Opaque", "stringData": {k: "" for k in keys}}


def secret_keys(connection: dict) -> list:
    """The keys a connection reads from its Secret (``env`` values; [] when it takes them all)."""
    return sorted(set((connection.get("env") or {}).values()))


def check(connections) -> list:
    """Cross-field problems jsonschema does not see: ``(setting, problem)`` pairs."""
    problems = []
    for key, c in (connections or {}).items():
        where = f"data_connections.{key}"
        if not isinstance(c, dict):
            continue
        uses_secret = c.get("env_from") or c.get("env") or c.get("files_at")
        if c.get("secret") and not uses_secret or not (c.get("secret") or c.get("identity_token")):
            problems.append((where, "gives the pod nothing: set env_from, env or files_at"
                                    + ("" if c.get("secret") else " (with secret), or identity_token")))
        elif uses_secret and not c.get("secret"):
            problems.append((where, "env_from, env and files_at read a Secret: set secret"))
    return problems


_SECRET_MISSING = re.compile(r'secret "([^"]+)" not found', re.I)


def missing_secret(message: str) -> str:
    """The Secret a kubelet's message says does not exist ('' if none)."""
    m = _SECRET_MISSING.search(message or "")
    return m.group(1) if m else ""
