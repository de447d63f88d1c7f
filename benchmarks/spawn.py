"""N users starting at once through a real hub on the embedded cluster: ptjaas against plain
KubeSpawner and against KubeSpawner as z2jh runs it, in the same run. Per phase (first start,
restart, one steady period with every server running) it prints the Kubernetes API requests by
verb (the lists by resource), the hub's CPU time and RSS, the API server's CPU time, the starts
the hub lost, and ptjaas's hub CPU as a ratio over each other spawner's.

The spawners (``--variants``): ``kubespawner`` is plain KubeSpawner with six settings in a hub
with nothing else; ``z2jh-kubespawner`` is KubeSpawner through z2jh's own hub config with the
chart's default values (what a team running KubeSpawner on Kubernetes has: z2jh's settings of
KubeSpawner, ``last_activity_interval`` 60, the idle-culler service); ``ptjaas`` is ptjaas with
the production values, through the same z2jh hub config and our fragments.

    ./dev run python benchmarks/spawn.py --users 8
    ./dev run python benchmarks/spawn.py --users 200 --bind-delay 2 --steady 0   # issue 21's run
    ./dev run python benchmarks/spawn.py --users 64 --steady 0 --runs 1   # the 3 s API timeout question
    ./dev run python benchmarks/spawn.py --users 10 --backend real

Each spawner runs ``--runs`` times (3 by default), alternating which goes first, each run on a
fresh cluster and hub; the tables print the median and the spread (min-max) over the runs. The
phases are first start, stop, restart, stop, and a steady period (``--steady``). ptjaas runs with
the production values (``helm-values/values.yaml`` + ``values-gpu.yaml`` + ``values-teams.yaml``,
loaded through ``jupyterhub_config.d/`` as z2jh's hub loads them, with the demo overlay's local
settings): quotas, teams, snapshots, the audit record and the culler on; ``--bare-ptjaas`` runs
it with only a catalog instead. Both spawners get the same ``concurrent_spawn_limit`` (the
production values' 20 unless ``--spawn-limit``). ``--bind-delay S`` makes the embedded (or the
real cluster's) volume provisioner take S seconds per new claim, as a CSI driver does.

How "at once" is real: the hub runs with ``slow_spawn_timeout = 0``, so each ``POST /users/{name}/server``
answers 202 as soon as the spawn is started (otherwise it blocks up to 10 s and a loop of POSTs starts
the servers one after another); the POSTs are sent from a thread pool. A POST refused with 429
(``concurrent_spawn_limit``) is sent again after its ``Retry-After``, as a browser's page does.
Readiness is read with one request per second for everybody (the hub's own ``/hub/metrics``: spawns
ended, by outcome), so the hub's CPU is the hub's work, not the benchmark's polling.

Servers (``--server``): ``real`` is jupyterhub-singleuser (4-6 CPU-s each to start, the default up to
64 users); ``light`` is a benchmark-only stand-in (the default above 64 users) so that a 2-core machine
can reach 1,000 users through the real hub: a ~15 MB stdlib HTTP server on the pod's port 8888 that
answers every GET with 200, which is all the hub's readiness check needs. It does not report activity
and serves no notebooks: the figures it gives are the hub's and the cluster's, not JupyterLab's.

With ``--backend real`` the hubs run against a real kube-apiserver (ptjaas_sandbox.realkube) with
exactly z2jh's hub rights plus ours, and the requests are counted from its audit log (every request
of the hub's ServiceAccount); the API server's CPU is then that of the kube-apiserver process.
The embedded cluster's CPU is its thread's in this process (API server, controllers, node agent; the
pods' own processes are not in it).
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))  # the test helpers (tests/ is not installed)

from ptjaas_sandbox.cluster import EmbeddedCluster, NodeSpec  # noqa: E402
from ptjaas_sandbox.cluster.resources import BY_PLURAL  # noqa: E402

from tests.hubutil import Hub  # noqa: E402
from tests.waiting import wait_for  # noqa: E402

from spawnhubs import (LIGHT_CONFIG, PRODUCTION_VALUES, VARIANTS, production_hub, profile_config,  # noqa: E402
                       z2jh_kubespawner_hub)

REAL_SERVER_MAX = 64


def proc_cpu_seconds(pid, task=None):
    """utime + stime of a process (or of one of its threads), from /proc."""
    path = f"/proc/{pid}/task/{task}/stat" if task else f"/proc/{pid}/stat"
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def count(hub, state):
    """How many users' servers are active (pending or ready), in one small request."""
    r = hub.api("GET", f"/users?state={state}&limit=1",
                headers={"Accept": "application/jupyterhub-pagination+json"}, timeout=60)
    r.raise_for_status()
    return r.json()["_pagination"]["total"]


