"""Data connections: credentials by reference, never read by the hub. Pure.

``c.PtjaasSpawner.data_connections`` (z2jh: ``hub.config.PtjaasSpawner.data_connections``)::

    {"warehouse": {"display_name": "Data warehouse", "description": "read-only analyst role",
                   "groups": ["vision"],
                   "secret": "warehouse-credentials",         # a Secret in the server's namespace
                   "env_from": True,                          # every key as an environment variable
                   "env": {"PGPASSWORD": "password"},         # or chosen keys, renamed
                   "files_at": "/etc/ptjaas/warehouse"}}      # or the keys as read-only files

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
        secret = c["secret"]
        if c.get("env_from"):
            parts["env_from"].append({"secretRef": {"name": secret}})
        for var, key in (c.get("env") or {}).items():
            parts["env"].append({"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
        if c.get("files_at"):
            volume = f"connection-{name}"
            parts["volumes"].append({"name": volume, "secret": {"secretName": secret, "defaultMode": 0o440}})
            parts["volume_mounts"].append({"name": volume, "mountPath": c["files_at"], "readOnly": True})
    return parts


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
        if isinstance(c, dict) and not (c.get("env_from") or c.get("env") or c.get("files_at")):
            problems.append((where, "gives the pod nothing: set env_from, env or files_at"))
    return problems


_SECRET_MISSING = re.compile(r'secret "([^"]+)" not found', re.I)


def missing_secret(message: str) -> str:
    """The Secret a kubelet's message says does not exist ('' if none)."""
    m = _SECRET_MISSING.search(message or "")
    return m.group(1) if m else ""
