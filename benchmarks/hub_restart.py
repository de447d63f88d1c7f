"""The hub's event loop at a hub restart with N servers in the namespace: how long the reflectors'
first lists block it. KubeSpawner's reflectors against ptjaas's (``ptjaas_spawner.watches``:
the same reflectors, listing in pages), in the same run, each 3 times, alternating.

    ./dev run python benchmarks/hub_restart.py --servers 2000

A hub that starts lists the pods (and the pods' events) of its namespace before it serves
anyone; KubeSpawner parses each list in one event-loop callback. This benchmark runs exactly
that step, the reflectors' ``start()`` (first list, then the watch), in this process's event
loop with a loop-lag probe (a task that sleeps 1 ms and notes how late it wakes: the longest
block is the longest time the hub would answer nobody; printed as wall clock and as the loop
thread's CPU in that gap, which on a loaded machine is the figure that does not depend on
what else runs). The cluster is the embedded one in a
process of its own (``ptjaas cluster``), so its work is not in this process. Its pods are
KubeSpawner-shaped (labels, annotations, the hub's environment, ~5 KB of JSON each) and run a
container that exits at once (N real servers do not fit in this machine's memory), so the pod
list is as large as N running servers' and each pod has its four events.

The rest of a hub restart (JupyterHub's own start-up, its poll of every server, ptjaas's quota
ledger rebuild, which works in 20 ms slices: ``benchmarks/quota.py``) is not in these figures.
"""

import argparse
import asyncio
import gc
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from kubernetes_asyncio import client, config

HUB_ENV = {f"JUPYTERHUB_{k}": "x" * 40 for k in (
    "API_TOKEN", "CLIENT_ID", "HOST", "OAUTH_CALLBACK_URL", "OAUTH_SCOPES", "OAUTH_ACCESS_SCOPES",
    "OAUTH_CLIENT_ALLOWED_SCOPES", "USER", "SERVER_NAME", "API_URL", "ACTIVITY_URL", "BASE_URL",
    "SERVICE_PREFIX", "SERVICE_URL", "PUBLIC_URL", "PUBLIC_HUB_URL", "DEFAULT_URL", "ADMIN_ACCESS")}


def pod_manifest(i):
    user = f"user{i}"
    return {
        "metadata": {
            "name": f"jupyter-{user}",
            "labels": {"component": "singleuser-server", "app": "jupyterhub", "heritage": "jupyterhub",
                       "app.kubernetes.io/component": "singleuser-server", "app.kubernetes.io/name": "jupyterhub",
                       "app.kubernetes.io/managed-by": "kubespawner", "hub.jupyter.org/username": user,
                       "hub.jupyter.org/servername": "", "hub.jupyter.org/network-access-hub": "true",
                       "ptjaas.io/image": "python", "ptjaas.io/version": "2025.01", "ptjaas.io/size": "small"},
            "annotations": {"hub.jupyter.org/username": user, "hub.jupyter.org/servername": "",
                            "ptjaas.io/image-ref": "quay.io/jupyter/base-notebook:2025-11-24",
                            "ptjaas.io/quota-pool": "vision"},
        },
        "spec": {
            "restartPolicy": "Never", "automountServiceAccountToken": False, "enableServiceLinks": False,
            "securityContext": {"fsGroup": 100, "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "notebook", "image": "quay.io/jupyter/base-notebook:2025-11-24",
                "command": [sys.executable, "-S", "-c", "pass"],
                "env": [{"name": k, "value": v} for k, v in HUB_ENV.items()]
                + [{"name": "MEM_GUARANTEE", "value": "268435456"}, {"name": "CPU_GUARANTEE", "value": "0.1"}],
                "ports": [{"name": "notebook-port", "containerPort": 8888}],
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
                "securityContext": {"allowPrivilegeEscalation": False, "runAsUser": 1000, "runAsGroup": 100,
                                    "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "home", "mountPath": "/home/jovyan"}],
            }],
            "volumes": [{"name": "home", "emptyDir": {}}],
        },
    }


class LagProbe:
    """The longest time this event loop ran something else, from a task that sleeps 1 ms: wall
    clock (what a user waits; it includes time the OS gave other processes, on a loaded machine
    most of it) and CPU (the loop thread's own work in that gap, whatever the machine's load)."""

    def __init__(self, tick=0.001):
        self.tick, self.longest, self.longest_cpu, self._task = tick, 0.0, 0.0, None

    async def _run(self):
        while True:
            t, c = time.perf_counter(), time.thread_time()
            await asyncio.sleep(self.tick)
            self.longest = max(self.longest, time.perf_counter() - t - self.tick)
            self.longest_cpu = max(self.longest_cpu, time.thread_time() - c)

    def __enter__(self):
        self._task = asyncio.ensure_future(self._run())
        self.longest_gc, self._gc_began = 0.0, None
        gc.callbacks.append(self._gc)
        return self

    def __exit__(self, *exc):
        self._task.cancel()
        gc.callbacks.remove(self._gc)

    def _gc(self, phase, info):
        """The longest pause of Python's cyclic garbage collector meanwhile (part of a block)."""
        if phase == "start":
            self._gc_began = time.thread_time()
        elif self._gc_began is not None:
            self.longest_gc = max(self.longest_gc, time.thread_time() - self._gc_began)


