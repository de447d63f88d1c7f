"""Quota cost per decision, per spawn form and per rebuild, at 0, 2,000 and 10,000 running servers.

Runs the hub's real code paths in-process, without a hub or a cluster: ``QuotaMixin.quota_reserve``
+ ``quota_release`` (the decision and charge made on the final pod of a REST start, with the
Prometheus gauges), ``QuotaMixin.size_availability`` (the spawn form's verdicts for every size),
and ``rebuild_ledger`` over as many reflector pods (with the longest stretch the event loop was
blocked). Running servers belong to other users, charged to 4 group pools; "me" holds one
server and is in 1 or in all 4 pools. Figures are means over many repetitions.

    python benchmarks/quota.py [--servers 0,2000,10000] [--sizes 6]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from types import SimpleNamespace

from ptjaas_spawner.quota.budget import size_amount
from ptjaas_spawner.quota.ledger import Charge
from ptjaas_spawner.quota.mixin import LEDGER, QuotaMixin, rebuild_ledger

POOLS = ["vision", "nlp", "robotics", "genomics"]
SIZE = {"cpu_guarantee": "1", "mem_guarantee": "4Gi", "gpu": 1}


def make_sizes(n):
    return {f"size{i}": {"cpu_guarantee": str(0.5 * (i + 1)), "mem_guarantee": f"{i + 1}Gi", "gpu": i % 3}
            for i in range(n)}


def server_pod(user, pool, size="gpu1", server=""):
    return {
        "metadata": {
            "name": f"jupyter-{user}", "namespace": "jhub",
            "labels": {"component": "singleuser-server", "ptjaas.io/size": size,
                       "ptjaas.io/image": "python", "ptjaas.io/version": "2025.01"},
            "annotations": {"hub.jupyter.org/username": user, "hub.jupyter.org/servername": server,
                            "ptjaas.io/quota-pool": pool},
        },
        "spec": {"containers": [{"name": "notebook", "resources": {
            "requests": {"cpu": "1", "memory": "4Gi"},
            "limits": {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"}}}]},
        "status": {"phase": "Running"},
    }


def spawner(groups, n_servers):
    """A QuotaMixin as the spawner of user "me" (the rebuild is not needed: the ledger is filled)."""
    big = n_servers + 100
    sp = QuotaMixin(
        quota_default={"servers": 3, "gpus": 2},
        quota_groups={p: {"gpus": big, "cpu": big * 2, "memory": f"{big * 8}Gi", "servers": big}
                      for p in POOLS},
        quota_rebuild_from_cluster=False,
    )
    sp.user = SimpleNamespace(name="me", groups=[SimpleNamespace(name=g) for g in groups])
    sp.name = "second"
    sp.namespace = "jhub"  # KubeSpawner's trait, read by the charge
    return sp


def fill(n):
    LEDGER.clear()
    for i in range(n):
        LEDGER.add(Charge(f"user{i}", "", size_amount(SIZE), POOLS[i % len(POOLS)], "gpu1", "python", "2025.01"))
    LEDGER.add(Charge("me", "", size_amount(SIZE), POOLS[0], "gpu1", "python", "2025.01"))


def per_call(fn, min_seconds=0.3):
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds and n >= 20:
            return elapsed / n * 1000


async def per_call_async(fn, min_seconds=0.3):
    n, t0 = 0, time.perf_counter()
    while True:
        await fn()
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds and n >= 20:
            return elapsed / n * 1000


async def rebuild_figures(n):
    """(ms in all, longest ms the event loop was blocked: wall clock, CPU) to rebuild the ledger
    from n pods. The wall-clock figure includes time the OS gave to other processes."""
    pods = {f"jhub/jupyter-user{i}": server_pod(f"user{i}", POOLS[i % len(POOLS)]) for i in range(n)}
    LEDGER.clear()
    longest = longest_cpu = 0.0
    done = False

    async def watch_loop():
        nonlocal longest, longest_cpu
        while not done:
            t, c = time.perf_counter(), time.thread_time()
            await asyncio.sleep(0)
            longest = max(longest, time.perf_counter() - t)
            longest_cpu = max(longest_cpu, time.thread_time() - c)

    watcher = asyncio.ensure_future(watch_loop())
    await asyncio.sleep(0)
    t0 = time.perf_counter()
    added = await rebuild_ledger(LEDGER, lambda: pods)
    total = time.perf_counter() - t0
    done = True
    await watcher
    assert added == n, (added, n)
    return total * 1000, longest * 1000, longest_cpu * 1000


async def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--servers", default="0,2000,10000")
    p.add_argument("--sizes", type=int, default=6, help="sizes in the spawn form")
    args = p.parse_args(argv)
    counts = [int(x) for x in args.servers.split(",")]
    sizes = make_sizes(args.sizes)
    pod = server_pod("me", POOLS[0], server="second")
    print(f"{'running':>8} {'pools':>5} {'decision ms':>12} {'refusal ms':>11} {'form ms':>8}"
          f" {'rebuild ms':>11} {'longest block ms (wall, CPU)':>29}")
    for n in counts:
        fill(n)
        for groups in (POOLS[:1], POOLS):
            sp = spawner(groups, n)

            def reserve_release():
                sp.quota_reserve(pod)
                sp.quota_release()

            def refused():  # "me" asks for a third GPU: over the personal budget of 2
                sp.name = "third"
                LEDGER.add(Charge("me", "second", size_amount(SIZE), POOLS[0], "gpu1"))
                try:
                    sp.quota_reserve(pod)
                except Exception:
                    pass
                finally:
                    LEDGER.remove("me", "second")
                    sp.name = "second"

            decision = per_call(reserve_release)
            refusal = per_call(refused)
            form = await per_call_async(lambda: sp.size_availability(sizes))
            assert len(LEDGER) == n + 1
            rebuild = ""
            if groups is POOLS:
                total, longest, longest_cpu = await rebuild_figures(n)
                rebuild = f"{total:11.1f} {longest:19.1f} {longest_cpu:9.1f}"
                fill(n)
            print(f"{n:>8} {len(groups):>5} {decision:12.3f} {refusal:11.3f} {form:8.3f} {rebuild}")
    LEDGER.clear()
    off = QuotaMixin(quota_default={}, quota_groups={}, quota_rebuild_from_cluster=False)
    off.user = SimpleNamespace(name="me", groups=[])
    off.name, off.namespace = "second", "jhub"
    assert not off.quota_policy.enabled

    def off_reserve_release():
        assert off.quota_reserve(pod) is None
        off.quota_release()

    decision = per_call(off_reserve_release)
    form = await per_call_async(lambda: off.size_availability(sizes))
    print(f"{'off':>8} {'-':>5} {decision:12.3f} {'-':>11} {form:8.3f}   (quotas off: no ledger, no rebuild)")


if __name__ == "__main__":
    asyncio.run(main())
