"""N users starting at once through a real hub on the embedded cluster: ptjaas against plain
KubeSpawner, in the same run. Prints Kubernetes API requests per first start and per restart,
hub CPU time per start, and wall time until every server is ready.

    ./dev run python benchmarks/spawn.py --users 10
    ./dev run python benchmarks/spawn.py --users 10 --backend real

With ``--backend real`` the hubs run against a real kube-apiserver (ptjaas_sandbox.realkube) with
exactly z2jh's hub rights plus ours, and the requests are counted from its audit log (every
request of the hub's ServiceAccount).
"""

import argparse
import json
import os
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from ptjaas_sandbox.cluster import EmbeddedCluster, NodeSpec  # noqa: E402
from ptjaas_sandbox.cluster.resources import BY_PLURAL  # noqa: E402

from hubutil import Hub  # noqa: E402
from waiting import wait_for  # noqa: E402

VARIANTS = {
    "kubespawner": """
c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
c.KubeSpawner.storage_pvc_ensure = True
c.KubeSpawner.storage_capacity = "10Gi"
c.KubeSpawner.volumes = [{"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}]
c.KubeSpawner.volume_mounts = [{"name": "home", "mountPath": "/home/jovyan"}]
c.KubeSpawner.cpu_guarantee = 0.1
c.KubeSpawner.mem_guarantee = "256M"
""",
    "ptjaas": """
c.JupyterHub.spawner_class = "ptjaas"
c.PtjaasSpawner.images = {"base": {"display_name": "Base", "versions": {
    "1": {"image": "quay.io/jupyter/base-notebook:2025-11-24", "default": True}}}}
c.PtjaasSpawner.sizes = {"small": {"display_name": "Small", "cpu_guarantee": 0.1, "cpu_limit": 1,
                                   "mem_guarantee": "256Mi", "mem_limit": "1Gi"}}
""",
}


def hub_cpu_seconds(pid):
    """utime + stime of the hub process and its reaped children (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def start_all(hub, users):
    for u in users:
        r = hub.api("POST", f"/users/{u}/server", json={})
        assert r.status_code in (201, 202), r.text
    for u in users:
        hub.wait_ready(u, timeout=300)


def stop_all(hub, users):
    for u in users:
        hub.api("DELETE", f"/users/{u}/server")
    for u in users:
        hub.wait_stopped(u, timeout=120)


class AuditCounter:
    """Request counts of the hub's account on a real API server, from its audit log: the same
    interface as the embedded cluster's request statistics."""

    def __init__(self, backend):
        self.backend = backend
        self.offset = 0

    def reset_request_stats(self):
        self.offset = os.path.getsize(self.backend.audit_log_path)

    def request_stats(self):
        # the log is written in batches, in order: once a marker request is in, so is all before it
        marker = f"bench-marker-{uuid.uuid4().hex[:8]}"
        try:
            self.backend.cluster.plane.api("GET", f"/api/v1/namespaces/{self.backend.namespace}/configmaps/{marker}")
        except Exception:
            pass
        events = wait_for(lambda: self._events(marker), timeout=30, message="the audit log to catch up")
        stats = {"total": 0}
        for e in events:
            if e.get("user", {}).get("username") == self.backend.account and e.get("stage") == "ResponseComplete":
                key = f'{e["verb"]} {e["objectRef"].get("resource")}'
                stats[key] = stats.get(key, 0) + 1
                stats["total"] += 1
        return stats

    def _events(self, marker):
        with open(self.backend.audit_log_path) as f:
            f.seek(self.offset)
            events = [json.loads(line) for line in f if line.strip()]
        return events if any(marker in e.get("requestURI", "") for e in events) else None


def measured_start(hub, cluster, users):
    """Start every user's server at once: (wall seconds, hub CPU seconds, cluster request counts)."""
    cluster.reset_request_stats()
    cpu0, t0 = hub_cpu_seconds(hub.proc.pid), time.monotonic()
    start_all(hub, users)
    return time.monotonic() - t0, hub_cpu_seconds(hub.proc.pid) - cpu0, cluster.request_stats()


