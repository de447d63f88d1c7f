"""What one server start uses and makes, as plain values, and how its watches run beside it.

A start (``start.start_server``, which reads top to bottom) goes step by step, each step taking
what it needs and returning what it made:

1. ``plan_start``: the user's choice, resolved once against the catalog and the quota's verdict
   per size (``StartPlan.choice``, ``StartPlan.availability``), the team namespace, and the home
   claim found or created (``StartPlan.home``, a ``Home``);
2. KubeSpawner's own start (pod manifest, pod create: the quota share is charged on the final
   manifest and recorded as ``StartPlan.charge``), run by ``run_watched`` beside the watches of
   the home claim and the scheduling; a watch that raises ``StartFailed`` ends the start;
3. on failure, the clean-up of what the plan says this start made; on success the choice is
   remembered.

During a start the plan's ``Home`` is the one owner of the home claim's name (the pod manifest
mounts ``plan.home.name``); between starts the spawner remembers it through one writer
(``HomeVolumeMixin._set_home_memory``, which keeps KubeSpawner's ``pvc_name`` equal to it).

``STARTING`` tells code that runs inside a start (KubeSpawner itself calls ``stop()`` there, to
replace a leftover pod) from a stop of the server: a context variable, so it holds only for the
start's own task and never leaks to another server's or to the hub's stop.
"""

from __future__ import annotations

import asyncio
import contextvars
from dataclasses import dataclass, field

STARTING = contextvars.ContextVar("ptjaas_starting", default=False)


def in_start() -> bool:
    """Is the running code part of a start (KubeSpawner's stop of a leftover pod, the clean-up
    of a failed start)?"""
    return STARTING.get()


@dataclass
class Home:
    """The home claim a start mounts."""

    name: str
    size: str                  # its requested size, as far as known
    wanted: str                # the size the user's groups give
    bound: bool = False        # proven bound: a pod ran on it (the state says), or a read said so
    created: bool = False      # this start (or its watch, recreating it) created it
    created_uid: str | None = None  # the uid of the claim this start created, from the create

    def state(self) -> dict:
        """What the spawner's state remembers of it."""
        state = {"claim": self.name, "size": self.size}
        if self.bound:
            state["bound"] = True
        return state


@dataclass
class StartPlan:
    """One start: the choice (None without a catalog: KubeSpawner's settings and profiles
    apply), the quota's verdict per size it was checked against, the team placement, the home
    claim, the snapshots opened, and the quota charge and whether a pod create was sent (filled in as the start goes)."""

    choice: object = None
    availability: dict = field(default_factory=dict)
    placement: object = None   # the team namespace it runs in (teams.Placement; None without teams)
    home: Home | None = None
    snapshot_views: list = field(default_factory=list)  # snapshots opened read-only
    datasets: list = field(default_factory=list)  # team datasets mounted: [(dataset, "rw"|"ro")] (datasets/)
    registry_digest: dict = field(default_factory=dict)  # a custom image's tag resolved: audit fields (registrydigest)
    charge: object = None
    pod_sent: bool = False


async def run_watched(start, watches):
    """Await ``start`` (a coroutine) while ``watches`` (coroutines) run beside it.

    A watch that returns has nothing more to watch; a watch that raises ends the start: the
    start is cancelled (its own ``finally`` blocks run) and the watch's exception is raised.
    When the start ends, the watches still running are cancelled (and have ended when this
    returns)."""
    main = asyncio.ensure_future(start)
    tasks = [asyncio.ensure_future(w) for w in watches]
    pending = {main, *tasks}
    try:
        while True:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if main in done:
                return main.result()
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    main.cancel()
                    await asyncio.gather(main, return_exceptions=True)
                    raise task.exception()
    finally:
        running = [task for task in (main, *tasks) if not task.done()]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)  # nothing outlives the start
