"""A start's watches run beside KubeSpawner's start (``startplan.run_watched``): a watch that
fails ends the start with its reason, the start's end stops the watches; ``in_start`` holds
only inside the start's own task."""

import asyncio

import pytest

from ptjaas_spawner.startplan import STARTING, in_start, run_watched


class Refused(Exception):
    pass


async def test_a_failing_watch_ends_the_start_with_its_reason():
    unwound, started, never = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def start():
        started.set()
        try:
            await never.wait()  # a start that would not end by itself
        finally:
            unwound.set()

    async def watch():
        await started.wait()
        raise Refused("no node has a free GPU right now")

    with pytest.raises(Refused, match="free GPU"):
        await asyncio.wait_for(run_watched(start(), [watch()]), 5)
    assert unwound.is_set()  # the start's own clean-up ran before the reason was raised


async def test_the_end_of_the_start_stops_the_watches_and_a_quiet_watch_changes_nothing():
    stopped, watching, quiet_done, never = asyncio.Event(), asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def start():
        await watching.wait()  # both watches run (and the quiet one ended) before the start ends
        await quiet_done.wait()
        return "http://pod:8888"

    async def done_watch():
        quiet_done.set()
        return None

    async def endless_watch():
        watching.set()
        try:
            await never.wait()
        finally:
            stopped.set()

    assert await run_watched(start(), [done_watch(), endless_watch()]) == "http://pod:8888"
    assert stopped.is_set()


async def test_in_start_holds_only_in_the_starts_task():
    seen = {}

    inside, looked = asyncio.Event(), asyncio.Event()

    async def start():
        token = STARTING.set(True)
        try:
            seen["start"] = in_start()
            inside.set()
            await looked.wait()  # the hub's stop looks while the start is still inside
        finally:
            STARTING.reset(token)

    async def hub_stop():
        await inside.wait()
        seen["stop"] = in_start()
        looked.set()

    await asyncio.gather(asyncio.ensure_future(start()), asyncio.ensure_future(hub_stop()))
    assert seen == {"start": True, "stop": False} and not in_start()
