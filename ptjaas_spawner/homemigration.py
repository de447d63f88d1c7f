"""Moving a user's home claim into a team namespace (``ptjaas migrate-home``). Pure: no I/O.

A claim cannot move between namespaces and a pod mounts claims of its own namespace only, so the
home is copied: a *sender* pod in the hub's namespace streams a tar of the home (or of a claim
restored from a VolumeSnapshot of it, where a snapshot class is given) to a *receiver* pod in the
team namespace, which unpacks it into a new claim there. Only once the copy is complete does the
new claim get the ``ptjaas.io/migrated-from`` annotation that makes the spawner use it (see
``teams.placement``); the old claim is labelled ``ptjaas.io/migrated=true`` with when and why,
and kept until an admin deletes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .homevolume import OWNER_ANNOTATIONS, claim_owner
from .objects import SNAPSHOT_GROUP, SNAPSHOT_VERSION
from .teams import MIGRATED_FROM, namespace_problem

MIGRATED_LABEL = "ptjaas.io/migrated"
MIGRATED_TO = "ptjaas.io/migrated-to"
MIGRATED_AT = "ptjaas.io/migrated-at"
MIGRATION_NOTE = "ptjaas.io/migration-note"
COPYING = "ptjaas.io/migration-copying"  # on the new claim while the copy runs
COMPONENT = "ptjaas-home-migration"
MOUNT = "/ptjaas-migrate/home"
PORT = 8765

# the sender: serve one tar stream of the directory argv[3] on argv[1]:argv[2], then exit
SEND = """
import os, socket, sys, tarfile
host, port, root, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
srv = socket.create_server((host, port))
srv.settimeout(timeout)
conn, peer = srv.accept()
conn.settimeout(None)
n = 0
with conn, conn.makefile("wb") as out, tarfile.open(fileobj=out, mode="w|") as tar:
    for name in sorted(os.listdir(root)):
        tar.add(os.path.join(root, name), arcname=name)
        n += 1
print("sent", n, "top-level entries to", peer[0], flush=True)
"""

# the receiver: connect to argv[1]:argv[2] (retrying until argv[4] seconds), unpack into argv[3]
RECEIVE = """
import socket, sys, tarfile, time
host, port, root, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
deadline = time.monotonic() + timeout
while True:
    try:
        conn = socket.create_connection((host, port), timeout=30)
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.5)
conn.settimeout(None)
files = 0


def entries(tar):
    global files
    for member in tar:
        if not hasattr(tarfile, "tar_filter") and (member.name.startswith("/") or ".." in member.name.split("/")
                                                     or member.issym() or member.islnk()):
            raise SystemExit("refusing entry " + repr(member.name))
        files += 1
        yield member


with conn, conn.makefile("rb") as inp, tarfile.open(fileobj=inp, mode="r|") as tar:
    if hasattr(tarfile, "tar_filter"):
        # no absolute paths, no '..', no links leaving the home (the "tar" extraction filter)
        tar.extractall(root, members=entries(tar), filter="tar")
    else:
        tar.extractall(root, members=entries(tar))
