"""N users starting at once through a real hub on the embedded cluster: ptjaas against plain
KubeSpawner, in the same run. Prints Kubernetes API requests per first start and per restart,
hub CPU time per start, and wall time until every server is ready.

    ./dev run python benchmarks/spawn.py --users 10
"""

import argparse
import os
import sys
import tempfile
import time

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


def measured_start(hub, cluster, users):
    """Start every user's server at once: (wall seconds, hub CPU seconds, cluster request counts)."""
    cluster.reset_request_stats()
    cpu0, t0 = hub_cpu_seconds(hub.proc.pid), time.monotonic()
    start_all(hub, users)
    return time.monotonic() - t0, hub_cpu_seconds(hub.proc.pid) - cpu0, cluster.request_stats()


def run_variant(name, config, n, workdir):
    cluster = EmbeddedCluster(state_dir=os.path.join(workdir, name, "k8s"),
                              nodes=[NodeSpec(cpu="64", memory="256Gi", pods=500)])
    cluster.start_in_thread()
    hub = Hub(os.path.join(workdir, name, "hub"), config, cluster=cluster, start_timeout=120)
    hub.set_config(config + "\nc.JupyterHub.log_level = 'INFO'\nc.JupyterHub.concurrent_spawn_limit = 0\n")
    hub.start()
    users = [f"user{i}" for i in range(n)]
    try:
        hub.api("POST", "/users", json={"usernames": users})
        wall_first, cpu_first, first = measured_start(hub, cluster, users)
        stop_all(hub, users)
        wait_for(lambda: not cluster.call(cluster.store.list, BY_PLURAL["pods"]), timeout=60,
                 message="every pod to be gone")
        wall_again, cpu_again, again = measured_start(hub, cluster, users)
        stop_all(hub, users)
    finally:
        hub.stop()
        cluster.stop_thread()
    return {"wall_first": wall_first, "wall_again": wall_again, "req_first": first["total"] / n,
            "req_again": again["total"] / n, "cpu_first": cpu_first / n, "cpu_again": cpu_again / n,
            "detail_first": {k: v for k, v in first.items() if k != "total"}}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--detail", action="store_true", help="print API requests by verb and resource")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="ptjaas-spawn-bench-")
    results = {name: run_variant(name, config, args.users, workdir) for name, config in VARIANTS.items()}
    print(f"{args.users} users starting at once through a real hub on the embedded cluster ({os.cpu_count()} cores)")
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