REFUSALS = ("throttled", "too-many-users", "already-pending")   # a POST answered 429: not a start


def spawn_outcomes(hub):
    """{"success": n, "failed": n} spawns ended so far, from the hub's own metrics (one request,
    whatever the number of users): ``success`` once a server answers; a start that failed or
    timed out is ``failure``/``error``."""
    r = requests.get(f"{hub.url}/hub/metrics", headers={"Authorization": f"token {hub.token}"}, timeout=60)
    r.raise_for_status()
    outcomes = {"success": 0, "failed": 0}
    for line in r.text.splitlines():
        if line.startswith("jupyterhub_server_spawn_duration_seconds_count{"):
            status = line.split('status="', 1)[1].split('"', 1)[0]
            reason = line.split('reason="', 1)[1].split('"', 1)[0] if 'reason="' in line else ""
            if reason in REFUSALS:
                continue
            outcomes["success" if status == "success" else "failed"] += float(line.rsplit(" ", 1)[1])
    return outcomes


def post_start(hub, user):
    """Start one server; a 429 (concurrent_spawn_limit) is retried after its Retry-After.
    Returns how many times the hub said 429."""
    refused = 0
    while True:
        r = hub.api("POST", f"/users/{user}/server", json={}, timeout=120)
        if r.status_code in (201, 202):
            return refused
        if r.status_code == 429:
            refused += 1
            time.sleep(float(r.headers.get("Retry-After") or 5))
            continue
        raise RuntimeError(f"starting {user}: {r.status_code} {r.text[:300]}")


def start_all(hub, users, timeout):
    """Every start POSTed at once; then wait (one request a second) until each has succeeded or
    failed. Returns (servers ready, starts failed, 429 answers)."""
    before = spawn_outcomes(hub)
    with ThreadPoolExecutor(max_workers=min(64, len(users))) as pool:
        refused = sum(pool.map(lambda u: post_start(hub, u), users))
    deadline = time.monotonic() + timeout
    while True:
        now = spawn_outcomes(hub)
        ready = now["success"] - before["success"]
        failed = now["failed"] - before["failed"]
        if ready + failed >= len(users) or time.monotonic() > deadline:
            return int(ready), int(failed), refused
        time.sleep(1)


def stop_all(hub, users):
    with ThreadPoolExecutor(max_workers=min(32, len(users))) as pool:
        list(pool.map(lambda u: hub.api("DELETE", f"/users/{u}/server", timeout=120), users))
    wait_for(lambda: count(hub, "active") == 0, timeout=600, interval=1, message="every server to stop")


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
                key = (e["verb"], e["objectRef"].get("resource"))
                stats[key] = stats.get(key, 0) + 1
                stats["total"] += 1
        return stats

    def _events(self, marker):
        with open(self.backend.audit_log_path) as f:
            f.seek(self.offset)
            events = [json.loads(line) for line in f if line.strip()]
        return events if any(marker in e.get("requestURI", "") for e in events) else None


def by_verb(stats):
    """{verb: requests}, and {"list <resource>": requests} for the lists (which watch relists)."""
    verbs = {}
    for key, n in stats.items():
        if key != "total":
            verb, resource = key if isinstance(key, tuple) else (str(key).split() + [""])[:2]
            verbs[verb] = verbs.get(verb, 0) + n
            if verb == "list":
                verbs[f"list {resource}"] = verbs.get(f"list {resource}", 0) + n
    return verbs


class Meters:
    """CPU of the hub and of the API server, the hub's RSS, and the API requests, over one phase."""

    def __init__(self, hub, counter, api_cpu):
        self.hub, self.counter, self.api_cpu = hub, counter, api_cpu

    def begin(self):
        self.counter.reset_request_stats()
        self.t0, self.hub0, self.api0 = time.monotonic(), proc_cpu_seconds(self.hub.proc.pid), self.api_cpu()

    def end(self, **more):
        stats = self.counter.request_stats()
        return dict(more, wall=time.monotonic() - self.t0, hub_cpu=proc_cpu_seconds(self.hub.proc.pid) - self.hub0,
                    api_cpu=self.api_cpu() - self.api0, hub_rss=rss_mib(self.hub.proc.pid),
                    requests=stats.get("total", 0), verbs=by_verb(stats))


def pods_left(cluster):
    if getattr(cluster, "real", False):
        return cluster.cluster.plane.api("GET", f"/api/v1/namespaces/{cluster.namespace}/pods")["items"]
    return cluster.call(cluster.store.list, BY_PLURAL["pods"])


def hub_log_counts(hub):
    text = hub.logs()
    return {"pod create attempts": text.count("Attempting to create pod"),
            "gave up creating (API timeouts)": text.count("Could not create pod") + text.count("Could not create PVC"),
            "start_timeout reached": text.count("failed to start in")}


