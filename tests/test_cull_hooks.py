"""Cull hooks in isolation: failures and hangs are contained; the usage action's records."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

from ptjaas_spawner.culler import CullPolicy
from ptjaas_spawner.culler.hooks import UsageRecorder, import_hook, run_hooks

EVENT = {"phase": "after", "user": "alice", "server": "", "size": "gpu-1", "image": "pytorch",
         "version": "2025.01", "started": "2026-01-01T10:00:00Z", "stop": "2026-01-01T11:30:00Z",
         "kind": "idle", "reason": "inactive"}
RELEASE = threading.Event()


def failing_hook(event):
    raise RuntimeError("disk full")


def hanging_hook(event):
    RELEASE.wait(60)


async def hanging_async_hook(event):
    await asyncio.sleep(60)


async def test_failing_and_hanging_hooks_are_contained(caplog):
    seen = []
    log = logging.getLogger("test-cull-hooks")
    t0 = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="test-cull-hooks"):
        ok = await run_hooks([failing_hook, hanging_hook, hanging_async_hook, seen.append], EVENT, 0.3, log)
    elapsed = time.monotonic() - t0
    RELEASE.set()
    assert ok == [False, False, False, True]
    assert seen == [EVENT] and seen[0] is not EVENT  # hooks get a copy
    assert elapsed < 5  # bounded by the per-hook timeout, not by the hang
    text = caplog.text
    assert "failing_hook" in text and "disk full" in text and "the cull goes on" in text
    assert "hanging_hook" in text and "timed out after 0.3s" in text
    assert "hanging_async_hook" in text


def test_usage_records_are_json_lines(tmp_path):
    path = tmp_path / "acct" / "usage.jsonl"
    pol = CullPolicy.from_dict({"sizes": {"gpu-1": {"gpu": 2}}})
    rec = UsageRecorder(str(path), pol)
    rec(dict(EVENT, phase="before"))  # nothing before the stop
    rec(EVENT)
    rec(dict(EVENT, user="bob", size="cpu"))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [entry["user"] for entry in lines] == ["alice", "bob"]
    assert lines[0]["gpu_hours"] == 3.0 and lines[0]["hours"] == 1.5 and lines[0]["version"] == "2025.01"
    assert lines[1]["gpu_hours"] == 0.0


def test_import_hook_by_dotted_path():
    from ptjaas_spawner.culler.policy import parse_time

    assert import_hook("ptjaas_spawner.culler.policy:parse_time") is parse_time
    assert import_hook("json.dumps") is json.dumps
