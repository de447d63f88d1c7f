"""The quota ledger's running totals, the gauges that follow it, and its rebuild from the pods
KubeSpawner's reflector holds: incremental results equal a from-scratch recount."""

import asyncio
import logging
import random

import pytest

from ptjaas_spawner.quota import metrics
from ptjaas_spawner.quota.budget import ZERO, Amount, Ledger, QuotaPolicy, decide
from ptjaas_spawner.quota.ledger import Charge
from ptjaas_spawner.quota.mixin import rebuild_ledger
from ptjaas_spawner.quota.reconcile import gone_charges

USERS = ["ann", "bob", "cy"]
SERVERS = ["", "a", "b"]
POOLS = [None, "gt-vision", "gt-nlp"]
# CPU amounts whose float sums are not exact (0.1 + 0.2 != 0.3)
AMOUNTS = [Amount(1, 0.1, 2**30), Amount(0, 0.2, 3 * 2**29), Amount(2, 1.5, 0), Amount(0, 0.3, 10**9),
           Amount(4, 0.05, 2**33)]


def recount(charges, user=None, pool=None, exclude=None) -> Amount:
    total = ZERO
    for c in charges:
        if (c.user, c.server) != exclude and (user is None or c.user == user) and (pool is None or c.pool == pool):
            total = total + c.amount
    return total


def assert_same(got: Amount, want: Amount):
    assert (got.gpus, got.memory, got.servers) == (want.gpus, want.memory, want.servers)
    assert got.cpu == pytest.approx(want.cpu, abs=1e-9)


def check(ledger: Ledger, rnd: random.Random):
    charges = list(ledger.charges.values())
    keys = sorted(ledger.charges)
    probes = [None, rnd.choice(keys)] if keys else [None]
    for exclude in probes:
        for u in USERS:
            assert_same(ledger.user_usage(u, exclude=exclude), recount(charges, user=u, exclude=exclude))
            assert [(c.user, c.server) for c in ledger.holders(user=u, exclude=exclude)] == [
                k for k in keys if k[0] == u and k != exclude]
        for p in POOLS[1:]:
            assert_same(ledger.pool_usage(p, exclude=exclude), recount(charges, pool=p, exclude=exclude))
            assert [(c.user, c.server) for c in ledger.holders(pool=p, exclude=exclude)] == [
                k for k in keys if ledger.charges[k].pool == p and k != exclude]
            assert [(c.user, c.server) for c in ledger.holders(pool=p, user="ann", exclude=exclude)] == [
                k for k in keys if ledger.charges[k].pool == p and k[0] == "ann" and k != exclude]
    assert [(c.user, c.server) for c in ledger.holders()] == keys


def random_ops(rnd, n):
    for _ in range(n):
        op = rnd.choices(["add", "remove", "clear"], weights=[6, 4, 0.05])[0]
        user, server = rnd.choice(USERS), rnd.choice(SERVERS)
        if op == "add":  # a new charge, or a replacement with another amount and pool
            yield op, Charge(user, server, rnd.choice(AMOUNTS), rnd.choice(POOLS), rnd.choice(["s", "gpu", ""]))
        else:
            yield op, (user, server)


@pytest.mark.parametrize("seed", range(5))
def test_running_totals_equal_a_recount_after_any_sequence(seed):
    rnd = random.Random(seed)
    ledger = Ledger()
    for op, arg in random_ops(rnd, 400):
        if op == "add":
            old = ledger.get(arg.user, arg.server)
            assert ledger.add(arg) is old
        elif op == "remove":
            old = ledger.get(*arg)
            assert ledger.remove(*arg) is old
        else:
            ledger.clear()
        check(ledger, rnd)
    ledger.clear()
    # emptied totals are exactly zero (no float dust: a refusal never says "-0 CPU cores")
    assert all(ledger.user_usage(u) == ZERO for u in USERS)
    assert all(ledger.pool_usage(p) == ZERO for p in POOLS[1:])