def run_variant(name, config, args, workdir, real=None):
    n = args.users
    if real is not None:
        from ptjaas_sandbox.hubrights import HubBackend
        from ptjaas_sandbox.realkube import shared_dir
        cluster = HubBackend(real, f"bench-{name}-{uuid.uuid4().hex[:6]}", shared_dir() / "charts" / "jupyterhub")
        counter = AuditCounter(cluster)
        api_pid = real.plane.procs["kube-apiserver"].pid
        api_cpu = lambda: proc_cpu_seconds(api_pid)  # noqa: E731
        real.provisioner.bind_delay = args.bind_delay
    else:
        cluster = counter = EmbeddedCluster(state_dir=os.path.join(workdir, name, "k8s"), bind_delay=args.bind_delay,
                                            nodes=[NodeSpec(cpu="1000", memory="4000Gi", pods=max(500, 2 * n))])
        cluster.start_in_thread()
        tid = cluster._thread.native_id
        api_cpu = lambda: proc_cpu_seconds(os.getpid(), tid)  # noqa: E731
    extra = ("\nc.JupyterHub.log_level = 'INFO'\nc.JupyterHub.tornado_settings = {'slow_spawn_timeout': 0}\n"
             + f"c.JupyterHub.concurrent_spawn_limit = {args.spawn_limit}\n"
             + (LIGHT_CONFIG if args.server == "light" else ""))
    if args.profile_hub:
        os.makedirs(args.profile_hub, exist_ok=True)
        extra += profile_config(os.path.join(os.path.abspath(args.profile_hub), f"{name}-{uuid.uuid4().hex[:6]}.prof"))
    hub = Hub(os.path.join(workdir, name, "hub"), config, cluster=cluster, start_timeout=120,
              env={"POD_NAMESPACE": getattr(cluster, "namespace", "default")})
    hub.set_config(config + extra)
    if name == "ptjaas" and not args.bare_ptjaas:
        production_hub(hub, args)
    elif name == "z2jh-kubespawner":
        z2jh_kubespawner_hub(hub, args)
    hub.start()
    meters = Meters(hub, counter, api_cpu)
    users = [f"user{i}" for i in range(n)]
    phases = {}
    try:
        hub.api("POST", "/users", json={"usernames": users}, timeout=300)
        meters.begin()
        ready, failed, refused = start_all(hub, users, args.timeout)
        phases["first start"] = meters.end(ready=ready, failed=failed, refused=refused, **hub_log_counts(hub))
        if args.steady:
            meters.begin()
            time.sleep(args.steady)   # a benchmark's measured period, not synchronisation
            phases[f"steady {args.steady:.0f} s"] = meters.end(ready=count(hub, "active"), failed=0, refused=0)
        meters.begin()
        stop_all(hub, users)
        wait_for(lambda: not pods_left(cluster), timeout=300, interval=1, message="every pod to be gone")
        phases["stop"] = meters.end(ready=0, failed=0, refused=0)
        if args.restart:
            meters.begin()
            ready, failed, refused = start_all(hub, users, args.timeout)
            phases["restart"] = meters.end(ready=ready, failed=failed, refused=refused)
            stop_all(hub, users)
    finally:
        hub.stop()
        if real is None:
            cluster.stop_thread()
            shutil.rmtree(os.path.join(workdir, name, "k8s"), ignore_errors=True)
    return phases


def _spread(values, fmt):
    """median (min-max) of one figure over the runs."""
    values = sorted(values)
    med = statistics.median(values)
    if len(values) == 1 or values[0] == values[-1]:
        return fmt(med)
    return f"{fmt(med)} ({fmt(values[0])}-{fmt(values[-1])})"