print("received", files, "entries", flush=True)
"""


class MigrationError(Exception):
    """The migration cannot (or must not) go ahead; the message says why and what to do."""


@dataclass
class Plan:
    user: str
    hub_namespace: str
    team_namespace: str
    claim: str              # the old claim's name, also the new claim's
    storage: str
    storage_class: str | None
    snapshot_class: str | None

    @property
    def source_ref(self) -> str:
        return f"{self.hub_namespace}/{self.claim}"

    @property
    def target_ref(self) -> str:
        return f"{self.team_namespace}/{self.claim}"

    def steps(self) -> list:
        copy_from = self.claim
        out = []
        if self.snapshot_class:
            out.append(f"take VolumeSnapshot {snapshot_name(self.claim)} of {self.source_ref} "
                       f"(class {self.snapshot_class}) and restore it into claim {restore_name(self.claim)} "
                       f"in {self.hub_namespace} (dataSource)")
            copy_from = restore_name(self.claim)
        out += [
            f"create claim {self.target_ref} ({self.storage}, class {self.storage_class or '(cluster default)'}),"
            f" owned by {self.user!r}",
            f"copy the files from {self.hub_namespace}/{copy_from} into it (pod {pod_name(self.claim, 'send')} in "
            f"{self.hub_namespace}, pod {pod_name(self.claim, 'receive')} in {self.team_namespace})",
            f"mark {self.target_ref} as migrated from {self.source_ref}: {self.user}'s next start runs in "
            f"{self.team_namespace} with it",
            f"label the old claim {self.source_ref} {MIGRATED_LABEL}=true (kept until you delete it)",
        ]
        if self.snapshot_class:
            out.append(f"delete the snapshot and the restored claim {restore_name(self.claim)} (the old claim stays)")
        else:
            out.append("delete the copy pods")
        return out


def _bounded(name: str, suffix: str, limit: int = 63) -> str:
    base = name[: limit - len(suffix)].rstrip("-.")
    return base + suffix


def pod_name(claim: str, role: str) -> str:
    return _bounded(claim, f"-migrate-{role}")


def snapshot_name(claim: str) -> str:
    return _bounded(claim, "-migrate", 253)


def restore_name(claim: str) -> str:
    return _bounded(claim, "-migrate-source", 253)


def check_request(user: str, team_namespace: str, hub_namespace: str) -> None:
    if not user or not isinstance(user, str) or len(user) > 255:
        raise MigrationError("--user must be a JupyterHub user name")
    for flag, ns in (("--team-namespace", team_namespace), ("--hub-namespace", hub_namespace)):
        problem = namespace_problem(ns)
        if problem:
            raise MigrationError(f"{flag}: {problem}")
    if team_namespace == hub_namespace:
        raise MigrationError(f"--team-namespace {team_namespace!r} is the hub's namespace: nothing to move")


def default_claim_name(user: str) -> str | None:
    """KubeSpawner's default ``claim-{username}`` where the user name needs no escaping."""
    if re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", user) and len(user) <= 240:
        return f"claim-{user}"
    return None


def check_source(old: dict | None, user: str, claim: str, hub_namespace: str) -> None:
    """The old claim must exist, be bound and be proven to be the user's."""
    if old is None:
        raise MigrationError(f"no claim {claim} in namespace {hub_namespace}: nothing to migrate "
                             "(give the claim's name with --claim if it is named otherwise)")
    verdict, evidence = claim_owner(old, user)
    if verdict != "mine":
        raise MigrationError(f"claim {hub_namespace}/{claim} is not proven to be {user!r}'s home ({evidence}); "
                             "nothing was changed")
    if ((old.get("status") or {}).get("phase")) != "Bound":
        raise MigrationError(f"claim {hub_namespace}/{claim} is not bound (it holds no files yet): nothing to copy")
    if (old["metadata"].get("labels") or {}).get(MIGRATED_LABEL) == "true":
        raise MigrationError(f"claim {hub_namespace}/{claim} was migrated already, to "
                             f"{(old['metadata'].get('annotations') or {}).get(MIGRATED_TO, '?')}")


def check_target(existing: dict | None, plan: Plan) -> None:
    if existing is None:
        return
    ann = existing["metadata"].get("annotations") or {}
    if ann.get(MIGRATED_FROM):
        raise MigrationError(f"{plan.target_ref} exists and is already the migrated copy of {ann[MIGRATED_FROM]}")
    if ann.get(COPYING):
        raise MigrationError(f"{plan.target_ref} is the unfinished copy of an interrupted migration: delete it "
                             f"(kubectl -n {plan.team_namespace} delete pvc {plan.claim}) and run again")
    raise MigrationError(f"a claim {plan.target_ref} exists already (the user started in the team namespace "
                         "before?): move or delete it first; nothing was changed")


def servers_running(pods: list, user: str, claim: str, hub_namespace: str) -> list:
    """``namespace/name`` of live pods that are the user's servers or mount the old claim."""
    found = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp") and not pod.get("spec", {}).get("nodeName"):
            continue
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        owner = (meta.get("annotations") or {}).get("hub.jupyter.org/username")
        mounts = meta.get("namespace") == hub_namespace and any(
            (v.get("persistentVolumeClaim") or {}).get("claimName") == claim for v in (pod.get("spec") or {}).get("volumes") or [])
        if owner == user or mounts:
            found.append(f"{meta.get('namespace')}/{meta.get('name')}")
    return sorted(found)