def pods_left(cluster):
    if getattr(cluster, "real", False):
        return cluster.cluster.plane.api("GET", f"/api/v1/namespaces/{cluster.namespace}/pods")["items"]
    return cluster.call(cluster.store.list, BY_PLURAL["pods"])


def run_variant(name, config, n, workdir, real=None):
    if real is not None:
        from ptjaas_sandbox.hubrights import HubBackend
        from ptjaas_sandbox.realkube import shared_dir
        cluster = HubBackend(real, f"bench-{name}", shared_dir() / "charts" / "jupyterhub")
        counter = AuditCounter(cluster)
    else:
        cluster = counter = EmbeddedCluster(state_dir=os.path.join(workdir, name, "k8s"),
                                            nodes=[NodeSpec(cpu="64", memory="256Gi", pods=500)])
        cluster.start_in_thread()
    hub = Hub(os.path.join(workdir, name, "hub"), config, cluster=cluster, start_timeout=120)
    hub.set_config(config + "\nc.JupyterHub.log_level = 'INFO'\nc.JupyterHub.concurrent_spawn_limit = 0\n")
    hub.start()
    users = [f"user{i}" for i in range(n)]
    try:
        hub.api("POST", "/users", json={"usernames": users})
        wall_first, cpu_first, first = measured_start(hub, counter, users)
        stop_all(hub, users)
        wait_for(lambda: not pods_left(cluster), timeout=60, message="every pod to be gone")
        wall_again, cpu_again, again = measured_start(hub, counter, users)
        stop_all(hub, users)
    finally:
        hub.stop()
        if real is None:
            cluster.stop_thread()
    return {"wall_first": wall_first, "wall_again": wall_again, "req_first": first["total"] / n,
            "req_again": again["total"] / n, "cpu_first": cpu_first / n, "cpu_again": cpu_again / n,
            "detail_first": {k: v for k, v in first.items() if k != "total"}}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--detail", action="store_true", help="print API requests by verb and resource")
    parser.add_argument("--backend", choices=("embedded", "real"), default="embedded",
                        help="the embedded cluster, or a real kube-apiserver (requests counted from its audit log)")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="ptjaas-spawn-bench-")
    real = None
    if args.backend == "real":
        from ptjaas_sandbox.cluster.server import NodeSpec as Node
        from ptjaas_sandbox.realkube import RealCluster
        real = RealCluster(os.path.join(workdir, "realkube"), nodes=[Node(cpu="64", memory="256Gi", pods=500)]).start()
    try:
        results = {name: run_variant(name, config, args.users, workdir, real) for name, config in VARIANTS.items()}
    finally:
        if real is not None:
            real.stop()
    where = "a real kube-apiserver (audit log)" if real is not None else "the embedded cluster"
    print(f"{args.users} users starting at once through a real hub on {where} ({os.cpu_count()} cores)")
    print(f"{'':38s}{'kubespawner':>14s}{'ptjaas':>14s}")
    rows = [("API requests per first start", "req_first", "{:.1f}"), ("API requests per restart", "req_again", "{:.1f}"),
            ("hub CPU s per first start", "cpu_first", "{:.3f}"), ("hub CPU s per restart", "cpu_again", "{:.3f}"),
            ("wall s to all ready (first)", "wall_first", "{:.1f}"), ("wall s to all ready (restart)", "wall_again", "{:.1f}")]
    for label, key, fmt in rows:
        print(f"{label:38s}{fmt.format(results['kubespawner'][key]):>14s}{fmt.format(results['ptjaas'][key]):>14s}")
    if args.detail:
        for name, r in results.items():
            print(name, r["detail_first"])


if __name__ == "__main__":
    main()