def report(results, n):
    """``results``: {variant: [phases of run 1, run 2, ...]}; prints median (min-max) per figure."""
    names = list(results)
    phases = list(results[names[0]][0])
    width = 26
    print(f"{'':34s}" + "".join(f"{name:>{width}s}" for name in names))
    for phase in phases:
        print(f"--- {phase} ---")

        def row(label, get, fmt):
            cells = [_spread([get(run[phase]) for run in results[name]], fmt) for name in names]
            print(f"{label:34s}" + "".join(f"{c:>{width}s}" for c in cells))

        row("servers ready", lambda r: r["ready"], lambda v: f"{v:.0f}/{n}")
        row("starts failed", lambda r: r["failed"], lambda v: f"{v:.0f}")
        row("wall s", lambda r: r["wall"], lambda v: f"{v:.1f}")
        row("429 answers (spawn limit)", lambda r: r["refused"], lambda v: f"{v:.0f}")
        row("API requests per user", lambda r: r["requests"] / n, lambda v: f"{v:.2f}")
        verbs = sorted({v for name in names for run in results[name] for v in run[phase]["verbs"]})
        for verb in verbs:
            label = f"    {verb}" if " " in verb else f"  {verb} per user"
            row(label, (lambda v: lambda r: r["verbs"].get(v, 0) / n)(verb), lambda v: f"{v:.2f}")
        row("hub CPU ms per user", lambda r: r["hub_cpu"] / n * 1000, lambda v: f"{v:.0f}")
        row("hub RSS MiB (end)", lambda r: r["hub_rss"], lambda v: f"{v:.0f}")
        row("API server CPU s", lambda r: r["api_cpu"], lambda v: f"{v:.1f}")
        if "pod create attempts" in results[names[0]][0][phase]:
            for key in ("pod create attempts", "gave up creating (API timeouts)", "start_timeout reached"):
                row(key, (lambda k: lambda r: r.get(k, 0))(key), lambda v: f"{v:.0f}")
    if "ptjaas" in names and len(names) > 1:
        print("hub CPU per user, ptjaas's median over each other's (the issue 21 goal: 1.1 at most)")
        for phase in phases:
            mine = statistics.median(run[phase]["hub_cpu"] for run in results["ptjaas"])
            others = [f"{mine / statistics.median(run[phase]['hub_cpu'] for run in results[name]):.2f}x {name}"
                      for name in names if name != "ptjaas"]
            print(f"  {phase:32s}" + ", ".join(others))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--server", choices=("real", "light"), default=None,
                        help=f"single-user server: real jupyterhub-singleuser (default up to {REAL_SERVER_MAX} users) "
                             "or the benchmark-only light stand-in (default above)")
    parser.add_argument("--steady", type=float, default=60, help="seconds of the steady phase (0: none)")
    parser.add_argument("--no-restart", dest="restart", action="store_false", help="skip the restart phase")
    parser.add_argument("--spawn-limit", type=int, default=20,
                        help="c.JupyterHub.concurrent_spawn_limit of both hubs (default: helm-values/values.yaml's "
                             "20; JupyterHub's own default is 100, z2jh's 64)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each spawner, alternating the order")
    parser.add_argument("--bind-delay", type=float, default=0.0,
                        help="seconds the volume provisioner takes per new claim (a CSI driver: a few)")
    parser.add_argument("--bare-ptjaas", action="store_true",
                        help="ptjaas with only a catalog (quotas, teams, snapshots, audit, culler off), "
                             "instead of the production values")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for the starts of one phase")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--backend", choices=("embedded", "real"), default="embedded",
                        help="the embedded cluster, or a real kube-apiserver (requests counted from its audit log)")
    parser.add_argument("--profile-hub", metavar="DIR",
                        help="profile each hub's event-loop thread with cProfile from start to exit (slows it: "
                             "do not compare its CPU figures) and write <variant>-<id>.prof files to DIR")
    args = parser.parse_args()
    if args.server is None:
        args.server = "real" if args.users <= REAL_SERVER_MAX else "light"
    workdir = tempfile.mkdtemp(prefix="ptjaas-spawn-bench-")
    real = None
    if args.backend == "real":
        from ptjaas_sandbox.cluster.server import NodeSpec as Node
        from ptjaas_sandbox.realkube import RealCluster
        real = RealCluster(os.path.join(workdir, "realkube"), nodes=[Node(cpu="64", memory="256Gi", pods=500)]).start()
    load_before = os.getloadavg()
    results = {name: [] for name in args.variants}
    try:
        for run in range(args.runs):
            order = args.variants if run % 2 == 0 else list(reversed(args.variants))
            for name in order:
                print(f"run {run + 1}/{args.runs}: {name} (load average {os.getloadavg()[0]:.1f})", flush=True)
                results[name].append(run_variant(name, VARIANTS[name], args, os.path.join(workdir, f"run{run}"), real))
    finally:
        if real is not None:
            real.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    load_after = os.getloadavg()
    where = "a real kube-apiserver (audit log)" if real is not None else "the embedded cluster"
    ptjaas = "a catalog only" if args.bare_ptjaas else "the production values (" + " + ".join(PRODUCTION_VALUES) + ")"
    print(f"{args.users} users starting at once through a real hub on {where}; {args.server} single-user servers; "
          f"concurrent_spawn_limit {args.spawn_limit}; bind delay {args.bind_delay:g} s; ptjaas with {ptjaas}; "
          f"{args.runs} runs each, alternating, median (min-max); {os.cpu_count()} cores, load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after")
    report(results, args.users)


if __name__ == "__main__":
    main()