@pytest.mark.parametrize("steps, user_cpu, pool_cpu", [
    ([("add", "ann", "", 0.1, "p"), ("add", "ann", "a", 0.2, "p")], 0.3, 0.3),
    ([("add", "ann", "", 0.1, "p"), ("add", "ann", "a", 0.2, "p"), ("remove", "ann", "")], 0.2, 0.2),
    ([("add", "ann", "", 0.1, "p"), ("add", "ann", "", 0.7, None)], 0.7, 0.0),  # replaced, left the pool
    ([("add", "ann", "", 0.1, "p"), ("add", "bob", "", 0.2, "p"), ("remove", "ann", ""),
      ("remove", "bob", "")], 0.0, 0.0),
    ([("add", "ann", "", 0.1, "p"), ("remove", "ann", "x"), ("remove", "bob", "")], 0.1, 0.1),  # not held
])
def test_add_remove_replace_sequences(steps, user_cpu, pool_cpu):
    ledger = Ledger()
    for step in steps:
        if step[0] == "add":
            _, user, server, cpu, pool = step
            ledger.add(Charge(user, server, Amount(cpu=cpu), pool))
        else:
            ledger.remove(step[1], step[2])
    assert ledger.user_usage("ann").cpu == user_cpu
    assert ledger.pool_usage("p").cpu == pool_cpu


def test_decisions_read_the_totals_not_other_users_charges():
    """A decision at 10,000 running servers of other users is the one at none."""
    pol = QuotaPolicy.from_config({"gpus": 2}, None, {"gt-vision": {"gpus": 20010}})
    small, big = Ledger(), Ledger()
    for i in range(10_000):
        big.add(Charge(f"other{i}", "", Amount(gpus=1), "gt-vision"))
    for ledger in (small, big):
        ledger.add(Charge("ann", "", Amount(gpus=1), "gt-vision"))
    d_small = decide(pol, small, "ann", ["gt-vision"], Amount(gpus=2), "x")
    d_big = decide(pol, big, "ann", ["gt-vision"], Amount(gpus=2), "x")
    assert d_small.message == d_big.message and d_big.kind == "user"
    assert "your servers hold 1 of 2 GPUs" in d_big.message and "ann/(default)" in d_big.message


def gauge_rows() -> dict:
    rows = {}
    for family, i in ((metrics.GPUS_IN_USE, 0), (metrics.SERVERS_IN_USE, 1)):
        for sample in family.collect()[0].samples:
            if sample.labels["group"].startswith("gt-"):
                rows.setdefault((sample.labels["group"], sample.labels["size"]), [0, 0])[i] = sample.value
    return rows


def test_gauges_follow_the_ledger_like_a_recount():
    rnd = random.Random(7)
    ledger = Ledger(on_add=metrics.charge_added, on_remove=metrics.charge_removed)
    pools = ["gt-vision", "gt-nlp"]
    try:
        for op, arg in random_ops(rnd, 600):
            if op == "add":
                ledger.add(Charge(arg.user, arg.server, arg.amount, rnd.choice(pools), arg.size))
            elif op == "remove":
                ledger.remove(*arg)
            else:
                ledger.clear()
            want = {}
            for c in ledger.holders():
                row = want.setdefault((c.pool, c.size or "-"), [0, 0])
                row[0] += c.amount.gpus
                row[1] += 1
            # a (group, size) nobody holds any more has no series, as after a full recount
            assert gauge_rows() == want
    finally:
        ledger.clear()
    assert gauge_rows() == {}


def namespace_rows() -> dict:
    """{namespace: [servers, gpus, cpu, memory]} of the per-namespace gauges (this test's namespaces)."""
    rows = {}
    gauges = (metrics.NAMESPACE_SERVERS, metrics.NAMESPACE_GPUS, metrics.NAMESPACE_CPU, metrics.NAMESPACE_MEMORY)
    for i, family in enumerate(gauges):
        for sample in family.collect()[0].samples:
            if sample.labels["namespace"].startswith("gt-"):
                rows.setdefault(sample.labels["namespace"], [0, 0, 0, 0])[i] = sample.value
    return rows


def test_namespace_gauges_follow_the_ledger_like_a_recount():
    rnd = random.Random(11)
    ledger = Ledger(on_add=metrics.charge_added, on_remove=metrics.charge_removed)
    namespaces = ["gt-hub", "gt-team-vision", "gt-team-nlp"]
    try:
        for op, arg in random_ops(rnd, 600):
            if op == "add":
                ledger.add(Charge(arg.user, arg.server, arg.amount, None, arg.size, namespace=rnd.choice(namespaces)))
            elif op == "remove":
                ledger.remove(*arg)
            else:
                ledger.clear()
            want = {}
            for c in ledger.holders():
                row = want.setdefault(c.namespace, [0, 0, 0, 0])
                for i, v in enumerate((1, c.amount.gpus, c.amount.cpu, c.amount.memory)):
                    row[i] += v
            got = namespace_rows()
            assert got.keys() == want.keys()  # a namespace with no server left has no series
            for ns, row in want.items():
                assert got[ns] == pytest.approx(row, abs=1e-9), ns
    finally:
        ledger.clear()
    assert namespace_rows() == {}