def start_cluster(state_dir, n):
    """``ptjaas cluster`` in a process of its own; returns (process, kubeconfig path)."""
    nodes = f'[{{"name": "bench-node", "cpu": "1000", "memory": "4000Gi", "pods": {n + 100}}}]'
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "ptjaas"), "cluster", "--state-dir",
                             state_dir, "--nodes", nodes], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, start_new_session=True)
    for line in proc.stdout:
        if line.startswith("kubeconfig: "):
            return proc, line.split(": ", 1)[1].strip()
    raise RuntimeError("ptjaas cluster did not start")


async def fill(api, n):
    sem = asyncio.Semaphore(50)

    async def one(i):
        async with sem:
            await api.create_namespaced_pod("default", pod_manifest(i))

    await asyncio.gather(*(one(i) for i in range(n)))
    while True:  # every container has run and exited: the pods have their status and events
        pods = (await api.list_namespaced_pod("default", _preload_content=False))
        done = sum(1 for p in (await pods.json())["items"] if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"))
        if done >= n:
            return
        await asyncio.sleep(2)


async def measure(reflector_class, **kwargs):
    """(longest loop block: wall, CPU; seconds until the first list is in; objects) of one
    reflector start."""
    reflector = reflector_class(namespace="default", **kwargs)
    with LagProbe() as probe:
        await asyncio.sleep(0.05)
        t = time.perf_counter()
        await reflector.start()
        took = time.perf_counter() - t
        await asyncio.sleep(0.05)
    objects = len(reflector.resources)
    with LagProbe() as relist:  # what KubeSpawner's loop does at every watch restart
        await asyncio.sleep(0.05)
        await reflector._list_and_update()
        await asyncio.sleep(0.05)
    await reflector.stop()
    del reflector
    gc.unfreeze()  # ptjaas's first list froze the heap: each run starts from the same one
    gc.collect()
    return (probe.longest, probe.longest_cpu, took, objects, probe.longest_gc,
            relist.longest, relist.longest_cpu, relist.longest_gc)


async def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    load_before = os.getloadavg()
    state_dir = tempfile.mkdtemp(prefix="ptjaas-restart-bench-")
    proc, kubeconfig = start_cluster(os.path.join(state_dir, "k8s"), args.servers)
    try:
        await config.load_kube_config(kubeconfig)
        from kubespawner.spawner import EventReflector, PodReflector
        from ptjaas_spawner.watches import PagedPodReflector, PodEventReflector

        async with client.ApiClient() as api_client:
            await fill(client.CoreV1Api(api_client), args.servers)
        variants = {
            "pods: KubeSpawner": (PodReflector, {"labels": {"component": "singleuser-server"}}),
            "pods: ptjaas (paged)": (PagedPodReflector, {"labels": {"component": "singleuser-server"}}),
            "pod events: KubeSpawner": (EventReflector, {"fields": {"involvedObject.kind": "Pod"}}),
            "pod events: ptjaas (paged)": (PodEventReflector, {"fields": {"involvedObject.kind": "Pod"}}),
        }
        results = {name: [] for name in variants}
        for round_ in range(args.repeat):
            names = list(variants) if round_ % 2 == 0 else list(reversed(variants))
            for name in names:
                cls, kwargs = variants[name]
                results[name].append(await measure(cls, **kwargs))
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        shutil.rmtree(state_dir, ignore_errors=True)
    load_after = os.getloadavg()
    print(f"hub restart, {args.servers} servers in the namespace: the reflectors' first list in this process's "
          f"event loop; {args.repeat} runs each, alternating; {os.cpu_count()} cores, load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after")
    print(f"{'reflector':28s} {'objects':>8s} {'longest block, wall ms':>24s} {'longest block, CPU ms':>24s} "
          f"{'first list s':>13s} {'longest GC pause ms':>20s}   (median (min-max))")

    def cell(runs, i):
        ms = [r[i] * 1000 for r in runs]
        return f"{statistics.median(ms):.0f} ({min(ms):.0f}-{max(ms):.0f})"

    for name, runs in results.items():
        took = statistics.median(r[2] for r in runs)
        print(f"{name:28s} {runs[0][3]:8d} {cell(runs, 0):>24s} {cell(runs, 1):>24s} {took:13.2f} {cell(runs, 4):>20s}")
    print("then one relist (what the reflector's loop does at every watch restart):")
    for name, runs in results.items():
        print(f"{name:28s} {runs[0][3]:8d} {cell(runs, 5):>24s} {cell(runs, 6):>24s} {'':13s} {cell(runs, 7):>20s}")


if __name__ == "__main__":
    asyncio.run(main())
