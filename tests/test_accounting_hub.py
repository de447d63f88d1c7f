"""Accounting and time budgets through a real JupyterHub on the embedded cluster, with the
accounting's clock set by the test (a file the hub's clock reads; no sleeping): exact seconds
through a stop, a hub restart and a lost pod; a GPU-hour budget that warns, stops a running
server at 100 % + grace, refuses the next start and rolls over with the month; the usage page's
SVG, the user's own page, the CSV and the Prometheus counters carry the same totals."""

import csv
import io
import json
import os
import textwrap
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

import pytest
import requests

from tests import hubutil
from tests.clusterutil import ensure_snapshot_class
from tests.hubutil import failure_message, server, stop
from tests.pageparse import metric
from tests.waiting import wait_for

pytestmark = [pytest.mark.hub, pytest.mark.timeout(300)]

IMAGES = {"python": {"display_name": "Python", "versions": {"1": {"image": "example.org/py:1"}}}}
SIZES = {
    "small": {"display_name": "Small", "cpu_guarantee": 0.1, "cpu_limit": 1, "mem_guarantee": "64Mi", "mem_limit": "1Gi"},
    "gpu": {"display_name": "GPU", "cpu_guarantee": 0.5, "cpu_limit": 1, "mem_guarantee": "64Mi", "mem_limit": "1Gi",
            "gpu": 1},
}
CLOCK_FILE = "accounting-clock"
SNAPCLASS = "csi-local"


def ts(text):
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


@pytest.fixture(scope="module")
def hub(module_cluster, module_hub_factory):
    config = textwrap.dedent(
        f"""
        c.JupyterHub.spawner_class = "ptjaas"
        c.JupyterHub.load_groups = {{"vision": {{"users": ["alice", "bob"]}}, "people": {{"users": ["dora"]}}}}
        c.JupyterHub.extra_handlers = __import__("ptjaas_spawner.usagepages", fromlist=["x"]).usage_handlers
        c.JupyterHub.authenticate_prometheus = False
        c.Authenticator.admin_users = {{"boss"}}
        c.Spawner.poll_interval = 1
        c.PtjaasSpawner.images = {json.dumps(IMAGES)}
        c.PtjaasSpawner.sizes = {json.dumps(SIZES)}
        c.PtjaasSpawner.quota_groups = {{"vision": {{"gpu_hours": 200, "window": "month"}}}}
        c.PtjaasSpawner.quota_users = {{"dora": {{"gpu_hours": 1, "window": "month"}}}}
        c.PtjaasSpawner.accounting_check_interval = 0.2
        c.PtjaasSpawner.snapshot_classes = {{"standard": {SNAPCLASS!r}}}  # a budget stop snapshots the home first
        c.PtjaasSpawner.quota_time_grace = 600

        def _test_clock():
            with open({CLOCK_FILE!r}) as f:
                return float(f.read())

        c.PtjaasSpawner.accounting_clock = _test_clock
        # a site's own announcement stays; the budget banner (as fragment 40 adds it) follows it
        c.JupyterHub.template_vars = {{"announcement_home": "Maintenance on <b>Sunday</b>"}}
        from ptjaas_spawner.accounting.banner import install_budget_banner
        install_budget_banner(c)
        """
    )
    ensure_snapshot_class(module_cluster.kubeconfig_path, SNAPCLASS)
    h = module_hub_factory(config, cluster=module_cluster, start=False)
    set_clock(h, ts("2026-12-07T09:00:00"))
    return h.start()


@pytest.fixture(scope="module")
def kube(module_cluster):
    import kubernetes

    api_client = kubernetes.config.new_client_from_config(config_file=str(module_cluster.kubeconfig_path))
    yield kubernetes.client.CoreV1Api(api_client)
    api_client.close()


def set_clock(hub, t):
    path = os.path.join(hub.workdir, CLOCK_FILE)
    with open(path + ".new", "w") as f:
        f.write(repr(float(t)))
    os.replace(path + ".new", path)


