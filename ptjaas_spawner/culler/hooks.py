"""Cull hooks: run admin actions before/after a cull without ever blocking it.

A hook is called with one argument, a plain ``dict`` describing the cull (a fresh copy per
hook)::

    {"phase": "before" | "after", "user": "alice", "server": "" (default) or name,
     "size": "gpu-small", "image": "pytorch", "version": "2024.10",
     "started": iso, "last_activity": iso, "reason": "inactive for ...", "kind": "idle"|"max-age"|"gpu-idle",
     "stop": iso (after only), "stopped": bool (after only: the hub confirmed the stop)}

It may be a plain function (run in its own daemon thread, so a hang cannot freeze the culler)
or an ``async`` function. Every hook runs under a timeout; an exception or a timeout is logged
and the cull goes on. Hooks receive data, not handles: they cannot change what is culled.

Built-in named actions: ``usage`` (append a JSON line per culled server) and ``snapshot``
(a VolumeSnapshot of the user's home claim, keeping the newest N per claim).
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import inspect
import json
import logging
import os
import threading
from datetime import datetime, timezone
from typing import Any, Callable

from kubespawner.slugs import escape_slug, safe_slug

from .. import audit
from ..objects import label_value
from ..snapshots.policy import CULLER, MANAGED_BY as MANAGED_BY_LABEL, snapshot_manifest
from .policy import CullPolicy, home_claim_names, snapshots_to_prune, usage_entry

MANAGED_BY = {"app.kubernetes.io/managed-by": "ptjaas-culler"}


def hook_name(hook: Any) -> str:
    return getattr(hook, "hook_name", None) or getattr(hook, "__qualname__", None) or repr(hook)


def import_hook(spec: str) -> Callable:
    """'package.module:function' (or 'package.module.function') -> the callable."""
    mod, sep, attr = spec.partition(":")
    if not sep:
        mod, _, attr = spec.rpartition(".")
    if not mod or not attr:
        raise ValueError(f"hook {spec!r} is neither a built-in action nor 'module:function'")
    try:
        obj = importlib.import_module(mod)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"hook {spec!r} cannot be imported: {e}") from None
    if not callable(obj):
        raise ValueError(f"hook {spec!r} is not callable")
    return obj


def _is_async(hook) -> bool:
    return inspect.iscoroutinefunction(hook) or inspect.iscoroutinefunction(getattr(hook, "__call__", None))


def _in_daemon_thread(fn, arg) -> asyncio.Future:
    """Run fn(arg) in a daemon thread; a hung hook never blocks the loop or process exit."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def settle(ok, value):
        if not fut.done():
            (fut.set_result if ok else fut.set_exception)(value)

    def run():
        try:
            outcome = (True, fn(arg))
        except BaseException as e:  # noqa: BLE001 - reported to the caller
            outcome = (False, e)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the loop is gone: the hook was abandoned long ago
            pass

    threading.Thread(target=run, name=f"cull-hook-{hook_name(fn)}", daemon=True).start()
    return fut


async def run_hook(hook, event: dict, timeout: float, log: logging.Logger) -> bool:
    """Run one hook under a timeout. Returns True on success; never raises."""
    name = hook_name(hook)
    who = f"{event.get('user')}/{event.get('server')}" if event.get("server") else event.get("user")
    event = copy.deepcopy(event)
    try:
        async def call():
            if _is_async(hook):
                result = hook(event)
            else:
                result = await _in_daemon_thread(hook, event)
            if inspect.isawaitable(result):
                result = await result
            return result

        await asyncio.wait_for(call(), timeout=timeout if timeout and timeout > 0 else None)
        return True
    except asyncio.TimeoutError:
        log.error("%s-cull hook %s for %s timed out after %ss; the cull goes on",
                  event.get("phase"), name, who, timeout)
    except Exception as e:  # noqa: BLE001 - a hook must never stop a cull
        log.error("%s-cull hook %s for %s failed (%s: %s); the cull goes on",
                  event.get("phase"), name, who, type(e).__name__, e)
    return False


async def run_hooks(hooks, event: dict, timeout: float, log: logging.Logger) -> list[bool]:
    """Run hooks one after another (each under its own timeout)."""
    return [await run_hook(h, event, timeout, log) for h in hooks]


class UsageRecorder:
    """Built-in ``usage`` action: append one JSON line per culled server to ``path``.

    Fields: user, server, size, image, version, start, stop, hours, gpus, gpu_hours, reason.
    Only acts in the *after* phase (when the stop time is known).
    """

    hook_name = "usage"

    def __init__(self, path: str, policy: CullPolicy):
        if not path:
            raise ValueError("the 'usage' hook needs --usage-file (PtjaasCuller.usage_file)")
        self.path = path
        self.policy = policy
        self._lock = threading.Lock()

    def __call__(self, event: dict) -> None:
        if event.get("phase") != "after":
            return
        line = json.dumps(usage_entry(self.policy, event, datetime.now(timezone.utc)), sort_keys=True) + "\n"
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(line)