def pod(user, server="", cpu="500m", pool=None, phase="Running", deleting=False, size="small"):
    ann = {"hub.jupyter.org/username": user, "hub.jupyter.org/servername": server}
    if pool:
        ann["ptjaas.io/quota-pool"] = pool
    meta = {"name": f"jupyter-{user}-{server}", "namespace": "default", "annotations": ann,
            "labels": {"component": "singleuser-server", "ptjaas.io/size": size}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"phase": phase},
            "spec": {"containers": [{"name": "notebook", "resources": {
                "requests": {"cpu": cpu, "memory": "1Gi"}, "limits": {"nvidia.com/gpu": "1"}}}]}}


async def test_rebuild_charges_live_server_pods_in_slices(caplog):
    pods = {
        "default/a": pod("ann", pool="gt-vision"),
        "default/b": pod("bob", "x", cpu="250m"),
        "default/gone": pod("cy"),  # deleted while the rebuild runs: not charged
        "default/stopping": pod("dee", deleting=True),
        "default/done": pod("eve", phase="Succeeded"),
        "default/other": {**pod("fay"), "metadata": {"name": "other", "namespace": "default"}},
        "default/held": pod("gus", cpu="4"),  # already charged by a start: kept as is
        "default/bad": pod("hal", cpu="lots"),
    }
    ledger = Ledger()
    held = Charge("gus", "", Amount(cpu=1), None, "small")
    ledger.add(held)
    ticks = []

    async def other_work():
        # the event loop runs other work between slices; the first slice's pod stops
        while True:
            ticks.append(len(ledger))
            pods.pop("default/gone", None)
            await asyncio.sleep(0)

    ticker = asyncio.ensure_future(other_work())
    with caplog.at_level(logging.WARNING):
        added = await rebuild_ledger(ledger, lambda: pods, logging.getLogger("test"), slice_seconds=0)
    ticker.cancel()
    assert added == 2
    assert sorted(ledger.charges) == [("ann", ""), ("bob", "x"), ("gus", "")]
    ann = ledger.get("ann", "")
    assert ann.pool == "gt-vision" and ann.size == "small" and ann.amount == Amount(1, 0.5, 2**30, 1)
    assert ledger.get("gus", "") is held
    assert len(ticks) >= len(pods) - 1  # it yielded to the event loop after each slice
    assert "pod default/bad not counted" in caplog.text and "'lots'" in caplog.text


def _server_pod(namespace, user, server=""):
    name = f"jupyter-{user}" + (f"--{server}" if server else "")
    return {f"{namespace}/{name}": {"metadata": {"namespace": namespace, "name": name, "annotations": {
        "hub.jupyter.org/username": user, "hub.jupyter.org/servername": server}}}}


@pytest.mark.parametrize("order", ["stop first", "pod deletion first"])
def test_a_stopped_servers_share_is_released_exactly_once(order):
    """Issue 19: after an outage the usage is re-derived from the pod list that succeeded
    (``gone_charges``), and the hub also stops the server: whichever comes first releases the
    share, the other releases nothing, and the gauges count it once."""
    removed = []
    ledger = Ledger(on_remove=removed.append)
    ledger.add(Charge("alice", "", Amount(1, 1.0, 2**30), "vision", namespace="team-vision"))
    ledger.add(Charge("bob", "", Amount(0, 1.0, 2**30), None, namespace="hub"))
    pods_after = {**_server_pod("hub", "bob")}  # alice's pod was deleted during the outage
    if order == "stop first":
        ledger.remove("alice", "")
    for charge in gone_charges(ledger, "team-vision", pods_after):
        ledger.remove(charge.user, charge.server)
    if order == "pod deletion first":
        assert ledger.remove("alice", "") is None
    assert [c.user for c in removed] == ["alice"]
    assert ledger.pool_usage("vision") == ZERO and len(ledger) == 1


def test_gone_charges_are_those_of_one_namespace_whose_pod_is_missing_and_not_starting():
    ledger = Ledger()
    for user, ns in (("ann", "hub"), ("bob", "hub"), ("cy", "hub"), ("dee", "team")):
        ledger.add(Charge(user, "", Amount(0, 0.1, 0), None, namespace=ns))
    ledger.add(Charge("ann", "second", Amount(0, 0.1, 0), None, namespace="hub"))
    pods = {**_server_pod("hub", "ann"), **_server_pod("team", "bob")}  # bob's pod is in another namespace
    gone = gone_charges(ledger, "hub", pods, starting={("cy", "")})  # cy's pod is not made yet
    assert sorted((c.user, c.server) for c in gone) == [("ann", "second"), ("bob", "")]