def plan_for(old: dict, user: str, hub_namespace: str, team_namespace: str, snapshot_class=None) -> Plan:
    spec = old.get("spec") or {}
    storage = ((old.get("status") or {}).get("capacity") or {}).get("storage") \
        or ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    return Plan(user, hub_namespace, team_namespace, old["metadata"]["name"], storage,
                spec.get("storageClassName"), snapshot_class)


def new_claim(old: dict, plan: Plan) -> dict:
    """The claim in the team namespace: same size, class and modes; owned by the user (the
    spawner's ownership proof); marked as being copied until the copy is complete."""
    meta, spec = old["metadata"], old.get("spec") or {}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k in OWNER_ANNOTATIONS}
    annotations.update({"hub.jupyter.org/username": plan.user, COPYING: plan.source_ref})
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != MIGRATED_LABEL}
    new_spec = {"accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
                "resources": {"requests": {"storage": plan.storage}}}
    for key in ("storageClassName", "volumeMode"):
        if spec.get(key):
            new_spec[key] = spec[key]
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": plan.claim, "namespace": plan.team_namespace, "labels": labels,
                         "annotations": annotations},
            "spec": new_spec}


def finished_patch(plan: Plan) -> dict:
    """The new claim, once the copy is complete: the spawner uses it from the next start."""
    return {"metadata": {"annotations": {MIGRATED_FROM: plan.source_ref, COPYING: None}}}


def old_claim_patch(plan: Plan, when: str) -> dict:
    return {"metadata": {
        "labels": {MIGRATED_LABEL: "true"},
        "annotations": {
            MIGRATED_TO: plan.target_ref,
            MIGRATED_AT: when,
            MIGRATION_NOTE: (f"home of {plan.user!r} copied to {plan.target_ref} by `ptjaas migrate-home` "
                             "(team namespaces); kept until an admin deletes it"),
        }}}


def snapshot(plan: Plan) -> dict:
    return {"apiVersion": f"{SNAPSHOT_GROUP}/{SNAPSHOT_VERSION}", "kind": "VolumeSnapshot",
            "metadata": {"name": snapshot_name(plan.claim), "namespace": plan.hub_namespace,
                         "labels": {"component": COMPONENT}},
            "spec": {"volumeSnapshotClassName": plan.snapshot_class,
                     "source": {"persistentVolumeClaimName": plan.claim}}}


def restored_claim(old: dict, plan: Plan) -> dict:
    spec = old.get("spec") or {}
    body = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": restore_name(plan.claim), "namespace": plan.hub_namespace,
                         "labels": {"component": COMPONENT}},
            "spec": {"accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
                     "resources": {"requests": {"storage": plan.storage}},
                     "dataSource": {"apiGroup": SNAPSHOT_GROUP, "kind": "VolumeSnapshot",
                                    "name": snapshot_name(plan.claim)}}}
    if spec.get("storageClassName"):
        body["spec"]["storageClassName"] = spec["storageClassName"]
    return body


def copy_pod(plan: Plan, role: str, claim: str, image: str, uid: int, gid: int, args: list) -> dict:
    """The sender (``send``, in the hub's namespace, the claim read-only) or the receiver
    (``receive``, in the team namespace): unprivileged, as the notebook user."""
    namespace = plan.hub_namespace if role == "send" else plan.team_namespace
    script = SEND if role == "send" else RECEIVE
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name(plan.claim, role), "namespace": namespace,
                         "labels": {"component": COMPONENT}},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "securityContext": {"runAsUser": uid, "runAsGroup": gid, "fsGroup": gid, "runAsNonRoot": uid != 0},
                "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": claim,
                                                                       "readOnly": role == "send"}}],
                "containers": [{
                    "name": role, "image": image, "command": ["python3", "-c", script], "args": [str(a) for a in args],
                    "volumeMounts": [{"name": "home", "mountPath": MOUNT, "readOnly": role == "send"}],
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
                }],
            }}
