"""The culler service: an async loop over the hub REST API.

One pass: list the users with ready servers (paginated, pages fetched concurrently), decide per
server with the pure policy (per size / per image timeouts), then for each server to cull, at
most ``concurrency`` hub requests in flight: before-hooks -> ``DELETE`` the server (the hub
stops the pod; the home volume is kept) -> wait for the stop if the hub answered 202 ->
after-hooks. Hooks are logged and timed out, never allowed to stop a cull. If the before-hooks
took more than a second, the server is looked at again first (the user may be back).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Sequence

import aiohttp

from .gpuidle import decide_gpu_idle, gpu_idle_window
from .hooks import run_hooks
from ..hubapi import HubAPI, HubAPIError
from .policy import (
    CullPolicy, Verdict, choice_from_labels, decide_server, decide_user, isoformat, needs_choice,
    server_items,
)


@dataclass
class PassResult:
    """What one pass did (for logs, tests and the benchmark)."""

    users_seen: int = 0
    servers_seen: int = 0
    culled: list[Verdict] = field(default_factory=list)
    kept: list[Verdict] = field(default_factory=list)
    failed: list[tuple[Verdict, str]] = field(default_factory=list)
    users_deleted: list[str] = field(default_factory=list)
    requests: int = 0
    seconds: float = 0.0

    @property
    def culled_names(self) -> set[str]:
        return {v.log_name for v in self.culled}


#: seconds of before-hooks after which the server is looked at again before stopping it
RECHECK_AFTER = 1.0


async def _wait_stopped(api: HubAPI, v: Verdict, deadline: float, log) -> bool:
    """After a 202 (slow stop), poll the hub until the server is gone or the deadline passes."""
    delay = 0.2
    while time.monotonic() < deadline:
        model = await api.get_server(v.user, v.server_name)
        if not model or model.get("stopped") or not (model.get("ready") or model.get("pending")):
            return True
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5)
    log.warning("server %s still stopping after the stop timeout", v.log_name)
    return False


async def cull_server(api: HubAPI, v: Verdict, *, before_hooks: Sequence[Callable] = (),
                      after_hooks: Sequence[Callable] = (), hook_timeout: float = 60,
                      remove_named_servers: bool = False, stop_timeout: float = 120,
                      log: logging.Logger, policy: CullPolicy | None = None) -> bool | None:
    """Cull one server. Returns True once the hub confirms it stopped, False if it is still
    stopping, None if it was not culled after all (active again after slow before-hooks)."""
    event = {
        "phase": "before", "user": v.user, "server": v.server_name, "size": v.size,
        "image": v.image, "version": v.version, "started": v.started,
        "last_activity": v.last_activity, "reason": v.reason, "kind": v.kind,
    }
    if before_hooks:
        t0 = time.monotonic()
        await run_hooks(before_hooks, event, hook_timeout, log)
        if policy is not None and time.monotonic() - t0 > RECHECK_AFTER:
            # the hooks took a while: the user may be back; decide again on fresh data
            model = await api.get_server(v.user, v.server_name)
            fresh = model and decide_server(policy, v.user, v.server_name, model, datetime.now(timezone.utc))
            if fresh and v.kind == "gpu-idle" and fresh.kind == "keep":
                fresh = v  # still running; its GPUs' history does not change in a few seconds
            if not fresh or not fresh.cull:
                log.info("Not culling %s after all: %s", v.log_name, fresh.reason if fresh else "gone")
                return None
    log.info("Culling server %s: %s", v.log_name, v.reason)
    status = await api.stop_server(v.user, v.server_name, remove=remove_named_servers)
    stopped = True
    if status == 202:
        log.info("server %s is slow to stop; waiting", v.log_name)
        stopped = await _wait_stopped(api, v, time.monotonic() + stop_timeout, log)
    if after_hooks:
        event = dict(event, phase="after", stop=isoformat(datetime.now(timezone.utc)), stopped=stopped)
        await run_hooks(after_hooks, event, hook_timeout, log)
    return stopped


async def list_users(api: HubAPI, policy: CullPolicy, page_size: int) -> list[dict]:
    """All users with ready servers (and, with cull_users, those with none), deduplicated."""
    seen: dict[str, dict] = {}
    states = ["ready"] + (["inactive"] if policy.cull_users else [])
    for state in states:
        async for page in api.list_users(state=state, page_size=page_size):
            for u in page:
                seen.setdefault(u["name"], u)
    return list(seen.values())


async def _fill_choices(users: list[dict], policy: CullPolicy, pod_labels, log) -> None:
    missing = [(u, n, s) for u in users for n, s in server_items(u) if needs_choice(policy, s)]
    if not missing:
        return
    try:
        labels = await pod_labels()
    except Exception as e:  # noqa: BLE001 - fall back to the global limits
        log.warning("could not read pod labels for %d server(s) without a size: %s", len(missing), e)
        return
    for user, name, server in missing:
        found = choice_from_labels(policy, labels.get((user["name"], name), {}))
        if found:
            server["user_options"] = {**(server.get("user_options") or {}), **found}


async def cull_pass(api: HubAPI, policy: CullPolicy, *, before_hooks: Sequence[Callable] = (),
                    after_hooks: Sequence[Callable] = (), hook_timeout: float = 60,
                    remove_named_servers: bool = False, page_size: int = 0,
                    stop_timeout: float = 120, log: logging.Logger | None = None,
                    now: datetime | None = None, pod_labels=None, gpu_probe=None) -> PassResult:
    """One culling pass. Listing completes before any stop, so no user is skipped by the
    list shifting under pagination while servers stop.

    ``pod_labels``: optional ``async () -> {(user, server): labels}``; called (once) only when
    some server's ``user_options`` do not name its size, to read it from the pod's labels.
    ``gpu_probe``: optional ``culler.prometheus.PrometheusGpuProbe``; GPU servers the idle rules
    keep are culled when their GPUs stayed under its threshold for their idle timeout."""
    log = log or logging.getLogger("ptjaas.culler")
    t0 = time.perf_counter()
    r0 = api.requests
    result = PassResult()
    users = await list_users(api, policy, page_size)
    if pod_labels is not None:
        await _fill_choices(users, policy, pod_labels, log)
    now = now or datetime.now(timezone.utc)
    result.users_seen = len(users)
    culling = asyncio.Semaphore(api.concurrency)
    if gpu_probe is not None:
        gpu_probe.new_pass()

    async def handle_user(user: dict):
        verdicts, left = [], 0
        for name, server in server_items(user):
            v = decide_server(policy, user["name"], name, server, now)
            window = gpu_probe and gpu_idle_window(policy, v)
            if window:
                async with culling:
                    used = await gpu_probe(user["name"], name, window)
                v = decide_gpu_idle(v, window, used, gpu_probe.threshold)
            result.servers_seen += 1
            if v.cull:
                verdicts.append(v)
            else:
                left += 1
                result.kept.append(v)
                log.debug("Not culling %s: %s", v.log_name, v.reason)

        async def one(v: Verdict):
            try:
                async with culling:  # bounds hooks (Kubernetes calls...) as well as hub requests
                    stopped = await cull_server(
                        api, v, before_hooks=before_hooks, after_hooks=after_hooks,
                        hook_timeout=hook_timeout, remove_named_servers=remove_named_servers,
                        stop_timeout=stop_timeout, log=log, policy=policy)
            except (HubAPIError, aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
                log.error("Failed to cull %s: %s", v.log_name, e)
                result.failed.append((v, str(e)))
                return False
            if stopped is None:  # active again
                result.kept.append(v)
                return False
            result.culled.append(v)
            return stopped

        stops = await asyncio.gather(*(one(v) for v in verdicts))
        if policy.cull_users:
            running = left + sum(1 for s in stops if not s)
            cull, why = decide_user(policy, user, running, now)
            if cull:
                log.info("Culling user %s: %s", user["name"], why)
                try:
                    await api.delete_user(user["name"])
                    result.users_deleted.append(user["name"])
                except (HubAPIError, aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
                    log.error("Failed to delete user %s: %s", user["name"], e)

    await asyncio.gather(*(handle_user(u) for u in users))
    result.requests = api.requests - r0
    result.seconds = time.perf_counter() - t0
    log.info(
        "cull pass: %d users, %d servers, culled %d, failed %d, users deleted %d; %d hub requests in %.2fs",
        result.users_seen, result.servers_seen, len(result.culled), len(result.failed),
        len(result.users_deleted), result.requests, result.seconds)
    return result
