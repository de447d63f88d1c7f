"""The ``ptjaas-snapshots`` service: a hub-managed process that takes the scheduled snapshots of
the scheduled groups' members' homes (``snapshots.scheduler``) and of the teams' datasets
(``datasets.scheduled``), one pass every ``interval`` seconds.

``install_scheduled_snapshots`` (``snapshots.scheduler``) adds it to the hub's services with its
settings in ``$PTJAAS_SNAPSHOT_SCHEDULE``. ``python -m ptjaas_spawner.snapshotservice [--once]``.
It sits above both packages: ``snapshots`` does not import ``datasets`` (which builds on it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from typing import Mapping

from .datasets import scheduled as datasets_scheduled
from .hubapi import HubAPI
from .kube import Kube
from .snapshots.scheduler import ENV, check_groups, homes_pass

log = logging.getLogger("ptjaas.snapshots")


async def one_pass(hub, kube, groups: dict, snapshot_classes: dict, audit_file: str = "",
                   team_namespaces: Mapping | None = None) -> dict:
    """One pass: the homes (``groups`` checked by ``check_groups``), then the teams' datasets;
    returns {"taken": [...], "pruned": [...]}. ``team_namespaces``: team -> namespace of its
    datasets (else ``kube``'s namespace). With no home schedule the hub is not called."""
    result = await homes_pass(hub, kube, groups, snapshot_classes, audit_file)
    if any(spec.get("datasets") for spec in groups.values()):
        await datasets_scheduled.one_pass(kube, groups, snapshot_classes, team_namespaces or {}, audit_file,
                                          result["taken"], result["pruned"])
    return result


async def main_async(once: bool) -> int:
    settings = json.loads(os.environ.get(ENV) or "{}")
    groups = check_groups(settings.get("groups"))
    namespace = settings.get("namespace") or os.environ.get("POD_NAMESPACE") or "default"
    kube = Kube(namespace)
    async with HubAPI(os.environ.get("JUPYTERHUB_API_URL", ""), os.environ.get("JUPYTERHUB_API_TOKEN", "")) as hub:
        try:
            while True:
                try:
                    result = await one_pass(hub, kube, groups, settings.get("snapshot_classes") or {},
                                            settings.get("audit_file") or "", settings.get("team_namespaces") or {})
                    log.info("snapshot pass: %d taken, %d pruned", len(result["taken"]), len(result["pruned"]))
                except Exception as e:  # noqa: BLE001 - the next pass tries again
                    log.error("snapshot pass failed: %s", e)
                    if once:
                        return 1
                if once:
                    return 0
                await asyncio.sleep(float(settings.get("interval") or 3600))
        finally:
            await kube.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ptjaas_spawner.snapshotservice", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s")
    return asyncio.run(main_async(args.once))


if __name__ == "__main__":
    sys.exit(main())
