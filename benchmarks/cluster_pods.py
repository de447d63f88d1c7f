"""Drive N pods through create -> Running (port answering) -> delete on the embedded cluster, with
the official asyncio client, and print per-step latency percentiles, throughput and the CPU time
the cluster (API server, controllers, node agent: the cluster's thread) spent per pod.

    ./dev run python benchmarks/cluster_pods.py --pods 200 --concurrency 50
    ./dev run python benchmarks/cluster_pods.py --pods 200 1000 2000   # a fresh cluster per size

CPU per pod should stay flat as N grows: every pod leaves events and log lines behind, so a
cluster whose work per change grows with what it holds shows here.

The container is a tiny Python TCP listener on 0.0.0.0:8888 (rewritten to the pod's own
loopback address), so what is measured is the cluster: API server, scheduler, node agent.
"""

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time

from kubernetes_asyncio import client, config, watch

from ptjaas_sandbox.cluster import EmbeddedCluster, NodeSpec

LISTENER = ("import socket,signal,sys;signal.signal(signal.SIGTERM,lambda *a:sys.exit(0));"
            "s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
            "s.bind(('0.0.0.0',8888));s.listen();[s.accept()[0].close() for _ in iter(int,1)]")


def pod_manifest(name):
    return {"metadata": {"name": name, "labels": {"app": "bench"}},
            "spec": {"terminationGracePeriodSeconds": 5,
                     "containers": [{"name": "c", "image": "bench:1", "command": [sys.executable, "-S", "-c", LISTENER],
                                     "ports": [{"containerPort": 8888}],
                                     "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}


def thread_cpu_seconds(native_id):
    """utime + stime of one thread of this process (from /proc)."""
    with open(f"/proc/self/task/{native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def port_answers(ip):
    try:
        _, w = await asyncio.wait_for(asyncio.open_connection(ip, 8888), 1)
        w.close()
        return True
    except (OSError, asyncio.TimeoutError):
        return False


async def run(api, pods, concurrency, namespace="default"):
    ready_at, gone_at, probing = {}, {}, {}
    ready_events = {f"bench-{i}": asyncio.Event() for i in range(pods)}
    gone_events = {f"bench-{i}": asyncio.Event() for i in range(pods)}

    async def watcher():
        w = watch.Watch()
        async for ev in w.stream(api.list_namespaced_pod, namespace, label_selector="app=bench", timeout_seconds=600):
            pod = ev["object"]
            name = pod.metadata.name
            if ev["type"] == "DELETED":
                gone_at.setdefault(name, time.monotonic())
                gone_events[name].set()
            elif any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or [])):
                if name not in probing:   # no more events may come for it: probe until the port answers
                    probing[name] = asyncio.ensure_future(probe(name, pod.status.pod_ip))
            if len(gone_at) == pods:
                return

    async def probe(name, ip):
        while not await port_answers(ip):
            await asyncio.sleep(0.05)
        ready_at[name] = time.monotonic()
        ready_events[name].set()

    watch_task = asyncio.ensure_future(watcher())
    sem = asyncio.Semaphore(concurrency)
    created, deleted = {}, {}

    async def cycle(i):
        name = f"bench-{i}"
        async with sem:
            created[name] = time.monotonic()
            await api.create_namespaced_pod(namespace, pod_manifest(name))
            await ready_events[name].wait()
            deleted[name] = time.monotonic()
            await api.delete_namespaced_pod(name, namespace)
            await gone_events[name].wait()

    start = time.monotonic()
    await asyncio.gather(*(cycle(i) for i in range(pods)))
    wall = time.monotonic() - start
    watch_task.cancel()
    to_ready = [ready_at[n] - created[n] for n in created]
    to_gone = [gone_at[n] - deleted[n] for n in deleted]
    return wall, to_ready, to_gone


def measure(pods, concurrency, no_namespaces, profile=False):
    load_before = os.getloadavg()
    state_dir = tempfile.mkdtemp(prefix="ptjaas-bench-")
    cluster = EmbeddedCluster(state_dir=state_dir,
                              nodes=[NodeSpec(cpu="64", memory="256Gi", pods=1000)],
                              mount_namespaces=False if no_namespaces else None)
    cluster.start_in_thread()
    tid = cluster._thread.native_id
    cpu0, cluster_cpu0 = time.process_time(), thread_cpu_seconds(tid)
    if profile:   # cProfile profiles the thread that enables it: the cluster's
        import cProfile
        profiler = cProfile.Profile()
        cluster.call(profiler.enable)

    async def go():
        await config.load_kube_config(cluster.kubeconfig_path)
        async with client.ApiClient() as api_client:
            return await run(client.CoreV1Api(api_client), pods, concurrency)

    try:
        wall, to_ready, to_gone = asyncio.run(go())
        cluster_cpu = thread_cpu_seconds(tid) - cluster_cpu0
        if profile:
            import pstats
            cluster.call(profiler.disable)
            stats = pstats.Stats(profiler)
            stats.sort_stats("tottime").print_stats(30)
            stats.sort_stats("cumulative").print_callers("deepcopy|_walk|_SSLSocket.*write|fork_exec")
    finally:
        stats = cluster.request_stats()
        cluster.stop_thread()
        shutil.rmtree(state_dir, ignore_errors=True)
    return {"pods": pods, "wall": wall, "to_ready": to_ready, "to_gone": to_gone, "requests": stats.get("total"),
            "cluster_cpu": cluster_cpu, "cpu": time.process_time() - cpu0, "load_before": load_before,
            "load_after": os.getloadavg()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, nargs="+", default=[200],
                        help="pods per run; several sizes: one fresh cluster each, and a CPU-per-pod table")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--no-namespaces", action="store_true",
                        help="as root: no private mount/PID namespaces per container (paths rewritten instead; "
                             "the pods' user, uid 1000, must then reach this Python environment)")
    parser.add_argument("--profile", action="store_true", help="print where the cluster's thread spent its time")
    args = parser.parse_args()
    results = []
    for pods in args.pods:
        r = measure(pods, args.concurrency, args.no_namespaces, args.profile)
        results.append(r)
        print(f"embedded cluster: {pods} pods, concurrency {args.concurrency}, {os.cpu_count()} cores "
              f"(load average before: {r['load_before'][0]:.1f}, after: {r['load_after'][0]:.1f})")
        print(f"  full cycle (create -> Running, port answering -> delete -> gone): {r['wall']:.1f} s wall, "
              f"{pods / r['wall']:.1f} pods/s")
        for label, values in (("create -> ready", r["to_ready"]), ("delete -> gone", r["to_gone"])):
            print(f"  {label:16s} p50 {pct(values, 50) * 1000:7.0f} ms   p90 {pct(values, 90) * 1000:7.0f} ms   "
                  f"p99 {pct(values, 99) * 1000:7.0f} ms   max {max(values) * 1000:7.0f} ms   "
                  f"mean {statistics.mean(values) * 1000:7.0f} ms")
        print(f"  API requests: {r['requests']}; CPU s: cluster thread {r['cluster_cpu']:.1f}, "
              f"this process (cluster + client) {r['cpu']:.1f}", flush=True)
    if len(results) > 1:
        print(f"{'pods':>6s} {'pods/s':>7s} {'cluster CPU ms/pod':>19s} {'process CPU ms/pod':>19s}")
        for r in results:
            print(f"{r['pods']:6d} {r['pods'] / r['wall']:7.1f} {r['cluster_cpu'] / r['pods'] * 1000:19.1f} "
                  f"{r['cpu'] / r['pods'] * 1000:19.1f}")


if __name__ == "__main__":
    main()