class CullAudit:
    """Built-in ``audit`` action (added by itself with ``--audit-file``): one ``server-cull``
    line per culled server in the hub's audit record (see ``ptjaas_spawner.audit``)."""

    hook_name = "audit"

    def __init__(self, path: str, log: logging.Logger):
        self.path = path
        self.log = log

    def __call__(self, event: dict) -> None:
        if event.get("phase") != "after":
            return
        record = audit.entry("server-cull", event["user"], by="ptjaas-culler", server=event.get("server", ""),
                             size=event.get("size"), image=event.get("image"), version=event.get("version"),
                             reason=event.get("reason"), kind=event.get("kind"), stopped=event.get("stopped"))
        audit.write(self.path, record, self.log)


def claim_name(template: str, username: str) -> str:
    """A home claim's name from the culler's ``claim_name_template`` (by default the spawner's
    ``homevolume.HOME_CLAIM_TEMPLATE``), expanded as KubeSpawner (>= 7) expands
    ``pvc_name_template`` with its 'safe' slug scheme: {username} (the safe slug),
    {escaped_username} (the legacy escape), {raw_username} (the name itself)."""
    return template.format(
        username=safe_slug(username, max_length=48),
        escaped_username=escape_slug(username),
        raw_username=username,
    )


def snapshot_body(*, name: str, namespace: str, claim: str, snapshot_class: str | None,
                  user: str, reason: str | None) -> dict:
    """The culler's VolumeSnapshot: the same shape as every ptjaas snapshot of a home
    (``snapshots.policy.snapshot_manifest``: owner label and annotations, reason ``cull``), so
    the user sees it, plus the cull's kind (``ptjaas.io/cull-reason``)."""
    body = snapshot_manifest(name=name, claim=claim, snapshot_class=snapshot_class, user=user,
                             reason="cull", by=CULLER, managed_by=CULLER)
    body["metadata"]["namespace"] = namespace
    body["metadata"]["annotations"].update({"ptjaas.io/user": user, "ptjaas.io/cull-reason": reason or ""})
    return body


class Snapshotter:
    """Built-in ``snapshot`` action: a VolumeSnapshot of the user's home claim, then prune.

    The home claim is found by the spawner's labels (``ptjaas.io/user``, annotation
    ``ptjaas.io/username``), else by ``claim_template``. Creates ``snapshot.storage.k8s.io/v1``
    VolumeSnapshot ``<claim>-cull-<UTC time>`` with the configured VolumeSnapshotClass, then
    deletes this culler's snapshots of the same claim beyond the newest ``keep``. Only snapshots it
    made (label app.kubernetes.io/managed-by=ptjaas-culler) are ever pruned; the claim itself is
    only read. Meant for the *after* phase (pod stopped, files quiescent).
    """

    hook_name = "snapshot"

    def __init__(self, kube, *, snapshot_class: str | None, keep: int, claim_template: str,
                 log: logging.Logger):
        if keep < 1:
            raise ValueError(f"--snapshot-keep must be >= 1, not {keep}")
        self.kube = kube
        self.snapshot_class = snapshot_class or None
        self.keep = keep
        self.claim_template = claim_template
        self.log = log

    async def claims_of(self, user: str) -> list[str]:
        claims = home_claim_names(await self.kube.list_claims(f"ptjaas.io/user={label_value(user)}"), user)
        if not claims:
            name = claim_name(self.claim_template, user)
            if await self.kube.read_claim(name) is not None:
                claims = [name]
        return claims

    async def __call__(self, event: dict) -> None:
        user = event["user"]
        if event.get("stopped") is False:
            raise RuntimeError(f"{user}'s server is still stopping; no snapshot of a volume in use")
        claims = await self.claims_of(user)
        if not claims:
            raise LookupError(f"no home claim found for {user!r}")
        now = datetime.now(timezone.utc)
        existing = None
        for claim in claims:
            name = f"{claim[:200]}-cull-{now:%Y%m%d-%H%M%S}-{now.microsecond:06d}"
            body = snapshot_body(name=name, namespace=self.kube.namespace, claim=claim,
                                 snapshot_class=self.snapshot_class, user=user, reason=event.get("kind"))
            await self.kube.create_snapshot(body)
            self.log.info("snapshot %s of claim %s created for %s", name, claim, user)
            if existing is None:
                existing = await self.kube.list_snapshots(f"{MANAGED_BY_LABEL}={CULLER}")
            mine = [o for o in existing
                    if o.get("spec", {}).get("source", {}).get("persistentVolumeClaimName") == claim]
            if name not in {o["metadata"]["name"] for o in mine}:
                mine.append(body)
            for old in snapshots_to_prune(mine, self.keep):
                await self.kube.delete_snapshot(old)
                self.log.info("pruned old snapshot %s of claim %s (keeping newest %d)", old, claim, self.keep)