def start_ready(hub, user, size):
    hubutil.start_ready(hub, user, {"image": "python", "size": size})


def runs(hub, user):
    """The user's runs as the record file holds them: [(start, end, reason, gpus, cpu)]."""
    out = {}
    with open(os.path.join(hub.workdir, "ptjaas-accounting.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if rec["event"] == "start" and rec["user"] == user:
                assert rec["id"] not in out
                out[rec["id"]] = [rec["start"], None, None, rec["gpus"], rec["cpu"]]
            elif rec["event"] == "end" and rec["id"] in out:
                assert out[rec["id"]][1] is None, "a run ended twice"
                out[rec["id"]][1:3] = [rec["end"], rec["reason"]]
    return sorted(tuple(v) for v in out.values())


def audit(hub, action, user):
    with open(os.path.join(hub.workdir, "ptjaas-audit.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["action"] == action and r["user"] == user]


def test_runs_are_accounted_exactly_through_stop_restart_and_a_lost_pod(hub, kube):
    t0 = ts("2026-12-07T10:00:00")
    set_clock(hub, t0)
    start_ready(hub, "alice", "gpu")
    set_clock(hub, t0 + 3600)
    stop(hub, "alice")
    set_clock(hub, t0 + 4000)
    start_ready(hub, "alice", "gpu")
    set_clock(hub, t0 + 5000)
    hub.restart()  # the server keeps running (cleanup_servers = False, as z2jh)
    set_clock(hub, t0 + 7000)
    start_ready(hub, "bob", "small")
    set_clock(hub, t0 + 7100)
    pod = server(hub, "bob")["state"]["pod_name"]
    kube.delete_namespaced_pod(pod, "default", grace_period_seconds=0)
    wait_for(lambda: server(hub, "bob") is None, timeout=60, message="the hub to find bob's pod gone")
    stop(hub, "alice")
    assert runs(hub, "alice") == [(t0, t0 + 3600, "stopped by test-admin", 1, 0.5),
                                  (t0 + 4000, t0 + 7100, "stopped by test-admin", 1, 0.5)]
    assert runs(hub, "bob") == [(t0 + 7000, t0 + 7100, "gone", 0, 0.1)]

    # the same totals on the admin page's SVG, the user's own page, the CSV and the metrics
    page = hub.session("boss").get(f"{hub.url}/hub/ptjaas/usage", timeout=30)
    assert page.status_code == 200
    gpu = svg_charts(page.text, "gpu_hours")
    assert gpu["alice"]["total"] == "1.86" and gpu["vision"]["total"] == "1.86"  # 6700 GPU-seconds
    assert gpu["alice"]["bars"]["2026-12-07"] == "1.86" and len(gpu["alice"]["bars"]) == 30
    assert svg_charts(page.text, "cpu_hours")["bob"]["total"] == "0"  # 10 CPU-seconds: 0.003 h
    me = hub.session("alice").get(f"{hub.url}/hub/ptjaas/usage/me", timeout=30)
    assert svg_charts(me.text, "gpu_hours")["alice"]["total"] == "1.86"
    assert "vision: 198 of 200 GPU-hours left this month" in me.text
    assert hub.session("alice").get(f"{hub.url}/hub/ptjaas/usage.csv", timeout=30).status_code == 403
    rows = list(csv.DictReader(io.StringIO(hub.session("boss").get(f"{hub.url}/hub/ptjaas/usage.csv", timeout=30).text)))
    assert sorted((r["user"], r["gpu_hours"], r["end_reason"]) for r in rows) == [
        ("alice", "0.8611", "stopped by test-admin"), ("alice", "1.0000", "stopped by test-admin"),
        ("bob", "0.0000", "gone")]
    metrics = requests.get(f"{hub.url}/hub/metrics", timeout=30).text
    assert metric(metrics, "ptjaas_cpu_seconds_total", user="bob", team="vision", size="small") == pytest.approx(10)


def svg_charts(html, resource):
    """{name: {"total", "bars": {day: hours}}} of the page's SVG charts of ``resource``."""
    out = {}
    for chunk in html.split("<svg ")[1:]:
        root = ET.fromstring("<svg " + chunk.split("</svg>")[0] + "</svg>")
        if root.get("data-resource") != resource:
            continue
        bars = {r.get("data-day"): r.get("data-hours") for r in root.iter("{http://www.w3.org/2000/svg}rect")}
        out[root.get("data-name")] = {"total": root.get("data-total"), "bars": bars}
    return out


def test_a_gpu_hour_budget_warns_stops_refuses_and_rolls_over(hub):
    t = ts("2026-12-20T10:00:00")
    set_clock(hub, t)
    start_ready(hub, "dora", "gpu")
    set_clock(hub, t + 3240)  # 0.9 GPU-hours of 1
    wait_for(lambda: audit(hub, "server-budget-warning", "dora"), timeout=30, message="the 90 % warning")
    me = hub.session("dora").get(f"{hub.url}/hub/ptjaas/usage/me", timeout=30).text
    assert "you: 0.1 of 1 GPU-hours left this month" in me and "servers are stopped at the limit" in me
    # the warning is a banner on the hub's pages she sees (home too), after the site's announcement
    def banner(user, page):
        html = hub.session(user).get(f"{hub.url}/hub/{page}", timeout=30).text
        found = [d for d in html.split('<div class="container text-center announcement')[1:]]
        return found[0].split("</div>")[0] if found else ""

    home = banner("dora", "home")
    assert "Maintenance on <b>Sunday</b><br>" in home, home
    assert ("warning: you: 0.1 of 1 GPU-hours left this month, servers are stopped at the limit"
            in home), home
    assert "GPU-hours left" in banner("dora", "token") and "GPU-hours left" not in banner("alice", "home")
    assert "Maintenance on <b>Sunday</b>" in banner("alice", "home")
    set_clock(hub, t + 3600 + 600)  # 100 % + the 600 s grace
    wait_for(lambda: runs(hub, "dora") == [(t, t + 4200, "budget", 1, 0.5)], timeout=60,
             message=f"dora's server stopped by its budget ({runs(hub, 'dora')})")
    wait_for(lambda: server(hub, "dora") is None, timeout=60, message="the stop to finish")
    assert "1 GPU-hours" in audit(hub, "server-budget-stop", "dora")[0]["message"]
    # snapshots are on: her home was snapshotted (reason budget) before the stop
    (snap,) = audit(hub, "snapshot-take", "dora")
    assert (snap["by"], snap["reason"], snap["claim"]) == ("ptjaas-budget", "budget", "claim-dora"), snap
    with open(os.path.join(hub.workdir, "ptjaas-audit.jsonl")) as f:
        actions = [r["action"] for r in map(json.loads, f) if r["user"] == "dora"]
    decided = actions.index("server-budget-stop")
    assert actions[decided + 1:].index("snapshot-take") < actions[decided + 1:].index("server-stop"), actions

    r = hubutil.start(hub, "dora", {"image": "python", "size": "gpu"})
    msg = r.text if r.status_code >= 400 else failure_message(hub, "dora")
    assert ("Your GPU-hours budget is used up: 1.2 of 1 GPU-hours this month, 0 left. "
            "It frees up at 2027-01-01 00:00 UTC.") in msg, msg
    assert audit(hub, "refused-quota", "dora")
    form = hub.session("dora").get(f"{hub.url}/hub/spawn", timeout=30).text
    assert "you: 0 of 1 GPU-hours left this month" in form
    set_clock(hub, ts("2027-01-01T00:00:01"))  # a new month: the budget is whole again
    start_ready(hub, "dora", "gpu")
    stop(hub, "dora")
