"""How the node agent turns a container spec into a local process: environment (valueFrom,
envFrom, $(VAR) expansion), the image's default command, image IDs. Pure but for store reads."""

import base64
import hashlib
import os
import re
import shutil

from ptjaas_spawner.quantity import parse_quantity
from .resources import BY_PLURAL

T = BY_PLURAL

def image_id(image):
    digest = image.split("@", 1)[1] if "@" in image else "sha256:" + hashlib.sha256(image.encode()).hexdigest()
    repo = image.split("@", 1)[0].rsplit(":", 1)[0] if ":" in image.split("@", 1)[0].rsplit("/", 1)[-1] else image.split("@", 1)[0]
    return f"{repo}@{digest}"


class ContainerError(Exception):
    pass


def resolve_env(store, pod, container, ip):
    """The container's environment as (name, value) pairs, with valueFrom and envFrom resolved."""
    namespace = pod["metadata"]["namespace"]
    out = []

    def key_from(kind, ref):
        obj = store.get(T[kind], namespace, ref["name"])
        if obj is None:
            if ref.get("optional"):
                return None
            raise ContainerError(f'{kind[:-1]} "{ref["name"]}" not found')
        data = obj.get("data") or {}
        if ref["key"] not in data:
            if ref.get("optional"):
                return None
            raise ContainerError(f"couldn't find key {ref['key']} in {kind[:-1].capitalize()} {namespace}/{ref['name']}")
        value = data[ref["key"]]
        return base64.b64decode(value).decode() if kind == "secrets" else value

    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        kind, ref = ("secrets", source["secretRef"]) if source.get("secretRef") else ("configmaps", source.get("configMapRef"))
        obj = store.get(T[kind], namespace, ref["name"])
        if obj is None:
            if ref.get("optional"):
                continue
            raise ContainerError(f'{kind[:-1]} "{ref["name"]}" not found')
        for k, v in (obj.get("data") or {}).items():
            out.append((prefix + k, base64.b64decode(v).decode() if kind == "secrets" else v))
    for item in container.get("env") or []:
        if "valueFrom" not in item:
            out.append((item["name"], str(item.get("value", ""))))
            continue
        source = item["valueFrom"]
        if source.get("secretKeyRef"):
            value = key_from("secrets", source["secretKeyRef"])
        elif source.get("configMapKeyRef"):
            value = key_from("configmaps", source["configMapKeyRef"])
        elif source.get("fieldRef"):
            value = _field(pod, source["fieldRef"]["fieldPath"], ip)
        elif source.get("resourceFieldRef"):
            ref = source["resourceFieldRef"]
            kind, _, res = ref["resource"].partition(".")
            raw = ((container.get("resources") or {}).get(kind) or {}).get(res, "0")
            amount = parse_quantity(raw) / parse_quantity(ref.get("divisor", "1"))
            value = str(int(-(-amount // 1)))
        else:
            value = ""
        if value is not None:
            out.append((item["name"], value))
    return out


def _field(pod, path, ip):
    meta = pod["metadata"]
    m = re.match(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    return {"metadata.name": meta["name"], "metadata.namespace": meta["namespace"], "metadata.uid": meta["uid"],
            "spec.nodeName": pod["spec"].get("nodeName", ""), "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
            "status.hostIP": "127.0.0.1", "status.podIP": ip, "status.podIPs": ip, "status.hostIPs": "127.0.0.1"}.get(path, "")


def _expand(value, env):
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", lambda m: env.get(m.group(1), m.group(0)), value).replace("$$(", "$(")


def image_default_command(argv, env):
    """What the image would run. Images are not pulled: every image is taken to be a Jupyter Docker
    Stacks image, whose entrypoint (tini) runs the command, and whose default command
    (start-notebook) runs ``jupyterhub-singleuser`` when started by a hub, else ``jupyter lab``."""
    if argv and os.path.basename(argv[0]) == "tini":
        argv = argv[argv.index("--") + 1:] if "--" in argv else []
    if argv and os.path.basename(argv[0]) in ("start-singleuser.sh", "start-singleuser.py"):
        argv = ["jupyterhub-singleuser"] + argv[1:]
    if not argv or os.path.basename(argv[0]) in ("start-notebook.sh", "start-notebook.py", "start.sh"):
        rest = argv[1:] if argv else []
        hub = "JUPYTERHUB_API_TOKEN" in env or "JPY_API_TOKEN" in env
        argv = (["jupyterhub-singleuser"] if hub else ["jupyter", "lab", "--ip=" + env.get("PTJAAS_POD_IP", "127.0.0.1")]) + rest
    return argv


def _which(command, path):
    if "/" in command:
        if os.path.exists(command):
            return command
        command = os.path.basename(command)
    return shutil.which(command, path=path)
